"""The generated RTL in Verilator, driven by cocotb: bit-exact with the golden model.

Every case compiles a PyTorch module, runs frames through the simulated hardware with random
idle cycles and back-pressure on the streams, and demands that every output word equals the
golden model's, and that the golden model is within FLOAT_TOLERANCE of float PyTorch with the
same pruned weights. These tests fail (not skip) when Verilator cannot be built.

The protocol scenarios at the end are cocotb tests of this module: the runner starts the
simulator on them (``module=__name__``), and they build on the package's own bench
(:class:`ese.sim.testbench.AcceleratorBench`).
"""

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles
from torch import nn

import ese
from ese.sim.runner import run_testbench
from ese.sim.testbench import error_flags, open_job
from ese.sw.contract.arithmetic import LayerFormats

from helpers import FLOAT_TOLERANCE, frames, hardware, rescaled, sequences

# Each distinct hardware configuration costs one Verilator build; the cases share a few. The
# custom widths' build also leaves out the GRU update (Config.gru=0), which LSTMs do not use.
CUSTOM_WIDTHS = dict(weight_bits=8, weight_frac_bits=6, activation_bits=12,
                     activation_frac_bits=8, cell_bits=14, cell_frac_bits=8, bias_bits=12,
                     bias_frac_bits=8, table_index_bits=7, accumulator_bits=36,
                     activation_queue_depth=4, gru=0)

CASES = {
    "lstm": (lambda: nn.LSTM(13, 22), 4, 0.3, {}),
    "lstm-proj-batch-first": (lambda: nn.LSTM(13, 22, proj_size=9, batch_first=True), 4, 0.5,
                              {}),
    "lstm-2-layers-proj": (lambda: nn.LSTM(13, 22, num_layers=2, proj_size=9), 4, 0.2, {}),
    "lstm-2-layers-no-bias": (lambda: nn.LSTM(13, 22, num_layers=2, bias=False), 4, 0.3, {}),
    "lstmcell-dense": (lambda: nn.LSTMCell(11, 19), 4, None, {}),
    "peephole": (lambda: ese.PeepholeLSTM(13, 22, proj_size=9), 4, 0.3, {}),
    "peephole-2-layers-8-pes": (lambda: ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                                8, 0.112, {}),
    "lstm-global-pruning-8-pes": (lambda: nn.LSTM(17, 30, proj_size=11), 8, 0.25,
                                  {"pruning": "global"}),
    "one-pe": (lambda: nn.LSTM(5, 7, proj_size=3), 1, 0.6, {}),
    "two-pes-peephole": (lambda: ese.PeepholeLSTM(6, 10), 2, 0.5, {}),
    "custom-widths": (lambda: ese.PeepholeLSTM(9, 14, proj_size=6), 4, 0.4,
                      {"widths": CUSTOM_WIDTHS}),
    # GRUs: sizes that are no multiple of the PE count, rotated slots on 1, 2, 4 and 8 PEs.
    "gru": (lambda: nn.GRU(13, 22), 4, 0.3, {}),
    "gru-2-layers-no-bias-batch-first": (
        lambda: nn.GRU(13, 22, num_layers=2, bias=False, batch_first=True), 4, 0.5, {}),
    "gru-2-layers-8-pes": (lambda: nn.GRU(13, 30, num_layers=2), 8, 0.112, {}),
    "gru-global-pruning-8-pes": (lambda: nn.GRU(17, 30), 8, 0.25, {"pruning": "global"}),
    "grucell-dense-2-pes": (lambda: nn.GRUCell(11, 19), 2, None, {}),
    "gru-one-pe": (lambda: nn.GRU(5, 7), 1, 0.6, {}),
    # Simple RNNs: the GRU's update with z held at zero, W and U in the n_x slot.
    "rnn-2-layers": (lambda: nn.RNN(13, 22, num_layers=2), 4, 0.3, {}),
    "rnncell-dense-8-pes": (lambda: nn.RNNCell(11, 19), 8, None, {}),
}


def _compile(case):
    make, pes, density, options = CASES[case]
    config = hardware(pes, **options.get("widths", {}))
    return ese.compile(make(), config, density=density, pruning=options.get("pruning",
                                                                             "balanced"))


@pytest.mark.parametrize("case", list(CASES))
def test_rtl_equals_golden_model_under_random_stalls(case):
    program = _compile(case)
    x = frames(10, program.inputs, seed=len(case))
    result = program.simulate(x, stall_probability=0.25, seed=7)
    predicted = program.predict(x)
    assert result.mismatches == 0
    assert np.array_equal(result.outputs, predicted)
    assert len(result.cycles_per_frame) == 10 and min(result.cycles_per_frame) > 0
    assert np.abs(predicted - program.float_reference(x)).max() < FLOAT_TOLERANCE


