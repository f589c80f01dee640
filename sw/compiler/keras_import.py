"""Keras 3 import: ``LSTM``, ``GRU`` and ``SimpleRNN`` layers become a model the compiler runs.

``ese.compile(model, cfg)`` takes a Keras model (``keras.Sequential`` or a functional model) or
one recurrent layer, or a ``.keras`` file (``model.save``), which keras itself loads
(``keras.saving.load_model``, whose safe mode refuses code in the file). Keras is an optional
extra (``pip install 'ese-lstm[keras]'``), imported only when a Keras model is given; without
TensorFlow its torch backend serves (``KERAS_BACKEND=torch``, which ese sets where nothing
else was chosen before keras is imported).

A model's recurrent layers must form one chain. Where the model holds other layers too (an
embedding, a ``Dense`` head), ``submodule=`` picks the recurrent layer, or chain of layers, by
name, as for a PyTorch model; :func:`recurrent_layers` lists them. Each layer must be what the
hardware computes, per Keras' own definitions (keras/src/layers/rnn/lstm.py, gru.py,
simple_rnn.py): ``activation="tanh"`` and ``recurrent_activation="sigmoid"`` (Keras 3's
defaults), not ``go_backwards``; every layer but the last returns sequences
(``return_sequences=True``); the last may return its last frame only, which the program then
returns too (``Program.predict`` gives (outputs,), as Keras gives (batch, outputs)).

The weights map onto the description exactly:

* LSTM: ``kernel`` (I, 4H), ``recurrent_kernel`` (H, 4H) and ``bias`` (4H) hold the gates in
  the order i, f, c, o, the description's (transposed).
* GRU with ``reset_after=True`` (Keras 3's default): ``kernel`` (I, 3H), ``recurrent_kernel``
  (H, 3H) in the order z, r, h, and ``bias`` (2, 3H), the input and recurrent biases; the
  candidate is tanh(x W_h + b_h + r * (h U_h + b'_h)) and h' = z * h + (1 - z) * n, PyTorch's
  GRU, whose r, z, n order :func:`~ese.sw.compiler.converters.gru_layer` takes. With
  ``reset_after=False`` the reset gate multiplies h before U_h, which the hardware does not
  compute: refused, with that said.
* SimpleRNN: ``kernel`` (I, H), ``recurrent_kernel`` (H, H), ``bias`` (H): h' = tanh(x W + h U
  + b) (:func:`~ese.sw.compiler.converters.rnn_layer`).

A ``Bidirectional`` wrapper (``merge_mode="concat"``, Keras' default) is a bidirectional layer:
its ``forward_layer`` the forward half, its ``backward_layer`` (Keras' copy with
``go_backwards=True``) the backward one, their outputs concatenated forward first, as Keras
does; with ``return_sequences=False`` the program returns the forward half's last frame and
the backward half's first (its last step), as Keras does.
"""

import os
import sys

import numpy as np

from ..contract.errors import UnsupportedModelError
from .converters import gru_layer, rnn_layer
from .model import LayerDescription, ModelDescription

__all__ = ["keras", "is_keras_object", "import_keras", "recurrent_layers", "load_keras_file"]

#: The recurrent layer classes ese reads, by Keras' class names.
RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN")


def keras():
    """The keras package, imported on first use with the torch backend unless another was
    chosen; an error naming the extra to install where it is missing."""
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras as package
    except ImportError:
        raise UnsupportedModelError(
            "reading Keras models needs the keras package: pip install 'ese-lstm[keras]' "
            "(keras 3; its torch backend needs no TensorFlow)") from None
    return package


def is_keras_object(model):
    """Whether ``model`` is a Keras model or layer (without importing keras)."""
    return any(cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__)


def load_keras_file(path):
    """A ``.keras`` (or legacy HDF5) model file, loaded by keras in its safe mode."""
    package = keras()
    try:
        return package.saving.load_model(str(path), compile=False)
    except Exception as error:    # keras raises many kinds for a file it cannot load
        raise UnsupportedModelError(f"{path} is not a Keras model keras can load "
                                    f"({type(error).__name__}: {error})") from None


def _layers(model):
    """The model's layers in order (a layer alone is its own list)."""
    return list(getattr(model, "layers", None) or [model])


def _kind(layer):
    return type(layer).__name__


def recurrent_layers(model):
    """The names of a Keras model's recurrent layers (and Bidirectional wrappers), in order."""
    return [layer.name for layer in _layers(model)
            if _kind(layer) in RECURRENT_LAYERS + ("Bidirectional",)]


def _activation_name(function):
    return getattr(function, "__name__", str(function))


