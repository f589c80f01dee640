"""The broadcast: activation vectors become a stream of (column, value) for every PE.

A word of the activation memories holds a block of ``Config.block_columns`` columns (each an
activation per channel), and a beat of the broadcast carries one word. Two
:class:`VectorReader` s feed a :class:`BroadcastArbiter`:

* the *critical* reader reads the vectors on the frame's critical path (y_{t-1} for the gates,
  m_t for the projection, a lower layer's y for the next layer); it can *follow* a producer,
  reading each word as soon as the cell unit or the writeback has written it;
* the *filler* reader reads the next frame's input x_{t+1}, whose products W_x x_{t+1} do not
  depend on the current frame and fill every cycle the critical path leaves free.

The arbiter sends a fence first when one is requested, then critical columns, then filler.
Every word holds one activation per channel (channels run in lock-step); a column whose
activations are zero in every channel is dropped as it is read: it costs no PE cycle. A job
may mask channels that start a new sequence in this frame step, so their y_{t-1} reads as 0.

A job of a delta layer (docs/arithmetic.md, "Delta layers") sends changes instead: each
reader keeps the last transmitted value of every column it reads, for every channel (its
*hat memory*, addressed by column), and sends a channel's change where it exceeds the job's
threshold, zero where it does not, writing the new value behind. A column no channel
transmits is then a column of zeros and is dropped like one. Channels the job *renews* (a
sequence start, or a state just loaded) read their last transmitted values as zero.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import address_bits, count_bits
from .axi import forward
from .layouts import (
    FENCE_BITS,
    BeatLayout,
    BlockValues,
    BroadcastLayout,
    BroadcastValues,
    WritePortSignature,
)

__all__ = ["VectorReader", "BroadcastArbiter", "ReadJobLayout", "Follow",
           "READ_CYCLES", "JOB_CYCLES", "JOB_TURN_CYCLES", "FENCE_CYCLES"]

#: From a reader's read of a word to the column's broadcast: the word on the memory's port
#: (stage 1), then registered with its zero test (stage 2), which the arbiter passes on.
READ_CYCLES = 2
#: From a read job's offer to its first read: the job queue's write, then its take.
JOB_CYCLES = 2
#: From a job's last read to the next queued job's first read: the index reaches the length,
#: then the next job is taken.
JOB_TURN_CYCLES = 2
#: From a job's last broadcast to the fence behind it: the reader's busy clears a cycle later
#: (the sequencer then requests the fence), and the arbiter registers the request.
FENCE_CYCLES = 2


class Follow:
    """Which producer a read job follows (0: none, the segment is complete)."""
    NONE = 0
    CELLS = 1
    WRITEBACK = 2
    PRODUCERS = 2


def ReadJobLayout(config, depth):
    """One segment to read: where, how long (in words: blocks of columns), which columns and
    accumulators, what to follow."""
    return data.StructLayout({
        "base": unsigned(address_bits(depth)),
        "length": unsigned(count_bits(depth)),
        "column_base": unsigned(address_bits(config.pointer_depth)),
        "target": unsigned(1),
        "bank": unsigned(1),         # the gate accumulators' bank: the frame step's parity
        "align": unsigned(config.align_bits),   # the layer descriptor's shift for this vector
        "follow": unsigned(2),
        "masked": unsigned(1),       # zero the channels in ``fresh`` (their y_{t-1} is 0)
        # A delta layer's job (Config.delta): send changes beyond ``theta`` (activation
        # LSBs), the channels in ``renew`` starting from last transmitted values of zero.
        **({"delta": unsigned(1), "theta": unsigned(config.activation_bits),
            "renew": unsigned(config.channels)} if config.delta else {}),
    })


class VectorReader(wiring.Component):
    """Read queued segments of an activation memory, dropping zeros.

    Parameters
    ----------
    config : ese.Config
    depth : int
        Depth of the memory it reads, in words (blocks of columns).
    hat_depth : int
        With delta units (``Config.delta``), the blocks of columns whose last transmitted
        values it keeps: its jobs' blocks are below it.

    Members
    -------
    jobs : In(stream.Signature(ReadJobLayout))
        Segments to read, queued (two deep) and read back to back.
    produced : In(ArrayLayout(count, 2))
        Words each producer (cell unit, writeback) has written whole so far in its current
        job; a job that follows a producer reads word ``i`` only once ``produced > i``.
    fresh : In(channels)
        Channels starting a new sequence; a ``masked`` job reads them as zero.
    busy : Out(1)
        A job is queued, being read, or its last activation is not yet sent.
    read_address, read_enable : Out, read_data : In
        A synchronous read port of the memory (a block of columns, one activation per channel
        each, per word).
    activations : Out(stream.Signature(BeatLayout))
    hat_address, hat_enable : Out, hat_data : In, hat_write : Out(WritePortSignature)
        With delta units: a synchronous read port (transparent for the write) and a write
        port of the hat memory, one word (a value per column and channel) per block.
    """

    def __init__(self, config, depth, hat_depth=0):
        config.require_sized()
        self.config = config
        self.depth = depth
        self.hat_depth = hat_depth
        count = count_bits(max(depth, config.vector_depth, config.cell_depth))
        hats = {}
        if config.delta:
            hats = {"hat_address": Out(address_bits(hat_depth)), "hat_enable": Out(1),
                    "hat_data": In(BlockValues(config)),
                    "hat_write": Out(WritePortSignature(address_bits(hat_depth),
                                                        BlockValues(config)))}
        super().__init__({
            "jobs": In(stream.Signature(ReadJobLayout(config, depth))),
            "produced": In(data.ArrayLayout(unsigned(count), Follow.PRODUCERS)),
            "fresh": In(config.channels),
            "busy": Out(1),
            "read_address": Out(address_bits(depth)),
            "read_enable": Out(1),
            "read_data": In(BlockValues(config)),
            "activations": Out(stream.Signature(BeatLayout(config))),
            **hats,
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
        read = Signal(BlockValues(self.config))
        for column in range(self.config.block_columns):
            for channel in range(self.config.channels):
                m.d.comb += read[column][channel].eq(
                    Mux(held_mask[channel], self.read_data[column][channel], 0))
        values = Signal(BroadcastValues(self.config))
        if self.config.delta:
            held_delta = Signal()
            held_theta = Signal.like(job.theta)
            held_renew = Signal.like(job.renew)
            self._changes(m, read, values, held_delta, held_theta, held_renew, held_column)
        else:
            m.d.comb += values.eq(read)
        # Stage 2 holds them registered, with whether any is non-zero: the test over every
        # channel ends at a register, and a column of zeros is dropped here, without waiting
        # for the arbiter.
        sending = Signal()
        sending_nonzero = Signal()
        sending_column = Signal.like(held_column)
        sending_target = Signal()
        sending_bank = Signal()
        sending_align = Signal.like(job.align)
        sending_values = Signal(BroadcastValues(self.config))
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
            if self.config.delta:
                m.d.sync += [held_delta.eq(job.delta), held_theta.eq(job.theta),
                             held_renew.eq(job.renew)]
            with m.If(can_read):
                m.d.sync += index.eq(index + 1)
        if self.config.delta:
            # The hat memory is read beside the activations, at the column's address; a
            # column's new last value is written as it leaves stage 1.
            m.d.comb += [self.hat_address.eq(job.column_base + index),
                         self.hat_enable.eq(advance),
                         self.hat_write.en.eq(held & held_delta & advance_sent)]
        # Take the next job once the current one is read to its end.
        take = queue.r_rdy & ~more
        m.d.comb += queue.r_en.eq(take)
        with m.If(take):
            m.d.sync += [job.eq(queue.r_data), active.eq(1), index.eq(0)]
        with m.Elif(~more):
            m.d.sync += active.eq(0)
        return m

    def _changes(self, m, read, values, delta, theta, renew, block):
        """Stage 1 of a delta layer's job: each column's and channel's change against its last
        transmitted value (zero for renewed channels), sent where it exceeds ``theta``, and
        the new last values to write (``hat_write.en`` is the caller's)."""
        config = self.config
        hats = Signal(BlockValues(config))
        for column in range(config.block_columns):
            for channel in range(config.channels):
                name = f"{column}_{channel}" if config.block_columns > 1 else f"{channel}"
                last = Mux(renew[channel], 0, self.hat_data[column][channel])
                change = Signal(signed(config.activation_bits + 1), name=f"change{name}")
                sent = Signal(name=f"sent{name}")
                now = read[column][channel]
                m.d.comb += [
                    change.eq(now - last),
                    sent.eq((change > theta) | (change < -theta)),
                    values[column][channel].eq(Mux(delta, Mux(sent, change, 0), now)),
                    hats[column][channel].eq(Mux(sent, now, last)),
                ]
        m.d.comb += [self.hat_write.addr.eq(block), self.hat_write.data.eq(hats)]


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
    critical, filler : In(stream.Signature(BeatLayout))
    broadcast : Out(stream.Signature(BroadcastLayout))
    """

    def __init__(self, config):
        self.config = config
        super().__init__({
            "fence_request": In(1),
            "fences_requested": Out(FENCE_BITS),
            "critical": In(stream.Signature(BeatLayout(config))),
            "filler": In(stream.Signature(BeatLayout(config))),
            "broadcast": Out(stream.Signature(BroadcastLayout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        pending = Signal()
        requested = Signal(FENCE_BITS)
        m.d.comb += self.fences_requested.eq(requested)
        out = self.broadcast
        use_critical = self.critical.valid
        m.d.comb += [
            out.valid.eq(pending | self.critical.valid | self.filler.valid),
            out.payload.fence.eq(pending),
            out.payload.beat.eq(Mux(use_critical, self.critical.payload, self.filler.payload)),
            out.payload.filler.eq(~use_critical),
            self.critical.ready.eq(out.ready & ~pending),
            self.filler.ready.eq(out.ready & ~pending & ~use_critical),
        ]
        with m.If(pending & out.ready):
            m.d.sync += pending.eq(0)
        with m.If(self.fence_request):
            m.d.sync += [pending.eq(1), requested.eq(requested + 1)]
        return m
