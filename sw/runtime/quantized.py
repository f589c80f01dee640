"""The integer model: what a weight image encodes and the golden model runs.

The compiler's quantization (:mod:`ese.sw.compiler.quantization`) produces a
:class:`QuantizedModel` and its :class:`QuantizationReport`; the runtime decodes the same
model back from an image (:func:`ese.sw.runtime.encoding.decode_image`), so these types live
with the runtime, which never needs the compiler to run a model. :class:`LayerShape` and
:class:`StackShape` give real-valued and integer layers the same size properties.
"""

from dataclasses import dataclass, field

import numpy as np

from ..contract.arithmetic import LayerFormats

__all__ = ["LayerShape", "StackShape", "QuantizedLayer", "QuantizedModel",
           "QuantizationReport"]


class LayerShape:
    """Sizes of a layer, read off its ``input_weights`` and ``projection`` arrays, and its
    kind (``self.kind``: "lstm" or "gru", :data:`~ese.sw.contract.memory_map.CELL_KINDS`).

    A GRU layer keeps the LSTM's shapes: four gate slots per cell
    (:data:`~ese.sw.contract.memory_map.GRU_SLOTS`), where n_h has no input weights and n_x
    no recurrent ones (structural zeros, which no count of weights includes).
    """

    @property
    def is_gru(self):
        return self.kind == "gru"

    @property
    def cells(self):
        return self.input_weights.shape[0] // 4

    @property
    def inputs(self):
        return self.input_weights.shape[1]

    @property
    def proj(self):
        """Projection size, or 0 where the layer has no projection."""
        return 0 if self.projection is None else self.projection.shape[0]

    @property
    def recurrent(self):
        """Size of y, the layer's output and recurrent input."""
        return self.proj or self.cells

    @property
    def outputs(self):
        return self.recurrent

    def weight_count(self):
        """Weights of the layer's matrices (zeros included), without a GRU's structural
        zeros: the size of PyTorch's own matrices."""
        count = sum(m.size for m in self.matrices().values())
        if self.is_gru:
            count -= self.cells * (self.inputs + self.recurrent)
        return count

    def matrices(self):
        """The sparse matrices of the layer, by name."""
        found = {"input_weights": self.input_weights, "recurrent_weights": self.recurrent_weights}
        if self.projection is not None:
            found["projection"] = self.projection
        return found


class StackShape:
    """Sizes and counts of a stack of layers (``self.layers``)."""

    @property
    def inputs(self):
        return self.layers[0].inputs

    @property
    def outputs(self):
        return self.layers[-1].outputs

    def weight_count(self):
        """Weights in all sparse matrices (zeros included; see :meth:`LayerShape.weight_count`)."""
        return sum(layer.weight_count() for layer in self.layers)

    def nonzero_count(self):
        return sum(int(np.count_nonzero(m)) for layer in self.layers
                   for m in layer.matrices().values())



@dataclass
class QuantizedLayer(LayerShape):
    """One layer in integers (int64 arrays; shapes as in LayerDescription).

    ``peephole`` is always present (zeros where the source had none); ``projection`` is None
    where the layer has no projection. ``formats`` says which fixed-point format each kind of
    value has (the configured ones by default; see
    :class:`~ese.sw.contract.arithmetic.LayerFormats`). ``kind`` is "lstm" or "gru" (then the
    gate slots are :data:`~ese.sw.contract.memory_map.GRU_SLOTS`, the peepholes zero and
    there is no projection).
    """

    input_weights: np.ndarray
    recurrent_weights: np.ndarray
    bias: np.ndarray
    peephole: np.ndarray
    projection: "np.ndarray | None"
    formats: LayerFormats = field(default_factory=LayerFormats)
    kind: str = "lstm"

    @property
    def gate_weights(self):
        """[W_x | W_r]: the matrix the gates multiply with [x; y]."""
        return np.concatenate([self.input_weights, self.recurrent_weights], axis=1)

    def equals(self, other):
        names = ("input_weights", "recurrent_weights", "bias", "peephole")
        same = all(np.array_equal(getattr(self, n), getattr(other, n)) for n in names)
        if self.formats != other.formats or self.kind != other.kind:
            return False
        if (self.projection is None) != (other.projection is None):
            return False
        return same and (self.projection is None
                         or np.array_equal(self.projection, other.projection))


@dataclass
class QuantizationReport:
    """How many values saturated, per layer and tensor, and how many non-zeros remain.

    ``calibration`` (empty without calibration frames) holds what the compiler measured on
    them: ``frames``, the ``saturated`` counts of the run (inputs, cell states, projection
    outputs) and ``max_error``, the largest distance of the outputs from the float model.
    """

    saturated: dict = field(default_factory=dict)
    nonzeros: int = 0
    weights: int = 0
    calibration: dict = field(default_factory=dict)

    @property
    def saturated_total(self):
        return sum(self.saturated.values())

    @property
    def density(self):
        return self.nonzeros / self.weights if self.weights else 0.0

    def to_dict(self):
        return {"saturated": dict(self.saturated), "nonzeros": self.nonzeros,
                "weights": self.weights, "calibration": dict(self.calibration)}

    @classmethod
    def from_dict(cls, values):
        calibration = values.get("calibration", {})
        if not isinstance(calibration, dict):
            raise ValueError("the calibration record is not a mapping")
        return cls(saturated={str(k): int(v) for k, v in values["saturated"].items()},
                   nonzeros=int(values["nonzeros"]), weights=int(values["weights"]),
                   calibration=calibration)


@dataclass
class QuantizedModel(StackShape):
    """The integer model: what the image encodes and the golden model runs."""

    config: object
    layers: list
    source: str = "unknown"

    def equals(self, other):
        return (len(self.layers) == len(other.layers)
                and all(a.equals(b) for a, b in zip(self.layers, other.layers)))