def _far_out_peephole():
    """Peepholes and a forget bias beyond ESE's formats, W_x scaled for inputs of +-50."""
    import torch
    torch.manual_seed(3)
    module = ese.PeepholeLSTM(13, 22, proj_size=9)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "peephole" in name:
                parameter.mul_(12.0)
            elif "weight_ih" in name:
                parameter.div_(40.0)
            elif "bias" in name:
                parameter[22:44] += 9.0             # the forget gate's
    return module


def _far_out_gru():
    """A GRU for inputs of +-40 (W_ih scaled down) whose W_hn and b_hn lie beyond Q1.10."""
    import torch
    torch.manual_seed(4)
    module = nn.GRU(13, 22, num_layers=2)
    with torch.no_grad():
        module.weight_ih_l0.div_(40.0)
        module.weight_hh_l0[44:].mul_(6.0)          # W_hn: the part r multiplies
        module.bias_hh_l0[44:].add_(3.0)
    return module


FORMAT_CASES = {
    # Inputs of +-50 (Q8.7) with W_x finer than Q1.10, W_ym beyond +-2, y coarser.
    "lstm-2-layers-proj-inputs-50": (
        lambda: rescaled(nn.LSTM(13, 22, num_layers=2, proj_size=9), 50, 16.0), 4, 0.3, 50),
    # W_x beyond +-2 (inputs within +-0.1, finer than Q3.12): the two shifts cancel, so
    # every alignment is 0 and only the host's input format differs.
    "lstm-large-input-weights": (lambda: rescaled(nn.LSTM(13, 22), 1 / 32), 4, 0.5, 1 / 32),
    "peephole-far-out": (_far_out_peephole, 8, 0.3, 40),
    "gru-far-out": (_far_out_gru, 4, 0.3, 40),
}


@pytest.mark.parametrize("case", list(FORMAT_CASES))
def test_rtl_follows_the_formats_chosen_from_calibration(case):
    """The PEs' product alignment, the cell unit's bias and peephole alignment and the
    writeback's output alignment do in hardware what the golden model does."""
    make, pes, density, gain = FORMAT_CASES[case]
    calibration = sequences(3, 40, 13, gain, seed=1)
    program = ese.compile(make(), hardware(pes), density=density, calibration=calibration)
    assert any(layer.formats != LayerFormats() for layer in program.model.layers)
    x = sequences(1, 10, 13, gain, seed=len(case))[0]
    result = program.simulate(x, stall_probability=0.25, seed=5)
    predicted = program.predict(x)
    assert result.mismatches == 0 and np.array_equal(result.outputs, predicted)
    assert np.abs(predicted - program.float_reference(x)).max() < FLOAT_TOLERANCE


def _keras_gru_into_simple_rnn():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((None, 13)),
                             keras.layers.GRU(22, return_sequences=True),
                             keras.layers.SimpleRNN(16, return_sequences=True)])


def _brevitas_quantlstm():
    import torch
    from brevitas.nn import QuantLSTM
    from brevitas.quant import Int8WeightPerTensorFixedPoint
    torch.manual_seed(2)
    return QuantLSTM(13, 22, num_layers=2, weight_quant=Int8WeightPerTensorFixedPoint).eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("make", [_keras_gru_into_simple_rnn, _brevitas_quantlstm],
                         ids=["keras-gru-simplernn", "brevitas-quantlstm-2-layers"])
def test_models_of_other_frameworks_run_bit_exact(make):
    """A Keras model and a Brevitas QuantLSTM (their forward passes are held to the program in
    tests/unit/test_keras.py and test_brevitas.py) run on the RTL bit-exact, pruned."""
    program = ese.compile(make(), hardware(4), density=0.3)
    x = frames(10, 13, seed=8)
    result = program.simulate(x, stall_probability=0.25, seed=3)
    assert result.mismatches == 0 and np.array_equal(result.outputs, program.predict(x))


