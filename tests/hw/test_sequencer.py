"""The core's control units in Amaranth's simulator: the frame sequencer and the filler control."""

import ese
from ese.hw.broadcast import Follow
from ese.hw.layouts import Target
from ese.hw.sequencer import FillerControl, FrameSequencer

from helpers import run_simulation

UNIT = dict(max_layers=2, input_depth=16, pointer_depth=64, entry_depth=512, cells_per_pe=16,
            projections_per_pe=16, cell_depth=32, vector_depth=64)
#: One layer with a projection: 3 inputs, 4 cells, 2 projections (its y, the recurrent input).
LAYER = dict(inputs=3, recurrent=2, cells=4, proj=2, column_base=0, input_base=0,
             recurrent_base=8, cell_output_base=16, cell_base=0, last=1)


def test_frame_sequencer_clears_then_runs_a_step_in_order():
    """After the clear, a step of a one-layer LSTMP: the recurrent columns (the input
    products are the filler's), the gate fence once the filler is done (handing the slot
    back), the cell unit, the projection's columns following it, the projection fence, the
    writeback; then the next slot."""
    config = ese.Config(pes=4, **UNIT)
    dut = FrameSequencer(config, clear_cycles=5)
    events = []

    async def bench(ctx):
        ctx.set(dut.desc, LAYER)
        ctx.set(dut.idle, 1)
        ctx.set(dut.critical_jobs.ready, 1)
        for _ in range(8):
            await ctx.tick()
        assert ctx.get(dut.clearing) == 0
        ctx.set(dut.filled, 0b01)
        ctx.set(dut.full, 0b01)                       # a step arrives in slot 0
        for _ in range(12):
            await ctx.tick()
        ctx.set(dut.fenced, 1)
        for _ in range(6):
            await ctx.tick()

    async def monitor(ctx):
        cycle = 0
        async for _clock, _reset, *values in ctx.tick().sample(
                dut.clear_enable, dut.clear_address, dut.load_enable, dut.critical_jobs.valid,
                dut.critical_jobs.payload, dut.fence_request, dut.release, dut.cells_start,
                dut.cells_count, dut.writeback_start, dut.writeback_rows, dut.writeback_emit,
                dut.slot, dut.frame_running):
            (clear, address, load, job_valid, job, fence, release, cells, count, writeback,
             rows, emit, slot, running) = values
            if clear:
                events.append(("clear", address))
            if load and not any(e[0] == "load" for e in events):
                events.append(("load",))
            if job_valid:
                events.append(("job", job.base, job.length, job.target, job.follow, job.masked))
            if fence:
                events.append(("fence", release))
            if cells:
                events.append(("cells", count))
            if writeback:
                events.append(("writeback", rows, emit))
            if cycle == 30:                           # long after the step
                events.append(("state", slot, running))
            cycle += 1

    run_simulation(dut, bench, processes=[monitor], deadline=3.3e-7)
    assert events[:5] == [("clear", a) for a in range(5)]
    steps = [e for e in events[5:] if e[0] != "load"]
    assert events[5] == ("load",)
    assert steps == [
        ("job", 8, 2, Target.GATES, Follow.NONE, 1),            # y_{t-1}, zero where fresh
        ("fence", 0b01),                                        # and the slot goes back
        ("cells", 4),
        ("job", 16, 4, Target.PROJECTION, Follow.CELLS, 0),     # m_t, following the cells
        ("fence", 0),
        ("writeback", 2, 1),                                    # the last layer: emitted
        ("state", 1, 0),                                        # on to slot 1
    ]


def test_filler_control_sends_the_current_slot_then_the_next_into_the_other_bank():
    """The current slot first, into its bank; then the next slot, into the other bank, once
    no cell unit reads that bank (the previous step's may still be reading it)."""
    config = ese.Config(pes=4, **UNIT)
    dut = FillerControl(config)
    jobs = []

    async def bench(ctx):
        ctx.set(dut.inputs, 3)
        ctx.set(dut.column_base, 5)
        ctx.set(dut.jobs.ready, 1)
        ctx.set(dut.clearing, 1)
        ctx.set(dut.full, 0b11)
        for _ in range(3):
            await ctx.tick()
        assert jobs == [], "a job while the accumulators are being cleared"
        ctx.set(dut.clearing, 0)
        ctx.set(dut.reader_busy, 1)
        ctx.set(dut.cells_busy, 1)                    # the cell unit reads bank 0: no matter
        for _ in range(3):
            await ctx.tick()
        assert len(jobs) == 1 and ctx.get(dut.pending) == 1
        ctx.set(dut.reader_busy, 0)
        await ctx.tick()
        await ctx.tick()
        assert ctx.get(dut.filled) == 0b01
        # The next slot waits while a cell unit reads its bank (the previous step's).
        ctx.set(dut.frame_running, 1)
        ctx.set(dut.cells_bank, 1)
        for _ in range(3):
            await ctx.tick()
        assert len(jobs) == 1
        ctx.set(dut.cells_busy, 0)
        for _ in range(3):
            await ctx.tick()
        assert len(jobs) == 2
        # From slot 1 the next slot is slot 0 again (the index wraps).
        ctx.set(dut.release, 0b01)
        await ctx.tick()
        ctx.set(dut.release, 0)
        ctx.set(dut.slot, 1)
        ctx.set(dut.reader_busy, 0)
        for _ in range(4):
            await ctx.tick()

    async def monitor(ctx):
        async for _clock, _reset, valid, ready, payload in ctx.tick().sample(
                dut.jobs.valid, dut.jobs.ready, dut.jobs.payload):
            if valid and ready:
                jobs.append((payload.base, payload.length, payload.column_base, payload.bank))

    run_simulation(dut, bench, processes=[monitor], deadline=3e-7)
    depth = config.input_depth
    assert jobs == [(0, 3, 5, 0), (depth, 3, 5, 1), (0, 3, 5, 0)]
