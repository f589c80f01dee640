"""Hardware blocks in Amaranth's simulator, each against the software definition it implements."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

import ese
from ese.hw.activation import ActivationTable
from ese.hw.broadcast import BroadcastArbiter, Follow, VectorReader
from ese.hw.cell import CellUnit, latency, state_latency
from ese.hw.layouts import (
    GATES,
    BlockValues,
    ChannelAccumulators,
    Target,
    accumulator_row,
    accumulator_rows,
)
from ese.hw.loader import WeightLoader
from ese.hw.pe import ProcessingElement, fence_latency
from ese.hw.readout import AccumulatorReadout
from ese.hw.receiver import FrameReceiver
from ese.sw.contract.arithmetic import cell_update, gru_update, sigmoid_table, tanh_table
from ese.sw.contract.memory_map import LoadTarget, MemoryMap, pack_fields
from ese.sw.contract.placement import Placement
from ese.sw.runtime.encoding import encode_columns, entry_words

from helpers import run_simulation, stream_get, stream_put

UNIT = dict(max_layers=2, input_depth=16, pointer_depth=64, entry_depth=512, cells_per_pe=16,
            projections_per_pe=16, cell_depth=32, vector_depth=64)


def signed_value(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@pytest.mark.parametrize("make", [sigmoid_table, tanh_table])
def test_activation_table_matches_the_contract(make):
    table = make(ese.Config())
    dut = ActivationTable(table, lookups=2)
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.integers(-32768, 32768, 200), [-32768, 32767, 0, -1, 1]])
    seen = []

    async def bench(ctx):
        for step in range(len(codes) + 2):
            if step < len(codes):
                ctx.set(dut.codes[0], int(codes[step]))
                ctx.set(dut.codes[1], int(-codes[step] - 1))
            await ctx.tick()
            if step >= 1:
                seen.append((ctx.get(dut.values[0]), ctx.get(dut.values[1])))

    run_simulation(dut, bench)
    got = np.array(seen[:len(codes)])   # a value shows after the second clock edge
    assert np.array_equal(got[:, 0], table.lookup(codes))
    assert np.array_equal(got[:, 1], table.lookup(-codes - 1))


def _pe_matrix(rows, columns, rng):
    """A sparse matrix with the awkward cases: long zero runs, empty columns, repeated rows."""
    matrix = np.where(rng.random((rows, columns)) < 0.2,
                      rng.integers(-2000, 2000, (rows, columns)), 0)
    matrix[:, 3] = 0                                  # an empty column
    matrix[:, 4] = 0
    matrix[[0, 40, 63], 4] = [7, -9, 11]              # runs of 39 and 22 zeros: padding
    matrix[:, 5] = 0
    matrix[:, 6] = 0
    matrix[[10, 20], 5] = [100, 200]                  # column 5 ends on row 20 ...
    matrix[[20, 30], 6] = [300, -400]                 # ... column 6 starts on it: back to back
    matrix[:, 7] = 0
    matrix[np.arange(0, rows, 2), 7] = 5              # a long column that fills the queue
    matrix[:, 8] = 0
    matrix[17, 8] = -3                                # column 8's only entry hits row 17 ...
    matrix[:, 9] = 0
    matrix[17, 9] = 4                                 # ... and column 9's too
    matrix[44:52] = 0                                 # empty rows: two cells without weights
    return matrix


def _beat(column, values, target, bank=0):
    """A broadcast payload carrying one beat of one column: ``values`` per channel, or per
    column of the block and channel."""
    if not isinstance(values[0], list):
        values = [values]
    return {"beat": {"column": column, "values": values, "target": target, "bank": bank},
            "fence": 0}


async def _load_pe(ctx, dut, config, pointers, entries):
    """Write column pointers and entry words through the PE's load ports."""
    for address, value in enumerate(pointers):
        ctx.set(dut.pointer_write.addr, address)
        ctx.set(dut.pointer_write.data, int(value))
        ctx.set(dut.pointer_write.en, 1)
        await ctx.tick()
    ctx.set(dut.pointer_write.en, 0)
    for address, word in enumerate(entry_words(entries, config)):
        ctx.set(dut.entry_write.addr, address)
        ctx.set(dut.entry_write.data, word)
        ctx.set(dut.entry_write.en, 1)
        await ctx.tick()
    ctx.set(dut.entry_write.en, 0)


