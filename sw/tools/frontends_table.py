"""The table of front ends and layer kinds behind ``ese frontends``: each row a small model of
one framework, compiled, against that framework's own forward pass.

Every row builds its model (seeded) and compiles it for a 4-PE machine: PyTorch's rows pruned
to density 0.5 (load-balanced), the other frameworks' dense, as the framework's own forward
pass runs their weights. It runs the same random frames through the framework (PyTorch,
onnxruntime, Keras, Brevitas),
through the program's float reference (the description's float forward pass,
:func:`ese.sw.compiler.formats.float_forward`) and through the golden model (``predict``). Its
figures are the largest absolute differences of each from the framework's outputs, over the
frames. Pruned rows compare with the framework's model holding the same pruned weights (the
framework's own forward pass on them). With ``rtl`` each program also runs on the generated
RTL in Verilator (a bidirectional model in its passes), and the row says whether every output
word equals ``predict``'s. Rows whose layer kind the hardware does not run (a GRU whose reset
gate comes before its recurrent product) record the refusal's message instead.
"""

import io
import os

import numpy as np

__all__ = ["ROWS", "frontends_table"]

FRAMES = 20
DENSITY = 0.5


def _frames(inputs, seed, scale=1.0):
    return np.random.default_rng(seed).normal(scale=scale, size=(FRAMES, inputs))


def _torch_run(module, x):
    import torch
    from torch import nn
    inputs = torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        if isinstance(module, (nn.LSTMCell, nn.GRUCell, nn.RNNCell)):
            state, outputs = None, []
            for frame in inputs:
                state = module(frame, state)
                outputs.append(state[0] if isinstance(state, tuple) else state)
            return torch.stack(outputs).numpy()
        return module(inputs)[0].numpy()


def _pruned(module, config):
    import copy

    from ..compiler.converters import converter_for
    from ..compiler.pruning import prune_module
    from ..contract.placement import Placement
    module = copy.deepcopy(module)
    prune_module(module, converter_for(module).prunable(module), DENSITY, Placement.of(config))
    return module.eval()


def _pytorch(make):
    """A row of a PyTorch module: compiled pruned, against PyTorch on the pruned module."""
    def row(config):
        import torch
        torch.manual_seed(0)
        module = make().eval()
        program = _compile(module, config, DENSITY)
        x = _frames(program.inputs, 1)
        return program, x, _torch_run(_pruned(module, config), x)
    return row


def _compile(model, config, density=None, **options):
    import ese
    return ese.compile(model, config, density=density, **options)


def _saved(form):
    """An LSTMP inside a model with a head, saved as ``form``, its LSTM picked by name."""
    def row(config):
        import tempfile

        import torch
        from torch import nn

        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.LSTM(6, 16, num_layers=2, proj_size=8)
                self.head = nn.Linear(8, 3)

            def forward(self, x):
                return self.head(self.encoder(x)[0])

        torch.manual_seed(0)
        model = Tagger().eval()
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.pt2" if form == "torch.export" else "model.pt")
            if form == "state_dict":
                torch.save(model.state_dict(), path)
            elif form == "TorchScript":
                torch.jit.save(torch.jit.trace(model, torch.zeros(5, 1, 6)), path)
            else:
                torch.export.save(torch.export.export(model, (torch.zeros(5, 1, 6),)), path)
            program = _compile(path, config, DENSITY, submodule="encoder")
        x = _frames(6, 1)
        return program, x, _torch_run(_pruned(model.encoder, config), x)
    return row


