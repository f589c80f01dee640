"""ONNX import, against onnxruntime as the reference.

Models come two ways: PyTorch modules exported with ``torch.onnx.export`` (both of its
exporters: the TorchScript one, ``dynamo=False``, and the dynamo one, which needs
onnxscript), and graphs built with
``onnx.helper`` straight from the LSTM operator's definition (onnx/docs/Operators.md, "LSTM":
W, R, B in gate order i, o, f, c; P in order i, o, f; layout 0 is [seq, batch, ...], 1 is
[batch, seq, ...]), with peepholes, initial states as graph inputs, two chained nodes, an
``If`` whose branches hold the LSTMs and a ``Loop`` whose body holds one, and weights that
other operators compute from initializers (as exporters write them). onnxruntime runs each
graph; the compiled program must agree within FLOAT_TOLERANCE, and its float reference (the
imported description's float forward pass) within 1e-5.
"""

import io

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import ese
from ese.sw.compiler.onnx_import import recurrent_nodes

from helpers import FLOAT_TOLERANCE, frames

OPSET = 14           # the LSTM operator's layout attribute is from opset 14
IR_VERSION = 8


def _run(model, feeds):
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})


def _exported(module, frames_count, inputs, batch_first=False):
    x = torch.zeros((1, frames_count, inputs) if batch_first else (frames_count, 1, inputs))
    buffer = io.BytesIO()
    torch.onnx.export(module, (x,), buffer, dynamo=False, input_names=["x"],
                      output_names=["y"])
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("make, batch_first", [
    (lambda: nn.LSTM(13, 22), False),
    (lambda: nn.LSTM(13, 22, num_layers=2, batch_first=True), True),
    (lambda: nn.LSTM(13, 22, num_layers=2, bias=False), False),
])
def test_pytorch_exports_agree_with_onnxruntime(make, batch_first):
    torch.manual_seed(0)
    module = make().eval()
    x = frames(15, 13, seed=1)
    model = _exported(module, len(x), 13, batch_first)
    feed = x[None] if batch_first else x[:, None]
    expected = _run(model, {"x": feed})[0]
    expected = expected[0] if batch_first else expected[:, 0]
    program = ese.compile(model, ese.Config(pes=4))
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
    assert program.metadata["source"].startswith("ONNX LSTM /LSTM")
    # Pruned: the float reference holds the pruned weights, and predict follows it.
    pruned = ese.compile(model, ese.Config(pes=4), density=0.4)
    assert pruned.report.density < 0.45
    assert np.abs(pruned.predict(x) - pruned.float_reference(x)).max() < FLOAT_TOLERANCE


def _lstm_weights(rng, inputs, hidden, peepholes):
    scale = 1 / np.sqrt(hidden)
    return {
        "W": rng.uniform(-scale, scale, size=(1, 4 * hidden, inputs)),
        "R": rng.uniform(-scale, scale, size=(1, 4 * hidden, hidden)),
        "B": rng.uniform(-scale, scale, size=(1, 8 * hidden)),
        "P": rng.uniform(-0.5, 0.5, size=(1, 3 * hidden)) if peepholes else None,
    }


def _lstm_node(name, x, y, weights, hidden, initializers, states=("", ""), **attributes):
    prefix = name.replace("/", "_")
    names = {}
    for key, value in weights.items():
        if value is not None:
            names[key] = f"{prefix}_{key}"
            initializers.append(numpy_helper.from_array(value.astype(np.float32),
                                                        names[key]))
    inputs = [x, names["W"], names["R"], names.get("B", ""), "", states[0], states[1],
              names.get("P", "")]
    while inputs and inputs[-1] == "":
        inputs.pop()
    return helper.make_node("LSTM", inputs, [y], name=name, hidden_size=hidden, **attributes)


