"""Converters: from PyTorch modules to the model description.

A registry maps module types to converters, so supporting a new layer type is one new converter
class. Each converter knows three things about its module type: which options it can map onto
the hardware (:meth:`Converter.check`), which weight matrices are pruned and how their rows are
dealt to PEs (:meth:`Converter.prunable`), and how to read the weights into a
:class:`~ese.sw.compiler.model.ModelDescription` (:meth:`Converter.describe`). It can also run
the float module over one sequence (:meth:`Converter.run_float`), the reference that tests and
reports compare the fixed-point results with.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..contract.errors import UnsupportedModelError
from ..contract.memory_map import GATES, GRU_SLOTS
from .model import LayerDescription, ModelDescription
from .peephole import PeepholeLSTM

__all__ = ["Converter", "PrunableMatrix", "converter_for", "describe", "supported_modules",
           "gru_layer", "gru_prunable", "GRU_INPUT_SLOTS", "GRU_RECURRENT_SLOTS"]

#: The slots (``GRU_SLOTS``) of PyTorch's GRU gate blocks r, z, n: in W_ih n is the
#: candidate's input part n_x, in W_hh its recurrent part n_h.
GRU_INPUT_SLOTS = tuple(GRU_SLOTS.index(name) for name in ("r", "z", "n_x"))
GRU_RECURRENT_SLOTS = tuple(GRU_SLOTS.index(name) for name in ("r", "z", "n_h"))

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


def _stacked_prunable(module):
    """Prunable matrices of a stack named like torch.nn.LSTM (weight_ih_l0, weight_hh_l0, ...)."""
    found = []
    for layer in range(module.num_layers):
        found.append(PrunableMatrix(module, f"weight_ih_l{layer}", module.hidden_size))
        found.append(PrunableMatrix(module, f"weight_hh_l{layer}", module.hidden_size))
        if module.proj_size:
            found.append(PrunableMatrix(module, f"weight_hr_l{layer}", module.proj_size))
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

    def run_float(self, module, frames):
        """Run the module in floating point over one sequence from zero state.

        ``frames`` is a (frames, inputs) numpy array; returns (frames, outputs) float64.
        """
        raise NotImplementedError

    @staticmethod
    def _as_tensor(module, frames):
        parameter = next(module.parameters())
        return torch.as_tensor(np.asarray(frames), dtype=parameter.dtype, device=parameter.device)


@register(nn.LSTM, "torch.nn.LSTM (unidirectional)")
class TorchLSTMConverter(Converter):
    """``torch.nn.LSTM``: any layer count, with or without projection, biases and batch_first."""

    def check(self, module):
        if module.bidirectional:
            raise UnsupportedModelError(
                f"bidirectional LSTMs are not supported: the accelerator runs frames in time "
                f"order only; use bidirectional=False (ese compiles "
                f"{', '.join(supported_modules())})")
        if module.mode != "LSTM":
            raise UnsupportedModelError(f"torch.nn.{module.mode} is not supported; ese compiles "
                                        f"{', '.join(supported_modules())}")
        _check_sizes(module, input_size=module.input_size, hidden_size=module.hidden_size)
        for name, parameter in module.named_parameters():
            _array(parameter[:0], f"torch.nn.LSTM parameter {name}")

    def prunable(self, module):
        return _stacked_prunable(module)

    def describe(self, module):
        layers = []
        for layer in range(module.num_layers):
            get = lambda name: getattr(module, f"{name}_l{layer}", None)
            bias = np.zeros(4 * module.hidden_size)
            if module.bias:
                bias = _array(get("bias_ih"), "bias_ih") + _array(get("bias_hh"), "bias_hh")
            layers.append(LayerDescription(
                input_weights=_array(get("weight_ih"), f"weight_ih_l{layer}"),
                recurrent_weights=_array(get("weight_hh"), f"weight_hh_l{layer}"),
                bias=bias,
                projection=_array(get("weight_hr"), f"weight_hr_l{layer}")
                if module.proj_size else None))
        return ModelDescription(layers, source="torch.nn.LSTM")

    def run_float(self, module, frames):
        with torch.no_grad():
            output, _ = module(self._as_tensor(module, frames))   # unbatched (time, features)
        return output.to(torch.float64).cpu().numpy()


@register(nn.LSTMCell, "torch.nn.LSTMCell")
class TorchLSTMCellConverter(Converter):
    """``torch.nn.LSTMCell``: one layer without projection; the output is h."""

    def check(self, module):
        _check_sizes(module, input_size=module.input_size, hidden_size=module.hidden_size)
        for name, parameter in module.named_parameters():
            _array(parameter[:0], f"torch.nn.LSTMCell parameter {name}")

    def prunable(self, module):
        return [PrunableMatrix(module, "weight_ih", module.hidden_size),
                PrunableMatrix(module, "weight_hh", module.hidden_size)]

    def describe(self, module):
        bias = np.zeros(4 * module.hidden_size)
        if module.bias:
            bias = _array(module.bias_ih, "bias_ih") + _array(module.bias_hh, "bias_hh")
        layer = LayerDescription(input_weights=_array(module.weight_ih, "weight_ih"),
                                 recurrent_weights=_array(module.weight_hh, "weight_hh"),
                                 bias=bias)
        return ModelDescription([layer], source="torch.nn.LSTMCell")

    def run_float(self, module, frames):
        inputs = self._as_tensor(module, frames)
        h = inputs.new_zeros(module.hidden_size)
        c = inputs.new_zeros(module.hidden_size)
        outputs = []
        with torch.no_grad():
            for frame in inputs:
                h, c = module(frame, (h, c))
                outputs.append(h)
        return torch.stack(outputs).to(torch.float64).cpu().numpy()


@register(PeepholeLSTM, "ese.PeepholeLSTM")
class PeepholeLSTMConverter(Converter):
    """``ese.PeepholeLSTM``: peepholes, optional projection, any layer count."""

    def check(self, module):
        for name, parameter in module.named_parameters():
            _array(parameter[:0], f"PeepholeLSTM parameter {name}")

    def prunable(self, module):
        return _stacked_prunable(module)

    def describe(self, module):
        layers = []
        for layer in range(module.num_layers):
            p = module.layer_parameters(layer)
            bias = (_array(p["bias"], f"bias_l{layer}") if p["bias"] is not None
                    else np.zeros(4 * module.hidden_size))
            layers.append(LayerDescription(
                input_weights=_array(p["input_weights"], f"weight_ih_l{layer}"),
                recurrent_weights=_array(p["recurrent_weights"], f"weight_hh_l{layer}"),
                bias=bias,
                peephole=_array(p["peephole"], f"weight_peephole_l{layer}"),
                projection=_array(p["projection"], f"weight_hr_l{layer}")))
        return ModelDescription(layers, source="ese.PeepholeLSTM")

    def run_float(self, module, frames):
        with torch.no_grad():
            output, _ = module(self._as_tensor(module, frames))
        return output.to(torch.float64).cpu().numpy()


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


def gru_prunable(module, names, hidden):
    """A GRU's W_ih and W_hh of ``hidden`` units, named ``names`` (pairs), dealt to the PEs
    in rotated slots."""
    found = []
    for input_name, recurrent_name in names:
        found.append(PrunableMatrix(module, input_name, hidden, GRU_INPUT_SLOTS, rotated=True))
        found.append(PrunableMatrix(module, recurrent_name, hidden, GRU_RECURRENT_SLOTS,
                                    rotated=True))
    return found


@register(nn.GRU, "torch.nn.GRU (unidirectional)")
class TorchGRUConverter(Converter):
    """``torch.nn.GRU``: any layer count, with or without biases and batch_first."""

    def check(self, module):
        if module.bidirectional:
            raise UnsupportedModelError(
                "bidirectional GRUs are not supported: the accelerator runs frames in time "
                f"order only; use bidirectional=False (ese compiles "
                f"{', '.join(supported_modules())})")
        _check_sizes(module, input_size=module.input_size, hidden_size=module.hidden_size)
        for name, parameter in module.named_parameters():
            _array(parameter[:0], f"torch.nn.GRU parameter {name}")

    def prunable(self, module):
        return gru_prunable(module, [(f"weight_ih_l{layer}", f"weight_hh_l{layer}")
                                     for layer in range(module.num_layers)], module.hidden_size)

    def describe(self, module):
        layers = []
        for layer in range(module.num_layers):
            get = lambda name: getattr(module, f"{name}_l{layer}", None)
            layers.append(gru_layer(
                _array(get("weight_ih"), f"weight_ih_l{layer}"),
                _array(get("weight_hh"), f"weight_hh_l{layer}"),
                _array(get("bias_ih"), f"bias_ih_l{layer}") if module.bias else None,
                _array(get("bias_hh"), f"bias_hh_l{layer}") if module.bias else None))
        return ModelDescription(layers, source="torch.nn.GRU")

    def run_float(self, module, frames):
        with torch.no_grad():
            output, _ = module(self._as_tensor(module, frames))   # unbatched (time, features)
        return output.to(torch.float64).cpu().numpy()


@register(nn.GRUCell, "torch.nn.GRUCell")
class TorchGRUCellConverter(Converter):
    """``torch.nn.GRUCell``: one GRU layer; the output is h."""

    def check(self, module):
        _check_sizes(module, input_size=module.input_size, hidden_size=module.hidden_size)
        for name, parameter in module.named_parameters():
            _array(parameter[:0], f"torch.nn.GRUCell parameter {name}")

    def prunable(self, module):
        return gru_prunable(module, [("weight_ih", "weight_hh")], module.hidden_size)

    def describe(self, module):
        layer = gru_layer(_array(module.weight_ih, "weight_ih"),
                          _array(module.weight_hh, "weight_hh"),
                          _array(module.bias_ih, "bias_ih") if module.bias else None,
                          _array(module.bias_hh, "bias_hh") if module.bias else None)
        return ModelDescription([layer], source="torch.nn.GRUCell")

    def run_float(self, module, frames):
        inputs = self._as_tensor(module, frames)
        h = inputs.new_zeros(module.hidden_size)
        outputs = []
        with torch.no_grad():
            for frame in inputs:
                h = module(frame, h)
                outputs.append(h)
        return torch.stack(outputs).to(torch.float64).cpu().numpy()
