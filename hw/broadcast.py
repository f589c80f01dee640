"""The activation broadcaster: reads a vector segment and feeds its non-zeros to every PE.

Given a segment of the activation vector memory (where it starts, how long it is) and where
it sits in the column space, it reads one activation per cycle, drops zeros (they contribute
nothing, so no PE spends a cycle on them) and sends (column, value, row base) to all PEs at
once. The send waits only while some PE's activation queue is full.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.memory_map import address_bits, count_bits
from .pe import BroadcastLayout

__all__ = ["ActivationBroadcaster"]


class ActivationBroadcaster(wiring.Component):
    """Stream one segment of the activation vector to the PEs, skipping zeros.

    Members
    -------
    start : In(1)
        Begin a segment described by ``vector_base``, ``length``, ``column_base`` and
        ``row_base`` (sampled in the same cycle). Only while not ``busy``.
    busy : Out(1)
        A segment is being read or its last activation has not been sent.
    read_address, read_enable : Out
        Read port of the activation vector memory (synchronous, one cycle).
    read_data : In(signed(activation_bits))
    activations : Out(stream.Signature(BroadcastLayout))
        To every PE's activation queue.
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        vector = address_bits(config.vector_depth)
        super().__init__({
            "start": In(1),
            "vector_base": In(vector),
            "length": In(count_bits(config.vector_depth)),
            "column_base": In(address_bits(config.pointer_depth)),
            "row_base": In(address_bits(config.accumulator_depth)),
            "busy": Out(1),
            "read_address": Out(vector),
            "read_enable": Out(1),
            "read_data": In(signed(config.activation_bits)),
            "activations": Out(stream.Signature(BroadcastLayout(self.config))),
        })

    def elaborate(self, platform):
        m = Module()
        index = Signal(unsigned(count_bits(self.config.vector_depth)))
        length = Signal.like(index)
        vector_base = Signal.like(self.vector_base)
        column_base = Signal.like(self.column_base)
        row_base = Signal.like(self.row_base)

        # Stage 1 holds the activation read in the previous cycle.
        held = Signal()
        held_column = Signal.like(self.column_base)
        nonzero = self.read_data != 0
        advance = ~held | ~nonzero | self.activations.ready
        more = index < length

        m.d.comb += [
            self.read_address.eq(vector_base + index),
            self.read_enable.eq(advance),
            self.activations.valid.eq(held & nonzero),
            self.activations.payload.column.eq(held_column),
            self.activations.payload.value.eq(self.read_data),
            self.activations.payload.row_base.eq(row_base),
            self.busy.eq(more | held),
        ]
        with m.If(self.start):
            m.d.sync += [
                index.eq(0), length.eq(self.length), vector_base.eq(self.vector_base),
                column_base.eq(self.column_base), row_base.eq(self.row_base), held.eq(0),
            ]
        with m.Elif(advance):
            m.d.sync += [held.eq(more), held_column.eq(column_base + index)]
            with m.If(more):
                m.d.sync += index.eq(index + 1)
        return m