@pytest.mark.parametrize("make", [
    lambda: nn.GRU(13, 12, num_layers=2, bidirectional=True),
    lambda: nn.LSTM(13, 12, proj_size=5, num_layers=2, bidirectional=True),
], ids=["bigru-2-layers", "bilstmp-2-layers"])
def test_a_bidirectional_stack_runs_its_passes_bit_exact(make):
    """Four passes in one simulation: the image, the first layer's forward half, then each
    other half after a load of its descriptors alone (the backward halves' frames reversed,
    the second layer reading both halves of the first); every word of every pass equals the
    golden model's, and the outputs are PyTorch's shape."""
    import torch
    torch.manual_seed(8)
    program = ese.compile(make().eval(), hardware(4, max_layers=4), density=0.4)
    x = frames(9, 13, seed=9)
    result = program.simulate(x, stall_probability=0.25, seed=4)
    assert result.details["passes"] == 4 and result.mismatches == 0
    assert result.output_codes.shape[2] == 4 * program.model.layers[0].outputs
    assert np.array_equal(result.outputs, program.predict(x))
    assert len(result.cycles_per_frame) == 4 * len(x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning")
def test_an_onnx_export_runs_bit_exact():
    """A PyTorch LSTM exported to ONNX (torch.onnx.export), imported, pruned and simulated."""
    import io

    import onnx
    import onnxruntime
    import torch
    torch.manual_seed(0)
    module = nn.LSTM(13, 22, num_layers=2).eval()
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.zeros(10, 1, 13),), buffer, dynamo=False,
                      input_names=["x"], output_names=["y"])
    model = onnx.load_from_string(buffer.getvalue())
    program = ese.compile(model, hardware(4), density=0.3)
    x = frames(10, 13, seed=6)
    result = program.simulate(x, stall_probability=0.25, seed=2)
    assert result.mismatches == 0 and np.array_equal(result.outputs, program.predict(x))
    dense = ese.compile(model, ese.Config(pes=4))
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x[:, None].astype(np.float32)})[0][:, 0]
    assert np.abs(dense.predict(x) - expected).max() < FLOAT_TOLERANCE


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning")
def test_an_lstm_feeding_a_gru_runs_on_one_build():
    """A PyTorch model of an nn.LSTM whose output an nn.GRU reads, exported to ONNX: one
    program of an LSTM layer and a GRU layer, bit-exact in RTL on the hardware every other
    4-PE case uses, and within the float tolerance of the PyTorch model."""
    import io

    import onnx
    import torch

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.gru = nn.LSTM(13, 22), nn.GRU(22, 16)

        def forward(self, x):
            return self.gru(self.lstm(x)[0])[0]

    torch.manual_seed(2)
    module = Stack().eval()
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.zeros(10, 1, 13),), buffer, dynamo=False)
    program = ese.compile(onnx.load_from_string(buffer.getvalue()), hardware(4), density=0.4)
    assert [layer.kind for layer in program.model.layers] == ["lstm", "gru"]
    x = frames(10, 13, seed=9)
    result = program.simulate(x, stall_probability=0.25, seed=3)
    assert result.mismatches == 0 and np.array_equal(result.outputs, program.predict(x))
    assert np.abs(program.predict(x) - program.float_reference(x)).max() < FLOAT_TOLERANCE


def test_long_zero_runs_need_padding_in_hardware_too():
    program = ese.compile(ese.PeepholeLSTM(6, 28, proj_size=4), hardware(1), density=0.04)
    assert program.summary()["padding_entries"] > 10
    x = frames(6, 6, seed=2)
    assert program.simulate(x, stall_probability=0.25, seed=4).bitexact


def test_cycle_counts_are_exact_and_reflect_zero_skipping():
    # Without stalls: they would add cycles, and this test counts them.
    program = _compile("peephole")
    x = frames(8, program.inputs, seed=3)
    first = program.simulate(x)
    again = program.simulate(x)
    assert first.cycles_per_frame == again.cycles_per_frame, "cycle counts must be exact"
    # Every frame's products pass through the busiest PE, one per cycle at best.
    steady = first.cycles_per_frame[2:]
    assert sum(steady) >= len(steady) * program.image.real_entries_per_pe.max() * 0.9
    # Zero activations are skipped: inputs that are mostly exact zeros cost fewer cycles.
    sparse = x.copy()
    sparse[:, 2:] = 0.0
    assert sum(program.simulate(sparse).cycles_per_frame[2:]) < sum(steady)


def test_stalls_change_timing_but_not_outputs():
    program = _compile("lstm-2-layers-proj")
    x = frames(8, program.inputs, seed=4)
    smooth = program.simulate(x)
    stalled = program.simulate(x, stall_probability=0.5, seed=3)
    assert np.array_equal(smooth.output_codes, stalled.output_codes)
    assert sum(stalled.cycles_per_frame) > sum(smooth.cycles_per_frame)


@pytest.mark.parametrize("testcase", [
    "malformed_load_record_is_flagged_and_skipped",
    "frame_of_wrong_length_is_flagged",
    "new_sequence_starts_from_zero_state",
])
def test_protocol_scenarios(testcase):
    program = _compile("lstm-2-layers-proj")
    codes, _ = program.encode_inputs(frames(4, program.inputs, seed=5))
    run_testbench(program, testcase, codes, program.predict_codes(codes),
                  stall_probability=0.2, seed=1, module=__name__)