def _model(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "lstm", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             ir_version=IR_VERSION)


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@pytest.mark.parametrize("layout", [0, 1])
def test_peepholes_and_initial_states_as_graph_inputs_in_either_layout(layout):
    """onnxruntime does not run layout 1 ("Batchwise recurrent operations (layout == 1) are
    not supported"), so both layouts are held to its result for layout 0, the same weights."""
    rng = np.random.default_rng(0)
    inputs, hidden, steps = 7, 12, 10
    weights = _lstm_weights(rng, inputs, hidden, peepholes=True)

    def model(layout):
        initializers = []
        node = _lstm_node("lstm", "x", "y", weights, hidden, initializers, ("h0", "c0"),
                          layout=layout)
        shapes = ([[steps, 1, inputs], [1, 1, hidden], [steps, 1, 1, hidden]] if layout == 0
                  else [[1, steps, inputs], [1, 1, hidden], [1, steps, 1, hidden]])
        return _model([node], [_value("x", shapes[0]), _value("h0", shapes[1]),
                               _value("c0", shapes[1])], [_value("y", shapes[2])],
                      initializers)

    x = frames(steps, inputs, seed=2)
    h0, c0 = rng.uniform(-0.8, 0.8, size=hidden), rng.uniform(-2, 2, size=hidden)
    expected = _run(model(0), {"x": x[:, None], "h0": h0[None, None],
                               "c0": c0[None, None]})[0][:, 0, 0]
    program = ese.compile(model(layout), ese.Config(pes=4))
    assert program.model.layers[0].peephole.any()
    imported = program.float_reference(x, state=(h0[None], c0[None]))
    assert np.abs(imported - expected).max() < 1e-5
    assert np.abs(program.predict(x, state=(h0[None], c0[None])) - expected).max() \
        < FLOAT_TOLERANCE


def _chain(rng, peepholes=(False, True)):
    initializers = []
    first = _lstm_node("first", "x", "y1", _lstm_weights(rng, 6, 10, peepholes[0]), 10,
                       initializers)
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    initializers.append(axes)
    squeeze = helper.make_node("Squeeze", ["y1", "axes"], ["x2"], name="squeeze")
    second = _lstm_node("second", "x2", "y2", _lstm_weights(rng, 10, 8, peepholes[1]), 8,
                        initializers)
    return [first, squeeze, second], initializers


def test_two_chained_nodes_are_two_layers():
    rng = np.random.default_rng(1)
    nodes, initializers = _chain(rng)
    model = _model(nodes, [_value("x", [12, 1, 6])], [_value("y2", [12, 1, 1, 8])],
                   initializers)
    x = frames(12, 6, seed=3)
    expected = _run(model, {"x": x[:, None]})[0][:, 0, 0]
    program = ese.compile(model, ese.Config(pes=2), calibration=x)
    assert [layer.cells for layer in program.model.layers] == [10, 8]
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
    # One node of the chain alone.
    alone = ese.compile(model, ese.Config(pes=2), node="first")
    assert [layer.cells for layer in alone.model.layers] == [10]


def _if_model(rng):
    """An If whose two branches each hold an LSTM on the outer graph's x."""
    initializers = []
    branches = {}
    for branch, hidden in (("then", 9), ("else", 9)):
        inner = []
        node = _lstm_node(f"{branch}_lstm", "x", f"{branch}_y",
                          _lstm_weights(rng, 5, hidden, branch == "then"), hidden, inner)
        branches[branch] = helper.make_graph([node], f"{branch}_branch", [],
                                             [_value(f"{branch}_y", [8, 1, 1, hidden])], inner)
    cond = numpy_helper.from_array(np.array(True), "cond")
    initializers.append(cond)
    choose = helper.make_node("If", ["cond"], ["y"], name="choose",
                              then_branch=branches["then"], else_branch=branches["else"])
    return _model([choose], [_value("x", [8, 1, 5])], [_value("y", [8, 1, 1, 9])],
                  initializers)


def test_a_node_inside_an_if_is_picked_by_name_or_path():
    model = _if_model(np.random.default_rng(2))
    assert sorted(recurrent_nodes(model)) == ["choose.else_branch/else_lstm",
                                         "choose.then_branch/then_lstm"]
    x = frames(8, 5, seed=4)
    expected = _run(model, {"x": x[:, None]})[0][:, 0, 0]      # cond is True: then_branch
    for node in ("then_lstm", "choose.then_branch/then_lstm"):
        program = ese.compile(model, ese.Config(pes=4), node=node)
        assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
    with pytest.raises(ese.UnsupportedModelError, match="all lie in subgraphs"):
        ese.compile(model, ese.Config(pes=4))


