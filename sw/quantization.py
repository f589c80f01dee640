"""Quantization: the real-valued model description becomes the integers the hardware holds.

Weights and peepholes go to ``weight_format``, biases to ``bias_format`` (see
:mod:`ese.sw.arithmetic`). Values beyond a format's range saturate, and the
:class:`QuantizationReport` counts them per tensor so that the compiler can say how many did.
The accumulator bound is checked here too: a model whose worst-case row sum does not fit
``accumulator_bits`` is refused, which is what lets the hardware accumulate without
saturation logic and still be exact.
"""

from dataclasses import dataclass, field

import numpy as np

from .arithmetic import quantize
from .errors import CapacityError
from .model import LayerShape, StackShape

__all__ = ["QuantizedLayer", "QuantizedModel", "QuantizationReport", "quantize_model"]


@dataclass
class QuantizedLayer(LayerShape):
    """One layer in integers (int64 arrays; shapes as in LayerDescription).

    ``peephole`` is always present (zeros where the source had none); ``projection`` is None
    where the layer has no projection.
    """

    input_weights: np.ndarray
    recurrent_weights: np.ndarray
    bias: np.ndarray
    peephole: np.ndarray
    projection: "np.ndarray | None"

    @property
    def gate_weights(self):
        """[W_x | W_r]: the matrix the gates multiply with [x; y]."""
        return np.concatenate([self.input_weights, self.recurrent_weights], axis=1)

    def equals(self, other):
        names = ("input_weights", "recurrent_weights", "bias", "peephole")
        same = all(np.array_equal(getattr(self, n), getattr(other, n)) for n in names)
        if (self.projection is None) != (other.projection is None):
            return False
        return same and (self.projection is None
                         or np.array_equal(self.projection, other.projection))


@dataclass
class QuantizationReport:
    """How many values saturated, per layer and tensor, and how many non-zeros remain."""

    saturated: dict = field(default_factory=dict)
    nonzeros: int = 0
    weights: int = 0

    @property
    def saturated_total(self):
        return sum(self.saturated.values())

    @property
    def density(self):
        return self.nonzeros / self.weights if self.weights else 0.0

    def to_dict(self):
        return {"saturated": dict(self.saturated), "nonzeros": self.nonzeros,
                "weights": self.weights}

    @classmethod
    def from_dict(cls, values):
        return cls(saturated={str(k): int(v) for k, v in values["saturated"].items()},
                   nonzeros=int(values["nonzeros"]), weights=int(values["weights"]))


@dataclass
class QuantizedModel(StackShape):
    """The integer model: what the image encodes and the golden model runs."""

    config: object
    layers: list
    source: str = "unknown"

    def equals(self, other):
        return (len(self.layers) == len(other.layers)
                and all(a.equals(b) for a, b in zip(self.layers, other.layers)))


def quantize_model(description, config):
    """Quantize a :class:`~ese.sw.model.ModelDescription` for ``config``.

    Returns ``(QuantizedModel, QuantizationReport)``. Raises :class:`CapacityError` if a row
    could overflow the accumulators.
    """
    report = QuantizationReport()
    layers = []
    for index, layer in enumerate(description.layers):
        def convert(name, values, fmt):
            codes, saturated = quantize(values, fmt)
            if saturated:
                report.saturated[f"layer{index}.{name}"] = saturated
            return codes

        wf = config.weight_format
        peephole = (convert("peephole", layer.peephole, wf) if layer.peephole is not None
                    else np.zeros((3, layer.cells), dtype=np.int64))
        quantized = QuantizedLayer(
            input_weights=convert("input_weights", layer.input_weights, wf),
            recurrent_weights=convert("recurrent_weights", layer.recurrent_weights, wf),
            bias=convert("bias", layer.bias, config.bias_format),
            peephole=peephole,
            projection=(convert("projection", layer.projection, wf)
                        if layer.projection is not None else None))
        check_accumulator_bound(quantized, config, index)
        layers.append(quantized)
    model = QuantizedModel(config, layers, source=description.source)
    report.nonzeros = model.nonzero_count()
    report.weights = model.weight_count()
    return model, report


def check_accumulator_bound(layer, config, index=0):
    """Refuse a layer whose worst-case sums could overflow ``accumulator_bits``."""
    largest_activation = 1 << (config.activation_bits - 1)
    largest_cell = 1 << (config.cell_bits - 1)
    bias_shift = config.product_frac_bits - config.bias_frac_bits
    peep_shift = config.activation_frac_bits - config.cell_frac_bits
    gate_rows = np.abs(layer.gate_weights).sum(axis=1) * largest_activation
    gate_rows = gate_rows + (np.abs(layer.bias) << bias_shift)
    peephole_rows = np.zeros(4 * layer.cells, dtype=np.int64)
    peephole_rows[:layer.cells] = np.abs(layer.peephole[0])
    peephole_rows[layer.cells:2 * layer.cells] = np.abs(layer.peephole[1])
    peephole_rows[3 * layer.cells:] = np.abs(layer.peephole[2])
    worst = int((gate_rows + ((peephole_rows * largest_cell) << peep_shift)).max())
    if layer.projection is not None:
        worst = max(worst, int((np.abs(layer.projection).sum(axis=1) * largest_activation).max()))
    limit = 1 << (config.accumulator_bits - 1)
    if worst >= limit:
        raise CapacityError(
            f"layer {index}: a row's worst-case sum needs {worst.bit_length() + 1} bits, more "
            f"than Config.accumulator_bits={config.accumulator_bits}; widen the accumulators")