async def _read_rows(ctx, dut, rows, channels=1):
    """Read (and so clear) accumulator rows: {row: ([channel values], fresh)}.

    A fresh row (cleared and not written since) counts as zero whatever the memory holds.
    """
    values = {}
    for row in rows:
        ctx.set(dut.readout_enable, 1)
        ctx.set(dut.readout_row, row)
        await ctx.tick()
        ctx.set(dut.readout_enable, 0)
        fresh = ctx.get(dut.readout_fresh)
        values[row] = ([0 if fresh else ctx.get(dut.readout_data[c]) for c in range(channels)],
                       fresh)
    await ctx.tick()
    return values


def _row_values(values, channel=0):
    return [values[row][0][channel] for row in sorted(values)]


def test_processing_element_accumulates_sparse_products_exactly():
    config = ese.Config(pes=1, activation_queue_depth=2, **UNIT)
    rng = np.random.default_rng(5)
    rows, columns = 64, 12
    matrix = _pe_matrix(rows, columns, rng)
    entries, counts, padding = encode_columns(matrix, config)
    assert padding >= 2
    pointers = np.concatenate([[0], np.cumsum(counts)])
    activations = rng.integers(-30000, 30000, columns)
    activations[2] = 0                                # a zero activation is harmless too
    order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 7]  # column 7 twice: the sum must double
    dut = ProcessingElement(config)
    gaps = random.Random(1)
    queue_was_full = []
    seen = {}

    async def bench(ctx):
        await _load_pe(ctx, dut, config, pointers, entries)
        for column in order:
            if not ctx.get(dut.accepting):        # what the broadcast waits on
                queue_was_full.append(column)
            await stream_put(ctx, dut.activations,
                             _beat(column, [int(activations[column])], Target.GATES),
                             gaps if column > 8 else None)
        await stream_put(ctx, dut.activations, {"fence": 1})
        await ctx.tick().until(dut.fences == 1)
        seen["idle"] = ctx.get(dut.idle)
        seen["rows"] = await _read_rows(ctx, dut, range(rows))
        seen["again"] = await _read_rows(ctx, dut, range(rows))
        # A second pass over cleared rows starts from zero; rows 17 and 20 take back-to-back
        # and nearly back-to-back products (forwarded sums).
        for column in second:
            await stream_put(ctx, dut.activations,
                             _beat(column, [int(activations[column])], Target.GATES))
        await stream_put(ctx, dut.activations, {"fence": 1})
        await ctx.tick().until(dut.fences == 2)
        seen["second"] = await _read_rows(ctx, dut, range(rows))

    second = [8, 9, 5, 6, 1, 8]
    run_simulation(dut, bench)
    used = np.zeros(columns, dtype=np.int64)
    for column in order:
        used[column] += activations[column]
    assert _row_values(seen["rows"]) == (matrix @ used).tolist()
    assert _row_values(seen["again"]) == [0] * rows, "the readout must clear what it read"
    assert all(fresh for _, fresh in seen["again"].values())
    used = np.zeros(columns, dtype=np.int64)
    for column in second:
        used[column] += activations[column]
    assert _row_values(seen["second"]) == (matrix @ used).tolist()
    touched = (matrix[:, second] != 0).any(axis=1)
    assert [fresh for _, fresh in seen["second"].values()] == (~touched).tolist()
    assert seen["idle"] == 1
    assert queue_was_full, "the long column should have filled the activation queue"


