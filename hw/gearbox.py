"""Width conversion between a DMA engine's wide stream beats and the accelerator's words.

A PCIe DMA engine moves AXI4-Stream beats of a fixed width (256 bits for the XDMA at PCIe
Gen3 x8); the accelerator's host streams carry words of ``2 * channels`` bytes (frame steps
and results) or 4 bytes (the weight image). The two widths need not divide each other (a
3-channel word is 6 bytes), so both converters move the stream in *units* of
``gcd(beat, word)`` bytes, one unit a cycle: at least 2 bytes a cycle, far above what the
host streams need (a frame step is a few hundred bytes per several thousand cycles of work).

A packet's last beat may be partial: ``tkeep`` marks its valid bytes, from byte 0 up, as
XDMA's H2C streams do (PG195, AXI4-Stream H2C ports) and as its C2H streams take them. Bytes
are in stream order: byte 0 of a beat is its lowest byte, and the first bytes of a word are
its low bits (channel 0 first).
"""

from math import gcd

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AxiStreamSignature

__all__ = ["BeatsToWords", "WordsToBeats"]


def _move_unit(m, source, index, target, filled, units, unit_bits):
    """Move unit ``index`` of ``source`` to position ``filled`` of ``target`` (``units``
    units wide), and advance both counters: one unit a cycle, both converters' step."""
    unit = source.word_select(index, unit_bits)
    for position in range(units):
        with m.If(filled == position):
            m.d.sync += target.word_select(position, unit_bits).eq(unit)
    m.d.sync += [index.eq(index + 1), filled.eq(filled + 1)]


