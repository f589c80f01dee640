"""The model description: what the front ends produce and the rest of the compiler reads.

A :class:`ModelDescription` is a stack of :class:`LayerDescription` s, each an LSTM layer with
optional peepholes and optional projection, a GRU layer or a simple RNN layer, forward or a
bidirectional layer's backward half, holding real-valued (float64) numpy arrays. It knows
nothing of PyTorch: the front ends (:mod:`ese.sw.compiler.frontends`) fill it in, pruning and
formats read it, and quantization (:mod:`ese.sw.compiler.quantization`) turns it into
integers. An LSTM's gate order is PyTorch's: i, f, g, o. A GRU keeps the same shapes, four
slots per cell in the order of :data:`~ese.sw.contract.memory_map.GRU_SLOTS` (r, z, n_x,
n_h): the candidate's input and recurrent sums stay apart, since the reset gate multiplies
only the recurrent one; a simple RNN's weights lie in n_x alone.
"""

from dataclasses import dataclass, field

import numpy as np

from ..contract.errors import UnsupportedModelError
from ..contract.memory_map import CELL_KINDS, STRUCTURAL_ZEROS, structural_zero_rows
from ..runtime.quantized import DIRECTIONS, LayerShape, StackShape

__all__ = ["LayerDescription", "ModelDescription"]


@dataclass
class LayerDescription(LayerShape):
    """One LSTM layer.

    Attributes
    ----------
    input_weights : array (4 * cells, inputs)
        W_x, the four gates stacked in the order i, f, g, o.
    recurrent_weights : array (4 * cells, recurrent)
        W_r, applied to the previous output y (projection size, or cells without projection).
    bias : array (4 * cells,)
        b, the sum of all bias terms of a gate.
    peephole : array (3, cells) or None
        w_ic, w_fc, w_oc.
    projection : array (proj, cells) or None
        W_ym; without it the layer's output y is m = o * tanh(c).
    direction : "forward" or "backward"
        A backward layer is the second half of a bidirectional layer (see
        :class:`~ese.sw.runtime.quantized.StackShape`): it reads the forward half's input in
        reverse time order.
    kind : "lstm", "gru" or "rnn"
        A GRU layer's slots are r, z, n_x, n_h (``GRU_SLOTS``): the n_h rows of
        ``input_weights`` and the n_x rows of ``recurrent_weights`` are zero, the biases are
        b_ir + b_hr, b_iz + b_hz, b_in, b_hn, and there are no peepholes and no projection;
        its output y is h. A simple RNN's (h' = tanh(W x + U h + b)) W, U and b lie in the n_x
        slot alone (``STRUCTURAL_ZEROS``); it runs on the GRU's update with z held at 0.
    """

    input_weights: np.ndarray
    recurrent_weights: np.ndarray
    bias: np.ndarray
    peephole: "np.ndarray | None" = None
    projection: "np.ndarray | None" = None
    kind: str = "lstm"
    direction: str = "forward"

    def __post_init__(self):
        self.input_weights = np.asarray(self.input_weights, dtype=np.float64)
        self.recurrent_weights = np.asarray(self.recurrent_weights, dtype=np.float64)
        self.bias = np.asarray(self.bias, dtype=np.float64)
        if self.peephole is not None:
            self.peephole = np.asarray(self.peephole, dtype=np.float64)
        if self.projection is not None:
            self.projection = np.asarray(self.projection, dtype=np.float64)
        self.validate()

    def validate(self):
        rows, inputs = self.input_weights.shape if self.input_weights.ndim == 2 else (0, 0)
        if self.input_weights.ndim != 2 or rows == 0 or rows % 4 or inputs == 0:
            raise UnsupportedModelError(
                f"input weights must be a non-empty (4 * cells, inputs) matrix, "
                f"not shape {self.input_weights.shape}")
        cells = rows // 4
        recurrent = self.proj or cells
        expected = {
            "recurrent_weights": (self.recurrent_weights, (4 * cells, recurrent)),
            "bias": (self.bias, (4 * cells,)),
            "peephole": (self.peephole, (3, cells)),
            "projection": (self.projection, (self.proj, cells)),
        }
        for name, (array, shape) in expected.items():
            if array is not None and array.shape != shape:
                raise UnsupportedModelError(
                    f"{name} has shape {array.shape}; a layer of {cells} cells with "
                    f"{inputs} inputs and {recurrent} recurrent outputs needs {shape}")
        if self.proj == 0 and self.projection is not None:
            raise UnsupportedModelError("a projection matrix needs at least one output row")
        for name in ("input_weights", "recurrent_weights", "bias", "peephole", "projection"):
            array = getattr(self, name)
            if array is not None and not np.all(np.isfinite(array)):
                raise UnsupportedModelError(f"{name} holds NaN or infinite values")
        if self.direction not in DIRECTIONS:
            raise UnsupportedModelError(f"a layer's direction is one of {', '.join(DIRECTIONS)}, "
                                        f"not {self.direction!r}")
        if self.kind not in CELL_KINDS:
            raise UnsupportedModelError(f"a layer is one of {', '.join(CELL_KINDS)}, not "
                                        f"{self.kind!r}")
        if self.is_gru:
            name = self.kind.upper()
            if self.peephole is not None or self.projection is not None:
                raise UnsupportedModelError(f"a {name} layer has no peepholes and no projection")
            for part, array in (("input", self.input_weights),
                                ("recurrent", self.recurrent_weights), ("bias", self.bias)):
                if any(np.any(array[rows])
                       for rows in structural_zero_rows(self.kind, part, cells)):
                    raise UnsupportedModelError(
                        f"a {name} layer's {part} rows in the slots "
                        f"{', '.join(STRUCTURAL_ZEROS[self.kind][part])} are zero "
                        f"(ese.sw.contract.memory_map.STRUCTURAL_ZEROS)")


@dataclass
class ModelDescription(StackShape):
    """A stack of recurrent layers in stages (a layer, or a bidirectional layer's two halves);
    each stage reads the output of the one before it (:class:`StackShape`)."""

    layers: list
    source: str = "unknown"
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.layers:
            raise UnsupportedModelError("a model needs at least one layer")
        problem = self.stage_problem()
        if problem:
            raise UnsupportedModelError(problem)

    def summary(self):
        parts = []
        for layer in self.layers:
            text = f"{layer.inputs}->{layer.cells} cells"
            if layer.proj:
                text += f"->{layer.proj} proj"
            if layer.peephole is not None:
                text += " (peepholes)"
            if layer.is_gru:
                text = text.replace("cells", f"{layer.kind.upper()} units")
            if layer.direction == "backward":
                text = f"backward {text}"
            parts.append(text)
        return "; ".join(parts)