def test_a_node_inside_a_loop_body():
    """A Loop of one iteration whose body runs an LSTM on the outer graph's x and scans its Y
    out: the Loop's output is [1, ...Y]."""
    rng = np.random.default_rng(6)
    inner = []
    lstm = _lstm_node("body_lstm", "x", "body_y", _lstm_weights(rng, 5, 7, True), 7, inner)
    keep = helper.make_node("Identity", ["cond_in"], ["cond_out"])
    body = helper.make_graph(
        [lstm, keep], "body",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         _value("body_y", [8, 1, 1, 7])], inner)
    initializers = [numpy_helper.from_array(np.array(1, dtype=np.int64), "trips"),
                    numpy_helper.from_array(np.array(True), "cond")]
    loop = helper.make_node("Loop", ["trips", "cond"], ["y"], name="repeat", body=body)
    model = _model([loop], [_value("x", [8, 1, 5])], [_value("y", [1, 8, 1, 1, 7])],
                   initializers)
    assert recurrent_nodes(model) == ["repeat.body/body_lstm"]
    x = frames(8, 5, seed=5)
    expected = _run(model, {"x": x[:, None]})[0][0, :, 0, 0]
    program = ese.compile(model, ese.Config(pes=4), node="body_lstm")
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


def test_an_onnx_file_compiles_and_its_nodes_are_listed_in_errors(tmp_path):
    nodes, initializers = _chain(np.random.default_rng(3))
    model = _model(nodes, [_value("x", [12, 1, 6])], [_value("y2", [12, 1, 1, 8])],
                   initializers)
    path = tmp_path / "chain.onnx"
    onnx.save(model, path)
    assert len(ese.compile(str(path), ese.Config(pes=2)).model.layers) == 2
    with pytest.raises(ese.UnsupportedModelError, match="its recurrent nodes are first, second"):
        ese.compile(path, ese.Config(pes=2), node="third")
    with pytest.raises(ese.UnsupportedModelError, match="absent.onnx: no such model file"):
        ese.compile(tmp_path / "absent.onnx", ese.Config(pes=2))


@pytest.mark.parametrize("attributes, message", [
    ({"direction": "reverse"}, "direction='reverse'.*not backward alone"),
    ({"activations": ["Sigmoid", "Tanh", "Relu"]}, "activations="),
    ({"clip": 3.0}, "clip=3.0"),
    ({"input_forget": 1}, "input_forget=1"),
])
def test_what_the_hardware_cannot_run_is_refused_naming_the_attribute(attributes, message):
    rng = np.random.default_rng(4)
    initializers = []
    weights = _lstm_weights(rng, 4, 6, False)
    node = _lstm_node("lstm", "x", "y", weights, 6, initializers, **attributes)
    model = _model([node], [_value("x", [5, 1, 4])], [_value("y", None)], initializers)
    with pytest.raises(ese.UnsupportedModelError, match=message):
        ese.compile(model, ese.Config(pes=2))


def test_constant_states_and_unchained_nodes_are_refused():
    rng = np.random.default_rng(5)
    initializers = [numpy_helper.from_array(np.full((1, 1, 6), 0.5, dtype=np.float32), "h0")]
    node = _lstm_node("lstm", "x", "y", _lstm_weights(rng, 4, 6, False), 6, initializers,
                      ("h0", ""))
    model = _model([node], [_value("x", [5, 1, 4])], [_value("y", None)], initializers)
    with pytest.raises(ese.UnsupportedModelError, match="constant non-zero state"):
        ese.compile(model, ese.Config(pes=2))
    # Two LSTM nodes side by side on the same input are not a chain.
    initializers = []
    nodes = [_lstm_node(name, "x", f"y_{name}", _lstm_weights(rng, 4, 6, False), 6,
                        initializers) for name in ("left", "right")]
    model = _model(nodes, [_value("x", [5, 1, 4])], [_value("y_left", None),
                                                     _value("y_right", None)], initializers)
    with pytest.raises(ese.UnsupportedModelError, match="not one chain of layers; pick one"):
        ese.compile(model, ese.Config(pes=2))
    assert len(ese.compile(model, ese.Config(pes=2), node="right").model.layers) == 1
    with pytest.raises(ese.ConfigError, match="node= picks a recurrent node of an ONNX model"):
        ese.compile(nn.LSTM(4, 6), ese.Config(pes=2), node="right")


