"""The frame receiver: input frame steps into a double-buffered input memory.

Channels run in lock-step, so input arrives as frame steps: one word per input index, holding
one activation per channel. Steps arrive while earlier steps are being computed: the receiver
writes each into one of two slots of the input memory and marks the slot full; the sequencer
releases a slot once its step's input products have been broadcast. So x_{t+1} is on chip,
ready to fill the PEs' idle cycles, while step t runs. The first word of a step says which
channels begin a new sequence with it (``tuser`` on the bus); the receiver keeps that mask
with the slot, and the sequencer starts those channels from zero state.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import address_bits, count_bits
from .layouts import ChannelValues, WritePortSignature

__all__ = ["FrameReceiver", "FrameWordLayout", "SLOTS"]

SLOTS = 2


def FrameWordLayout(config):
    return data.StructLayout({"values": ChannelValues(config),
                              "starts": unsigned(config.channels), "last": unsigned(1)})


class FrameReceiver(wiring.Component):
    """Write input frame steps into two alternating slots.

    Members
    -------
    words : In(stream.Signature(FrameWordLayout))
        Input words; ``starts`` (read on a step's first word) marks the channels whose
        sequence begins, ``last`` a step's last word.
    length : In
        Words per step (the first layer's inputs).
    write : Out(WritePortSignature)
        To the input memory: slot ``s`` occupies addresses ``s * input_depth`` onwards.
    full : Out(2)
        Per slot: a step is waiting in it.
    starts : Out(ArrayLayout(channels, 2))
        Per slot: the channels that begin a new sequence with its step.
    release : In(2)
        Per slot strobe: the step has been consumed; the slot may be refilled.
    error : Out(1)
        Sticky: a step's ``last`` flag disagreed with ``length``.
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        super().__init__({
            "words": In(stream.Signature(FrameWordLayout(config))),
            "length": In(count_bits(max(config.vector_depth, config.input_depth))),
            "write": Out(WritePortSignature(address_bits(SLOTS * config.input_depth),
                                            ChannelValues(config))),
            "full": Out(SLOTS),
            "starts": Out(data.ArrayLayout(unsigned(config.channels), SLOTS)),
            "release": In(SLOTS),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.config.input_depth
        slot = Signal(range(SLOTS))
        index = Signal(count_bits(depth))
        full = Signal(SLOTS)
        error = Signal()
        m.d.comb += [self.full.eq(full), self.error.eq(error)]

        word = self.words.payload
        accept = Signal()
        final = index + 1 == self.length
        m.d.comb += [
            self.words.ready.eq(~full.bit_select(slot, 1) & (self.length != 0)),
            accept.eq(self.words.valid & self.words.ready),
            self.write.addr.eq(slot * depth + index),
            self.write.data.eq(word.values),
            self.write.en.eq(accept),
        ]
        filled = Signal(SLOTS)
        with m.If(accept):
            with m.If(word.last != final):
                m.d.sync += error.eq(1)
            with m.If(final):
                m.d.sync += [index.eq(0), slot.eq(slot + 1)]
                m.d.comb += filled.eq(1 << slot)
            with m.Else():
                m.d.sync += index.eq(index + 1)
            with m.If(index == 0):
                m.d.sync += self.starts[slot].eq(word.starts)
        m.d.sync += full.eq((full | filled) & ~self.release)
        return m
