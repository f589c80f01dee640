"""The card shell's width converters in Amaranth's simulator: packets of DMA beats (the last
one partial, as XDMA's streams carry them: PG195, AXI4-Stream ports) to the accelerator's
words and back, with idle cycles and back-pressure."""

import random

import pytest
from amaranth.hdl import Module

from ese.hw.gearbox import BeatsToWords, WordsToBeats

from helpers import run_simulation

BEAT = 32


def _beats(packet):
    """A packet's bytes as XDMA would put them on a 256-bit stream: (data, keep, last)."""
    beats = []
    for start in range(0, len(packet), BEAT):
        chunk = packet[start:start + BEAT]
        beats.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1,
                      start + BEAT >= len(packet)))
    return beats


async def _send(ctx, port, items, rng, fields):
    for item in items:
        while rng.random() < 0.3:
            await ctx.tick()
        ctx.set(port.tvalid, 1)
        for field, value in zip(fields, item):
            ctx.set(getattr(port, field), value)
        await ctx.tick().until(port.tready)
        ctx.set(port.tvalid, 0)


async def _receive(ctx, port, count, rng, fields):
    received = []
    while len(received) < count:
        ctx.set(port.tready, rng.random() >= 0.3)
        _, _, *values, valid, ready = await ctx.tick().sample(
            *(getattr(port, field) for field in fields), port.tvalid, port.tready)
        if valid and ready:
            received.append(tuple(values))
    return received


@pytest.mark.parametrize("word_bytes", [2, 4, 6, 64])
def test_beats_become_words_and_words_become_beats(word_bytes):
    """Frame-step words of 1, 2, 3 and 32 channels (2, 4, 6, 64 bytes) and 4-byte image words,
    in packets of 1 to 40 words: every byte arrives once, in order, with tlast on the
    packet's last word; packed again, the beats equal what the DMA engine sent, tkeep
    included."""
    rng = random.Random(word_bytes)
    packets = [bytes(rng.randrange(256) for _ in range(word_bytes * rng.randint(1, 40)))
               for _ in range(12)]
    beats = [beat for packet in packets for beat in _beats(packet)]
    words = [(int.from_bytes(packet[i:i + word_bytes], "little"),
              i + word_bytes == len(packet))
             for packet in packets for i in range(0, len(packet), word_bytes)]

    splitter = BeatsToWords(BEAT, word_bytes)
    packer = WordsToBeats(word_bytes, BEAT)
    m = Module()
    m.submodules.splitter, m.submodules.packer = splitter, packer
    got_words, got_beats = [], []

    async def source(ctx):
        await _send(ctx, splitter.beats, beats, rng, ("tdata", "tkeep", "tlast"))

    async def words_side(ctx):
        got_words.extend(await _receive(ctx, splitter.words, len(words), rng,
                                        ("tdata", "tlast")))

    async def words_in(ctx):
        await _send(ctx, packer.words, words, rng, ("tdata", "tlast"))

    async def beats_out(ctx):
        got_beats.extend(await _receive(ctx, packer.beats, len(beats), rng,
                                        ("tdata", "tkeep", "tlast")))

    run_simulation(m, source, words_side, words_in, beats_out)
    assert got_words == [(data, int(last)) for data, last in words]
    assert got_beats == [(data, keep, int(last)) for data, keep, last in beats]


def test_a_packet_that_ends_inside_a_word_is_dropped_and_said():
    """Three bytes for 4-byte words: the partial word is dropped (with a strobe), and the next
    packet's words are whole."""
    splitter = BeatsToWords(BEAT, 4)
    seen = []

    async def source(ctx):
        await _send(ctx, splitter.beats, _beats(b"\x01\x02\x03") + _beats(b"\x04\x05\x06\x07"),
                    random.Random(0), ("tdata", "tkeep", "tlast"))

    async def monitor(ctx):
        ctx.set(splitter.words.tready, 1)
        for _ in range(40):
            _, _, valid, data, last, drop = await ctx.tick().sample(
                splitter.words.tvalid, splitter.words.tdata, splitter.words.tlast,
                splitter.dropped)
            if drop:
                seen.append("dropped")
            if valid:
                seen.append((data, last))

    run_simulation(splitter, source, monitor)
    assert seen == ["dropped", (0x07060504, 1)]