# GRU nodes (onnx/docs/Operators.md, "GRU": W, R in gate order z, r, h; B = [Wb, Rb];
# linear_before_reset=1 is PyTorch's candidate, tanh(W_h x + Wb_h + r * (R_h h + Rb_h))).

@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("make, batch_first", [
    (lambda: nn.GRU(13, 22), False),
    (lambda: nn.GRU(13, 22, num_layers=2, batch_first=True), True),
    (lambda: nn.GRU(13, 22, bias=False), False),
])
def test_pytorch_gru_exports_agree_with_onnxruntime(make, batch_first):
    torch.manual_seed(1)
    module = make().eval()
    x = frames(15, 13, seed=7)
    model = _exported(module, len(x), 13, batch_first)
    assert all(helper.get_attribute_value(a) == 1 for n in model.graph.node
               if n.op_type == "GRU" for a in n.attribute if a.name == "linear_before_reset")
    feed = x[None] if batch_first else x[:, None]
    expected = _run(model, {"x": feed})[0]
    expected = expected[0] if batch_first else expected[:, 0]
    program = ese.compile(model, ese.Config(pes=4))
    assert [layer.kind for layer in program.model.layers] == ["gru"] * module.num_layers
    assert program.metadata["source"].startswith("ONNX GRU /GRU")
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
    pruned = ese.compile(model, ese.Config(pes=4), density=0.4)
    assert abs(pruned.report.density - 0.4) < 0.02
    assert np.abs(pruned.predict(x) - pruned.float_reference(x)).max() < FLOAT_TOLERANCE


def _gru_weights(rng, inputs, hidden, bias=True):
    scale = 1 / np.sqrt(hidden)
    return {
        "W": rng.uniform(-scale, scale, size=(1, 3 * hidden, inputs)),
        "R": rng.uniform(-scale, scale, size=(1, 3 * hidden, hidden)),
        "B": rng.uniform(-scale, scale, size=(1, 6 * hidden)) if bias else None,
    }


def _gru_node(name, x, y, weights, hidden, initializers, initial_h="", **attributes):
    names = {}
    for key, value in weights.items():
        if value is not None:
            names[key] = f"{name}_{key}"
            initializers.append(numpy_helper.from_array(value.astype(np.float32), names[key]))
    inputs = [x, names["W"], names["R"], names.get("B", ""), "", initial_h]
    while inputs and inputs[-1] == "":
        inputs.pop()
    attributes.setdefault("linear_before_reset", 1)
    return helper.make_node("GRU", inputs, [y], name=name, hidden_size=hidden, **attributes)


@pytest.mark.parametrize("layout", [0, 1])
def test_a_gru_node_with_its_initial_h_as_a_graph_input_in_either_layout(layout):
    rng = np.random.default_rng(10)
    inputs, hidden, steps = 7, 12, 10
    weights = _gru_weights(rng, inputs, hidden)

    def model(layout):
        initializers = []
        node = _gru_node("gru", "x", "y", weights, hidden, initializers, "h0", layout=layout)
        shapes = ([[steps, 1, inputs], [1, 1, hidden], [steps, 1, 1, hidden]] if layout == 0
                  else [[1, steps, inputs], [1, 1, hidden], [1, steps, 1, hidden]])
        return _model([node], [_value("x", shapes[0]), _value("h0", shapes[1])],
                      [_value("y", shapes[2])], initializers)

    x = frames(steps, inputs, seed=2)
    h0 = rng.uniform(-0.8, 0.8, size=hidden)
    expected = _run(model(0), {"x": x[:, None], "h0": h0[None, None]})[0][:, 0, 0]
    program = ese.compile(model(layout), ese.Config(pes=4))
    assert program.metadata["state_inputs"] == [["h0", None]]
    assert np.abs(program.predict(x, state=h0[None]) - expected).max() < FLOAT_TOLERANCE
    assert np.abs(program.predict(x) - expected).max() > 10 * FLOAT_TOLERANCE


