"""Bidirectional layers: PyTorch's ``bidirectional=True`` stacks (LSTM, LSTMP, GRU, RNN), as
modules, state_dicts and TorchScript, and a unidirectional layer after one, against PyTorch's
own forward pass; the passes the hardware runs them in; PyTorch's output shape (frames,
2 x hidden) and h_n layout; images that keep each layer's direction; what needs a whole
utterance refused by name. ONNX's, Keras' and Brevitas' bidirectional layers are in their
front ends' tests; the RTL's in tests/rtl/test_core.py and, through the driver,
tests/system/test_system.py."""

import numpy as np
import pytest
import torch
from torch import nn

import ese
from ese.sw.runtime.quantized import Pass

from helpers import FLOAT_TOLERANCE, frames, pruned_like

CONFIG = ese.Config(pes=4)


def _torch(module, x, state=None):
    with torch.no_grad():
        inputs = torch.tensor(x, dtype=torch.float32)
        if state is None:
            outputs, final = module(inputs)
        else:
            state = (tuple(torch.tensor(s, dtype=torch.float32) for s in state)
                     if isinstance(state, tuple) else torch.tensor(state, dtype=torch.float32))
            outputs, final = module(inputs, state)
    final = tuple(f.numpy() for f in final) if isinstance(final, tuple) else final.numpy()
    return outputs.numpy(), final


@pytest.mark.parametrize("make", [
    lambda: nn.LSTM(6, 10, num_layers=2, bidirectional=True),
    lambda: nn.LSTM(6, 10, num_layers=2, proj_size=4, bidirectional=True),
    lambda: nn.GRU(6, 10, num_layers=2, bidirectional=True),
    lambda: nn.RNN(6, 10, bidirectional=True),
], ids=["lstm", "lstmp", "gru", "rnn"])
def test_bidirectional_stacks_follow_pytorch_with_its_shapes(make):
    torch.manual_seed(0)
    module = make().eval()
    program = ese.compile(module, CONFIG, density=0.5)
    layers = module.num_layers
    assert [layer.direction for layer in program.model.layers] == ["forward", "backward"] * layers
    assert program.model.passes() == [Pass(k, k, backward=k % 2 == 1) for k in range(2 * layers)]
    pruned = pruned_like(module, CONFIG, 0.5)
    x = frames(20, 6, seed=1)
    expected, expected_final = _torch(pruned, x)
    outputs, final = program.predict(x, return_state=True)
    assert outputs.shape == expected.shape == (20, 2 * (module.proj_size or module.hidden_size))
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(outputs - expected).max() < FLOAT_TOLERANCE
    # h_n (and c_n) in PyTorch's layout: (layers x 2, ...), each layer's forward then backward.
    for ours, theirs in zip(final if isinstance(final, tuple) else (final,),
                            expected_final if isinstance(expected_final, tuple)
                            else (expected_final,)):
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < FLOAT_TOLERANCE
    # From PyTorch's kind of initial state.
    rng = np.random.default_rng(2)
    state = tuple(rng.uniform(-0.8, 0.8, size=part.shape) for part in (
        expected_final if isinstance(expected_final, tuple) else (expected_final,)))
    state = state if len(state) == 2 else state[0]
    from_state, _ = _torch(pruned, x, state)
    assert np.abs(program.predict(x, state=state) - from_state).max() < FLOAT_TOLERANCE


def test_a_unidirectional_layer_after_a_bidirectional_one_reads_both_halves(tmp_path):
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTM(6, 8, bidirectional=True)
            self.decoder = nn.GRU(16, 5)
            self.head = nn.Linear(5, 2)

    torch.manual_seed(3)
    model = Tagger().eval()
    x = frames(15, 6, seed=4)
    with torch.no_grad():
        hidden, _ = model.encoder(torch.tensor(x, dtype=torch.float32))
        expected = model.decoder(hidden)[0].numpy()
    torch.save(model.state_dict(), tmp_path / "tagger.pt")
    for source in (model, tmp_path / "tagger.pt"):
        program = ese.compile(source, CONFIG, submodule=["encoder", "decoder"])
        assert program.model.passes() == [Pass(0, 0), Pass(1, 1, backward=True), Pass(2, 2)]
        assert np.abs(program.float_reference(x) - expected).max() < 1e-5
        assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
    # Each pass's last layer ends a frame step, and its first reads the frames.
    assert [d["last"] for d in program.image.descriptors] == [1, 1, 1]
    assert program.config.input_depth >= 16


def test_images_keep_each_layers_direction(tmp_path):
    torch.manual_seed(5)
    module = nn.GRU(5, 7, num_layers=2, bidirectional=True).eval()
    program = ese.compile(module, CONFIG, density=0.5)
    program.save(tmp_path / "bigru.ese")
    loaded = ese.load(tmp_path / "bigru.ese")
    assert all(a.equals(b) for a, b in zip(loaded.model.layers, program.model.layers))
    x = frames(9, 5, seed=6)
    assert np.array_equal(loaded.predict(x), program.predict(x))
    # A traced TorchScript archive of it reads the same.
    archive = tmp_path / "bigru.pt"
    torch.jit.save(torch.jit.trace(module, torch.zeros(4, 1, 5)), str(archive))
    from_archive = ese.compile(archive, CONFIG, density=0.5)
    assert all(a.equals(b) for a, b in zip(from_archive.model.layers, program.model.layers))


def test_what_needs_an_utterance_in_pieces_is_refused_by_name():
    torch.manual_seed(7)
    program = ese.compile(nn.LSTM(4, 6, bidirectional=True).eval(), CONFIG)
    with pytest.raises(ese.InputError, match="not available for a bidirectional model"):
        program.utterance()
    x = frames(5, 4)
    with pytest.raises(ese.InputError, match="one whole sequence at a time"):
        program.simulate([x, x])
    with pytest.raises(ese.InputError, match="one whole sequence at a time"):
        program.simulate(x, return_state=True)


def test_calibration_measures_both_halves_and_the_performance_model_refuses_passes():
    torch.manual_seed(9)
    module = nn.LSTM(4, 3, bidirectional=True).eval()
    calibration = frames(6, 4, seed=10)
    program = ese.compile(module, CONFIG, calibration=calibration)
    expected, _ = _torch(module, calibration)
    measured = program.report.calibration["max_error"]
    assert measured == pytest.approx(np.abs(program.predict(calibration) - expected).max(),
                                     abs=1e-6)
    from ese.hw.timing import hardware_timing
    from ese.sw.compiler.performance import predict_performance
    with pytest.raises(ese.ConfigError, match="runs in passes"):
        predict_performance(program.image, hardware_timing(program.config))


def test_a_relu_rnn_is_refused_from_torchscript_and_torch_export(tmp_path):
    module = nn.RNN(3, 4, nonlinearity="relu").eval()
    with pytest.raises(ese.UnsupportedModelError, match="nonlinearity='relu'"):
        ese.compile(torch.jit.script(module), CONFIG)
    program = torch.export.export(module, (torch.zeros(5, 1, 3),))
    with pytest.raises(ese.UnsupportedModelError, match="nonlinearity='relu'"):
        ese.compile(program, CONFIG)
