"""The simple RNN (Elman's, h' = tanh(W x + U h + b)): torch.nn.RNN and RNNCell, a state_dict
of one, and ONNX's RNN operator, each against its own framework's forward pass (PyTorch,
onnxruntime). It runs on the GRU's update with the update gate held at zero, so the golden
model's h' is the candidate n = tanh(n_x + r * 0); the RTL's bit-exactness is in
tests/rtl/test_core.py (the rnn cases)."""

import numpy as np
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import ese
from ese.sw.contract.memory_map import STRUCTURAL_ZEROS

from helpers import FLOAT_TOLERANCE, frames, pruned_like


def _torch_outputs(module, x, h0=None):
    inputs = torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        if isinstance(module, nn.RNNCell):
            h = torch.zeros(module.hidden_size) if h0 is None else torch.tensor(
                h0, dtype=torch.float32)
            outputs = []
            for frame in inputs:
                h = module(frame, h)
                outputs.append(h)
            return torch.stack(outputs).numpy()
        if h0 is None:
            return module(inputs)[0].numpy()
        return module(inputs, torch.tensor(h0, dtype=torch.float32))[0].numpy()


@pytest.mark.parametrize("make", [
    lambda: nn.RNN(7, 20),
    lambda: nn.RNN(7, 20, num_layers=2, bias=False),
    lambda: nn.RNNCell(7, 20),
], ids=["rnn", "rnn-2-layers-no-bias", "rnncell"])
@pytest.mark.parametrize("density", [None, 0.4])
def test_a_simple_rnn_follows_pytorch(make, density):
    torch.manual_seed(0)
    module = make().eval()
    program = ese.compile(module, ese.Config(pes=4), density=density)
    assert {layer.kind for layer in program.model.layers} == {"rnn"}
    reference = module if density is None else pruned_like(module, program.config, density)
    x = frames(30, 7, seed=1)
    expected = _torch_outputs(reference, x)
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
    # Counted as PyTorch counts its weights (W and U), pruned to the density asked for.
    layers = program.model.layers
    assert program.report.weights == sum(layer.cells * (layer.inputs + layer.cells)
                                         for layer in layers)
    if density is not None:
        assert abs(program.report.density - density) < 0.03


def test_a_simple_rnns_state_and_image_round_trip(tmp_path):
    torch.manual_seed(1)
    module = nn.RNN(5, 12, num_layers=2).eval()
    program = ese.compile(module, ese.Config(pes=4), density=0.5)
    x = frames(16, 5, seed=2)
    whole, h = program.predict(x, return_state=True)
    first, state = program.predict(x[:6], return_state=True)
    assert np.array_equal(np.concatenate([first, program.predict(x[6:], state=state)]), whole)
    h0 = np.random.default_rng(3).uniform(-0.9, 0.9, size=h.shape)
    expected = _torch_outputs(pruned_like(module, program.config, 0.5), x, h0)
    assert np.abs(program.predict(x, state=h0) - expected).max() < FLOAT_TOLERANCE
    program.save(tmp_path / "rnn.ese")
    loaded = ese.load(tmp_path / "rnn.ese")
    assert all(a.equals(b) for a, b in zip(loaded.model.layers, program.model.layers))
    assert np.array_equal(loaded.predict(x), whole)
    # A state_dict of an RNN reads as one (tanh, PyTorch's default).
    torch.save(module.state_dict(), tmp_path / "rnn.pt")
    assert all(a.equals(b) for a, b in zip(
        ese.compile(tmp_path / "rnn.pt", ese.Config(pes=4), density=0.5).model.layers,
        program.model.layers))


def test_an_rnn_image_with_weights_in_an_empty_slot_is_refused(tmp_path):
    program = ese.compile(nn.RNN(4, 8), ese.Config(pes=2))
    layer = program.model.layers[0]
    assert STRUCTURAL_ZEROS["rnn"]["input"] == ("r", "z", "n_h")
    layer.input_weights[0, 0] = 5                # slot r
    with pytest.raises(ese.ImageError, match="RNN layer with input weights in its r slot"):
        from ese.sw.runtime.encoding import decode_image, encode_model
        decode_image(encode_model(program.model, program.config))


def _rnn_model(rng, inputs, hidden, steps, **attributes):
    scale = 1 / np.sqrt(hidden)
    initializers = [numpy_helper.from_array(rng.uniform(-scale, scale, size=shape)
                                            .astype(np.float32), name)
                    for name, shape in (("W", (1, hidden, inputs)), ("R", (1, hidden, hidden)),
                                        ("B", (1, 2 * hidden)))]
    node = helper.make_node("RNN", ["x", "W", "R", "B"], ["y"], name="rnn",
                            hidden_size=hidden, **attributes)
    graph = helper.make_graph(
        [node], "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                      [steps, 1, inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, 1, 1, hidden])],
        initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def test_an_onnx_rnn_node_agrees_with_onnxruntime():
    rng = np.random.default_rng(4)
    model = _rnn_model(rng, 6, 10, 12)
    x = frames(12, 6, seed=5)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x[:, None].astype(np.float32)})[0][:, 0, 0]
    program = ese.compile(model, ese.Config(pes=4))
    assert program.model.layers[0].kind == "rnn"
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


@pytest.mark.parametrize("module, attributes, message", [
    (lambda: nn.RNN(4, 8, nonlinearity="relu"), None, "nonlinearity='relu'"),
    (lambda: nn.RNNCell(4, 8, nonlinearity="relu"), None, "nonlinearity='relu'"),
    (None, {"activations": ["Relu"]}, r"activations=\['Relu'\]"),
])
def test_a_relu_rnn_is_refused_naming_the_nonlinearity(module, attributes, message):
    model = module() if module else _rnn_model(np.random.default_rng(0), 4, 8, 5, **attributes)
    with pytest.raises(ese.UnsupportedModelError, match=message):
        ese.compile(model, ese.Config(pes=2))


def test_an_rnncells_state_has_a_cells_shape():
    torch.manual_seed(2)
    program = ese.compile(nn.RNNCell(4, 6).eval(), ese.Config(pes=2))
    _, h = program.predict(frames(5, 4), return_state=True)
    assert h.shape == (6,)                  # as nn.RNNCell takes and returns it
