"""The broadcast: activation vectors become a stream of (column, value) for every PE.

Two :class:`VectorReader` s feed a :class:`BroadcastArbiter`:

* the *critical* reader reads the vectors on the frame's critical path (y_{t-1} for the gates,
  m_t for the projection, a lower layer's y for the next layer); it can *follow* a producer,
  reading each word as soon as the cell unit or the writeback has written it;
* the *filler* reader reads the next frame's input x_{t+1}, whose products W_x x_{t+1} do not
  depend on the current frame and fill every cycle the critical path leaves free.

The arbiter sends a fence first when one is requested, then critical columns, then filler.
Every word holds one activation per channel (channels run in lock-step); a column whose
activations are zero in every channel is dropped as it is read: it costs no PE cycle. A job
may mask channels that start a new sequence in this frame step, so their y_{t-1} reads as 0.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import address_bits, count_bits
from .axi import forward
from .layouts import FENCE_BITS, BroadcastLayout, ChannelValues

__all__ = ["VectorReader", "BroadcastArbiter", "ColumnLayout", "ReadJobLayout", "Follow"]


class Follow:
    """Which producer a read job follows (0: none, the segment is complete)."""
    NONE = 0
    CELLS = 1
    WRITEBACK = 2
    PRODUCERS = 2


def ColumnLayout(config):
    """Activations on their way to the arbiter: column, one value per channel, target (and
    gate bank), and the alignment shift of the products of the column's weights."""
    return data.StructLayout({
        "column": unsigned(address_bits(config.pointer_depth)),
        "values": ChannelValues(config),
        "target": unsigned(1),
        "bank": unsigned(1),
        "align": unsigned(config.align_bits),
    })


def ReadJobLayout(config, depth):
    """One segment to read: where, how long, which columns and accumulators, what to follow."""
    return data.StructLayout({
        "base": unsigned(address_bits(depth)),
        "length": unsigned(count_bits(depth)),
        "column_base": unsigned(address_bits(config.pointer_depth)),
        "target": unsigned(1),
        "bank": unsigned(1),         # the gate accumulators' bank: the frame step's parity
        "align": unsigned(config.align_bits),   # the layer descriptor's shift for this vector
        "follow": unsigned(2),
        "masked": unsigned(1),       # zero the channels in ``fresh`` (their y_{t-1} is 0)
    })


