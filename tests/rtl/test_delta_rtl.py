"""Delta layers in the RTL (docs/arithmetic.md, "Delta layers"): bit-exact with the golden
model, under stalls, for LSTM, LSTMP with peepholes and GRU layers, one and two layers,
several channels with their own sequence starts, states loaded before the first frame, and a
reset in the middle of an utterance.

The hardware with delta units (``Config(delta=1)``) keeps each column's last transmitted
value beside the broadcast's readers and the carried sums beside the cell unit and the
projection writeback; the golden model keeps the same per channel. The thresholds here are
random counts of LSBs, large enough that many columns are skipped, on slowly changing frames.
"""

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles
from torch import nn

import ese
from ese.hw.timing import hardware_timing
from ese.sim.runner import run_testbench
from ese.sim.testbench import open_job
from ese.sw.compiler.performance import predict_performance
from ese.sw.contract.arithmetic import DeltaThresholds

from helpers import hardware

#: One Verilator build for the one-channel cases, one for the channel cases.
DELTA = hardware(4, delta=1)
CHANNELS = hardware(4, channels=3, delta=1)

CASES = {
    "lstm": (lambda: nn.LSTM(13, 22), 0.3),
    "lstmp-peepholes-2-layers": (
        lambda: ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2), 0.3),
    "gru": (lambda: nn.GRU(13, 22), 0.3),
    "gru-2-layers": (lambda: nn.GRU(13, 22, num_layers=2), 0.5),
}