def test_an_lstm_node_chained_into_a_gru_node():
    """One graph, one program, one hardware: an LSTM layer whose Y a GRU layer reads."""
    rng = np.random.default_rng(11)
    initializers = []
    first = _lstm_node("lstm", "x", "y1", _lstm_weights(rng, 6, 10, True), 10, initializers)
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    initializers.append(axes)
    squeeze = helper.make_node("Squeeze", ["y1", "axes"], ["x2"], name="squeeze")
    second = _gru_node("gru", "x2", "y2", _gru_weights(rng, 10, 8), 8, initializers)
    model = _model([first, squeeze, second], [_value("x", [12, 1, 6])],
                   [_value("y2", [12, 1, 1, 8])], initializers)
    assert recurrent_nodes(model) == ["lstm", "gru"]
    x = frames(12, 6, seed=3)
    expected = _run(model, {"x": x[:, None]})[0][:, 0, 0]
    program = ese.compile(model, ese.Config(pes=4), density=0.6)
    assert [layer.kind for layer in program.model.layers] == ["lstm", "gru"]
    assert program.metadata["source"] == "ONNX LSTM and GRU lstm, gru"
    dense = ese.compile(model, ese.Config(pes=4))
    assert np.abs(dense.predict(x) - expected).max() < FLOAT_TOLERANCE
    assert np.abs(program.predict(x) - program.float_reference(x)).max() < FLOAT_TOLERANCE


def test_sequence_lens_is_refused_naming_it():
    """ONNX zeroes the steps past a sequence's length; the accelerator runs every frame."""
    rng = np.random.default_rng(13)
    initializers = []
    node = _gru_node("gru", "x", "y", _gru_weights(rng, 4, 6), 6, initializers)
    node.input.extend(["lengths"])          # X, W, R, B, sequence_lens
    model = _model([node], [_value("x", [5, 1, 4]),
                            helper.make_tensor_value_info("lengths", TensorProto.INT32, [1])],
                   [_value("y", None)], initializers)
    with pytest.raises(ese.UnsupportedModelError, match="sequence_lens"):
        ese.compile(model, ese.Config(pes=2))


@pytest.mark.parametrize("attributes, message", [
    ({"linear_before_reset": 0}, "linear_before_reset=0 .*is PyTorch's torch.nn.GRU"),
    ({"direction": "reverse"}, "GRU node gru: attribute direction='reverse'"),
    ({"activations": ["Sigmoid", "Relu"]}, "activations="),
    ({"clip": 2.0}, "clip=2.0"),
])
def test_what_a_gru_node_needs_that_the_hardware_lacks_is_refused(attributes, message):
    rng = np.random.default_rng(12)
    initializers = []
    node = _gru_node("gru", "x", "y", _gru_weights(rng, 4, 6), 6, initializers, **attributes)
    model = _model([node], [_value("x", [5, 1, 4])], [_value("y", None)], initializers)
    with pytest.raises(ese.UnsupportedModelError, match=message):
        ese.compile(model, ese.Config(pes=2))


# Graphs as exporters write them: the weights computed from initializers by other operators.

@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
@pytest.mark.parametrize("make", [lambda: nn.LSTM(5, 8, num_layers=2),
                                  lambda: nn.GRU(5, 8, num_layers=2)], ids=["lstm", "gru"])
