"""The host's stream words: how frame steps and results cross the wire.

Every word of an activation stream holds one value per channel, ``bits`` wide, two's
complement, channel 0 in the least significant bits. Two streams use such words:

* the core's ``frames_in`` (:class:`ese.hw.accelerator.LSTMAccelerator`): one word per input,
  ``tlast`` on a step's last word, and ``tuser`` on its first word the channels that begin a
  sequence with it (:func:`step_words`, :func:`starts_mask`);
* the system's ``host_frames`` (:class:`ese.hw.system.AcceleratorSystem`), which the host
  writes as bytes: a header word holding that mask, then the step's words, little-endian
  (:func:`pack_step`); its ``host_results`` carry one word per output (:func:`unpack_result`).

The host driver, the testbenches and the hardware's receiver all follow these definitions.
"""

import numpy as np

__all__ = ["channel_word", "channel_values", "starts_mask", "step_words", "word_bytes",
           "pack_step", "pack_steps", "unpack_result"]


def channel_word(values, bits):
    """One stream word from one value per channel (signed integers)."""
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (bits * c) for c, v in enumerate(values))


def channel_values(word, channels, bits):
    """The signed value of each channel in ``word``."""
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    return [(((int(word) >> (bits * c)) & mask) ^ sign) - sign for c in range(channels)]


def starts_mask(starts):
    """The channels that begin a sequence, as a bit mask (channel 0 in bit 0)."""
    return sum(1 << c for c, start in enumerate(starts) if start)


def step_words(codes, bits):
    """A frame step's words, one per input: ``codes`` is (channels, inputs)."""
    return [channel_word(column, bits) for column in np.asarray(codes).T]


def word_bytes(channels, bits):
    """Bytes of one host stream word."""
    return channels * bits // 8


def pack_step(codes, starts, bits):
    """One frame step as the host writes it: the header word, then one word per input."""
    codes = np.asarray(codes, dtype=np.int64)
    size = word_bytes(codes.shape[0], bits)
    words = [starts_mask(starts), *step_words(codes, bits)]
    return b"".join(word.to_bytes(size, "little") for word in words)


def pack_steps(codes, starts, bits):
    """Frame steps ``codes`` (steps, channels, inputs), ``starts`` (steps, channels): a list
    of bytes, one per step."""
    return [pack_step(step, start, bits) for step, start in zip(np.asarray(codes), starts)]


def unpack_result(data, channels, outputs, bits):
    """One step's result bytes -> int64 array (channels, outputs) of signed values."""
    size = word_bytes(channels, bits)
    values = np.empty((channels, outputs), dtype=np.int64)
    for index in range(outputs):
        word = int.from_bytes(data[index * size:(index + 1) * size], "little")
        values[:, index] = channel_values(word, channels, bits)
    return values
