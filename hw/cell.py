"""The cell unit: the element-wise LSTM or GRU update, one cell per cycle.

After the gate products of a frame are accumulated, the cell unit visits every cell of the
layer. It reads the cell's four gate accumulators (through :mod:`ese.hw.readout`, which
clears them behind the read), its biases, peepholes and previous cell state, and computes,
exactly as :func:`ese.sw.contract.arithmetic.cell_update` does::

    i = sigmoid(gate_i + b_i + w_ic * c)      f = sigmoid(gate_f + b_f + w_fc * c)
    g = tanh(gate_g + b_g)                    c' = f * c + i * g
    o = sigmoid(gate_o + b_o + w_oc * c')     m = o * tanh(c')

The biases and peepholes are read a cycle ahead and shifted by the layer's alignments (its
formats, see :class:`~ese.sw.contract.arithmetic.LayerFormats`) once for every channel. It
writes c' back and m to the activation vector memory (where the projection, or the next
frame, reads it) and, for the network's output, into the output queue. It is a fixed-latency
pipeline without stalls; it issues a cell only when the output queue is sure to have room.

A GRU layer's units go through the same pipeline (:class:`CellArithmetic`), exactly as
:func:`ese.sw.contract.arithmetic.gru_update` computes them::

    r = sigmoid(r + b_r)      z = sigmoid(z + b_z)      n = tanh(n_x + b_in + r * (n_h + b_hn))
    h' = n + z * (h - n)

keeping h where an LSTM keeps c: the previous h comes from the cell state memory, and h' goes
there as well as to the vector memory.

Channels run in lock-step: the control is shared and each channel has its own arithmetic
(:class:`CellArithmetic`), reading that channel's accumulators and state. A channel that begins a
new sequence in this frame step starts from a zero cell state.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.arithmetic import (
    gru_candidate_frac_bits,
    gru_hidden_format,
    sigmoid_table,
    tanh_table,
)
from ..sw.contract.memory_map import GRU_SLOTS, MemoryMap, address_bits, count_bits
from ..sw.contract.placement import Placement
from .activation import ActivationTable
from .fixed import requantize
from .layouts import GATES, BlockValues, ChannelValues, WritePortSignature, write_columns
from .pipeline import credited_issue, delay, output_queue_members, produced_words
from .readout import GateReadout, GateRequestSignature, cell_issue_gap, gate_latency

__all__ = ["CellUnit", "CellArithmetic", "latency", "state_latency", "operand_latency",
           "carry_cycles", "MAX_LATENCY", "ARITHMETIC_CYCLES", "STATE_CYCLES"]

# The arithmetic takes a GRU's slots where an LSTM's gates are: r for i, z for f, n_x for g,
# n_h for o (see CellArithmetic).
assert GRU_SLOTS == ("r", "z", "n_x", "n_h")

#: Cycles of the cell update's arithmetic, from the gates' arrival to the output written.
ARITHMETIC_CYCLES = 11
#: Cycles from the gates' arrival to the new cell state written.
STATE_CYCLES = 5


def carry_cycles(config):
    """Cycles the carried sums add between the gates' arrival and the arithmetic: with delta units
    (``Config.delta``), the register of gates + carried sums."""
    return config.delta


def operand_latency(config):
    """Cycles from issuing a cell to its operands (sums, parameters, state) at the arithmetic."""
    return gate_latency(config) + carry_cycles(config)


def latency(config):
    """Cycles from issuing a cell to writing its output."""
    return operand_latency(config) + ARITHMETIC_CYCLES


def state_latency(config):
    """Cycles from issuing a cell to writing its new state."""
    return operand_latency(config) + STATE_CYCLES


#: The most cycles any configuration takes from issuing a cell to writing its output (the gate
#: reads take at most GATES cycles, with one PE, and the carried sums one more).
MAX_LATENCY = GATES + 1 + ARITHMETIC_CYCLES


def _parameter_layout(config):
    mm = MemoryMap(config)
    return data.StructLayout({name: signed(width) if s else unsigned(width)
                              for name, width, s in mm.cell_parameter_fields})


def AlignedParameters(config):
    """A cell's biases and peepholes shifted by the layer's alignments, as the arithmetic takes
    them: each as many bits wider as the largest alignment."""
    return data.StructLayout({
        **{f"bias_{g}": signed(config.bias_bits + config.max_align) for g in "ifgo"},
        **{f"peephole_{g}": signed(config.weight_bits + config.max_align) for g in "ifo"},
    })


class CellArithmetic(wiring.Component):
    """One channel's cell update arithmetic: a fixed-latency pipeline, an LSTM's or a GRU's.

    The operands are presented :func:`~ese.hw.readout.gate_latency` cycles after the cell is
    issued (stage 1); an LSTM's new cell state leaves :func:`state_latency` cycles and the
    output :func:`latency` cycles after the issue.

    A GRU (``gru``) takes its slots r, z, n_x, n_h
    (:data:`~ese.sw.contract.memory_map.GRU_SLOTS`) where the LSTM takes i, f, g, o, and
    shares the LSTM's tables and multipliers, computing
    :func:`~ese.sw.contract.arithmetic.gru_update` in the same stages: r comes from i's table
    lookup and z from f's; r times n_h (carried as o's sum is), rounded to
    :func:`~ese.sw.contract.arithmetic.gru_hidden_format`, takes the output gate's peephole
    multiplier (idle in a GRU), so the candidate n_x + r * n_h is ready when an LSTM's output
    gate input is, and n = tanh of it from the lookup of tanh(c'); z * h comes from f * c's
    multiplier, and h' = z * h + (1 - z) * n (the contract's n + z * (h - n), the same
    integer) from o * tanh(c')'s, with the sum in its adder: no subtraction or choice stands
    between a multiplier and the adders behind it. The previous h comes
    where an LSTM's previous cell state does, and h' leaves as ``output``.

    Members
    -------
    gates : In(ArrayLayout(signed(accumulator_bits), 4))
        The accumulated gates i, f, g, o (a GRU's slots).
    parameters : In(AlignedParameters)
        Biases and peepholes, shifted by the layer's alignments.
    previous : In(signed(cell_bits))
        The previous cell state (a GRU's previous h, an activation code).
    fresh : In(1)
        The channel begins a new sequence: the previous state counts as zero.
    gru : In(1)
        The layer is a GRU (held for the whole layer).
    rnn : In(1)
        The layer is a simple RNN (with ``gru``): z is held at zero, so h' = n.
    new_cell : Out(signed(cell_bits))
    output : Out(signed(activation_bits))
        m, or a GRU's h'.
    """

    def __init__(self, config):
        self.config = config
        super().__init__({
            "gates": In(data.ArrayLayout(signed(config.accumulator_bits), 4)),
            "parameters": In(AlignedParameters(config)),
            "previous": In(signed(config.cell_bits)),
            "fresh": In(1),
            "gru": In(1),
            "rnn": In(1),
            "new_cell": Out(signed(config.cell_bits)),
            "output": Out(signed(config.activation_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        act = config.activation_format
        acc_frac = config.product_frac_bits
        bias_shift = acc_frac - config.bias_frac_bits
        peep_shift = config.activation_frac_bits - config.cell_frac_bits
        grid = gru_candidate_frac_bits(config)
        # Without the GRU update (Config.gru=0) its datapath is never built.
        gru = self.gru if config.gru else Const(0, 1)
        rnn = self.rnn if config.gru else Const(0, 1)

        m.submodules.sigmoid = sigmoid = ActivationTable(sigmoid_table(config), lookups=3)
        m.submodules.tanh = tanh = ActivationTable(tanh_table(config), lookups=2)

        # Stage 1: operands arrive; peephole products with the previous state.
        gates = self.gates
        params = self.parameters
        previous = Signal(signed(config.cell_bits))
        m.d.comb += previous.eq(Mux(self.fresh, 0, self.previous))
        peep_i = Signal(signed(config.weight_bits + config.max_align + config.cell_bits))
        peep_f = Signal.like(peep_i)
        m.d.sync += [peep_i.eq(params.peephole_i * previous),
                     peep_f.eq(params.peephole_f * previous)]
        hold = {
            "gate_i": gates[0], "gate_f": gates[1], "gate_g": gates[2], "gate_o": gates[3],
            "bias_i": params.bias_i, "bias_f": params.bias_f, "bias_g": params.bias_g,
            "bias_o": params.bias_o, "peephole_o": params.peephole_o, "previous": previous,
        }
        stage2 = {name: delay(m, value, 1, f"{name}_s2") for name, value in hold.items()}

        # Stage 2: gate pre-activations, requantized to table inputs (a GRU's r and z); a
        # GRU's n_x exact.
        def total(gate, bias, peephole=None):
            value = gate + (bias << bias_shift)
            if peephole is not None:
                value = value + (peephole << peep_shift)
            return value

        u_i, u_f, u_g = (Signal(signed(act.bits), name=n) for n in ("u_i", "u_f", "u_g"))
        m.d.sync += [
            u_i.eq(requantize(total(stage2["gate_i"], stage2["bias_i"], peep_i), acc_frac, act)),
            u_f.eq(requantize(total(stage2["gate_f"], stage2["bias_f"], peep_f), acc_frac, act)),
            u_g.eq(requantize(total(stage2["gate_g"], stage2["bias_g"]), acc_frac, act)),
        ]
        candidate_sum = total(stage2["gate_g"], stage2["bias_g"])      # exact: full width
        candidate_input = Signal(candidate_sum.shape())
        m.d.sync += candidate_input.eq(candidate_sum)
        # Stage 3: table lookups (two cycles).
        m.d.comb += [sigmoid.codes[0].eq(u_i), sigmoid.codes[1].eq(u_f), tanh.codes[0].eq(u_g)]
        previous5 = delay(m, stage2["previous"], 3, "previous_s5")
        # The output gate's sum and parameters travel on to stage 7 (a GRU's n_h to stage 5).
        at5 = {name: delay(m, stage2[name], 3, f"{name}_s5")
               for name in ("gate_o", "bias_o", "peephole_o")}

        # Stage 5: the new cell state (registered: stage 6); a GRU's z * h from f * c's
        # multiplier, 1 - z, and n_h rounded for its product with r.
        i, f, g = sigmoid.values[0], sigmoid.values[1], tanh.values[0]
        kept = Signal(signed(len(f) + config.cell_bits))
        m.d.comb += kept.eq(f * previous5)
        mixed = (kept << peep_shift) + i * g
        new_cell = Signal(signed(config.cell_bits))
        hidden_format = gru_hidden_format(config)
        kept6 = Signal.like(kept)                       # a GRU's z * h
        opened6 = Signal(signed(act.frac + 2))          # a GRU's 1 - z
        reset6 = Signal.like(i)                         # a GRU's r
        hidden6 = Signal(signed(hidden_format.bits))    # a GRU's n_h
        m.d.sync += [
            new_cell.eq(requantize(mixed, 2 * act.frac, config.cell_format)),
            # A simple RNN's z is zero: nothing of h kept, all of n let through.
            kept6.eq(Mux(rnn, 0, kept)),
            opened6.eq(Mux(rnn, 1 << act.frac, (1 << act.frac) - f)),
            reset6.eq(i),
            hidden6.eq(requantize(total(at5["gate_o"], at5["bias_o"]), acc_frac,
                                  hidden_format)),
        ]
        m.d.comb += self.new_cell.eq(new_cell)

        # Stage 6: the output gate's peephole (a GRU's r * n_h: the peephole multiplier is
        # idle; each operand is a register chosen by the layer's kind, and the product is
        # registered), and tanh's input.
        later = {name: delay(m, value, 1, f"{name}_s6") for name, value in at5.items()}
        operand = max(config.weight_bits + config.max_align,
                      hidden_format.bits if config.gru else 0)
        peep_o = Signal(signed(operand + max(config.cell_bits, len(i))))
        u_c = Signal(signed(act.bits))
        m.d.sync += [
            peep_o.eq(Mux(gru, hidden6, later["peephole_o"]) * Mux(gru, reset6, new_cell)),
            u_c.eq(requantize(new_cell, config.cell_frac_bits, act)),
        ]
        gate_o7 = delay(m, later["gate_o"], 1, "gate_o7")
        bias_o7 = delay(m, later["bias_o"], 1, "bias_o7")
        candidate_input7 = delay(m, candidate_input, 4, "candidate_input_s7")

        # Stage 7: the output gate's input, and tanh's (c', or a GRU's candidate n_x + r *
        # n_h); stage 8: lookups of o and tanh(c') (a GRU's n).
        u_o = Signal(signed(act.bits))
        u_c8 = Signal.like(u_c)
        candidate = requantize((candidate_input7 << (grid - acc_frac))
                               + (peep_o << (grid - 2 * act.frac)), grid, act)
        m.d.sync += [u_o.eq(requantize(total(gate_o7, bias_o7, peep_o), acc_frac, act)),
                     u_c8.eq(Mux(gru, candidate, u_c))]
        m.d.comb += [sigmoid.codes[2].eq(u_o), tanh.codes[1].eq(u_c8)]
        kept10 = delay(m, kept6, 4, "kept_s10")
        opened10 = delay(m, opened6, 4, "opened_s10")

        # Stage 10: o * tanh(c'), or a GRU's (1 - z) * n (registered: stage 11); stage 11:
        # m, or a GRU's h' = z * h + (1 - z) * n, which is n + z * (h - n) (registered: stage
        # 12, the output). The product and its addend come from registers.
        o, squashed = sigmoid.values[2], tanh.values[1]
        product11 = Signal(signed(max(len(o), len(opened10)) + len(squashed)))
        addend11 = Signal.like(kept10)
        m.d.sync += [product11.eq(Mux(gru, opened10, o) * squashed),
                     addend11.eq(Mux(gru, kept10, 0))]
        m.d.sync += self.output.eq(requantize(product11 + addend11, 2 * act.frac, act))
        return m


class CellUnit(wiring.Component):
    """Element-wise LSTM cell (or GRU unit) update for one layer at a time, every channel in
    lock-step.

    Members
    -------
    start : In(1)
        Begin a layer: ``cells`` cells whose state and parameters start at ``cell_base``, with
        biases and peepholes ``bias_align`` and ``peephole_align`` bits coarser than the
        configured formats, LSTM cells or GRU units (``gru``), their gates in accumulator
        bank ``bank``; outputs go to the vector memory from ``output_base``, and to the
        output queue if ``emit`` is set. Only while not ``busy``.
    fresh : In(channels)
        Channels that begin a new sequence in this frame step (zero previous state).
    delta, renew : In
        With delta units (``Config.delta``): the layer is a delta layer, whose gate sums
        are carried from step to step (docs/arithmetic.md, "Delta layers"): the gates read
        from the PEs are this step's sums of changes, added to each cell's carried sums (zero
        for the channels in ``renew``: a sequence start or a state just loaded) and kept.
    carried_address : Out, carried_data : In, carried_write : Out(WritePortSignature)
        With delta units: the carried sums memory (a cell's four sums per channel per word),
        read to arrive with the gates and written a cycle later.
    busy : Out(1)
    reading_bank : Out(1)
        The gate bank of the layer it runs (or ran last).
    produced : Out
        Words of the vector memory written whole so far in this layer (a reader may follow
        it; :func:`~ese.hw.pipeline.produced_words`).
    accumulator : Out(GateRequestSignature)
        Which cells to read the gate accumulators of (every channel's, then cleared); the
        gates arrive :func:`~ese.hw.readout.gate_latency` cycles after the request.
    parameter_address : Out, parameter_data : In
        Read port of the cell parameter memory (biases, peepholes; shared by the channels; a
        word holds ``cell_lanes`` cells), read a cycle before the operands reach the
        arithmetic, so that they are aligned then.
    state_address : Out, state_data : In
        Read port of the cell state memory (a word holds ``cell_lanes`` cells, one state per
        channel each).
    state_write : Out(WritePortSignature)
        Write port of the cell state memory, an enable per cell: an LSTM's new cell state, or
        a GRU's h' (the previous h of its next step, kept as an activation code), written
        with its output.
    vector_write : Out(WritePortSignature)
        Write port of the activation vector memory (a word a block of columns, one output per
        channel each; an enable per column).
    output_space : In
        Free entries in the output queue.
    output_valid : Out(1), output_value : Out, output_count : Out, output_last : Out(1)
        An entry for the output queue (written without handshake; space is reserved): the
        cycle's outputs, ``output_count`` of them.

    The unit updates ``cell_lanes`` cells at a time, each lane with its own arithmetic for
    every channel; a layer's cells start on a word of the cell memories, and the lanes past
    its last cell write nothing.
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        mm = MemoryMap(config)
        cells = address_bits(config.cell_depth)
        lanes = config.cell_lanes
        cell_words = address_bits(config.cell_depth // lanes)
        vector_words = address_bits(config.vector_depth // config.block_columns)
        states = data.ArrayLayout(signed(config.cell_bits), config.channels)
        carried = {}
        if config.delta:
            carried = {"delta": In(1), "renew": In(config.channels),
                       "carried_address": Out(cells),
                       "carried_data": In(GateReadout(config)),
                       "carried_write": Out(WritePortSignature(cells, GateReadout(config)))}
        super().__init__({
            "start": In(1),
            "cells": In(count_bits(config.cell_depth)),
            "cell_base": In(cells),
            "output_base": In(address_bits(config.vector_depth)),
            "bias_align": In(config.align_bits),
            "peephole_align": In(config.align_bits),
            "emit": In(1),
            "gru": In(1),
            "rnn": In(1),
            "bank": In(1),
            "reading_bank": Out(1),
            "fresh": In(config.channels),
            "busy": Out(1),
            "produced": Out(count_bits(config.cell_depth)),
            "accumulator": Out(GateRequestSignature(config)),
            "parameter_address": Out(cell_words),
            "parameter_data": In(data.ArrayLayout(mm.cell_parameter_bits, lanes)),
            "state_address": Out(cell_words),
            "state_data": In(data.ArrayLayout(states, lanes)),
            "state_write": Out(WritePortSignature(cell_words, data.ArrayLayout(states, lanes),
                                                  granularity=1)),
            "vector_write": Out(WritePortSignature(vector_words, BlockValues(config),
                                                   granularity=1)),
            **output_queue_members(config),
            **carried,
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config

        # Issue: cell_lanes cells per cycle (or fewer, with fewer PEs than gates; see
        # readout), while the output queue has room for everything in flight.
        lanes = config.cell_lanes
        placement = Placement.of(config)
        cell_base = Signal.like(self.cell_base)
        output_base = Signal.like(self.output_base)
        fresh = Signal.like(self.fresh)
        bias_align = Signal.like(self.bias_align)
        peephole_align = Signal.like(self.peephole_align)
        gru = Signal() if config.gru else Const(0, 1)      # Config.gru=0: LSTM cells only
        rnn = Signal() if config.gru else Const(0, 1)      # a simple RNN: a GRU, z held at 0
        bank = Signal()
        with m.If(self.start):
            m.d.sync += [cell_base.eq(self.cell_base), output_base.eq(self.output_base),
                         fresh.eq(self.fresh), bias_align.eq(self.bias_align),
                         peephole_align.eq(self.peephole_align), bank.eq(self.bank)]
            if config.gru:
                m.d.sync += [gru.eq(self.gru), rnn.eq(self.rnn)]
        gap = cell_issue_gap(config)
        # Cycles before the next cell may issue (none when cells issue every cycle).
        cooldown = Signal(range(gap)) if gap > 1 else None
        counter = credited_issue(m, start=self.start, length=self.cells, emit=self.emit,
                                 output_space=self.output_space, latency=latency(config),
                                 name="cell", per_issue=lanes,
                                 allow=1 if cooldown is None else cooldown == 0)
        index, issue, cells = counter.index, counter.issue, counter.length
        if cooldown is not None:
            with m.If(issue):
                m.d.sync += cooldown.eq(gap - 1)
            with m.Elif(cooldown != 0):
                m.d.sync += cooldown.eq(cooldown - 1)
        # The lanes that hold a cell of the layer (the last issue may hold fewer).
        present = counter.present
        # The state is read operand_latency - 1 cycles after the gates are asked for, so that
        # all operands arrive together; the parameters a cycle earlier, to be aligned on the
        # way.
        word = (cell_base + index) >> placement.lane_bits
        parameter_address = delay(m, word, operand_latency(config) - 2, "parameter_address")
        operand_address = delay(m, parameter_address, 1, "operand_address")
        m.d.comb += [
            self.busy.eq(counter.busy),
            self.accumulator.cell.eq(index),
            self.accumulator.bank.eq(bank),
            self.reading_bank.eq(bank),
            self.accumulator.rotated.eq(gru),
            self.accumulator.read.eq(issue),
            self.parameter_address.eq(parameter_address),
            self.state_address.eq(operand_address),
        ]
        sums = (self._carry(m, cell_base + index) if config.delta
                else self.accumulator.data)
        outputs = Signal(data.ArrayLayout(ChannelValues(config), lanes))
        new_cells = Signal(self.state_data.shape())
        for lane in range(lanes):
            stored = data.View(_parameter_layout(config), self.parameter_data[lane])
            aligned = Signal(AlignedParameters(config), name=f"aligned{lane}")
            m.d.sync += [aligned[f"bias_{g}"].eq(stored[f"bias_{g}"] << bias_align)
                         for g in "ifgo"]
            m.d.sync += [aligned[f"peephole_{g}"].eq(stored[f"peephole_{g}"] << peephole_align)
                         for g in "ifo"]
            for channel in range(config.channels):
                arithmetic = CellArithmetic(config)
                name = f"channel{channel}" if lanes == 1 else f"lane{lane}_channel{channel}"
                m.submodules[name] = arithmetic
                m.d.comb += [
                    arithmetic.gates.eq(sums[lane][channel]),
                    arithmetic.parameters.eq(aligned),
                    arithmetic.previous.eq(self.state_data[lane][channel]),
                    arithmetic.fresh.eq(fresh[channel]),
                    arithmetic.gru.eq(gru),
                    arithmetic.rnn.eq(rnn),
                    new_cells[lane][channel].eq(Mux(gru, arithmetic.output,
                                                    arithmetic.new_cell)),
                    outputs[lane][channel].eq(arithmetic.output),
                ]
        # An LSTM's new cell state is written when it is ready, a GRU's h' with the output.
        finished = counter.finish
        state_address = delay(m, word, state_latency(config), "state_address")
        late_address = delay(m, state_address, latency(config) - state_latency(config),
                             "state_address_late")
        state_lanes = delay(m, present, state_latency(config), "state_lanes")
        late_lanes = delay(m, state_lanes, latency(config) - state_latency(config),
                           "state_lanes_late")
        state_valid = delay(m, issue, state_latency(config), "state_valid")
        m.d.comb += [
            self.state_write.addr.eq(Mux(gru, late_address, state_address)),
            self.state_write.data.eq(new_cells),
            self.state_write.en.eq(Mux(gru, Mux(finished, late_lanes, 0),
                                       Mux(state_valid, state_lanes, 0))),
        ]

        # The outputs go into a word of the vector memory, from the first one's column in it.
        written = delay(m, present, latency(config), "output_lanes")
        count = delay(m, counter.count, latency(config), "output_count")
        write_columns(m, self.vector_write,
                      delay(m, output_base + index, latency(config), "output_address"),
                      [outputs[lane] for lane in range(lanes)], Mux(finished, written, 0),
                      config.block_columns)
        m.d.comb += [
            self.produced.eq(produced_words(m, start=self.start, finished=finished,
                                            length=cells, block_columns=config.block_columns,
                                            name="cell", count=count)),
            self.output_valid.eq(finished & counter.emit),
            self.output_value.eq(outputs),
            self.output_count.eq(count),
            self.output_last.eq(delay(m, counter.final, latency(config), "last")),
        ]
        return m

    def _carry(self, m, address):
        """Delta units: each channel's gates plus its carried sums (a delta layer's; zero for
        renewed channels), registered on the way to the arithmetic and written back."""
        config = self.config
        delta = Signal()
        renew = Signal.like(self.renew)
        with m.If(self.start):
            m.d.sync += [delta.eq(self.delta), renew.eq(self.renew)]
        arriving = delay(m, self.accumulator.read, gate_latency(config), "carry_valid")
        m.d.comb += self.carried_address.eq(delay(m, address, gate_latency(config) - 1,
                                                  "carried_address"))
        # Delta units come with one cell lane (Config refuses more).
        sums = Signal(data.ArrayLayout(GateReadout(config), 1))
        for channel in range(config.channels):
            keep = delta & ~renew[channel]
            for gate in range(GATES):
                m.d.sync += sums[0][channel][gate].eq(
                    self.accumulator.data[0][channel][gate]
                    + Mux(keep, self.carried_data[channel][gate], 0))
        m.d.comb += [
            self.carried_write.addr.eq(delay(m, address, operand_latency(config),
                                             "carried_write_address")),
            self.carried_write.data.eq(sums[0]),
            self.carried_write.en.eq(delay(m, arriving & delta, 1, "carried_write")),
        ]
        return sums