def _onnx(kind):
    def row(config):
        import onnx
        import onnxruntime
        import torch
        from torch import nn
        torch.manual_seed(0)
        if kind == "RNN":
            from onnx import TensorProto, helper, numpy_helper
            rng = np.random.default_rng(0)
            weights = [numpy_helper.from_array(rng.uniform(-0.3, 0.3, size=shape)
                                               .astype(np.float32), name)
                       for name, shape in (("W", (1, 16, 6)), ("R", (1, 16, 16)),
                                           ("B", (1, 32)))]
            graph = helper.make_graph(
                [helper.make_node("RNN", ["x", "W", "R", "B"], ["y"], hidden_size=16)], "rnn",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [FRAMES, 1, 6])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [FRAMES, 1, 1, 16])],
                weights)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                                      ir_version=8)
        else:
            module = {"LSTM": lambda: nn.LSTM(6, 16, num_layers=2),
                      "GRU": lambda: nn.GRU(6, 16, num_layers=2),
                      "biLSTM": lambda: nn.LSTM(6, 16, bidirectional=True)}[kind]().eval()
            buffer = io.BytesIO()
            torch.onnx.export(module, (torch.zeros(FRAMES, 1, 6),), buffer, input_names=["x"],
                              dynamo=kind != "LSTM")
            model = onnx.load_from_string(buffer.getvalue())
        program = _compile(model, config)
        x = _frames(6, 1)
        session = onnxruntime.InferenceSession(model.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        expected = session.run(None, {session.get_inputs()[0].name:
                                      x[:, None].astype(np.float32)})[0]
        return program, x, expected.reshape(FRAMES, -1)
    return row


def _keras(make):
    def row(config):
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((None, 6)), *make(keras.layers)])
        program = _compile(model, config)
        x = _frames(6, 1)
        expected = keras.ops.convert_to_numpy(model(x[None].astype("float32")))[0]
        return program, x, np.asarray(expected)
    return row


def _brevitas(kind, activations):
    def row(config):
        import torch
        from brevitas.nn import QuantLSTM, QuantRNN
        from brevitas.quant import Int8WeightPerTensorFixedPoint
        torch.manual_seed(0)
        options = dict(weight_quant=Int8WeightPerTensorFixedPoint)
        if not activations:
            options.update(io_quant=None, gate_acc_quant=None, bias_quant=None)
            if kind != "QuantRNN":
                options.update(sigmoid_quant=None, tanh_quant=None, cell_state_quant=None)
        module = {"QuantLSTM": lambda: QuantLSTM(6, 16, num_layers=2, **options),
                  "biQuantLSTM": lambda: QuantLSTM(6, 16, bidirectional=True, **options),
                  "QuantRNN": lambda: QuantRNN(6, 16, **options)}[kind]().eval()
        program = _compile(module, config)
        # Inside Brevitas' default input quantizer's range.
        x = np.random.default_rng(1).uniform(-0.9, 0.9, size=(FRAMES, 6))
        return program, x, _torch_run(module, x[:, None])[:, 0]
    return row


def _refused(make):
    def row(config):
        _compile(make(), config)
        raise AssertionError("the hardware was expected to refuse this model")
    return row


def _torch_module(name):
    def make():
        from torch import nn

        import ese
        return {
            "lstm": lambda: nn.LSTM(6, 16, num_layers=2),
            "lstmp": lambda: nn.LSTM(6, 16, num_layers=2, proj_size=8),
            "peephole": lambda: ese.PeepholeLSTM(6, 16, proj_size=8, num_layers=2),
            "gru": lambda: nn.GRU(6, 16, num_layers=2),
            "rnn": lambda: nn.RNN(6, 16, num_layers=2),
            "lstmcell": lambda: nn.LSTMCell(6, 16),
            "grucell": lambda: nn.GRUCell(6, 16),
            "rnncell": lambda: nn.RNNCell(6, 16),
            "bilstm": lambda: nn.LSTM(6, 16, proj_size=8, bidirectional=True),
            "bigru": lambda: nn.GRU(6, 16, bidirectional=True),
        }[name]()
    return make


def _keras_reset_before():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    return keras.Sequential([keras.Input((None, 6)), keras.layers.GRU(16, reset_after=False,
                                                                      return_sequences=True)])


