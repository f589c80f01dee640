"""Converters: from PyTorch modules to the model description.

A registry maps module types to converters, so supporting a new layer type is one new converter
class. Each converter knows three things about its module type: which options it can map onto
the hardware (:meth:`Converter.check`), which weight matrices are pruned and how their rows are
dealt to PEs (:meth:`Converter.prunable`, for pruning while training), and how to read the
weights into a :class:`~ese.sw.compiler.model.ModelDescription` (:meth:`Converter.describe`).

PyTorch's parameter names (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``,
``weight_hr_l0``; a cell's without ``_l0``; ``PeepholeLSTM``'s ``bias_l0`` and
``weight_peephole_l0``) map onto the description in one place, :func:`describe_parameters`,
which the live modules' converters and the readers of ``state_dict`` files, TorchScript
archives and ``torch.export`` programs (:mod:`.frontends`) all use.
"""

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..contract.errors import UnsupportedModelError
from ..contract.memory_map import GATES, GRU_SLOTS
from .model import LayerDescription, ModelDescription
from .peephole import PeepholeLSTM

__all__ = ["Converter", "PrunableMatrix", "converter_for", "describe", "supported_modules",
           "gru_layer", "gru_prunable", "rnn_layer", "rnn_prunable", "describe_parameters",
           "GRU_INPUT_SLOTS", "GRU_RECURRENT_SLOTS", "RNN_SLOTS"]

#: The slots (``GRU_SLOTS``) of PyTorch's GRU gate blocks r, z, n: in W_ih n is the
#: candidate's input part n_x, in W_hh its recurrent part n_h.
GRU_INPUT_SLOTS = tuple(GRU_SLOTS.index(name) for name in ("r", "z", "n_x"))
GRU_RECURRENT_SLOTS = tuple(GRU_SLOTS.index(name) for name in ("r", "z", "n_h"))
#: The slot of a simple RNN's W_ih and W_hh: n_x, for both (``STRUCTURAL_ZEROS``).
RNN_SLOTS = (GRU_SLOTS.index("n_x"),)

_REGISTRY = {}


def register(module_type, display_name):
    """Class decorator: make ``cls`` the converter of ``module_type``."""
    def decorate(cls):
        cls.module_type = module_type
        cls.display_name = display_name
        _REGISTRY[module_type] = cls()
        return cls
    return decorate


def supported_modules():
    """Names of the module types that have a converter."""
    return [converter.display_name for converter in _REGISTRY.values()]


def converter_for(module):
    """The converter for ``module``, or :class:`UnsupportedModelError` naming what is supported."""
    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(
            f"ese compiles a torch.nn.Module, not {type(module).__name__}; supported: "
            f"{', '.join(supported_modules())}")
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            converter = _REGISTRY[cls]
            _check_common(module, converter.display_name)
            converter.check(module)
            return converter
    raise UnsupportedModelError(
        f"{type(module).__module__}.{type(module).__name__} is not supported; ese compiles "
        f"{', '.join(supported_modules())}")


def _check_common(module, name):
    """What no converter supports: weights without data, and dropout at inference."""
    for parameter_name, parameter in module.named_parameters():
        if parameter.is_meta:
            raise UnsupportedModelError(
                f"{name} parameter {parameter_name} is on the meta device and has no values; "
                f"load the trained weights (load_state_dict) before compiling")
    dropout = float(getattr(module, "dropout", 0) or 0)
    if module.training and dropout > 0:
        raise UnsupportedModelError(
            f"{name} is in training mode with dropout={dropout}: the accelerator runs "
            f"inference, without dropout; call module.eval() before compiling")


def describe(module):
    """The model description of a supported module."""
    return converter_for(module).describe(module)


@dataclass(frozen=True)
class PrunableMatrix:
    """A weight matrix to prune, and how its rows are dealt to PEs.

    For the stacked gate matrices ``rows_per_group`` is the cell count (row r is gate
    r // cells of cell r mod cells), for a projection it is the number of rows; see
    :meth:`ese.sw.contract.placement.Placement.owners` for the PE each row goes to. A GRU's
    matrices hold three of a cell's four gate slots (``slots``), rotated among the PEs
    (``rotated``).
    """

    owner: nn.Module
    name: str
    rows_per_group: int
    slots: "tuple | None" = None
    rotated: bool = False