class BeatsToWords(wiring.Component):
    """Split a stream of wide beats (with ``tkeep``) into words.

    Members
    -------
    beats : In(AxiStreamSignature(8 * beat_bytes, keep=True))
        The DMA engine's stream; a packet ends with ``tlast``; ``tkeep`` (contiguous from byte
        0) marks the bytes of a partial last beat.
    words : Out(AxiStreamSignature(8 * word_bytes))
        Whole words; ``tlast`` on the word that ends with the packet's last byte.
    dropped : Out(1)
        Strobe: a packet ended inside a word, and that word's bytes were dropped.
    """

    def __init__(self, beat_bytes, word_bytes):
        self.beat_bytes = beat_bytes
        self.word_bytes = word_bytes
        self.unit_bytes = gcd(beat_bytes, word_bytes)
        super().__init__({
            "beats": In(AxiStreamSignature(8 * beat_bytes, keep=True)),
            "words": Out(AxiStreamSignature(8 * word_bytes)),
            "dropped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        unit_bits = 8 * self.unit_bytes
        beat_units = self.beat_bytes // self.unit_bytes
        word_units = self.word_bytes // self.unit_bytes

        beat = Signal(8 * self.beat_bytes)
        beat_kept = Signal(range(beat_units + 1))     # units of the held beat to pass on
        beat_last = Signal()
        holding = Signal()                            # a beat is held
        index = Signal(range(beat_units + 1))         # its next unit
        word = Signal(8 * self.word_bytes)
        filled = Signal(range(word_units + 1))        # units of the word so far
        word_last = Signal()
        word_ready = Signal()                         # the word is whole, waiting to leave

        # The kept units of an incoming beat: its keep bits are contiguous from byte 0, so
        # the count is that of the highest unit whose last byte is kept; a unit only partly
        # kept (a packet that is not whole units) is dropped, and said.
        kept = Signal(range(beat_units + 1))
        partial = Signal()
        for unit in range(beat_units):
            first, last = unit * self.unit_bytes, (unit + 1) * self.unit_bytes - 1
            with m.If(self.beats.tkeep[last]):
                m.d.comb += kept.eq(unit + 1)
            with m.If(self.beats.tkeep[first] & ~self.beats.tkeep[last]):
                m.d.comb += partial.eq(1)
        beat_partial = Signal()

        m.d.comb += self.beats.tready.eq(~holding)
        with m.If(self.beats.tvalid & ~holding):
            m.d.sync += [beat.eq(self.beats.tdata), beat_kept.eq(kept),
                         beat_partial.eq(partial), beat_last.eq(self.beats.tlast),
                         holding.eq(1), index.eq(0)]

        m.d.comb += [self.words.tdata.eq(word), self.words.tlast.eq(word_last),
                     self.words.tvalid.eq(word_ready)]
        with m.If(word_ready & self.words.tready):
            m.d.sync += [word_ready.eq(0), filled.eq(0), word_last.eq(0)]

        with m.If(holding & ~word_ready):
            with m.If(index < beat_kept):
                _move_unit(m, beat, index, word, filled, word_units, unit_bits)
                final = index + 1 == beat_kept
                with m.If(final):
                    m.d.sync += holding.eq(0)
                with m.If(filled + 1 == word_units):
                    m.d.sync += [word_ready.eq(1), word_last.eq(final & beat_last)]
                    with m.If(final & beat_last & beat_partial):
                        m.d.comb += self.dropped.eq(1)
                with m.Elif(final & beat_last):
                    # The packet ends inside a word: drop its bytes.
                    m.d.sync += filled.eq(0)
                    m.d.comb += self.dropped.eq(1)
            with m.Else():
                # A beat with no whole unit kept.
                m.d.sync += holding.eq(0)
                with m.If(beat_last & ((filled != 0) | beat_partial)):
                    m.d.sync += filled.eq(0)
                    m.d.comb += self.dropped.eq(1)
        return m


class WordsToBeats(wiring.Component):
    """Pack a stream of words into wide beats; a packet's last beat may be partial.

    Members
    -------
    words : In(AxiStreamSignature(8 * word_bytes))
        Words; ``tlast`` ends a packet.
    beats : Out(AxiStreamSignature(8 * beat_bytes, keep=True))
        The packet's bytes in beats; the last beat has ``tlast``, and ``tkeep`` marks its
        bytes (contiguous from byte 0; the rest are zero).
    """

    def __init__(self, word_bytes, beat_bytes):
        self.word_bytes = word_bytes
        self.beat_bytes = beat_bytes
        self.unit_bytes = gcd(beat_bytes, word_bytes)
        super().__init__({
            "words": In(AxiStreamSignature(8 * word_bytes)),
            "beats": Out(AxiStreamSignature(8 * beat_bytes, keep=True)),
        })

    def elaborate(self, platform):
        m = Module()
        unit_bits = 8 * self.unit_bytes
        beat_units = self.beat_bytes // self.unit_bytes
        word_units = self.word_bytes // self.unit_bytes

        word = Signal(8 * self.word_bytes)
        word_last = Signal()
        holding = Signal()
        index = Signal(range(word_units + 1))
        beat = Signal(8 * self.beat_bytes)
        filled = Signal(range(beat_units + 1))
        beat_last = Signal()
        beat_ready = Signal()

        m.d.comb += self.words.tready.eq(~holding)
        with m.If(self.words.tvalid & ~holding):
            m.d.sync += [word.eq(self.words.tdata), word_last.eq(self.words.tlast),
                         holding.eq(1), index.eq(0)]

        m.d.comb += [self.beats.tdata.eq(beat), self.beats.tlast.eq(beat_last),
                     self.beats.tvalid.eq(beat_ready),
                     self.beats.tkeep.eq(Cat((filled > byte // self.unit_bytes)
                                             for byte in range(self.beat_bytes)))]
        with m.If(beat_ready & self.beats.tready):
            m.d.sync += [beat_ready.eq(0), filled.eq(0), beat_last.eq(0), beat.eq(0)]

        with m.If(holding & ~beat_ready):
            _move_unit(m, word, index, beat, filled, beat_units, unit_bits)
            final = index + 1 == word_units
            with m.If(final):
                m.d.sync += holding.eq(0)
            with m.If((filled + 1 == beat_units) | (final & word_last)):
                m.d.sync += [beat_ready.eq(1), beat_last.eq(final & word_last)]
        return m
