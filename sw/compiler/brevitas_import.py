"""Brevitas import: quantization-aware-trained ``QuantLSTM`` and ``QuantRNN`` layers.

``ese.compile(module, cfg)`` takes a ``brevitas.nn.QuantLSTM`` or ``QuantRNN`` (or a model
holding one, picked with ``submodule=``), an optional extra (``pip install
'ese-lstm[brevitas]'``). Each layer's weights are read through its own weight quantizers
(``quant_weight()``): the description holds the trained integer weights times their scales,
exactly, and notes each matrix's quantizer (``notes["trained_weights"]``: bit width and scale).
The compiler then chooses each matrix's format from those values as for any model; where the
scale is a power of two and the bit width fits ``Config.weight_bits``, the finest format that
holds them is on their grid, so the integers land there exactly with no second rounding; where
it is not (a float scale, per-channel scales, or a format the accumulator grid coarsens), the
weights are requantized and the report says by how much (``report.requantized``: each matrix's
largest difference from the trained weights), as it says what saturated.

What differs from Brevitas' own forward pass, by design: Brevitas quantizes the inputs, the
gate sums, the sigmoid and tanh outputs and the cell state to its activation quantizers (8
bits by default: ``io_quant``, ``gate_acc_quant``, ``sigmoid_quant``, ``tanh_quant``,
``cell_state_quant``); the hardware keeps its own formats (``Config.activation_bits`` and
``cell_bits``, 16 by default) and evaluates sigmoid and tanh by its interpolated tables. The
biases are taken in float and rounded to the bias format (Brevitas' ``Int32Bias`` quantizes
them at run time with the input's scale). So the program follows Brevitas' float-weight
equations with its trained weights more closely than Brevitas' 8-bit activations do, and the
tests state the tolerance against Brevitas' forward pass from those activations' step.

The weights map as ``torch.nn.LSTM``'s do: the gate parameters ``input_gate_params``,
``forget_gate_params``, ``cell_gate_params``, ``output_gate_params`` are the description's i, f,
g, o; a ``QuantRNN``'s ``gate_params`` its n_x slot (:func:`~.converters.rnn_layer`).
A bidirectional module's second direction (Brevitas' ``reverse_input``) is each layer's backward
half. Coupled input and forget gates (``coupled_input_forget_gates``) and a ``QuantRNN`` with
``nonlinearity="relu"`` are refused by name.
"""

import numpy as np

from ..contract.errors import UnsupportedModelError
from .converters import rnn_layer
from .model import LayerDescription, ModelDescription

__all__ = ["is_brevitas_recurrent", "describe_brevitas"]

#: The Brevitas recurrent classes ese reads, by name.
BREVITAS_RECURRENT = ("QuantLSTM", "QuantRNN")
_LSTM_GATES = ("input_gate_params", "forget_gate_params", "cell_gate_params",
               "output_gate_params")


def is_brevitas_recurrent(module):
    """Whether ``module`` is a Brevitas ``QuantLSTM`` or ``QuantRNN`` (without importing
    brevitas)."""
    return (type(module).__module__.split(".")[0] == "brevitas"
            and type(module).__name__ in BREVITAS_RECURRENT)


def _weights(weight, name, trained):
    """A Brevitas ``GateWeight``'s quantized values (float64), its quantizer noted."""
    quantized = weight.quant_weight()
    values = quantized.value.detach().to("cpu").double().numpy()
    scale = quantized.scale.detach().to("cpu").double().numpy()
    exponent = np.log2(scale)
    trained[name] = {
        "bits": int(quantized.bit_width.item()),
        "scale": (f"2^{int(np.rint(exponent.flat[0]))}"
                  if scale.size == 1 and exponent.flat[0] == np.rint(exponent.flat[0])
                  else float(scale.flat[0]) if scale.size == 1 else "per channel"),
    }
    return values


def _bias(params):
    bias = params.bias
    return None if bias is None else bias.detach().to("cpu").double().numpy()


def _describe_layer(layer, kind, what, index, trained):
    """One direction of one layer (Brevitas' ``_QuantLSTMLayer`` or ``_QuantRNNLayer``)."""
    if kind == "QuantRNN":
        if type(layer.cell.act_fn).__name__ != "Tanh":
            raise UnsupportedModelError(
                f"{what} has nonlinearity={type(layer.cell.act_fn).__name__.lower()!r}: the "
                f"cell unit's tables are sigmoid and tanh; use nonlinearity='tanh'")
        params = layer.gate_params
        return rnn_layer(
            _weights(params.input_weight, f"layer{index}.input_weights", trained),
            _weights(params.hidden_weight, f"layer{index}.recurrent_weights", trained),
            _bias(params))
    if getattr(layer, "cifg", False):
        raise UnsupportedModelError(
            f"{what} couples its input and forget gates (coupled_input_forget_gates=True), "
            f"which the hardware does not compute; train it with separate gates")
    gates = [getattr(layer, name) for name in _LSTM_GATES]
    parts = {}
    for part, attribute in (("input_weights", "input_weight"),
                            ("recurrent_weights", "hidden_weight")):
        per_gate = {}
        parts[part] = np.concatenate([
            _weights(getattr(gate, attribute), f"{part}.{name}", per_gate)
            for gate, name in zip(gates, "ifgo")])
        grids = {str(v) for v in per_gate.values()}
        trained[f"layer{index}.{part}"] = (next(iter(per_gate.values())) if len(grids) == 1
                                           else {"bits": max(v["bits"]
                                                             for v in per_gate.values()),
                                                 "scale": "per gate"})
    biases = [_bias(gate) for gate in gates]
    cells = layer.hidden_size
    return LayerDescription(
        input_weights=parts["input_weights"], recurrent_weights=parts["recurrent_weights"],
        bias=(np.zeros(4 * cells) if any(b is None for b in biases)
              else np.concatenate(biases)))


def describe_brevitas(module, what=None):
    """The :class:`ModelDescription` of a ``QuantLSTM`` or ``QuantRNN`` (see the module's
    documentation)."""
    kind = type(module).__name__
    what = what or f"brevitas.nn.{kind}"
    trained, layers = {}, []
    for directions in module.layers:
        for direction, layer in zip(("forward", "backward"), directions):
            described = _describe_layer(layer, kind, what, len(layers), trained)
            described.direction = direction
            layers.append(described)
    return ModelDescription(layers, source=what, notes={"trained_weights": trained})