def _array(tensor, what):
    if tensor is None:
        return None
    if not torch.is_floating_point(tensor):
        raise UnsupportedModelError(
            f"{what} has dtype {tensor.dtype}; ese compiles floating-point modules "
            f"(float16, bfloat16, float32, float64)")
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


def _check_sizes(module, **sizes):
    for name, value in sizes.items():
        if value < 1:
            raise UnsupportedModelError(
                f"{type(module).__name__} has {name}={value}; every layer needs at least one "
                f"input and one cell")


#: PyTorch's names of a recurrent layer's parameters: role, then ``_l{k}`` for layer k of a
#: stack (absent in a cell) and ``_reverse`` for a bidirectional layer's backward direction.
PARAMETER_NAME = re.compile(r"^(?P<role>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|bias|"
                            r"weight_peephole)(?:_l(?P<layer>\d+))?(?P<reverse>_reverse)?$")
#: Kinds of layer by the gate blocks in W_hh's rows.
_KIND_OF_GATES = {4: "lstm", 3: "gru", 1: "rnn"}


def _suffixes(module):
    """The parameter name suffixes of a stack's directions: "" and, bidirectional, "_reverse"."""
    return ("", "_reverse") if getattr(module, "bidirectional", False) else ("",)


def _stack_parameters(module):
    """A stack's parameters by PyTorch's names, as the module shows them (through any pruning
    mask attached), leaving out those that are None."""
    found = {}
    for layer in range(module.num_layers):
        for suffix in _suffixes(module):
            for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "bias",
                         "weight_peephole"):
                value = getattr(module, f"{role}_l{layer}{suffix}", None)
                if isinstance(value, torch.Tensor):
                    found[f"{role}_l{layer}{suffix}"] = value
    return found


def _cell_parameters(module):
    return {role: getattr(module, role) for role in ("weight_ih", "weight_hh", "bias_ih",
                                                     "bias_hh")
            if isinstance(getattr(module, role, None), torch.Tensor)}


def recurrent_kind(parameters):
    """The kind of recurrent layer ("lstm", "gru" or "rnn") whose parameters, by PyTorch's
    names, ``parameters`` holds (or None): W_hh has 4, 3 or 1 gate blocks of rows."""
    for name, value in parameters.items():
        match = PARAMETER_NAME.match(name)
        if match and match["role"] == "weight_hh" and len(value.shape) == 2:
            projection = parameters.get(name.replace("weight_hh", "weight_hr"))
            hidden = projection.shape[1] if projection is not None else value.shape[1]
            gates, rest = divmod(value.shape[0], hidden) if hidden else (0, 1)
            return None if rest else _KIND_OF_GATES.get(gates)
    return None