def test_both_pytorch_exporters_write_graphs_ese_reads(make, dynamo, tmp_path):
    """torch.onnx.export's two exporters: the TorchScript one builds zero initial states from
    Shape, Gather and Expand; the dynamo one (onnxscript) writes W, R and B through
    Transpose, Reshape and Concat nodes. Both compile and agree with onnxruntime and with
    PyTorch's own forward pass."""
    torch.manual_seed(3)
    module = make().eval()
    x = frames(12, 5, seed=4)
    path = tmp_path / "model.onnx"
    torch.onnx.export(module, (torch.zeros(12, 1, 5),), str(path), dynamo=dynamo,
                      input_names=["x"])
    model = onnx.load(str(path))
    expected = _run(model, {model.graph.input[0].name: x[:, None]})[0].reshape(12, -1)
    with torch.no_grad():
        reference = module(torch.tensor(x, dtype=torch.float32))[0].numpy()
    program = ese.compile(path, ese.Config(pes=4))
    assert len(program.model.layers) == 2
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.float_reference(x) - reference).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::FutureWarning")
def test_the_dynamo_exporters_lstm_with_projection_is_refused_naming_why(tmp_path):
    """ONNX's LSTM has no projection: torch.onnx.export(dynamo=True) writes an nn.LSTM with
    proj_size as an LSTM of proj_size cells whose initial_c has hidden_size values, which
    onnxruntime cannot run either."""
    path = tmp_path / "lstmp.onnx"
    torch.onnx.export(nn.LSTM(3, 6, proj_size=2).eval(), (torch.zeros(4, 1, 3),), str(path),
                      dynamo=True)
    with pytest.raises(ese.UnsupportedModelError, match="initial_c .*ONNX's LSTM has no "
                                                        "projection"):
        ese.compile(path, ese.Config(pes=2))


def _through(op, value, name, nodes, initializers):
    """Nodes that compute ``value`` (float32) from an initializer through the operator
    ``op``; returns the name of their output."""
    value = value.astype(np.float32)
    constant = lambda array, suffix: initializers.append(  # noqa: E731
        numpy_helper.from_array(np.asarray(array), f"{name}_{suffix}")) or f"{name}_{suffix}"
    if op == "Unsqueeze":
        source = constant(value[0], "source")
        inputs = [source, constant(np.array([0], dtype=np.int64), "axes")]
    elif op == "Squeeze":
        source = constant(value[None], "source")
        inputs = [source, constant(np.array([0], dtype=np.int64), "axes")]
    elif op == "Reshape":
        source = constant(value.ravel(), "source")
        inputs = [source, constant(np.array(value.shape, dtype=np.int64), "shape")]
    elif op == "Transpose":
        perm = list(reversed(range(value.ndim)))
        source = constant(np.ascontiguousarray(value.transpose(perm)), "source")
        nodes.append(helper.make_node(op, [source], [name], perm=perm))
        return name
    elif op == "Concat":
        half = value.shape[1] // 2
        inputs = [constant(value[:, :half], "first"), constant(value[:, half:], "second")]
        nodes.append(helper.make_node(op, inputs, [name], axis=1))
        return name
    elif op == "Slice":
        padded = np.concatenate([value, np.ones((1, 3) + value.shape[2:], np.float32)], axis=1)
        inputs = [constant(padded, "source"), constant(np.array([0], dtype=np.int64), "starts"),
                  constant(np.array([value.shape[1]], dtype=np.int64), "ends"),
                  constant(np.array([1], dtype=np.int64), "axes")]
    elif op == "Cast":
        source = constant(value.astype(np.float64), "source")
        nodes.append(helper.make_node(op, [source], [name], to=TensorProto.FLOAT))
        return name
    nodes.append(helper.make_node(op, inputs, [name]))
    return name


@pytest.mark.parametrize("op", ["Unsqueeze", "Reshape", "Concat", "Slice", "Transpose",
                                "Squeeze", "Cast"])
def test_weights_computed_from_initializers_are_evaluated(op):
    """W, R and B each come out of an ``op`` node over initializers; onnx's reference
    evaluator computes them before import."""
    rng = np.random.default_rng(5)
    inputs, hidden, steps = 6, 8, 10
    weights = _lstm_weights(rng, inputs, hidden, peepholes=False)
    nodes, initializers = [], []
    names = [_through(op, weights[key], f"lstm_{key}", nodes, initializers)
             for key in ("W", "R", "B")]
    nodes.append(helper.make_node("LSTM", ["x", *names], ["y"], name="lstm",
                                  hidden_size=hidden))
    model = _model(nodes, [_value("x", [steps, 1, inputs])], [_value("y", [steps, 1, 1, hidden])],
                   initializers)
    x = frames(steps, inputs, seed=6)
    expected = _run(model, {"x": x[:, None]})[0][:, 0, 0]
    program = ese.compile(model, ese.Config(pes=4))
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


