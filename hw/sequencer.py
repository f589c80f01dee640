"""The core's control: the frame sequencer and the filler control.

The :class:`FrameSequencer` runs each frame step layer by layer: the gate products (the input
and recurrent columns through the critical reader), a fence, the cell unit, the projection's
columns following the cell unit, a fence, the projection writeback. After a reset it first
clears every accumulator, cell state and vector word. The :class:`FillerControl` decides when
the filler reader sends the first layer's input products of a waiting step, so that they fill
the cycles the critical path leaves free.

Step t uses input slot t mod 2 (:data:`~ese.hw.receiver.SLOTS`) and the bank of gate
accumulators of the same parity (:data:`~ese.hw.layouts.ACCUMULATOR_BANKS`). A slot is
released to the receiver at its step's gate fence, so it holds one step from arrival to then,
whenever the filler sends it. Because the next step's products go to the other bank, they
need not wait for this step's cell unit: the filler sends the next step's input products as
soon as that bank's last reader, the previous step's cell unit, has finished, and the next
step's recurrent broadcast may follow this step's cell unit word by word. Nothing is sent
while the accumulators are being cleared after a reset (products added then would be wiped).
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import count_bits
from ..sw.contract.placement import Placement
from .broadcast import Follow, ReadJobLayout
from .layouts import DescriptorLayout, Target
from .receiver import SLOTS

__all__ = ["FrameSequencer", "FillerControl", "STEP_JOB_CYCLES", "LAYER_JOB_CYCLES"]

#: From the last layer's last unit's start (writeback, or cell unit without projection) to the
#: next step's first read job: LAYER_DONE, FRAME_WAIT, GATES_INPUT, then GATES_RECURRENT
#: offers it (the next step's input being there).
STEP_JOB_CYCLES = 4
#: From a layer's last unit's start to the next layer's first read job: LAYER_DONE,
#: LAYER_DESCRIBE, then GATES_INPUT offers it.
LAYER_JOB_CYCLES = 3


class FrameSequencer(wiring.Component):
    """The frame sequencer of the core (see the module's documentation).

    Members
    -------
    desc : In(DescriptorLayout)
        The descriptor of layer ``layer`` (a cycle after ``layer`` changes).
    layer : Out(range(max_layers))
        The layer the step is at.
    full, starts : In
        The receiver's full input slots and the channels each slot's step starts.
    release : Out(SLOTS)
        Hand the current slot back to the receiver (at the first layer's gate fence).
    slot, frame_running, released, fresh : Out
        The current step's slot (and gate bank); whether a step runs; whether it has released
        its slot; the channels that begin a sequence.
    clearing, clear_enable, clear_address : Out
        After a reset: the clear is running; it writes address ``clear_address`` this cycle.
    idle, loader_busy, frames_waiting : In(1)
        Nothing is in flight anywhere; the loader is loading; a step's first word waits.
    load_enable : Out(1)
        The loader may take weights (only while no step waits or runs).
    critical_jobs : Out(stream.Signature(ReadJobLayout))
        Segments for the critical reader: x and y_{t-1} to the gates, m_t to the projection.
    critical_busy, fenced, filled : In
        The critical reader is busy; every PE has passed every fence; the filler has sent
        each slot's input products.
    fence_request : Out(1)
        Send a fence behind the work broadcast so far.
    cells_busy, writeback_busy : In(1)
    cells_start, cells_count, cells_base, cells_output_base, cells_bias_align, \
    cells_peephole_align, cells_gru, cells_rnn, cells_bank, cells_emit : Out
        Start the cell unit on a layer's cells (with its biases' and peepholes' alignments,
        in the step's gate bank; a GRU layer's units, whose step is an LSTM's without
        projection: h_{t-1} is both the recurrent broadcast's y_{t-1} and the update's
        previous state).
    writeback_start, writeback_rows, writeback_output_base, writeback_output_align, \
    writeback_emit : Out
        Start the projection writeback on a layer's rows (with its output's alignment).
    cells_delta, writeback_delta : Out(1); state_loaded : In(1); renew : Out(channels)
        With delta units (``Config.delta``): the layer is a delta layer, whose read jobs send
        changes beyond the descriptor's thresholds (``theta_x`` for its inputs, ``theta_h``
        for y_{t-1}, ``theta_m`` for the projection's m) and whose cell unit and writeback
        carry their sums; ``renew`` are the channels whose last transmitted values and
        carried sums count as zero in this step: those that start a sequence, and all of them
        where a state was loaded before it (``state_loaded``).
    """

    def __init__(self, config, clear_cycles):
        self.config = config
        self.clear_cycles = clear_cycles
        descriptor = DescriptorLayout(config)
        super().__init__({
            "desc": In(descriptor),
            "layer": Out(range(config.max_layers)),
            "full": In(SLOTS),
            "starts": In(data.ArrayLayout(unsigned(config.channels), SLOTS)),
            "release": Out(SLOTS),
            "slot": Out(range(SLOTS)),
            "frame_running": Out(1),
            "released": Out(1),
            "fresh": Out(config.channels),
            "clearing": Out(1, init=1),
            "clear_enable": Out(1),
            "clear_address": Out(32),
            "idle": In(1),
            "loader_busy": In(1),
            "frames_waiting": In(1),
            "load_enable": Out(1),
            "critical_jobs": Out(stream.Signature(
                ReadJobLayout(config, config.vector_depth // config.block_columns))),
            "critical_busy": In(1),
            "fenced": In(1),
            "filled": In(SLOTS),
            "fence_request": Out(1),
            "cells_busy": In(1),
            "writeback_busy": In(1),
            "cells_start": Out(1),
            "cells_count": Out(count_bits(config.cell_depth)),
            "cells_base": Out(descriptor["cell_base"].shape),
            "cells_output_base": Out(descriptor["cell_output_base"].shape),
            "cells_bias_align": Out(descriptor["bias_align"].shape),
            "cells_peephole_align": Out(descriptor["peephole_align"].shape),
            "cells_gru": Out(1),
            "cells_rnn": Out(1),
            "cells_bank": Out(1),
            "cells_delta": Out(1),
            "cells_emit": Out(1),
            "writeback_start": Out(1),
            "writeback_rows": Out(count_bits(config.vector_depth)),
            "writeback_output_base": Out(descriptor["recurrent_base"].shape),
            "writeback_output_align": Out(descriptor["output_align"].shape),
            "writeback_delta": Out(1),
            "writeback_emit": Out(1),
            **({"state_loaded": In(1), "renew": Out(config.channels)} if config.delta else {}),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        desc = self.desc
        counter = Signal(32)
        previous_producer = Signal(2)       # who writes the previous layer's y (Follow.*)
        frame_producer = Signal(2)          # who writes the last layer's y of the last step
        layers_one = Signal()               # the model has a single layer

        placement = Placement.of(config)

        def start_read(base, length, column_base, target, align, follow, masked=0, theta=None):
            """A read job of the vector of ``length`` columns from column ``base`` (in the
            vector memory, a word a block of columns) to blocks of columns from
            ``column_base``."""
            jobs = self.critical_jobs
            if config.delta:
                m.d.comb += [jobs.payload.delta.eq(desc.delta), jobs.payload.theta.eq(theta),
                             jobs.payload.renew.eq(self.renew)]
            m.d.comb += [
                jobs.valid.eq(1),
                jobs.payload.align.eq(align),
                jobs.payload.base.eq(base >> placement.block_bits),
                jobs.payload.length.eq(placement.blocks(length)),
                jobs.payload.column_base.eq(column_base),
                jobs.payload.target.eq(target),
                jobs.payload.bank.eq(self.slot),
                jobs.payload.follow.eq(follow),
                jobs.payload.masked.eq(masked),
            ]

        with m.FSM(init="CLEAR"):
            with m.State("CLEAR"):
                # After a reset: zero every accumulator, cell state and vector word once.
                m.d.comb += [self.clear_enable.eq(1), self.clear_address.eq(counter)]
                m.d.sync += counter.eq(counter + 1)
                with m.If(counter == self.clear_cycles - 1):
                    m.d.sync += self.clearing.eq(0)
                    m.next = "FRAME_WAIT"
            with m.State("FRAME_WAIT"):
                # Weights load only while no step is waiting or in flight.
                m.d.comb += self.load_enable.eq(self.idle & (self.full == 0)
                                                & ~self.frames_waiting)
                with m.If(self.full.bit_select(self.slot, 1) & ~self.loader_busy):
                    m.d.sync += [self.frame_running.eq(1), self.layer.eq(0),
                                 self.fresh.eq(self.starts[self.slot])]
                    if config.delta:
                        m.d.sync += self.renew.eq(self.starts[self.slot] | Mux(
                            self.state_loaded, (1 << config.channels) - 1, 0))
                    m.next = "GATES_INPUT"
            with m.State("GATES_INPUT"):
                # Layers after the first read the previous layer's y as it is written, from
                # the projection writeback; a cell unit still writing it is still reading
                # (and clearing) the gate accumulators this layer's products go to, so then
                # the layer waits for it.
                with m.If(self.layer == 0):
                    m.d.sync += layers_one.eq(desc.last)
                    m.next = "GATES_RECURRENT"
                with m.Elif((previous_producer != Follow.CELLS) | ~self.cells_busy):
                    start_read(desc.input_base, desc.inputs, desc.column_base, Target.GATES,
                               desc.input_align, previous_producer, theta=desc.theta_x)
                    with m.If(self.critical_jobs.ready):
                        m.next = "GATES_RECURRENT"
            with m.State("GATES_RECURRENT"):
                # With one layer, y_{t-1} may still be being written by the last step's
                # projection writeback or cell unit, which this read follows: the cell unit
                # reads the other bank's gate accumulators. Channels beginning a sequence read
                # y_{t-1} as zero.
                start_read(desc.recurrent_base, desc.recurrent,
                           desc.column_base + placement.blocks(desc.inputs), Target.GATES,
                           desc.recurrent_align,
                           Mux(layers_one, frame_producer, Follow.NONE), masked=1,
                           theta=desc.theta_h)
                with m.If(self.critical_jobs.ready):
                    m.next = "GATES_FENCE"
            with m.State("GATES_FENCE"):
                # The first layer's input products come from the filler; wait for them too,
                # then hand the input slot back to the receiver.
                with m.If(self.layer != 0):
                    with m.If(~self.critical_busy):
                        m.d.comb += self.fence_request.eq(1)
                        m.next = "GATES_WAIT"
                with m.Elif(~self.critical_busy & self.filled.bit_select(self.slot, 1)):
                    m.d.comb += [self.fence_request.eq(1), self.release.eq(1 << self.slot)]
                    m.d.sync += self.released.eq(1)
                    m.next = "GATES_WAIT"
            with m.State("GATES_WAIT"):
                with m.If(self.fenced & ~self.cells_busy & ~self.writeback_busy):
                    m.d.comb += [self.cells_start.eq(1), self.cells_count.eq(desc.cells),
                                 self.cells_base.eq(desc.cell_base),
                                 self.cells_output_base.eq(desc.cell_output_base),
                                 self.cells_bias_align.eq(desc.bias_align),
                                 self.cells_peephole_align.eq(desc.peephole_align),
                                 self.cells_gru.eq(desc.gru),
                                 self.cells_rnn.eq(desc.rnn),
                                 self.cells_bank.eq(self.slot),
                                 self.cells_delta.eq(desc.delta),
                                 self.cells_emit.eq(desc.last & (desc.proj == 0))]
                    with m.If(desc.proj != 0):
                        m.next = "PROJECTION"
                    with m.Else():
                        m.d.sync += previous_producer.eq(Follow.CELLS)
                        m.next = "LAYER_DONE"
            with m.State("PROJECTION"):
                start_read(desc.cell_output_base, desc.cells,
                           desc.column_base + placement.blocks(desc.inputs)
                           + placement.blocks(desc.recurrent), Target.PROJECTION,
                           desc.projection_align, Follow.CELLS, theta=desc.theta_m)
                with m.If(self.critical_jobs.ready):
                    m.next = "PROJECTION_FENCE"
            with m.State("PROJECTION_FENCE"):
                with m.If(~self.critical_busy):
                    m.d.comb += self.fence_request.eq(1)
                    m.next = "PROJECTION_WAIT"
            with m.State("PROJECTION_WAIT"):
                with m.If(self.fenced):
                    m.d.comb += [self.writeback_start.eq(1), self.writeback_rows.eq(desc.proj),
                                 self.writeback_output_base.eq(desc.recurrent_base),
                                 self.writeback_output_align.eq(desc.output_align),
                                 self.writeback_delta.eq(desc.delta),
                                 self.writeback_emit.eq(desc.last)]
                    m.d.sync += previous_producer.eq(Follow.WRITEBACK)
                    m.next = "LAYER_DONE"
            with m.State("LAYER_DONE"):
                with m.If(desc.last | (self.layer == config.max_layers - 1)):
                    # The next step may begin while this one's y is still being written.
                    m.d.sync += [self.layer.eq(0), self.slot.eq(self.slot + 1),
                                 self.frame_running.eq(0), self.released.eq(0),
                                 frame_producer.eq(previous_producer)]
                    m.next = "FRAME_WAIT"
                with m.Else():
                    m.d.sync += self.layer.eq(self.layer + 1)
                    m.next = "LAYER_DESCRIBE"
            with m.State("LAYER_DESCRIBE"):
                # The descriptor port needs a cycle to show the new layer.
                m.next = "GATES_INPUT"
        return m


class FillerControl(wiring.Component):
    """When the filler reader sends the first layer's input products of a waiting step (see
    the module's documentation).

    Members
    -------
    slot, frame_running, released, clearing : In
        The sequencer's state (see :class:`FrameSequencer`).
    full, release : In(SLOTS)
        The receiver's full slots, and the slot the sequencer hands back this cycle.
    cells_busy, cells_bank : In(1)
        The cell unit is reading (and clearing) the gate accumulators of bank ``cells_bank``.
    inputs, column_base, align : In
        The first layer's input count, its first column and its input products' alignment.
    jobs : Out(stream.Signature(ReadJobLayout))
        Segments for the filler reader: a slot's inputs to the gate accumulators of the
        slot's bank.
    reader_busy : In(1)
        The filler reader is still sending.
    delta, theta, starts, state_loaded, renew : In
        With delta units (``Config.delta``): the first layer is a delta layer with input
        threshold ``theta``; a slot's job renews the channels that start a sequence in its
        step (``starts``), and, before the current step runs, every channel where a state was
        loaded (``state_loaded``); once it runs, the channels the sequencer renews in it
        (``renew``).
    filled : Out(SLOTS)
        Each slot's input products have all been sent.
    pending : Out(1)
        A job was given and the filler reader has not finished it.
    """

    def __init__(self, config):
        self.config = config
        descriptor = DescriptorLayout(config)
        layout = ReadJobLayout(config, SLOTS * config.input_depth // config.block_columns)
        super().__init__({
            "slot": In(range(SLOTS)),
            "frame_running": In(1),
            "released": In(1),
            "clearing": In(1),
            "full": In(SLOTS),
            "release": In(SLOTS),
            "cells_busy": In(1),
            "cells_bank": In(1),
            "inputs": In(descriptor["inputs"].shape),
            "column_base": In(descriptor["column_base"].shape),
            "align": In(descriptor["input_align"].shape),
            "jobs": Out(stream.Signature(layout)),
            "reader_busy": In(1),
            "filled": Out(SLOTS),
            "pending": Out(1),
            **({"delta": In(1), "theta": In(descriptor["theta_x"].shape),
                "starts": In(data.ArrayLayout(unsigned(config.channels), SLOTS)),
                "state_loaded": In(1), "renew": In(config.channels)}
               if config.delta else {}),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        slot, filled = self.slot, self.filled
        filler_done = Signal(SLOTS)
        filler_slot = Signal(range(SLOTS))
        # The jobs keep the other fields at their reset values: products to the gate
        # accumulators (Target.GATES), following no producer (Follow.NONE), unmasked.
        placement = Placement.of(config)
        slot_words = config.input_depth // config.block_columns
        m.d.comb += [self.jobs.payload.length.eq(placement.blocks(self.inputs)),
                     self.jobs.payload.column_base.eq(self.column_base),
                     self.jobs.payload.align.eq(self.align)]
        if config.delta:
            m.d.comb += [self.jobs.payload.delta.eq(self.delta),
                         self.jobs.payload.theta.eq(self.theta)]
        # The current step's bank is no cell unit's until its gate fence, which waits for
        # this; the next step's is the previous step's, whose cell unit may still read it.
        current_ok = (~self.clearing & ~self.released & self.full.bit_select(slot, 1)
                      & ~filled.bit_select(slot, 1))
        following = Signal.like(slot)          # the next slot, wrapping (slot + 1 is wider)
        m.d.comb += following.eq(slot + 1)
        following_ok = (self.frame_running & ~(self.cells_busy & (self.cells_bank == following))
                        & self.full.bit_select(following, 1)
                        & ~filled.bit_select(following, 1))
        with m.If(~self.pending):
            with m.If(current_ok):
                m.d.comb += [self.jobs.valid.eq(1),
                             self.jobs.payload.base.eq(slot * slot_words),
                             self.jobs.payload.bank.eq(slot)]
                if config.delta:
                    # A state loaded before this step renews every channel.
                    m.d.comb += self.jobs.payload.renew.eq(Mux(
                        self.frame_running, self.renew,
                        self.starts[slot] | Mux(self.state_loaded,
                                                (1 << config.channels) - 1, 0)))
                with m.If(self.jobs.ready):
                    m.d.sync += [self.pending.eq(1), filler_slot.eq(slot)]
            with m.Elif(following_ok):
                m.d.comb += [self.jobs.valid.eq(1),
                             self.jobs.payload.base.eq(following * slot_words),
                             self.jobs.payload.bank.eq(following)]
                if config.delta:
                    m.d.comb += self.jobs.payload.renew.eq(self.starts[following])
                with m.If(self.jobs.ready):
                    m.d.sync += [self.pending.eq(1), filler_slot.eq(following)]
        with m.Elif(~self.reader_busy):
            m.d.sync += self.pending.eq(0)
            m.d.comb += filler_done.eq(1 << filler_slot)
        m.d.sync += filled.eq((filled | filler_done) & ~self.release)
        return m