def describe_parameters(parameters, what, kind=None):
    """The :class:`ModelDescription` of one PyTorch recurrent module from its parameters.

    ``parameters`` maps PyTorch's names (:data:`PARAMETER_NAME`: ``weight_ih_l0``, ...; a
    cell's ``weight_ih``, ...) to tensors or arrays; ``what`` names the module in messages.
    Each layer's kind follows from W_hh's rows (4 gate blocks: an LSTM, 3: a GRU); ``kind``,
    where the source says it, must agree. An LSTM's biases add up (``bias_ih + bias_hh``, or
    PeepholeLSTM's one ``bias``); its peepholes and projection come along; a GRU's weights go
    through :func:`gru_layer`. A bidirectional stack's ``_reverse`` parameters become each
    layer's backward half, after its forward one (PyTorch's h_n order).
    """
    layers, stacked = {}, set()
    for name, value in parameters.items():
        match = PARAMETER_NAME.match(name)
        if match is None:
            raise UnsupportedModelError(
                f"{what}: parameter {name!r} is not a recurrent layer's (PyTorch names them "
                f"weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_hr_l0)")
        stacked.add(match["layer"] is not None)
        value = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        key = (int(match["layer"] or 0), bool(match["reverse"]))
        layers.setdefault(key, {})[match["role"]] = _array(value, f"{what} parameter {name}")
    bidirectional = any(reverse for _, reverse in layers)
    count = 1 + max(layer for layer, _ in layers)
    if bidirectional and sorted(layers) != [(k, r) for k in range(count) for r in (False, True)]:
        raise UnsupportedModelError(f"{what} has _reverse parameters for some layers only: a "
                                    f"bidirectional stack has both directions in every layer")
    if len(stacked) > 1:
        raise UnsupportedModelError(f"{what} mixes a cell's parameter names (weight_ih) with "
                                    f"a stack's (weight_ih_l0)")
    described = []
    for key in sorted(layers) if bidirectional else [(k, False) for k in range(count)]:
        index, reverse = key
        found = layers.get(key, {})
        missing = [role for role in ("weight_ih", "weight_hh") if role not in found]
        if missing:
            raise UnsupportedModelError(
                f"{what} has no {' or '.join(f'{role}_l{index}' for role in missing)}: "
                f"layer {index} of {len(layers)} is incomplete")
        layer_kind = recurrent_kind({"weight_hh": found["weight_hh"],
                                     **({"weight_hr": found["weight_hr"]}
                                        if "weight_hr" in found else {})})
        if layer_kind is None:
            raise UnsupportedModelError(
                f"{what} layer {index}: weight_hh has shape {found['weight_hh'].shape}, which "
                f"is no LSTM's (4H, H), GRU's (3H, H) or RNN's (H, H)")
        if kind is not None and layer_kind != kind:
            raise UnsupportedModelError(f"{what} layer {index} holds the weights of a "
                                        f"{layer_kind.upper()}, not of a {kind.upper()}")
        direction = "backward" if reverse else "forward"
        if layer_kind == "rnn":
            layer = rnn_layer(found["weight_ih"], found["weight_hh"], found.get("bias_ih"),
                              found.get("bias_hh"))
        elif layer_kind == "gru":
            layer = gru_layer(found["weight_ih"], found["weight_hh"], found.get("bias_ih"),
                              found.get("bias_hh"))
        else:
            rows = found["weight_hh"].shape[0]
            bias = found.get("bias")
            if bias is None:
                bias = (found.get("bias_ih", np.zeros(rows))
                        + found.get("bias_hh", np.zeros(rows)))
            layer = LayerDescription(
                input_weights=found["weight_ih"], recurrent_weights=found["weight_hh"],
                bias=bias, peephole=found.get("weight_peephole"),
                projection=found.get("weight_hr"))
        layer.direction = direction
        described.append(layer)
    return ModelDescription(described, source=what)


def _stacked_prunable(module):
    """Prunable matrices of a stack named like torch.nn.LSTM (weight_ih_l0, weight_hh_l0, ...;
    a bidirectional one's ``_reverse`` ones too)."""
    found = []
    for layer in range(module.num_layers):
        for suffix in _suffixes(module):
            found.append(PrunableMatrix(module, f"weight_ih_l{layer}{suffix}", module.hidden_size))
            found.append(PrunableMatrix(module, f"weight_hh_l{layer}{suffix}", module.hidden_size))
            if module.proj_size:
                found.append(PrunableMatrix(module, f"weight_hr_l{layer}{suffix}",
                                            module.proj_size))
    return found


class Converter:
    """Base class: one instance per supported module type, found through the registry."""

    module_type = None
    display_name = None

    def check(self, module):
        """Raise :class:`UnsupportedModelError` for options the hardware cannot run."""

    def source(self, module):
        """Where a compiled program came from, for its metadata."""
        return self.display_name

    def prunable(self, module):
        """The matrices pruning applies to, as :class:`PrunableMatrix` es."""
        raise NotImplementedError

    def describe(self, module):
        """A :class:`ModelDescription` of the module's current weights."""
        raise NotImplementedError



