"""The host's stream words (ese.sw.contract.wire), which the driver and both testbenches use."""

import numpy as np
import pytest

from ese.sw.contract.wire import (
    channel_values,
    channel_word,
    pack_step,
    pack_steps,
    starts_mask,
    step_words,
    unpack_result,
    word_bytes,
)


def test_a_word_holds_each_channel_in_twos_complement_channel_0_lowest():
    assert channel_word([-1, 2], 16) == 0x0002_FFFF
    assert channel_word([0x7FFF, -0x8000, 1], 16) == 0x0001_8000_7FFF
    assert channel_values(0x0002_FFFF, 2, 16) == [-1, 2]
    assert channel_word([-3], 12) == 0xFFD


@pytest.mark.parametrize("channels, bits", [(1, 16), (2, 16), (3, 12), (32, 16)])
def test_words_round_trip(channels, bits):
    rng = np.random.default_rng(channels)
    values = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=channels).tolist()
    assert channel_values(channel_word(values, bits), channels, bits) == values


def test_a_host_step_is_a_header_word_then_one_word_per_input():
    codes = np.array([[1, -2, 3], [4, 5, -6]])            # (channels, inputs)
    data = pack_step(codes, [False, True], 16)
    size = word_bytes(2, 16)
    assert size == 4 and len(data) == 4 * size
    words = [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]
    assert words[0] == starts_mask([False, True]) == 0b10
    assert words[1:] == step_words(codes, 16) == [channel_word(c, 16) for c in codes.T]
    both = pack_steps(np.stack([codes, -codes]), [[True, True], [False, False]], 16)
    assert both[0][:size] == (3).to_bytes(size, "little") and both[1][size:] == \
        pack_step(-codes, [False, False], 16)[size:]


def test_a_result_unpacks_to_channels_by_outputs():
    values = np.array([[7, -8, 0], [-1, 2, 32767]])      # (channels, outputs)
    data = b"".join(channel_word(column, 16).to_bytes(4, "little") for column in values.T)
    assert np.array_equal(unpack_result(data, 2, 3, 16), values)
