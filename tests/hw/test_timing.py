"""The performance model against the latencies the hardware exports (ese.hw.timing).

The model copies no latency: it takes a Timing, and the hardware's comes from the modules
that cause each figure, stage by stage. These tests pin both ends: the Timing is made of
those modules' own figures (the PE's fence latency and the cell unit's are also measured in
Amaranth's simulator, in test_blocks.py), and the model's prediction moves exactly as a
Timing says.
"""

import dataclasses

import pytest
import torch

import ese
from ese.hw import accelerator, broadcast, cell, pe, readout, sequencer, streamer, writeback
from ese.hw.timing import hardware_timing
from ese.sw.compiler.performance import predict_performance, stream_traffic
from ese.sw.contract.memory_map import GATES


@pytest.mark.parametrize("pes", [1, 2, 4, 32])
def test_the_hardware_timing_is_made_of_its_modules_latencies(pes):
    config = ese.Config(pes=pes)
    timing = hardware_timing(config)
    # A PE's issue latency is its stages', and a fence leaves through the multiply-add.
    assert pe.issue_latency(config) == (3 * pe.QUEUE_CYCLES + pe.COLUMN_STAGE_CYCLES
                                        + pe.FETCH_CYCLES + pe.DECODE_CYCLES + pe.PICK_CYCLES)
    assert pe.fence_latency(config) == pe.issue_latency(config) + pe.FENCE_EXIT_CYCLES
    assert timing.fence_trip_cycles == pe.fence_latency(config) + accelerator.FENCED_CYCLES
    assert timing.issue_cycles == pe.issue_latency(config) - pe.QUEUE_CYCLES
    assert timing.fence_drain_cycles == timing.fence_trip_cycles - timing.issue_cycles
    # The cell unit's own latency is its gate reads plus its arithmetic.
    assert timing.cell_latency == cell.latency(config)
    assert cell.latency(config) == readout.gate_latency(config) + cell.ARITHMETIC_CYCLES
    assert readout.gate_latency(config) == (readout.REQUEST_CYCLES + GATES // min(pes, GATES)
                                            + readout.RETURN_CYCLES)
    assert timing.cell_issue_gap == readout.cell_issue_gap(config)
    assert timing.writeback_latency == writeback.latency(config)
    assert timing.column_lead == pe.COLUMN_QUEUE_DEPTH
    assert timing.burst_issue_cycles == streamer.BURST_ISSUE_CYCLES
    assert (timing.read_cycles, timing.job_cycles, timing.job_turn_cycles,
            timing.fence_cycles) == (broadcast.READ_CYCLES, broadcast.JOB_CYCLES,
                                     broadcast.JOB_TURN_CYCLES, broadcast.FENCE_CYCLES)
    assert (timing.step_job_cycles, timing.layer_job_cycles) == (
        sequencer.STEP_JOB_CYCLES, sequencer.LAYER_JOB_CYCLES)
    # The figures the model was validated with against the RTL (tests/rtl/test_delta_rtl.py:
    # every delta layer's floor to the cycle; ese bench: ESE's layer within 0.4%).
    assert (timing.fence_trip_cycles, timing.issue_cycles, timing.fence_drain_cycles) == (
        16, 10, 6)
    assert (timing.column_lead, timing.burst_issue_cycles) == (4, 6)


def _dense_cell_program(pes):
    """An LSTMCell whose every column gives every PE the same work: 8 inputs and 8 cells, all
    32 gate rows dense, so each PE holds 32 / pes rows of each of the 16 columns."""
    torch.manual_seed(0)
    module = torch.nn.LSTMCell(8, 8)
    with torch.no_grad():
        for weight in (module.weight_ih, module.weight_hh):
            weight.copy_(weight.sign() * (weight.abs() + 0.05))       # no exact zeros
    return ese.compile(module, ese.Config(pes=pes))


@pytest.mark.parametrize("pes", [2, 4])
def test_a_balanced_layer_whose_work_hides_the_chain_costs_its_work(pes):
    """With every PE given the same multiplies in every column, the next step's input
    products fill the chain's gaps: a frame costs each PE's multiplies and accumulator
    reads."""
    program = _dense_cell_program(pes)
    rows_per_pe = 4 * 8 // pes
    prediction = predict_performance(program.image, hardware_timing(program.config))
    assert prediction.limited_by == "multiply-accumulate"
    assert prediction.cycles_per_frame == 16 * rows_per_pe + rows_per_pe
    assert prediction.bound_cycles == 16 * rows_per_pe


def test_the_prediction_moves_exactly_as_the_timing_says():
    """A small two-layer model on many PEs, where each step's serial chain sets the pace:
    every fence's trip and every cell unit's latency is on it."""
    torch.manual_seed(0)
    program = ese.compile(ese.PeepholeLSTM(8, 8, proj_size=4, num_layers=2),
                          ese.Config(pes=32), density=0.3)
    timing = hardware_timing(program.config)
    base = predict_performance(program.image, timing)
    assert base.limited_by == "the serial chain of each step"

    def moved(**changes):
        changed = dataclasses.replace(timing, **changes)
        return predict_performance(program.image, changed).cycles_per_frame - base.cycles_per_frame

    # Two fences per layer (gates, projection), a cell unit per layer.
    assert moved(fence_trip_cycles=timing.fence_trip_cycles + 7,
                 fence_drain_cycles=timing.fence_drain_cycles + 7) == 7 * 4
    assert moved(cell_latency=timing.cell_latency + 5) == 5 * 2
    # A column stage that may lead by one column couples the stages more tightly: never faster.
    assert moved(column_lead=1) >= 0


def test_streamed_weights_are_bounded_by_beats_and_burst_issue():
    config = ese.Config(pes=4, stream_window=8, memory_data_bits=256)
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), config, density=0.5)
    timing = hardware_timing(program.config)
    beats, bursts = stream_traffic(program.image)
    assert beats > 0 and bursts > 0
    prediction = predict_performance(program.image, timing)
    assert prediction.memory_cycles == max(beats, timing.burst_issue_cycles * bursts)
    slow_issue = dataclasses.replace(timing, burst_issue_cycles=10_000)
    slowed = predict_performance(program.image, slow_issue)
    assert slowed.cycles_per_frame == 10_000 * bursts
    assert slowed.limited_by == "off-chip memory: streaming the weights"