#: (front end, layer kind, reference, row function).
ROWS = [
    ("PyTorch", "LSTM, 2 layers", "PyTorch", _pytorch(_torch_module("lstm"))),
    ("PyTorch", "LSTMP (proj_size), 2 layers", "PyTorch", _pytorch(_torch_module("lstmp"))),
    ("PyTorch", "LSTMP with peepholes (ese.PeepholeLSTM)", "PyTorch",
     _pytorch(_torch_module("peephole"))),
    ("PyTorch", "GRU, 2 layers", "PyTorch", _pytorch(_torch_module("gru"))),
    ("PyTorch", "RNN (tanh), 2 layers", "PyTorch", _pytorch(_torch_module("rnn"))),
    ("PyTorch", "cell modules: LSTMCell", "PyTorch", _pytorch(_torch_module("lstmcell"))),
    ("PyTorch", "cell modules: GRUCell", "PyTorch", _pytorch(_torch_module("grucell"))),
    ("PyTorch", "cell modules: RNNCell", "PyTorch", _pytorch(_torch_module("rnncell"))),
    ("PyTorch state_dict", "LSTMP submodule of a model", "PyTorch", _saved("state_dict")),
    ("TorchScript", "LSTMP submodule (traced archive)", "PyTorch", _saved("TorchScript")),
    ("torch.export", "LSTMP submodule (.pt2)", "PyTorch", _saved("torch.export")),
    ("ONNX", "LSTM, 2 layers (torch.onnx TorchScript exporter)", "onnxruntime",
     _onnx("LSTM")),
    ("ONNX", "GRU, 2 layers (torch.onnx dynamo exporter)", "onnxruntime", _onnx("GRU")),
    ("ONNX", "RNN", "onnxruntime", _onnx("RNN")),
    ("Keras 3", "LSTM", "Keras", _keras(lambda k: [k.LSTM(16, return_sequences=True)])),
    ("Keras 3", "GRU (reset_after=True)", "Keras",
     _keras(lambda k: [k.GRU(16, return_sequences=True)])),
    ("Keras 3", "SimpleRNN", "Keras", _keras(lambda k: [k.SimpleRNN(16, return_sequences=True)])),
    ("Keras 3", "stacked LSTM, GRU; last frame only", "Keras",
     _keras(lambda k: [k.LSTM(16, return_sequences=True), k.GRU(12)])),
    ("Brevitas", "QuantLSTM, 2 layers, weights quantized", "Brevitas",
     _brevitas("QuantLSTM", False)),
    ("Brevitas", "QuantLSTM, 2 layers, 8-bit activations", "Brevitas",
     _brevitas("QuantLSTM", True)),
    ("Brevitas", "QuantRNN, weights quantized", "Brevitas", _brevitas("QuantRNN", False)),
    ("PyTorch", "bidirectional LSTMP", "PyTorch", _pytorch(_torch_module("bilstm"))),
    ("PyTorch", "bidirectional GRU", "PyTorch", _pytorch(_torch_module("bigru"))),
    ("ONNX", "bidirectional LSTM (torch.onnx dynamo exporter)", "onnxruntime",
     _onnx("biLSTM")),
    ("Keras 3", "Bidirectional(LSTM)", "Keras",
     _keras(lambda k: [k.Bidirectional(k.LSTM(12, return_sequences=True))])),
    ("Brevitas", "QuantLSTM, bidirectional, weights quantized", "Brevitas",
     _brevitas("biQuantLSTM", False)),
    ("Keras 3", "GRU (reset_after=False)", "Keras", _refused(_keras_reset_before)),
]


def frontends_table(rtl=False, log=None):
    """Every row's figures, as a JSON-ready list of dicts (see the module's documentation)."""
    import ese

    from ..contract.errors import UnsupportedModelError
    config = ese.Config(pes=4, max_layers=2, input_depth=32, pointer_depth=128,
                        entry_depth=1024, cells_per_pe=32, projections_per_pe=16,
                        cell_depth=128, vector_depth=128)
    found = []
    for front_end, kind, reference, make in ROWS:
        if log:
            log(f"{front_end}: {kind}")
        entry = {"front_end": front_end, "layer": kind, "reference": reference}
        try:
            program, x, expected = make(config)
        except UnsupportedModelError as error:
            entry["refused"] = str(error)
            found.append(entry)
            continue
        predicted = program.predict(x)
        entry.update(
            float_error=float(np.abs(program.float_reference(x) - expected).max()),
            predict_error=float(np.abs(predicted - expected).max()),
            density=round(program.report.density, 3),
            requantized=dict(program.report.requantized))
        if rtl:
            result = program.simulate(x, stall_probability=0.25, seed=1)
            entry["rtl_bitexact"] = bool(result.mismatches == 0 and np.array_equal(
                np.asarray(result.outputs), np.asarray(predicted)))
        found.append(entry)
    return found
