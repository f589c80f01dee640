"""Brevitas' quantization-aware-trained QuantLSTM and QuantRNN, against Brevitas' own forward
pass. Two tolerances, for two things: with Brevitas' activation quantizers off, its forward
pass is its trained weights in float, which the program's float reference must equal (1e-5)
and predict follow (FLOAT_TOLERANCE); with its 8-bit activation quantizers on (the defaults),
the program keeps its own 16-bit formats and tables, and differs from Brevitas by its
activations' rounding, on inputs inside Brevitas' input quantizer's range: within 3 steps of
Brevitas' output quantizer (1/128) for a QuantLSTM (over 20 seeds: median 1.3, largest 1.6)
and 6 for a QuantRNN, whose rounded h goes straight back through U with no gate to damp it
(median 1.3, largest 4.5). The RTL run of a Brevitas model is in tests/rtl/test_core.py."""

import numpy as np
import pytest
import torch
from brevitas.nn import QuantLSTM, QuantRNN
from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFixedPoint
from torch import nn

import ese
from ese.sw.compiler.frontends import recurrent_parts

from helpers import FLOAT_TOLERANCE, frames

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIG = ese.Config(pes=4)
FIXED = dict(weight_quant=Int8WeightPerTensorFixedPoint)
#: Brevitas with its weight quantizers alone: no activation, gate or bias quantization.
WEIGHTS_ONLY = dict(io_quant=None, gate_acc_quant=None, bias_quant=None)
LSTM_WEIGHTS_ONLY = dict(WEIGHTS_ONLY, sigmoid_quant=None, tanh_quant=None,
                         cell_state_quant=None)
#: Brevitas' default output quantizer's step (Int8ActPerTensorFloat, scale 1/128).
OUTPUT_STEP = 1 / 128


def _brevitas(module, x):
    with torch.no_grad():
        return module(torch.tensor(x[:, None], dtype=torch.float32))[0][:, 0].numpy()


@pytest.mark.parametrize("make", [
    lambda: QuantLSTM(5, 16, num_layers=2, **FIXED, **LSTM_WEIGHTS_ONLY),
    lambda: QuantLSTM(5, 16, bias=False, **FIXED, **LSTM_WEIGHTS_ONLY),
    lambda: QuantRNN(5, 16, num_layers=2, **FIXED, **WEIGHTS_ONLY),
], ids=["quantlstm-2-layers", "quantlstm-no-bias", "quantrnn-2-layers"])
def test_power_of_two_weights_land_on_the_grid_and_follow_brevitas(make):
    torch.manual_seed(0)
    module = make().eval()
    program = ese.compile(module, CONFIG)
    assert program.report.requantized and set(program.report.requantized.values()) == {0.0}
    x = frames(30, 5, seed=1)
    expected = _brevitas(module, x)
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


@pytest.mark.parametrize("make, steps", [
    (lambda: QuantLSTM(5, 16, num_layers=2, **FIXED), 3),
    (lambda: QuantLSTM(5, 16), 3),
    (lambda: QuantRNN(5, 16, **FIXED), 6),
], ids=["quantlstm-fixed-point", "quantlstm-float-scale", "quantrnn"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_brevitas_8_bit_activations_the_difference_is_their_rounding(make, steps, seed):
    torch.manual_seed(seed)
    module = make().eval()
    program = ese.compile(module, CONFIG)
    x = np.random.default_rng(seed).uniform(-0.9, 0.9, size=(40, 5))
    assert np.abs(program.predict(x) - _brevitas(module, x)).max() < steps * OUTPUT_STEP


@pytest.mark.parametrize("options, config", [
    ({}, CONFIG),                                        # a float scale
    (dict(weight_quant=Int8WeightPerChannelFloat), CONFIG),   # a scale per row
    (FIXED, ese.Config(pes=4, weight_bits=6, weight_frac_bits=4)),   # 8 bits into 6
])
def test_weights_off_the_grid_are_requantized_and_the_report_says_by_how_much(options, config):
    torch.manual_seed(3)
    module = QuantLSTM(5, 16, **options, **LSTM_WEIGHTS_ONLY).eval()
    program = ese.compile(module, config)
    step = 2.0 ** -(config.weight_frac_bits - program.model.layers[0].formats.input_weights)
    moved = program.report.requantized["layer0.input_weights"]
    assert 0 < moved <= step / 2 + 1e-12
    x = frames(20, 5, seed=4)
    assert np.abs(program.float_reference(x) - _brevitas(module, x)).max() < 1e-5


@pytest.mark.parametrize("make", [
    lambda: QuantLSTM(5, 8, num_layers=2, bidirectional=True, **FIXED, **LSTM_WEIGHTS_ONLY),
    lambda: QuantRNN(5, 8, bidirectional=True, **FIXED, **WEIGHTS_ONLY),
], ids=["quantlstm", "quantrnn"])
def test_a_bidirectional_brevitas_layer_is_a_forward_and_a_backward_half(make):
    torch.manual_seed(6)
    module = make().eval()
    program = ese.compile(module, CONFIG)
    assert [layer.direction for layer in program.model.layers][:2] == ["forward", "backward"]
    x = frames(12, 5, seed=7)
    expected = _brevitas(module, x)
    assert expected.shape == (12, 16)
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


def test_a_quantlstm_inside_a_model_is_picked_by_name():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = QuantLSTM(5, 12, **FIXED)
            self.head = nn.Linear(12, 3)

    torch.manual_seed(5)
    model = Tagger().eval()
    assert recurrent_parts(model) == ["encoder"]
    with pytest.raises(ese.UnsupportedModelError, match="recurrent submodules are 'encoder'"):
        ese.compile(model, CONFIG)
    program = ese.compile(model, CONFIG, submodule="encoder", density=0.5)
    direct = ese.compile(model.encoder, CONFIG, density=0.5)
    assert all(a.equals(b) for a, b in zip(program.model.layers, direct.model.layers))
    assert program.metadata["source"] == "brevitas.nn.QuantLSTM encoder"


@pytest.mark.parametrize("make, message", [
    (lambda: QuantLSTM(5, 8, coupled_input_forget_gates=True), "coupled_input_forget_gates"),
    (lambda: QuantRNN(5, 8, nonlinearity="relu"), "nonlinearity='relu'"),
])
def test_what_the_hardware_cannot_run_is_refused_by_name(make, message):
    with pytest.raises(ese.UnsupportedModelError, match=message):
        ese.compile(make().eval(), CONFIG)