@pytest.mark.parametrize("entries", [0, 1, 3])
def test_a_fence_leaves_a_pe_after_its_stages_and_the_entries_before_it(entries):
    """A fence broadcast right behind a column of ``entries`` entries (none: the fence alone)
    is counted ``fence_latency`` cycles after the first broadcast, and a cycle later for
    every entry: the latency the performance model's Timing is made of, measured."""
    config = ese.Config(pes=1, **UNIT)
    matrix = [[0]] * 4 + [[5]] * entries + [[0]] * 3
    words, counts, _ = encode_columns(np.array(matrix), config)
    dut = ProcessingElement(config)
    seen = {}

    async def bench(ctx):
        await _load_pe(ctx, dut, config, [0, int(counts[0])], words)
        await ctx.tick().repeat(4)
        payloads = ([_beat(0, [1], 0)] if entries else []) + [{"fence": 1}]
        for payload in payloads:
            ctx.set(dut.activations.payload, payload)
            ctx.set(dut.activations.valid, 1)
            await ctx.tick()
        ctx.set(dut.activations.valid, 0)
        for cycle in range(len(payloads), 100):
            if ctx.get(dut.fences) == 1:
                seen["counted"] = cycle
                return
            await ctx.tick()

    run_simulation(dut, bench)
    assert seen["counted"] == fence_latency(config) + entries


def test_processing_element_keeps_targets_banks_and_channels_apart():
    """Gate and projection accumulators never mix, nor do the two banks of gate accumulators
    or the channels' accumulators; reading one set while products go to another delays the
    products but loses none."""
    config = ese.Config(pes=1, channels=3, **UNIT)
    rng = np.random.default_rng(9)
    gate = np.where(rng.random((32, 3)) < 0.5, rng.integers(-500, 500, (32, 3)), 0)
    projection = np.where(rng.random((8, 4)) < 0.5, rng.integers(-500, 500, (8, 4)), 0)
    gate_entries, gate_counts, _ = encode_columns(gate, config)
    proj_entries, proj_counts, _ = encode_columns(projection, config)
    entries = np.concatenate([gate_entries, proj_entries])
    pointers = np.concatenate([[0], np.cumsum(np.concatenate([gate_counts, proj_counts]))])
    x = rng.integers(-100, 100, (3, 3))               # (channel, column)
    m = rng.integers(-100, 100, (3, 4))
    x[1, :] = 0                                       # channel 1 sees only zeros here
    projection_base = accumulator_row(config, Target.PROJECTION, 0)
    second_bank = accumulator_row(config, Target.GATES, 0, 1)
    dut = ProcessingElement(config)
    gaps = random.Random(4)
    seen = {"busy_reads": 0}

    async def products(ctx):
        await _load_pe(ctx, dut, config, pointers, entries)
        for j in range(4):
            await stream_put(ctx, dut.activations,
                             _beat(3 + j, [int(v) for v in m[:, j]], Target.PROJECTION))
        await stream_put(ctx, dut.activations, {"fence": 1})
        await ctx.tick().until(dut.fences == 1)
        # Each gate column twice into bank 0, interleaved with once into bank 1 at 3 x.
        for j, bank in [(0, 0), (0, 1), (1, 0), (2, 1), (2, 0), (1, 1), (0, 0), (1, 0),
                        (2, 0)]:
            scale = 3 if bank else 1
            await stream_put(ctx, dut.activations,
                             _beat(j, [int(v) * scale for v in x[:, j]], Target.GATES, bank))
        await stream_put(ctx, dut.activations, {"fence": 1})
        await ctx.tick().until(dut.fences == 2)
        seen["gates"] = await _read_rows(ctx, dut, range(32), channels=3)
        seen["bank"] = await _read_rows(ctx, dut, range(second_bank, second_bank + 32),
                                        channels=3)

    async def projections(ctx):
        await ctx.tick().until(dut.fences == 1)
        values = {}
        for row in range(8):
            while gaps.random() < 0.5:
                await ctx.tick()
            seen["busy_reads"] += not ctx.get(dut.idle)
            values.update(await _read_rows(ctx, dut, [projection_base + row], channels=3))
        seen["projections"] = values

    run_simulation(dut, products, projections, deadline=5e-6)
    assert seen["busy_reads"] >= 4, "the projection reads should overlap the gate products"
    for channel in range(3):
        assert _row_values(seen["gates"], channel) == (gate @ (2 * x[channel])).tolist()
        assert _row_values(seen["bank"], channel) == (gate @ (3 * x[channel])).tolist()
        assert _row_values(seen["projections"], channel) == (projection @ m[channel]).tolist()


