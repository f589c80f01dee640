"""Formats chosen from the model and from calibration frames (docs/arithmetic.md).

The test models are *equivalent rescalings* of ordinary random LSTMs: dividing W_x by g and
multiplying the inputs by g, or multiplying W_ym by g and dividing what reads y (W_r, the next
layer's W_x) by g, leaves the float function unchanged. So the float reference stays a
well-conditioned model while its weights lie far beyond Q1.10's +-2 or its inputs reach
+-50, and the fixed-point error can be held to the same FLOAT_TOLERANCE as every other model.
"""

import numpy as np
import pytest
import torch
from torch import nn

import ese
from ese.sw.compiler.converters import describe
from ese.sw.compiler.formats import choose_formats, float_forward
from ese.sw.contract.arithmetic import LayerFormats

from helpers import FLOAT_TOLERANCE, rescaled, sequences

SCENARIOS = {
    # W_x up to about 7 (beyond Q1.10), inputs within +-0.4.
    "large input weights": (lambda: nn.LSTM(12, 20), 1 / 32, 1.0),
    # Inputs up to +-50 (beyond Q3.12), and W_ym up to about 3.3.
    "large inputs and projection": (lambda: nn.LSTM(12, 24, proj_size=8, num_layers=2), 50,
                                    16.0),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_calibrated_formats_bring_far_out_models_within_the_float_tolerance(scenario):
    make, gain, projection_gain = SCENARIOS[scenario]
    torch.manual_seed(0)
    module = rescaled(make(), gain, projection_gain)
    assert max(p.abs().max().item() for p in module.parameters()) > 2 or gain > 8
    calibration = sequences(4, 50, 12, gain, seed=1)
    test = sequences(1, 60, 12, gain, seed=2)[0]

    configured = ese.compile(module, ese.Config(pes=4), formats="configured")
    configured_error = np.abs(configured.predict(test) - configured.float_reference(test)).max()
    saturated = configured.report.saturated_total + configured.encode_inputs(test)[1]
    assert saturated > 0 and configured_error > 10 * FLOAT_TOLERANCE

    program = ese.compile(module, ese.Config(pes=4), calibration=calibration)
    error = np.abs(program.predict(test) - program.float_reference(test)).max()
    assert error < FLOAT_TOLERANCE
    assert program.report.saturated == {} and program.encode_inputs(test)[1] == 0
    record = program.report.calibration
    assert record["frames"] == 200 and record["saturated"] == {}
    assert 0 < record["max_error"] < FLOAT_TOLERANCE
    assert program.summary()["calibration"] == record


def test_without_calibration_the_weights_still_choose_and_the_inputs_saturate_reported():
    torch.manual_seed(0)
    module = rescaled(nn.LSTM(12, 20), 50)
    program = ese.compile(module, ese.Config(pes=4))
    formats = program.model.layers[0].formats
    assert formats.input == 0 and program.report.calibration == {}
    test = sequences(1, 30, 12, 50, seed=2)[0]
    assert program.encode_inputs(test)[1] > 0          # what ese predict and simulate report
    with_calibration = ese.compile(module, ese.Config(pes=4), calibration=test)
    assert with_calibration.model.layers[0].formats.input == 5          # Q8.7 holds +-50
    assert with_calibration.input_format.frac == 7


def test_a_matrix_of_small_weights_is_finer_where_its_input_is_coarser():
    torch.manual_seed(0)
    module = rescaled(nn.LSTM(12, 20), 50)
    calibration = sequences(2, 40, 12, 50, seed=1)
    formats = choose_formats(describe(module), ese.Config(pes=4),
                             [calibration[0], calibration[1]])[0]
    # Inputs coarser by 5 bits, W_x (about 0.0045 at most) finer by 5: the products keep the
    # accumulator grid.
    assert (formats.input, formats.input_weights) == (5, -5)
    assert formats.alignments()["input_align"] == 0


def test_formats_survive_the_weight_image(tmp_path):
    torch.manual_seed(0)
    module = rescaled(nn.LSTM(12, 24, proj_size=8, num_layers=2), 50, 16.0)
    program = ese.compile(module, ese.Config(pes=4), calibration=sequences(2, 30, 12, 50, 1))
    path = tmp_path / "scaled.ese"
    program.save(path)
    loaded = ese.load(path)
    assert [layer.formats for layer in loaded.model.layers] == \
        [layer.formats for layer in program.model.layers]
    assert loaded.report.calibration == program.report.calibration
    test = sequences(1, 20, 12, 50, seed=3)[0]
    assert np.array_equal(loaded.predict(test), program.predict(test))


def test_float_forward_is_the_torch_model():
    torch.manual_seed(0)
    module = nn.LSTM(6, 10, proj_size=4, num_layers=2)
    x = np.random.default_rng(0).normal(size=(25, 6))
    expected = module.double()(torch.tensor(x))[0].detach().numpy()
    assert np.abs(float_forward(describe(module), x)[-1] - expected).max() < 1e-12


def test_alignment_beyond_align_bits_and_negative_shifts_are_refused():
    config = ese.Config(pes=4, align_bits=2)
    with pytest.raises(ValueError, match="alignment input_align=4 is outside 0 .. 3"):
        LayerFormats(input=2, input_weights=2).check(config, proj=0)
    with pytest.raises(ValueError, match="bias=-1 may not be negative"):
        LayerFormats(bias=-1).check(config, proj=0)
    with pytest.raises(ValueError, match="without projection"):
        LayerFormats(output=1).check(config, proj=0)
    with pytest.raises(ValueError, match="recurrent_align=-1"):
        LayerFormats(recurrent_weights=-1).check(config, proj=0)


def test_align_bits_zero_keeps_the_configured_formats():
    module = nn.LSTMCell(4, 4)
    with torch.no_grad():
        module.weight_ih[0, 0] = 100.0
    program = ese.compile(module, ese.Config(pes=4, align_bits=0),
                          calibration=np.full((5, 4), 30.0))
    assert program.model.layers[0].formats == LayerFormats()
    assert program.report.saturated == {"layer0.input_weights": 1}
    assert program.report.calibration["saturated"] == {"input": 20}


def test_calibration_frames_are_checked():
    program_module = nn.LSTM(4, 6)
    with pytest.raises(ese.InputError, match="frames of 4 inputs"):
        ese.compile(program_module, ese.Config(pes=2), calibration=np.zeros((5, 3)))
    with pytest.raises(ese.InputError, match="NaN"):
        ese.compile(program_module, ese.Config(pes=2), calibration=np.full((5, 4), np.nan))