def gru_layer(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """A GRU layer's description from PyTorch's tensors (as numpy arrays): W_ih (3H, I) and
    W_hh (3H, H) with the gates in the order r, z, n, and the biases b_ih, b_hh (3H) or None.
    The four slots (``GRU_SLOTS``) take r and z with both their biases summed, the
    candidate's input part with b_in and its recurrent part with b_hn."""
    hidden = weight_hh.shape[1] if weight_hh.ndim == 2 else 0
    if (weight_ih.ndim != 2 or weight_hh.ndim != 2 or hidden == 0
            or weight_ih.shape[0] != 3 * hidden or weight_hh.shape[0] != 3 * hidden):
        raise UnsupportedModelError(
            f"a GRU layer's weights are W_ih (3H, inputs) and W_hh (3H, H), not shapes "
            f"{weight_ih.shape} and {weight_hh.shape}")
    inputs = weight_ih.shape[1]
    input_weights = np.zeros((GATES * hidden, inputs))
    recurrent_weights = np.zeros((GATES * hidden, hidden))
    bias = np.zeros(GATES * hidden)
    zero = np.zeros(3 * hidden)
    bias_ih = zero if bias_ih is None else bias_ih
    bias_hh = zero if bias_hh is None else bias_hh
    for block in range(3):
        rows = slice(block * hidden, (block + 1) * hidden)
        into = slice(GRU_INPUT_SLOTS[block] * hidden, (GRU_INPUT_SLOTS[block] + 1) * hidden)
        input_weights[into] = weight_ih[rows]
        bias[into] += bias_ih[rows]
        into = slice(GRU_RECURRENT_SLOTS[block] * hidden,
                     (GRU_RECURRENT_SLOTS[block] + 1) * hidden)
        recurrent_weights[into] = weight_hh[rows]
        bias[into] += bias_hh[rows]
    return LayerDescription(input_weights=input_weights, recurrent_weights=recurrent_weights,
                            bias=bias, kind="gru")


def rnn_layer(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """A simple RNN layer's description (h' = tanh(W_ih x + b_ih + W_hh h + b_hh)) from
    PyTorch's tensors as numpy arrays: W_ih (H, I), W_hh (H, H), biases (H) or None. W, U and
    the biases' sum take the n_x slot; r, z and n_h stay empty (``STRUCTURAL_ZEROS``)."""
    hidden = weight_hh.shape[1] if weight_hh.ndim == 2 else 0
    if (weight_ih.ndim != 2 or weight_hh.ndim != 2 or hidden == 0
            or weight_ih.shape[0] != hidden or weight_hh.shape[0] != hidden):
        raise UnsupportedModelError(
            f"a simple RNN layer's weights are W_ih (H, inputs) and W_hh (H, H), not shapes "
            f"{weight_ih.shape} and {weight_hh.shape}")
    rows = slice(RNN_SLOTS[0] * hidden, (RNN_SLOTS[0] + 1) * hidden)
    input_weights = np.zeros((GATES * hidden, weight_ih.shape[1]))
    recurrent_weights = np.zeros((GATES * hidden, hidden))
    bias = np.zeros(GATES * hidden)
    input_weights[rows], recurrent_weights[rows] = weight_ih, weight_hh
    for part in (bias_ih, bias_hh):
        if part is not None:
            bias[rows] += part
    return LayerDescription(input_weights=input_weights, recurrent_weights=recurrent_weights,
                            bias=bias, kind="rnn")


def rnn_prunable(module, names, hidden):
    """A simple RNN's W_ih and W_hh of ``hidden`` units, named ``names`` (pairs), dealt to
    the PEs as the n_x slot of rotated GRU units."""
    return [PrunableMatrix(module, name, hidden, RNN_SLOTS, rotated=True)
            for pair in names for name in pair]


def gru_prunable(module, names, hidden):
    """A GRU's W_ih and W_hh of ``hidden`` units, named ``names`` (pairs), dealt to the PEs
    in rotated slots."""
    found = []
    for input_name, recurrent_name in names:
        found.append(PrunableMatrix(module, input_name, hidden, GRU_INPUT_SLOTS, rotated=True))
        found.append(PrunableMatrix(module, recurrent_name, hidden, GRU_RECURRENT_SLOTS,
                                    rotated=True))
    return found


def _check_tanh(module, name):
    if module.nonlinearity != "tanh":
        raise UnsupportedModelError(
            f"{name} has nonlinearity={module.nonlinearity!r}: the cell unit's tables are "
            f"sigmoid and tanh, so a simple RNN runs with nonlinearity='tanh' (the default) "
            f"only (ese compiles {', '.join(supported_modules())})")


class _PyTorchRecurrentConverter(Converter):
    """PyTorch's recurrent modules: a stack (``weight_ih_l0``, ... and, bidirectional, their
    ``_reverse`` twins) or a cell (``weight_ih``, ...) of one ``kind`` of layer, read by
    :func:`describe_parameters` and pruned in the kind's slots (a GRU's rotated r, z, n; a
    simple RNN's n_x). A simple RNN runs with tanh only."""

    kind = None          # "lstm", "gru" or "rnn"
    cell = False         # a cell module (one layer, no _l0 in its names)

    @property
    def name(self):
        return self.display_name.split(" ")[0]

    def check(self, module):
        if self.kind == "rnn":
            _check_tanh(module, self.name)
        _check_sizes(module, input_size=module.input_size, hidden_size=module.hidden_size)
        for name, parameter in module.named_parameters():
            _array(parameter[:0], f"{self.name} parameter {name}")

    def prunable(self, module):
        if self.kind == "lstm" and not self.cell:
            return _stacked_prunable(module)
        pairs = ([("weight_ih", "weight_hh")] if self.cell else
                 [(f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}")
                  for layer in range(module.num_layers) for suffix in _suffixes(module)])
        if self.kind == "gru":
            return gru_prunable(module, pairs, module.hidden_size)
        if self.kind == "rnn":
            return rnn_prunable(module, pairs, module.hidden_size)
        return [PrunableMatrix(module, name, module.hidden_size) for pair in pairs
                for name in pair]

    def describe(self, module):
        parameters = _cell_parameters(module) if self.cell else _stack_parameters(module)
        return describe_parameters(parameters, self.name, self.kind)


@register(nn.LSTM, "torch.nn.LSTM")
class TorchLSTMConverter(_PyTorchRecurrentConverter):
    """``torch.nn.LSTM``: any layer count, with or without projection, biases and batch_first,
    either direction or both."""

    kind = "lstm"

    def check(self, module):
        if module.mode != "LSTM":
            raise UnsupportedModelError(f"torch.nn.{module.mode} is not supported; ese compiles "
                                        f"{', '.join(supported_modules())}")
        super().check(module)


@register(nn.LSTMCell, "torch.nn.LSTMCell")
class TorchLSTMCellConverter(_PyTorchRecurrentConverter):
    """``torch.nn.LSTMCell``: one layer without projection; the output is h."""

    kind, cell = "lstm", True


@register(PeepholeLSTM, "ese.PeepholeLSTM")
class PeepholeLSTMConverter(_PyTorchRecurrentConverter):
    """``ese.PeepholeLSTM``: peepholes, optional projection, any layer count."""

    kind = "lstm"


@register(nn.GRU, "torch.nn.GRU")
class TorchGRUConverter(_PyTorchRecurrentConverter):
    """``torch.nn.GRU``: any layer count, with or without biases and batch_first, either
    direction or both."""

    kind = "gru"


@register(nn.GRUCell, "torch.nn.GRUCell")
class TorchGRUCellConverter(_PyTorchRecurrentConverter):
    """``torch.nn.GRUCell``: one GRU layer; the output is h."""

    kind, cell = "gru", True


@register(nn.RNN, "torch.nn.RNN (tanh)")
class TorchRNNConverter(_PyTorchRecurrentConverter):
    """``torch.nn.RNN`` with tanh: any layer count, with or without biases and batch_first,
    either direction or both; each layer runs as a GRU whose update gate is held at zero."""

    kind = "rnn"


@register(nn.RNNCell, "torch.nn.RNNCell (tanh)")
class TorchRNNCellConverter(_PyTorchRecurrentConverter):
    """``torch.nn.RNNCell`` with tanh: one simple RNN layer; the output is h."""

    kind, cell = "rnn", True