def smooth(count, inputs, seed):
    """Slowly changing frames, as speech features are: a random walk."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(scale=0.25, size=(count, inputs)), axis=0)


def random_thresholds(program, seed):
    rng = np.random.default_rng(seed)
    return [DeltaThresholds(*map(int, rng.integers(50, 900, size=3)))
            for _ in program.model.layers]


def skipped_fraction(program, x):
    """The fraction of recurrent and input columns the golden model does not transmit."""
    trace = []
    program.predict_codes(program.encode_inputs(x)[0], trace=trace)
    sent = sum(int(np.count_nonzero(r[k])) for r in trace for k in ("inputs", "recurrent"))
    seen = sum(r[k].size for r in trace for k in ("inputs", "recurrent"))
    return 1 - sent / seen


def compiled(case, config, seed=0):
    import torch
    make, density = CASES[case]
    torch.manual_seed(seed)
    plain = ese.compile(make(), config, density=density)
    return plain, plain.with_delta(random_thresholds(plain, seed))


@pytest.mark.parametrize("case", list(CASES))
def test_random_thresholds_are_bit_exact_under_stalls(case):
    plain, program = compiled(case, DELTA, seed=len(case))
    x = smooth(12, program.inputs, seed=len(case))
    assert skipped_fraction(program, x) > 0.3, "the thresholds skip too little to test them"
    result = program.simulate(x, stall_probability=0.25, seed=3)
    assert result.mismatches == 0
    assert np.array_equal(result.outputs, program.predict(x))
    # The thresholds change the outputs: they are not those of the layers without them.
    assert not np.array_equal(result.outputs, plain.predict(x))


@pytest.mark.parametrize("pes", [1, 2])
def test_fewer_pes_than_gates(pes):
    """With fewer than four PEs a cell's gates arrive over several cycles: the carried sums
    must meet them when they are complete (a GRU's rotated slots, 2 layers)."""
    import torch
    torch.manual_seed(pes)
    plain = ese.compile(nn.GRU(7, 10, num_layers=2), hardware(pes, delta=1), density=0.6)
    program = plain.with_delta(random_thresholds(plain, pes))
    x = smooth(8, program.inputs, seed=pes)
    assert skipped_fraction(program, x) > 0.3
    result = program.simulate(x, stall_probability=0.25, seed=pes)
    assert result.mismatches == 0 and np.array_equal(result.outputs, program.predict(x))


def test_zero_thresholds_on_delta_hardware_are_the_layers_without_deltas():
    plain, _ = compiled("lstmp-peepholes-2-layers", DELTA)
    zero = plain.with_delta((0, 0))
    x = smooth(8, plain.inputs, seed=9)
    with_deltas = zero.simulate(x, stall_probability=0.2, seed=1)
    without = plain.simulate(x, stall_probability=0.2, seed=1)
    assert with_deltas.mismatches == 0 and without.mismatches == 0
    assert np.array_equal(with_deltas.outputs, without.outputs)
    assert np.array_equal(with_deltas.outputs, plain.predict(x))


@pytest.mark.parametrize("case", ["lstmp-peepholes-2-layers", "gru-2-layers"])
def test_channels_with_their_own_sequence_starts(case):
    """Three channels in lock step, with different lengths and a restart: a column is sent
    when any channel transmits it, and each channel's last values and carried sums are its
    own (a restart renews them)."""
    _, program = compiled(case, CHANNELS, seed=5)
    inputs = program.inputs
    a, b1, b2, c = (smooth(n, inputs, seed=s) for n, s in ((9, 1), (4, 2), (4, 3), (6, 4)))
    result = program.simulate([a, [b1, b2], c], stall_probability=0.25, seed=4)
    assert result.mismatches == 0
    (out_a,), (out_b1, out_b2), (out_c,) = result.outputs
    assert np.array_equal(out_a, program.predict(a))
    assert np.array_equal(out_b1, program.predict(b1))
    assert np.array_equal(out_b2, program.predict(b2)), "channel 1's restart leaked state"
    assert np.array_equal(out_c, program.predict(c))


def test_loaded_states_renew_every_channel():
    """A state loaded before the first frame starts a sequence from it: every channel's last
    transmitted values and carried sums start from zero, so h0's columns are transmitted in
    the first frame like any change."""
    _, program = compiled("lstmp-peepholes-2-layers", CHANNELS, seed=6)
    rng = np.random.default_rng(2)
    layers = program.model.layers

    def state():
        return (rng.uniform(-0.9, 0.9, size=(len(layers), layers[0].outputs)),
                rng.uniform(-3, 3, size=(len(layers), layers[0].cells)))

    states = [state(), None, state()]
    x = [smooth(6, program.inputs, seed=s) for s in (1, 2, 3)]
    result = program.simulate(x, state=states, stall_probability=0.2, seed=3)
    assert result.mismatches == 0
    for channel in range(3):
        assert np.array_equal(result.outputs[channel][0],
                              program.predict(x[channel], state=states[channel]))


def _steady(cycles):
    return np.asarray(cycles[2:], dtype=float)


@pytest.mark.parametrize("case", list(CASES))
def test_the_step_chain_with_nothing_transmitted_is_exact(case):
    """Thresholds beyond any change: after the first frame nothing is sent, and a frame costs
    the serial chain alone (readers, fences, cell unit, writeback, the sequencer's hand-offs),
    which the performance model (ese.sw.compiler.performance.step_chain_ends) must predict to
    the cycle, frame by frame, from the hardware's own latencies (ese.hw.timing)."""
    plain, _ = compiled(case, DELTA, seed=11)
    largest = (1 << 16) - 1                     # activation LSBs: beyond any change
    program = plain.with_delta([DeltaThresholds(largest, largest, largest)
                                for _ in plain.model.layers])
    x = smooth(10, program.inputs, seed=12)
    trace = []
    program.predict_codes(program.encode_inputs(x)[0], trace=trace)
    prediction = predict_performance(program.image, hardware_timing(program.config), trace)
    result = program.simulate(x)
    assert result.mismatches == 0
    assert np.array_equal(_steady(result.cycles_per_frame), _steady(prediction.frame_cycles))


@pytest.mark.parametrize("case", list(CASES))
def test_the_step_chain_predicts_random_thresholds(case):
    """With many columns sent and many skipped, the model follows the RTL: the mean steady
    frame within 3%, and no frame off by more than 15%."""
    _, program = compiled(case, DELTA, seed=13)
    x = smooth(16, program.inputs, seed=14)
    trace = []
    program.predict_codes(program.encode_inputs(x)[0], trace=trace)
    prediction = predict_performance(program.image, hardware_timing(program.config), trace)
    result = program.simulate(x)
    rtl, model = _steady(result.cycles_per_frame), _steady(prediction.frame_cycles)
    assert abs(model.mean() / rtl.mean() - 1) < 0.03, (rtl, model)
    assert np.all(np.abs(model / rtl - 1) < 0.15), (rtl, model)


def test_a_reset_mid_utterance_clears_the_delta_state():
    _, program = compiled("gru-2-layers", DELTA, seed=7)
    codes, _ = program.encode_inputs(smooth(6, program.inputs, seed=8))
    run_testbench(program, "reset_mid_utterance_then_the_utterance_again", codes,
                  program.predict_codes(codes), stall_probability=0.2, seed=2,
                  module=__name__)


@cocotb.test()
async def reset_mid_utterance_then_the_utterance_again(dut):
    """Half an utterance, a reset, then the whole utterance without a start flag: the reset
    must have cleared every last transmitted value and carried sum (and the state), or the
    outputs would differ from the golden model's from zero state."""
    job, settings, bench = open_job(dut)
    await bench.reset()
    await bench.load(job["load_words"])
    await ClockCycles(dut.clk, 2)
    inputs = job["inputs"]
    half = len(inputs) // 2
    await bench.run_sequence(inputs[:half], settings["timeout_cycles"])
    await bench.reset()
    await ClockCycles(dut.clk, 2)
    starts = np.zeros(inputs.shape[:2], dtype=bool)
    outputs, _ = await bench.run_sequence(inputs, settings["timeout_cycles"], starts=starts)
    assert np.array_equal(np.array(outputs), job["expected"]), \
        "the delta state survived the reset"