def _check(layer, last, backward=False):
    kind, name = _kind(layer), layer.name
    if kind == "Bidirectional":
        if layer.merge_mode != "concat":
            raise UnsupportedModelError(
                f"Keras Bidirectional {name!r} has merge_mode={layer.merge_mode!r}: ese "
                f"concatenates a bidirectional layer's halves (merge_mode='concat', Keras' "
                f"default)")
        _check(layer.forward_layer, last)
        _check(layer.backward_layer, last, backward=True)
        return
    if kind not in RECURRENT_LAYERS:
        raise UnsupportedModelError(f"Keras layer {name!r} is a {kind}; ese compiles "
                                    f"{', '.join(RECURRENT_LAYERS)} layers")
    if _activation_name(layer.activation) != "tanh":
        raise UnsupportedModelError(
            f"Keras {kind} {name!r} has activation={_activation_name(layer.activation)!r}: "
            f"the cell unit's tables are sigmoid and tanh; use activation='tanh'")
    if kind != "SimpleRNN" and _activation_name(layer.recurrent_activation) != "sigmoid":
        raise UnsupportedModelError(
            f"Keras {kind} {name!r} has recurrent_activation="
            f"{_activation_name(layer.recurrent_activation)!r}: the hardware's gates use the "
            f"sigmoid; use recurrent_activation='sigmoid' (Keras 3's default)")
    if layer.go_backwards != backward:
        raise UnsupportedModelError(
            f"Keras {kind} {name!r} has go_backwards={layer.go_backwards}: ese runs a layer "
            f"backward only as the backward half of a Bidirectional wrapper")
    if kind == "GRU" and not layer.reset_after:
        raise UnsupportedModelError(
            f"Keras GRU {name!r} has reset_after=False (the reset gate applied to h before "
            f"its recurrent kernel), which the hardware does not compute yet: it computes "
            f"r * (h U_h + b_h), reset_after=True, Keras 3's default and PyTorch's GRU; "
            f"retrain with reset_after=True")
    if not last and not layer.return_sequences:
        raise UnsupportedModelError(
            f"Keras {kind} {name!r} returns its last frame only (return_sequences=False) but "
            f"feeds another recurrent layer, which needs every frame")


def _describe(layer):
    """A Keras recurrent layer's description (see the module's documentation)."""
    weights = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
    kernel, recurrent = weights[0].T, weights[1].T
    bias = weights[2] if layer.use_bias else None
    units = recurrent.shape[1]
    if _kind(layer) == "LSTM":
        return LayerDescription(input_weights=kernel, recurrent_weights=recurrent,
                                bias=np.zeros(4 * units) if bias is None else bias)
    if _kind(layer) == "SimpleRNN":
        return rnn_layer(kernel, recurrent, bias)
    # GRU: Keras' z, r, h blocks in PyTorch's r, z, n order; the biases (input, recurrent).
    order = lambda matrix: np.concatenate([matrix[units:2 * units], matrix[:units],  # noqa: E731
                                           matrix[2 * units:]])
    biases = (None, None) if bias is None else (order(bias[0]), order(bias[1]))
    return gru_layer(order(kernel), order(recurrent), *biases)


def import_keras(model, submodule=None):
    """The :class:`ModelDescription` of a Keras model's recurrent layer or chain of them;
    ``notes["last_frame_only"]`` says that the last one returns its last frame only."""
    layers = _layers(model)
    by_name = {layer.name: layer for layer in layers}
    listed = ", ".join(map(repr, recurrent_layers(model))) or "none"
    if submodule is None:
        chosen = [layer for layer in layers if _kind(layer) != "InputLayer"]
        others = [layer.name for layer in chosen
                  if _kind(layer) not in RECURRENT_LAYERS + ("Bidirectional",)]
        if others:
            raise UnsupportedModelError(
                f"the Keras model holds layers other than recurrent ones ({', '.join(others)}); "
                f"its recurrent layers are {listed}: pick one, or a chain of them, with "
                f"submodule= (--submodule); the rest of the model runs on the host")
    else:
        names = [submodule] if isinstance(submodule, str) else list(submodule)
        missing = [name for name in names if name not in by_name]
        if missing:
            raise UnsupportedModelError(
                f"the Keras model has no layer {', '.join(map(repr, missing))}; its recurrent "
                f"layers are {listed}")
        chosen = [by_name[name] for name in names]
    if not chosen:
        raise UnsupportedModelError("the Keras model holds no recurrent layer")
    for index, layer in enumerate(chosen):
        _check(layer, last=index == len(chosen) - 1)
    described = []
    for layer in chosen:
        if _kind(layer) == "Bidirectional":
            halves = [_describe(layer.forward_layer), _describe(layer.backward_layer)]
            halves[1].direction = "backward"
            described += halves
        else:
            described.append(_describe(layer))
    return ModelDescription(
        described, source="Keras " + ", ".join(f"{_kind(layer)} {layer.name}"
                                               for layer in chosen),
        notes={"last_frame_only": not chosen[-1].return_sequences})