class VectorReader(wiring.Component):
    """Read queued segments of an activation memory, dropping zeros.

    Parameters
    ----------
    config : ese.Config
    depth : int
        Depth of the memory it reads.

    Members
    -------
    jobs : In(stream.Signature(ReadJobLayout))
        Segments to read, queued (two deep) and read back to back.
    produced : In(ArrayLayout(count, 2))
        Words written so far by each producer (cell unit, writeback) in its current job; a job
        that follows a producer reads word ``i`` only once ``produced > i``.
    fresh : In(channels)
        Channels starting a new sequence; a ``masked`` job reads them as zero.
    busy : Out(1)
        A job is queued, being read, or its last activation is not yet sent.
    read_address, read_enable : Out, read_data : In
        A synchronous read port of the memory (one activation per channel per word).
    activations : Out(stream.Signature(ColumnLayout))
    """

    def __init__(self, config, depth):
        config.require_sized()
        self.config = config
        self.depth = depth
        count = count_bits(max(depth, config.vector_depth, config.cell_depth))
        super().__init__({
            "jobs": In(stream.Signature(ReadJobLayout(config, depth))),
            "produced": In(data.ArrayLayout(unsigned(count), Follow.PRODUCERS)),
            "fresh": In(config.channels),
            "busy": Out(1),
            "read_address": Out(address_bits(depth)),
            "read_enable": Out(1),
            "read_data": In(ChannelValues(config)),
            "activations": Out(stream.Signature(ColumnLayout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        layout = ReadJobLayout(self.config, self.depth)
        m.submodules.queue = queue = SyncFIFO(width=layout.size, depth=2)
        forward(m, self.jobs, queue.w_stream)

        job = Signal(layout)
        active = Signal()
        index = Signal(unsigned(count_bits(self.depth)))
        followed = Signal(self.produced[0].shape())
        with m.Switch(job.follow):
            with m.Case(Follow.CELLS):
                m.d.comb += followed.eq(self.produced[0])
            with m.Case(Follow.WRITEBACK):
                m.d.comb += followed.eq(self.produced[1])
            with m.Default():
                m.d.comb += followed.eq(job.length)
        more = active & (index < job.length)
        can_read = more & (index < followed)

        # Stage 1 holds the activations read in the previous cycle (on the memory's port).
        held = Signal()
        held_column = Signal.like(job.column_base)
        held_target = Signal()
        held_bank = Signal()
        held_align = Signal.like(job.align)
        held_mask = Signal(self.config.channels)     # channels whose value is kept
        values = Signal(ChannelValues(self.config))
        for channel in range(self.config.channels):
            m.d.comb += values[channel].eq(Mux(held_mask[channel], self.read_data[channel], 0))
        # Stage 2 holds them registered, with whether any is non-zero: the test over every
        # channel ends at a register, and a column of zeros is dropped here, without waiting
        # for the arbiter.
        sending = Signal()
        sending_nonzero = Signal()
        sending_column = Signal.like(held_column)
        sending_target = Signal()
        sending_bank = Signal()
        sending_align = Signal.like(job.align)
        sending_values = Signal(ChannelValues(self.config))
        advance_sent = ~sending | ~sending_nonzero | self.activations.ready
        advance = ~held | advance_sent
        with m.If(advance_sent):
            m.d.sync += [sending.eq(held), sending_nonzero.eq(values.as_value() != 0),
                         sending_column.eq(held_column), sending_target.eq(held_target),
                         sending_bank.eq(held_bank), sending_align.eq(held_align),
                         sending_values.eq(values)]
        m.d.comb += [
            self.read_address.eq(job.base + index),
            self.read_enable.eq(advance),
            self.activations.valid.eq(sending & sending_nonzero),
            self.activations.payload.column.eq(sending_column),
            self.activations.payload.values.eq(sending_values),
            self.activations.payload.target.eq(sending_target),
            self.activations.payload.bank.eq(sending_bank),
            self.activations.payload.align.eq(sending_align),
            self.busy.eq(active | held | sending | queue.r_rdy),
        ]
        with m.If(advance):
            m.d.sync += [held.eq(can_read), held_column.eq(job.column_base + index),
                         held_target.eq(job.target), held_bank.eq(job.bank),
                         held_align.eq(job.align),
                         held_mask.eq(Mux(job.masked, ~self.fresh,
                                          (1 << self.config.channels) - 1))]
            with m.If(can_read):
                m.d.sync += index.eq(index + 1)
        # Take the next job once the current one is read to its end.
        take = queue.r_rdy & ~more
        m.d.comb += queue.r_en.eq(take)
        with m.If(take):
            m.d.sync += [job.eq(queue.r_data), active.eq(1), index.eq(0)]
        with m.Elif(~more):
            m.d.sync += active.eq(0)
        return m


class BroadcastArbiter(wiring.Component):
    """Merge fences, critical and filler activations into the broadcast to the PEs.

    Members
    -------
    fence_request : In(1)
        Strobe: send a fence after everything already sent (it goes before any further
        activation). Only one fence may be outstanding.
    fences_requested : Out(FENCE_BITS)
        Fences requested so far, modulo 2**FENCE_BITS: when a PE's fence count equals it,
        the PE has finished everything sent before the last fence.
    critical, filler : In(stream.Signature(ColumnLayout))
    broadcast : Out(stream.Signature(BroadcastLayout))
    """

    def __init__(self, config):
        self.config = config
        super().__init__({
            "fence_request": In(1),
            "fences_requested": Out(FENCE_BITS),
            "critical": In(stream.Signature(ColumnLayout(config))),
            "filler": In(stream.Signature(ColumnLayout(config))),
            "broadcast": Out(stream.Signature(BroadcastLayout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        pending = Signal()
        requested = Signal(FENCE_BITS)
        m.d.comb += self.fences_requested.eq(requested)
        out = self.broadcast
        use_critical = self.critical.valid
        source = Mux(use_critical, self.critical.payload.as_value(),
                     self.filler.payload.as_value())
        chosen = data.View(ColumnLayout(self.config), source)
        m.d.comb += [
            out.valid.eq(pending | self.critical.valid | self.filler.valid),
            out.payload.fence.eq(pending),
            out.payload.column.eq(chosen.column),
            out.payload.values.eq(chosen.values),
            out.payload.target.eq(chosen.target),
            out.payload.bank.eq(chosen.bank),
            out.payload.align.eq(chosen.align),
            out.payload.filler.eq(~use_critical),
            self.critical.ready.eq(out.ready & ~pending),
            self.filler.ready.eq(out.ready & ~pending & ~use_critical),
        ]
        with m.If(pending & out.ready):
            m.d.sync += pending.eq(0)
        with m.If(self.fence_request):
            m.d.sync += [pending.eq(1), requested.eq(requested + 1)]
        return m
