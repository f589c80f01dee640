"""The performance model against the latencies the hardware exports (ese.hw.timing).

The model copies no latency: it takes a Timing, and the hardware's comes from the modules
that cause each figure. These tests pin both ends: the Timing is made of those modules' own
constants (the cell unit's is also measured in Amaranth's simulator, in test_blocks.py), and
the model's prediction moves exactly as a Timing says.
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
    assert timing.chain_cycles == (accelerator.CHAIN_HANDOFF_CYCLES
                                   + readout.gate_latency(config) + cell.ARITHMETIC_CYCLES)
    # The cell unit's own latency is its gate reads plus its arithmetic.
    assert cell.latency(config) == readout.gate_latency(config) + cell.ARITHMETIC_CYCLES
    assert readout.gate_latency(config) == (readout.REQUEST_CYCLES + GATES // min(pes, GATES)
                                            + readout.RETURN_CYCLES)
    assert timing.column_lead == pe.COLUMN_QUEUE_DEPTH
    assert timing.burst_issue_cycles == streamer.BURST_ISSUE_CYCLES
    # The step chain's hand-offs (delta layers), each from the module that causes it.
    assert (timing.read_cycles, timing.job_cycles, timing.job_turn_cycles,
            timing.fence_cycles) == (broadcast.READ_CYCLES, broadcast.JOB_CYCLES,
                                     broadcast.JOB_TURN_CYCLES, broadcast.FENCE_CYCLES)
    assert (timing.fence_trip_cycles, timing.issue_cycles, timing.fence_drain_cycles) == (
        accelerator.FENCE_TRIP_CYCLES, accelerator.ISSUE_CYCLES, accelerator.FENCE_DRAIN_CYCLES)
    assert (timing.step_job_cycles, timing.layer_job_cycles) == (
        sequencer.STEP_JOB_CYCLES, sequencer.LAYER_JOB_CYCLES)
    assert timing.cell_issue_gap == readout.cell_issue_gap(config)
    assert timing.cell_latency == cell.latency(config)
    assert timing.writeback_latency == writeback.latency(config)
    # The figures the analytical model was validated with against the RTL (README: within
    # 1.2% at every point of both PE sweeps; ese bench at ESE's point and for a GRU of its
    # size, with the cell unit's 11 arithmetic cycles: within 0.4%).
    assert timing.chain_cycles - readout.gate_latency(config) == 24
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
def test_a_balanced_layer_costs_its_work_per_pe_plus_the_chain(pes):
    """With every PE given the same multiplies in every column (more than one each), the
    multipliers set the pace: a frame costs each PE's multiplies and accumulator reads, plus
    the chain the hardware exposes once per layer."""
    program = _dense_cell_program(pes)
    timing = hardware_timing(program.config)
    rows_per_pe = 4 * 8 // pes
    work = 16 * rows_per_pe + rows_per_pe           # 16 columns, then the gate reads
    prediction = predict_performance(program.image, timing)
    assert prediction.limited_by.startswith("multiply-accumulate")
    assert prediction.cycles_per_frame == work + timing.chain_cycles
    assert prediction.bound_cycles == 16 * rows_per_pe


def test_the_prediction_moves_exactly_as_the_timing_says():
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                          ese.Config(pes=4), density=0.3)
    timing = hardware_timing(program.config)
    base = predict_performance(program.image, timing).cycles_per_frame
    longer = dataclasses.replace(timing, chain_cycles=timing.chain_cycles + 7)
    assert predict_performance(program.image, longer).cycles_per_frame == base + 7 * 2
    # A column lead of one column couples the stages more tightly: never faster.
    tight = dataclasses.replace(timing, column_lead=1)
    assert predict_performance(program.image, tight).cycles_per_frame >= base


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