def test_weights_computed_inside_an_if_branch_are_evaluated():
    """An If whose then-branch holds a GRU node (as exporters nest them), its W and R made
    there by Unsqueeze from the outer graph's initializers and its B by a Concat inside the
    branch; the branch reads x from the outer graph."""
    rng = np.random.default_rng(8)
    inputs, hidden, steps = 5, 6, 9
    weights = _gru_weights(rng, inputs, hidden)
    nodes, initializers = [], []
    names = [_through(op, weights[key], f"gru_{key}", nodes, initializers)
             for key, op in (("W", "Unsqueeze"), ("R", "Unsqueeze"), ("B", "Concat"))]
    branch_nodes = nodes
    branch_nodes.append(helper.make_node("GRU", ["x", *names], ["y_then"], name="gru",
                                         hidden_size=hidden, linear_before_reset=1))
    then_branch = helper.make_graph(branch_nodes, "then_branch", [],
                                    [_value("y_then", [steps, 1, 1, hidden])])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["zeros"], ["y_else"])], "else_branch", [],
        [_value("y_else", [steps, 1, 1, hidden])])
    initializers.append(numpy_helper.from_array(np.array(True), "cond"))
    initializers.append(numpy_helper.from_array(np.zeros((steps, 1, 1, hidden), np.float32),
                                                "zeros"))
    choose = helper.make_node("If", ["cond"], ["y"], name="choose", then_branch=then_branch,
                              else_branch=else_branch)
    model = _model([choose], [_value("x", [steps, 1, inputs])],
                   [_value("y", [steps, 1, 1, hidden])], initializers)
    x = frames(steps, inputs, seed=9)
    expected = _run(model, {"x": x[:, None]})[0][:, 0, 0]
    program = ese.compile(model, ese.Config(pes=4), node="choose.then_branch/gru")
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


def test_weights_that_depend_on_a_graph_input_are_refused_naming_it():
    rng = np.random.default_rng(2)
    weights = _lstm_weights(rng, 4, 5, peepholes=False)
    initializers = []
    node = _lstm_node("lstm", "x", "y", weights, 5, initializers)
    node.input[1] = "scaled_W"
    scale = helper.make_node("Mul", ["lstm_W", "gain"], ["scaled_W"])
    model = _model([scale, node], [_value("x", [6, 1, 4]), _value("gain", [1])],
                   [_value("y", [6, 1, 1, 5])], initializers)
    with pytest.raises(ese.UnsupportedModelError,
                       match="its W 'scaled_W' depends on 'gain', which is not a constant"):
        ese.compile(model, ese.Config(pes=2))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
@pytest.mark.parametrize("make", [lambda: nn.LSTM(5, 8, num_layers=2, bidirectional=True),
                                  lambda: nn.GRU(5, 8, num_layers=2, bidirectional=True)],
                         ids=["bilstm", "bigru"])
def test_bidirectional_nodes_are_a_forward_and_a_backward_half(make, dynamo, tmp_path):
    """direction='bidirectional': W, R, B hold the forward direction, then the reverse one;
    Y's two directions, concatenated by the exporter's Transpose and Reshape, are the next
    node's input, as PyTorch's two halves are."""
    torch.manual_seed(6)
    module = make().eval()
    path = tmp_path / "bidirectional.onnx"
    torch.onnx.export(module, (torch.zeros(12, 1, 5),), str(path), dynamo=dynamo,
                      input_names=["x"])
    model = onnx.load(str(path))
    x = frames(12, 5, seed=7)
    expected = _run(model, {model.graph.input[0].name: x[:, None]})[0].reshape(12, -1)
    program = ese.compile(path, ese.Config(pes=4))
    assert [layer.direction for layer in program.model.layers] == ["forward", "backward"] * 2
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning")
def test_a_bidirectional_rnn_node_lists_an_activation_per_direction():
    torch.manual_seed(7)
    model = _exported(nn.RNN(5, 8, bidirectional=True).eval(), 10, 5)
    x = frames(10, 5, seed=8)
    expected = _run(model, {"x": x[:, None]})[0].reshape(10, -1)
    program = ese.compile(model, ese.Config(pes=4))
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