class CellUnitHarness(wiring.Component):
    """The cell unit and the accumulator readout, with memories standing in for the PEs'
    accumulators and for the shared memories."""

    def __init__(self, config, accumulators, parameters, state):
        self.config = config
        self.accumulators = accumulators      # (pes, accumulator rows)
        self.parameters = parameters
        self.state = state
        self.unit = CellUnit(config)
        super().__init__({"start": In(1), "cells": In(16), "busy": Out(1),
                          "output_space": In(8), "gru": In(1), "rnn": In(1),
                          "bank": In(1)})

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.unit = unit = self.unit
        m.submodules.readout = readout = AccumulatorReadout(config)
        wiring.connect(m, unit.accumulator, readout.gates)
        for pe, values in enumerate(self.accumulators):
            rows = [[int(v)] for v in values]                       # one channel
            memory = Memory(shape=ChannelAccumulators(config), depth=accumulator_rows(config),
                            init=rows)
            m.submodules[f"acc{pe}"] = memory
            port = memory.read_port()
            m.d.comb += [port.addr.eq(readout.pe_row[pe]), readout.pe_data[pe].eq(port.data)]
        # Words of cell_lanes cells (one channel).
        lanes = config.cell_lanes

        def words(values):
            values = list(values) + [0] * (-len(values) % lanes)
            return [values[i:i + lanes] for i in range(0, len(values), lanes)]
        params = Memory(shape=data.ArrayLayout(MemoryMap(config).cell_parameter_bits, lanes),
                        depth=len(words(self.parameters)), init=words(self.parameters))
        state = Memory(shape=data.ArrayLayout(data.ArrayLayout(signed(config.cell_bits), 1),
                                              lanes),
                       depth=len(words(self.state)),
                       init=[[[v] for v in word] for word in words(self.state)])
        m.submodules.params, m.submodules.state = params, state
        p_read, s_read = params.read_port(), state.read_port()
        s_write = state.write_port(granularity=1)
        m.d.comb += [
            s_write.addr.eq(unit.state_write.addr), s_write.data.eq(unit.state_write.data),
            s_write.en.eq(unit.state_write.en),
            p_read.addr.eq(unit.parameter_address), unit.parameter_data.eq(p_read.data),
            s_read.addr.eq(unit.state_address), unit.state_data.eq(s_read.data),
            unit.start.eq(self.start), unit.cells.eq(self.cells), unit.cell_base.eq(0),
            unit.output_base.eq(0), unit.emit.eq(1), unit.output_space.eq(self.output_space),
            unit.gru.eq(self.gru), unit.rnn.eq(self.rnn), unit.bank.eq(self.bank),
            self.busy.eq(unit.busy),
        ]
        return m


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("pes, lanes", [(1, 1), (2, 1), (8, 1), (8, 2), (16, 4)])
def test_cell_unit_computes_the_contracts_cell_update(pes, lanes, kind):
    """With fewer PEs than gates the cell unit must pace its requests; with more, it asks
    for a cell every cycle and four PEs are read at once, and with cell lanes for several
    cells (four PEs each) a cycle, the last cycle's lanes past the layer writing nothing. Its
    first output and state leave exactly the latencies it exports (for the performance
    model) after its start. A GRU's units (read from the second bank, their slots rotated
    among their rows) follow the contract's GRU update and keep h' as their state, written
    with the output. A simple RNN's are a GRU's with z held at zero (every slot holds a sum
    here, so the test sees that z, and only z, is overridden)."""
    config = ese.Config(pes=pes, cell_lanes=lanes, block_columns=lanes, **UNIT)
    rng = np.random.default_rng(8)
    gru = kind in ("gru", "rnn")
    cells = 13
    frac = config.product_frac_bits
    gates = rng.normal(scale=3.0, size=(4, cells)) * (1 << frac)
    gates = gates.astype(np.int64)
    gates[:, 0] = 40 << frac                          # saturating pre-activations
    gates[:, 1] = -(40 << frac)
    bias = rng.integers(-20000, 20000, (4, cells))
    peephole = rng.integers(-2000, 2000, (3, cells))
    state = rng.integers(-32768, 32768, cells)
    if gru:                                           # no peepholes; h within [-1, 1]
        peephole[:] = 0
        state = rng.integers(-4096, 4097, cells)
    mm = MemoryMap(config)
    names = [name for name, _, _ in mm.cell_parameter_fields]
    parameters = [pack_fields(dict(zip(names, list(bias[:, n]) + list(peephole[:, n]))),
                              mm.cell_parameter_fields) for n in range(cells)]
    # Gate j of cell n is interleaved row 4n + j (a GRU's: 4n + (j + rotation) mod 4): PE row
    # mod pes, local row row // pes, in the bank's rows.
    accumulators = np.zeros((config.pes, accumulator_rows(config)), dtype=np.int64)
    base = accumulator_row(config, Target.GATES, 0, int(gru))
    for n in range(cells):
        for gate in range(GATES):
            row = Placement(pes).gate_row(n, gate, rotated=gru)
            accumulators[row % config.pes, base + row // config.pes] = gates[gate, n]
    harness = CellUnitHarness(config, accumulators, parameters, [int(v) for v in state] + [0] * 3)
    unit = harness.unit
    writes, outputs, cycles = {}, [], {}

    async def bench(ctx):
        ctx.set(harness.output_space, 5)              # room for few: issue must throttle
        ctx.set(harness.gru, int(gru))
        ctx.set(harness.rnn, int(kind == "rnn"))
        ctx.set(harness.bank, int(gru))
        ctx.set(harness.cells, cells)
        ctx.set(harness.start, 1)
        cycles["start"] = len(cycles.setdefault("ticks", []))
        await ctx.tick()
        ctx.set(harness.start, 0)
        await ctx.tick()
        while ctx.get(harness.busy):
            await ctx.tick()

    async def monitor(ctx):
        async for (_clock, _reset, state_en, state_addr, state_data, valid, value, count,
                   last) in ctx.tick().sample(unit.state_write.en, unit.state_write.addr,
                                              unit.state_write.data, unit.output_valid,
                                              unit.output_value, unit.output_count,
                                              unit.output_last):
            cycles.setdefault("ticks", []).append(None)
            now = len(cycles["ticks"])
            if state_en:
                cycles.setdefault("state", now)
                for lane in range(lanes):
                    if state_en >> lane & 1:
                        writes[state_addr * lanes + lane] = state_data[lane][0]
            if valid:
                cycles.setdefault("output", now)
                outputs.extend((value[lane][0], last and lane == count - 1)
                               for lane in range(count))

    run_simulation(harness, bench, processes=[monitor], deadline=2e-6)
    if gru:
        expected_output = gru_update(config, gates, bias, state, rnn=kind == "rnn")
        expected_cell = expected_output
    else:
        expected_cell, expected_output = cell_update(config, gates, bias, peephole, state)
    assert sorted(writes) == list(range(cells)), "no lane past the last cell writes"
    assert [writes[n] for n in range(cells)] == expected_cell.tolist()
    assert [v for v, _ in outputs] == expected_output.tolist()
    assert [last for _, last in outputs] == [0] * (cells - 1) + [1]
    # start is high in cycle 0 and the first cell issues in cycle 1; sample() reports a cycle's
    # values at the edge that ends it (edge n ends cycle n - 1).
    issued = cycles["start"] + 1
    assert cycles["output"] - 1 - issued == latency(config)
    assert cycles["state"] - 1 - issued == (latency(config) if gru else state_latency(config))


class ReaderHarness(wiring.Component):
    """A vector reader over a memory, with a producer count the test drives."""

    def __init__(self, config, contents):
        self.contents = contents
        self.unit = VectorReader(config, 64)
        super().__init__({"produced": In(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        memory = Memory(shape=BlockValues(self.unit.config), depth=64,
                        init=[[[v]] for v in self.contents])
        m.submodules.vector = memory
        port = memory.read_port()
        m.d.comb += [port.addr.eq(unit.read_address), port.en.eq(unit.read_enable),
                     unit.read_data.eq(port.data), unit.produced[0].eq(self.produced)]
        return m


def test_vector_reader_skips_zeros_follows_its_producer_and_honours_back_pressure():
    config = ese.Config(pes=2, **UNIT)
    values = [0, 5, -7, 0, 0, 9, 0, 1, -1, 0]
    second = [4, 0, 6]
    harness = ReaderHarness(config, [0] * 10 + values + second)
    unit = harness.unit
    received = []
    stalls = random.Random(3)
    log = {}

    async def control(ctx):
        # Job 1 follows the producer (cell unit), which "writes" a word every 3 cycles;
        # job 2 is a complete segment queued behind it.
        await stream_put(ctx, unit.jobs, {"base": 10, "length": len(values), "column_base": 20,
                                          "target": Target.GATES, "follow": Follow.CELLS,
                                          "masked": 0})
        await stream_put(ctx, unit.jobs, {"base": 20, "length": 3, "column_base": 40,
                                          "target": Target.PROJECTION, "follow": Follow.NONE,
                                          "masked": 0})
        for produced in range(len(values) + 1):
            ctx.set(harness.produced, produced)
            log[produced] = len(received)
            await ctx.tick().repeat(3)

    async def sink(ctx):
        for _ in range(sum(1 for v in values + second if v)):
            payload = await stream_get(ctx, unit.activations, stalls)
            received.append((payload.column, payload.values[0][0], payload.target))
        await ctx.tick().repeat(5)
        received.append(("busy", ctx.get(unit.busy)))

    run_simulation(harness, control, sink)
    expected = ([(20 + i, v, Target.GATES) for i, v in enumerate(values) if v]
                + [(40 + i, v, Target.PROJECTION) for i, v in enumerate(second) if v])
    assert received == expected + [("busy", 0)]
    # Nothing was sent before the producer had written it.
    assert all(count <= sum(1 for v in values[:produced] if v) for produced, count in log.items())


def test_arbiter_puts_fences_before_critical_before_filler():
    config = ese.Config(pes=2, **UNIT)
    dut = BroadcastArbiter(config)
    sent = []

    async def bench(ctx):
        ctx.set(dut.broadcast.ready, 1)
        ctx.set(dut.critical.valid, 1)
        ctx.set(dut.critical.payload, {"column": 1, "values": [[10]], "target": 0})
        ctx.set(dut.filler.valid, 1)
        ctx.set(dut.filler.payload, {"column": 2, "values": [[20]], "target": 1})
        ctx.set(dut.fence_request, 1)
        await ctx.tick()
        ctx.set(dut.fence_request, 0)
        for _ in range(2):
            sent.append(ctx.get(dut.broadcast.payload.fence), )
            sent.append(ctx.get(dut.broadcast.payload.beat.column))
            await ctx.tick()
        ctx.set(dut.critical.valid, 0)
        sent.append(ctx.get(dut.broadcast.payload.beat.column))
        sent.append(ctx.get(dut.fences_requested))

    run_simulation(dut, bench)
    # fence first, then the critical column; the filler only when the critical source is dry.
    assert sent[0] == 1 and sent[2:4] == [0, 1] and sent[4:] == [2, 1]


def test_frame_receiver_fills_two_slots_and_keeps_sequence_starts():
    config = ese.Config(pes=2, channels=2, **UNIT)
    dut = FrameReceiver(config)
    writes, seen = [], {}

    async def bench(ctx):
        ctx.set(dut.length, 3)
        steps = [[(1, 11), (2, 12), (3, 13)], [(4, 14), (5, 15), (6, 16)]]
        for index, step in enumerate(steps):
            for position, values in enumerate(step):
                # Channel 1 begins a sequence with step 0, channel 0 with step 1.
                starts = (0b10 if index == 0 else 0b01) if position == 0 else 0
                await stream_put(ctx, dut.words, {"values": list(values), "starts": starts,
                                                  "last": int(position == 2)})
        await ctx.tick()
        seen["full"] = ctx.get(dut.full)
        seen["starts"] = [ctx.get(dut.starts[slot]) for slot in range(2)]
        seen["ready_when_full"] = ctx.get(dut.words.ready)
        ctx.set(dut.release, 0b01)                   # slot 0's step has been consumed
        await ctx.tick()
        ctx.set(dut.release, 0)
        await ctx.tick()
        seen["after_release"] = ctx.get(dut.full)
        for position in range(2):                    # a short step: last comes early
            await stream_put(ctx, dut.words, {"values": [7, 8], "starts": 0,
                                              "last": int(position == 1)})
        await ctx.tick()
        seen["error"] = ctx.get(dut.error)

    async def monitor(ctx):
        async for _clock, _reset, enable, address, value in ctx.tick().sample(
                dut.write.en, dut.write.addr, dut.write.data):
            if enable:
                writes.append((address, value[0], value[1]))     # one value per channel

    run_simulation(dut, bench, processes=[monitor], deadline=2e-6)
    depth = UNIT["input_depth"]
    assert writes[:6] == [(0, 1, 11), (1, 2, 12), (2, 3, 13), (depth, 4, 14),
                          (depth + 1, 5, 15), (depth + 2, 6, 16)]
    assert writes[6:] == [(0, 7, 8), (1, 7, 8)]
    assert seen["full"] == 0b11 and seen["starts"] == [0b10, 0b01]
    assert seen["ready_when_full"] == 0 and seen["after_release"] == 0b10
    assert seen["error"] == 1


def test_loader_writes_records_and_flags_malformed_ones():
    config = ese.Config(pes=2, **UNIT)
    mm = MemoryMap(config)
    cell_word = (1 << 99) | 0xABCDEF
    entry_words = [(7 << 48) | 0x1234, (1 << 63) | 5]       # 64-bit words: two load words each
    split = lambda value, words: [(value >> (32 * w)) & 0xFFFFFFFF for w in range(words)]
    stream = [
        int(LoadTarget.ENTRIES) | (1 << 8), 2, 2, *split(entry_words[0], 2),
        *split(entry_words[1], 2),
        int(LoadTarget.CELL_PARAMETERS), 5, 1, *split(cell_word, 4),
        9, 0, 2, 77, 78,                                   # unknown target: two words skipped
        int(LoadTarget.ENTRIES), mm.entry_words - 1, 2, 1, 2, 3, 4,   # runs past the end
        int(LoadTarget.POINTERS) | (5 << 8), 0, 1, 3,      # no PE 5
        int(LoadTarget.POINTERS), 7, 1, 42,                # still aligned: this one is written
    ]
    assert mm.cell_parameter_bits > 96
    dut = WeightLoader(config)
    writes = []
    errors = []

    async def bench(ctx):
        ctx.set(dut.enable, 1)
        for word in stream:
            await stream_put(ctx, dut.words, word)
            errors.append(ctx.get(dut.error))
        await ctx.tick()

    async def monitor(ctx):
        ports = {"pointer": dut.pointer_write, "entry": dut.entry_write,
                 "cell": dut.cell_parameter_write, "descriptor": dut.descriptor_write}
        signals = [s for p in ports.values() for s in (p.en, p.addr, p.data)]
        async for _clock, _reset, pe, *sampled in ctx.tick().sample(dut.pe, *signals):
            for index, name in enumerate(ports):
                enable, address, value = sampled[3 * index:3 * index + 3]
                if enable:
                    writes.append((name, pe, address, value))

    run_simulation(dut, bench, processes=[monitor], deadline=3e-6)
    assert writes == [("entry", 1, 2, entry_words[0]), ("entry", 1, 3, entry_words[1]),
                      ("cell", 0, 5, cell_word), ("pointer", 0, 7, 42)]
    first_bad = stream.index(9)
    assert not any(errors[:first_bad + 2]) and errors[-1] == 1