def test_simulation_failures_raise_a_clear_error():
    program = _compile("lstm")
    codes, _ = program.encode_inputs(frames(2, program.inputs))
    wrong = program.predict_codes(codes) + 1
    with pytest.raises(ese.SimulationError, match="new_sequence_starts_from_zero_state failed"):
        run_testbench(program, "new_sequence_starts_from_zero_state", codes, wrong,
                      module=__name__)


@pytest.mark.parametrize("case", ["lstm-2-layers-proj", "peephole"])
def test_initial_states_are_loaded_before_the_first_frame(case):
    """VECTORS and CELL_STATES records after the weights set each channel's y and c; the
    channels given a state run on from it, the others start from zero, and a later sequence
    of a channel starts from zero again."""
    make, pes, density, _ = CASES[case]
    program = ese.compile(make(), hardware(pes, channels=3), density=density)
    rng = np.random.default_rng(7)
    layers = len(program.model.layers)
    size, cells = program.model.layers[0].outputs, program.model.layers[0].cells

    def state():
        return (rng.uniform(-0.9, 0.9, size=(layers, size)),
                rng.uniform(-3, 3, size=(layers, cells)))

    states = [state(), None, state()]
    x = [frames(6, program.inputs, seed=1), frames(5, program.inputs, seed=2),
         [frames(3, program.inputs, seed=3), frames(4, program.inputs, seed=4)]]
    result = program.simulate(x, state=states, stall_probability=0.2, seed=3,
                              return_state=True)
    assert result.mismatches == 0
    assert np.array_equal(result.outputs[0][0], program.predict(x[0], state=states[0]))
    assert np.array_equal(result.outputs[1][0], program.predict(x[1]))
    assert np.array_equal(result.outputs[2][0], program.predict(x[2][0], state=states[2]))
    assert np.array_equal(result.outputs[2][1], program.predict(x[2][1]))
    assert not np.array_equal(result.outputs[0][0], program.predict(x[0]))
    # The state each channel ended in, read back from the hardware: its last sequence run on
    # over the zero frames that pad it to the 7 steps of the run.
    def padded(frames_):
        return np.concatenate([frames_, np.zeros((7 - len(frames_) if len(frames_) < 7
                                                  else 0, program.inputs))])
    ends = [program.predict(padded(x[0]), state=states[0], return_state=True)[1],
            program.predict(padded(x[1]), return_state=True)[1],
            program.predict(np.concatenate([x[2][1]]), return_state=True)[1]]
    for channel, (h, c) in enumerate(ends):
        assert np.array_equal(result.state[channel][0], h)
        assert np.array_equal(result.state[channel][1], c)


def test_gru_channels_from_loaded_states_and_their_h_read_back():
    """A two-layer GRU on three channels: h0 loaded for two of them (as VECTORS and, for the
    update, CELL_STATES records), one restarting; outputs and the h each channel ends in,
    read back from the hardware, equal the golden model's."""
    program = ese.compile(nn.GRU(13, 22, num_layers=2), hardware(4, channels=3), density=0.3)
    rng = np.random.default_rng(8)
    states = [rng.uniform(-0.9, 0.9, size=(2, 22)), None, rng.uniform(-0.9, 0.9, size=(2, 22))]
    x = [frames(6, 13, seed=1), [frames(2, 13, seed=2), frames(4, 13, seed=3)],
         frames(3, 13, seed=4)]
    result = program.simulate(x, state=states, stall_probability=0.2, seed=6,
                              return_state=True)
    assert result.mismatches == 0
    assert np.array_equal(result.outputs[0][0], program.predict(x[0], state=states[0]))
    assert np.array_equal(result.outputs[1][0], program.predict(x[1][0]))
    assert np.array_equal(result.outputs[1][1], program.predict(x[1][1]))
    assert np.array_equal(result.outputs[2][0], program.predict(x[2], state=states[2]))
    padded = np.concatenate([x[2], np.zeros((3, 13))])     # channel 2 idles on zero frames
    ends = [program.predict(x[0], state=states[0], return_state=True)[1],
            program.predict(x[1][1], return_state=True)[1],
            program.predict(padded, state=states[2], return_state=True)[1]]
    for channel, h in enumerate(ends):
        assert np.array_equal(result.state[channel], h)


def test_state_read_back_needs_a_cell_state_that_fits_an_activation_word():
    program = ese.compile(ese.PeepholeLSTM(9, 14, proj_size=6), hardware(4, **CUSTOM_WIDTHS))
    with pytest.raises(ese.InputError, match="cannot read its state back"):
        program.simulate(frames(2, 9), return_state=True)


