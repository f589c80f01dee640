"""The frame receiver: input frames into a double-buffered input memory.

Frames arrive while earlier frames are being computed: the receiver writes each into one of
two slots of the input memory and marks the slot full; the sequencer releases a slot once its
frame's input products have been broadcast. So x_{t+1} is on chip, ready to fill the PEs'
idle cycles, while frame t runs. The first word of a sequence carries a flag (``tuser`` on
the bus); the receiver keeps it with the slot so the sequencer clears the state first.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.memory_map import address_bits, count_bits
from .pe import WritePortSignature

__all__ = ["FrameReceiver", "FrameWordLayout", "SLOTS"]

SLOTS = 2


def FrameWordLayout(config):
    return data.StructLayout({"value": signed(config.activation_bits),
                              "first": unsigned(1), "last": unsigned(1)})


class FrameReceiver(wiring.Component):
    """Write input frames into two alternating slots.

    Members
    -------
    words : In(stream.Signature(FrameWordLayout))
        Input words; ``first`` marks a sequence's first word, ``last`` a frame's last.
    length : In
        Words per frame (the first layer's inputs).
    write : Out(WritePortSignature)
        To the input memory: slot ``s`` occupies addresses ``s * input_depth`` onwards.
    full, starts : Out(2)
        Per slot: a frame is waiting in it, and it begins a new sequence.
    release : In(2)
        Per slot strobe: the frame has been consumed; the slot may be refilled.
    settle : In(2)
        Per slot strobe: the new sequence's state has been cleared (drops the start flag).
    error : Out(1)
        Sticky: a frame's ``last`` flag disagreed with ``length``.
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        super().__init__({
            "words": In(stream.Signature(FrameWordLayout(config))),
            "length": In(count_bits(max(config.vector_depth, config.input_depth))),
            "write": Out(WritePortSignature(address_bits(SLOTS * config.input_depth),
                                            config.activation_bits)),
            "full": Out(SLOTS),
            "starts": Out(SLOTS),
            "release": In(SLOTS),
            "settle": In(SLOTS),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.config.input_depth
        slot = Signal(range(SLOTS))
        index = Signal(count_bits(depth))
        full = Signal(SLOTS)
        starts = Signal(SLOTS)
        error = Signal()
        m.d.comb += [self.full.eq(full), self.starts.eq(starts), self.error.eq(error)]

        word = self.words.payload
        accept = Signal()
        final = index + 1 == self.length
        m.d.comb += [
            self.words.ready.eq(~full.bit_select(slot, 1) & (self.length != 0)),
            accept.eq(self.words.valid & self.words.ready),
            self.write.address.eq(slot * depth + index),
            self.write.data.eq(word.value),
            self.write.enable.eq(accept),
        ]
        filled = Signal(SLOTS)
        begun = Signal(SLOTS)
        with m.If(accept):
            with m.If(word.last != final):
                m.d.sync += error.eq(1)
            with m.If(final):
                m.d.sync += [index.eq(0), slot.eq(slot + 1)]
                m.d.comb += filled.eq(1 << slot)
            with m.Else():
                m.d.sync += index.eq(index + 1)
            with m.If((index == 0) & word.first):
                m.d.comb += begun.eq(1 << slot)
        # A slot's start flag is set by its first word and kept until the sequencer settles it.
        pending_start = Signal(SLOTS)
        m.d.sync += [
            full.eq((full | filled) & ~self.release),
            pending_start.eq((pending_start | begun) & ~filled),
            starts.eq((starts | (filled & (pending_start | begun))) & ~self.settle
                      & ~self.release),
        ]
        return m
