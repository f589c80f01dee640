"""Front ends: PyTorch models as people save them, read into the same description.

A model that is more than its LSTM (an encoder with a classifier head) comes as a live module,
a ``state_dict`` (in memory, a file, a training checkpoint), a TorchScript archive (scripted
or traced), a ``torch.export`` program (in memory and as ``.pt2``) and a pickled module. Each
must compile the picked submodule to exactly the program that compiling the submodule itself
gives (the same integer weights and formats); files are told apart by their content, not their
names. The float reference is held to PyTorch's own forward pass, and the description-level
pruning of ``ese.compile`` to the module pruning that training uses.
"""

import numpy as np
import pytest
import torch
from torch import nn

import ese
from ese.sw.compiler.frontends import recurrent_parts

from helpers import FLOAT_TOLERANCE, frames, pruned_like

CONFIG = ese.Config(pes=4)


class Encoder(nn.Module):
    """An LSTMP stack with a classifier head: the LSTM is one submodule among others."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(6, 10, num_layers=2, proj_size=4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


class Stacked(nn.Module):
    """Two recurrent submodules in a chain (an LSTM into a GRU) and a head."""

    def __init__(self):
        super().__init__()
        self.first = nn.LSTM(6, 8)
        self.second = nn.GRU(8, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        y, _ = self.first(x)
        y, _ = self.second(y)
        return self.head(y)


def _same_program(program, expected):
    assert len(program.model.layers) == len(expected.model.layers)
    assert all(a.equals(b) for a, b in zip(program.model.layers, expected.model.layers))


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder().eval()


@pytest.fixture(scope="module")
def expected(encoder):
    return ese.compile(encoder.rnn, CONFIG, density=0.5)


def test_a_submodule_of_a_live_model_is_picked_by_name(encoder, expected):
    with pytest.raises(ese.UnsupportedModelError,
                       match="Encoder is not itself a recurrent layer; its recurrent "
                             "submodules are 'rnn': pick one.*submodule="):
        ese.compile(encoder, CONFIG)
    program = ese.compile(encoder, CONFIG, density=0.5, submodule="rnn")
    _same_program(program, expected)
    with pytest.raises(ese.UnsupportedModelError, match="no submodule 'encoder'; its "
                                                        "recurrent submodules are 'rnn'"):
        ese.compile(encoder, CONFIG, submodule="encoder")
    with pytest.raises(ese.UnsupportedModelError, match="Linear is not supported"):
        ese.compile(encoder, CONFIG, submodule="head")
    assert recurrent_parts(encoder) == ["rnn"]


@pytest.mark.parametrize("form", ["in memory", "file", "checkpoint", "file named .onnx"])
def test_a_state_dict_compiles_as_its_module(encoder, expected, form, tmp_path):
    state = encoder.state_dict()
    if form == "in memory":
        model = state
    else:
        path = tmp_path / ("model.onnx" if form.endswith(".onnx") else "model.pt")
        torch.save({"epoch": 3, "model_state_dict": state} if form == "checkpoint" else state,
                   path)
        model = path
    with pytest.raises(ese.UnsupportedModelError,
                       match="recurrent modules 'rnn' and other parameters "
                             r"\(head.weight, head.bias\); pick one"):
        ese.compile(model, CONFIG)
    program = ese.compile(model, CONFIG, density=0.5, submodule="rnn")
    _same_program(program, expected)
    assert recurrent_parts(model) == ["rnn"]


def test_a_state_dict_of_the_layer_alone_needs_no_name(tmp_path):
    torch.manual_seed(1)
    for module in (nn.GRU(5, 7, num_layers=2), nn.LSTMCell(5, 7), nn.GRUCell(5, 7),
                   ese.PeepholeLSTM(5, 9, proj_size=4, num_layers=2)):
        module.eval()
        torch.save(module.state_dict(), tmp_path / "layer.pt")
        _same_program(ese.compile(tmp_path / "layer.pt", CONFIG), ese.compile(module, CONFIG))


@pytest.mark.parametrize("make", [torch.jit.script,
                                  lambda m: torch.jit.trace(m, torch.zeros(5, 1, 6))],
                         ids=["scripted", "traced"])
def test_a_torchscript_archive_compiles_without_running_its_code(encoder, expected, make,
                                                                  tmp_path):
    path = tmp_path / "encoder.pt"
    torch.jit.save(make(encoder), str(path))
    assert recurrent_parts(path) == ["rnn"]
    _same_program(ese.compile(path, CONFIG, density=0.5, submodule="rnn"), expected)
    _same_program(ese.compile(torch.jit.load(str(path)), CONFIG, density=0.5,
                              submodule="rnn"), expected)
    with pytest.raises(ese.UnsupportedModelError, match="pick one"):
        ese.compile(path, CONFIG)


def test_a_torch_export_program_compiles_in_memory_and_as_pt2(encoder, expected, tmp_path):
    program = torch.export.export(encoder, (torch.zeros(5, 1, 6),))
    path = tmp_path / "encoder.pt2"
    torch.export.save(program, str(path))
    for model in (program, path):
        assert recurrent_parts(model) == ["rnn"]
        _same_program(ese.compile(model, CONFIG, density=0.5, submodule="rnn"), expected)


def test_a_pickled_module_needs_trust_pickle(encoder, expected, tmp_path):
    path = tmp_path / "encoder.pt"
    torch.save(encoder, path)
    with pytest.raises(ese.UnsupportedModelError,
                       match="runs code from the file; if you trust it, pass "
                             r"trust_pickle=True \(ese compile --trust-pickle\)"):
        ese.compile(path, CONFIG, submodule="rnn")
    _same_program(ese.compile(path, CONFIG, density=0.5, submodule="rnn", trust_pickle=True),
                  expected)


def test_a_chain_of_submodules_is_a_stack_of_layers(tmp_path):
    torch.manual_seed(2)
    model = Stacked().eval()
    assert recurrent_parts(model) == ["first", "second"]
    x = frames(20, 6, seed=5)
    with torch.no_grad():
        hidden, _ = model.first(torch.tensor(x, dtype=torch.float32))
        reference = model.second(hidden)[0].numpy()
    for source in (model, model.state_dict()):
        program = ese.compile(source, CONFIG, submodule=["first", "second"])
        assert [layer.kind for layer in program.model.layers] == ["lstm", "gru"]
        assert np.abs(program.float_reference(x) - reference).max() < 1e-5
        assert np.abs(program.predict(x) - reference).max() < FLOAT_TOLERANCE


def test_the_file_content_not_its_name_decides(encoder, tmp_path):
    """A state_dict named .onnx reads as a state_dict (above); an ONNX file named .pt reads
    as ONNX; a file of neither is refused naming what ese reads."""
    path = tmp_path / "model.pt"
    torch.onnx.export(nn.GRU(3, 4).eval(), (torch.zeros(5, 1, 3),), str(path), dynamo=False)
    assert ese.compile(path, CONFIG).model.layers[0].kind == "gru"
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(ese.UnsupportedModelError, match="is neither an ONNX model nor a file of "
                                                        "torch.save, torch.jit.save"):
        ese.compile(tmp_path / "notes.pt", CONFIG)


def test_the_options_of_one_front_end_are_refused_by_another(encoder):
    with pytest.raises(ese.ConfigError, match="node= picks a recurrent node of an ONNX "
                                              "model; this model is a PyTorch module one"):
        ese.compile(encoder, CONFIG, node="rnn")


@pytest.mark.parametrize("make", [
    lambda: nn.LSTM(6, 12, num_layers=2),
    lambda: nn.LSTM(6, 12, proj_size=5),
    lambda: nn.GRU(6, 12, num_layers=2),
    lambda: nn.GRUCell(6, 12),
    lambda: ese.PeepholeLSTM(6, 12, proj_size=5),
], ids=["lstm", "lstmp", "gru", "grucell", "peephole-lstmp"])
@pytest.mark.parametrize("block_columns", [1, 4])
def test_compile_prunes_as_training_does_and_its_float_reference_is_pytorchs(make,
                                                                           block_columns):
    """``ese.compile(module, density=...)`` prunes the description; training prunes the
    module's parameters (torch.nn.utils.prune through the converter): the same placement
    rule keeps the same weights. The pruned float reference is PyTorch's forward pass of
    the pruned module."""
    torch.manual_seed(4)
    module = make().eval()
    config = ese.Config(pes=4, block_columns=block_columns)
    program = ese.compile(module, config, density=0.3)
    pruned = pruned_like(module, config, 0.3)
    _same_program(program, ese.compile(pruned, config))
    x = frames(15, 6, seed=6)
    with torch.no_grad():
        inputs = torch.tensor(x, dtype=torch.float32)
        if isinstance(pruned, nn.GRUCell):
            h, outputs = torch.zeros(12), []
            for frame in inputs:
                h = pruned(frame, h)
                outputs.append(h)
            reference = torch.stack(outputs).numpy()
        else:
            reference = pruned(inputs)[0].numpy()
    assert np.abs(program.float_reference(x) - reference).max() < 1e-5