def test_structured_zeros_columns_rows_and_inputs():
    """All-zero columns and rows, empty cells and zero inputs: nothing is skipped wrongly."""
    import torch
    module = nn.LSTM(13, 22, proj_size=9)
    with torch.no_grad():
        module.weight_ih_l0[:, 3] = 0                 # an input no cell listens to
        module.weight_ih_l0[:, 7:10] = 0
        module.weight_hh_l0[:, 2] = 0                 # a recurrent column of zeros
        for gate in range(4):                         # cell 5 has no weights at all
            module.weight_ih_l0[gate * 22 + 5] = 0
            module.weight_hh_l0[gate * 22 + 5] = 0
        module.weight_hr_l0[4] = 0                    # an empty projection row
    program = ese.compile(module, hardware(4), density=0.5)
    x = frames(8, 13, seed=6)
    x[:, :3] = 0.0                                    # inputs that are exactly zero
    x[4] = 0.0                                        # and a frame of zeros
    result = program.simulate(x, stall_probability=0.2, seed=2)
    assert result.bitexact and np.array_equal(result.outputs, program.predict(x))


def test_channels_run_independent_sequences_in_lock_step():
    """Three channels on one set of weights: different lengths, a restart, two layers."""
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                          hardware(4, channels=3), density=0.3)
    a, b1, b2, c = (frames(n, 13, seed=s) for n, s in ((9, 1), (4, 2), (3, 3), (5, 4)))
    result = program.simulate([a, [b1, b2], c], stall_probability=0.25, seed=4)
    assert result.mismatches == 0 and result.output_codes.shape == (9, 3, 9)
    (out_a,), (out_b1, out_b2), (out_c,) = result.outputs
    assert np.array_equal(out_a, program.predict(a))
    assert np.array_equal(out_b1, program.predict(b1))
    assert np.array_equal(out_b2, program.predict(b2)), "channel 1's restart leaked state"
    assert np.array_equal(out_c, program.predict(c))


def test_channels_without_projection_and_an_idle_channel():
    program = ese.compile(nn.LSTMCell(11, 19), hardware(2, channels=2), density=0.5)
    x = frames(7, 11, seed=8)
    result = program.simulate([None, x], stall_probability=0.2, seed=5)
    assert result.mismatches == 0
    assert np.array_equal(result.outputs[1][0], program.predict(x))


# cocotb scenarios (run in the simulator by test_protocol_scenarios).

@cocotb.test()
async def malformed_load_record_is_flagged_and_skipped(dut):
    """A record for an unknown memory sets load_error; the records after it still load."""
    job, settings, bench = open_job(dut)
    await bench.reset()
    bad_record = [0x7F, 0, 3, 1, 2, 3]            # target 0x7f does not exist
    await bench.load(list(bad_record) + [int(w) for w in job["load_words"]])
    await ClockCycles(dut.clk, 2)
    assert error_flags(dut)["load_error"] == 1, "the malformed record was not flagged"
    outputs, _ = await bench.run_sequence(job["inputs"], settings["timeout_cycles"])
    assert np.array_equal(np.array(outputs), job["expected"]), \
        "the records after the malformed one did not load correctly"


@cocotb.test()
async def frame_of_wrong_length_is_flagged(dut):
    """A frame whose tlast comes early sets frame_error."""
    job, settings, bench = open_job(dut)
    await bench.reset()
    await bench.load(job["load_words"])
    await ClockCycles(dut.clk, 2)
    assert error_flags(dut)["frame_error"] == 0
    step = job["inputs"][0]                   # (channels, inputs): send all but the last input
    await bench.send_step(step[:, :-1], starts=[c == 0 for c in range(len(step))])
    await bench.frames_in.wait()
    await ClockCycles(dut.clk, 4)
    assert error_flags(dut)["frame_error"] == 1, "a short frame was not flagged"


@cocotb.test()
async def new_sequence_starts_from_zero_state(dut):
    """A sequence run twice, with tuser on the first word, gives the same outputs twice."""
    job, settings, bench = open_job(dut)
    await bench.reset()
    await bench.load(job["load_words"])
    await ClockCycles(dut.clk, 2)
    first, _ = await bench.run_sequence(job["inputs"], settings["timeout_cycles"])
    second, _ = await bench.run_sequence(job["inputs"], settings["timeout_cycles"])
    assert np.array_equal(np.array(first), job["expected"])
    assert np.array_equal(np.array(second), job["expected"]), "state leaked between sequences"
