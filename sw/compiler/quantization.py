"""Quantization: the real-valued model description becomes the integers the hardware holds.

Weights and peepholes go to ``weight_format``, biases to ``bias_format`` (see
:mod:`ese.sw.contract.arithmetic`). Values beyond a format's range saturate, and the
:class:`QuantizationReport` counts them per tensor so that the compiler can say how many did.
The accumulator bound is checked here too: a model whose worst-case row sum does not fit
``accumulator_bits`` is refused, which is what lets the hardware accumulate without
saturation logic and still be exact.
"""

import numpy as np

from ..contract.arithmetic import quantize
from ..contract.errors import CapacityError
from ..runtime.quantized import QuantizationReport, QuantizedLayer, QuantizedModel

__all__ = ["quantize_model", "check_accumulator_bound"]


def quantize_model(description, config):
    """Quantize a :class:`~ese.sw.compiler.model.ModelDescription` for ``config``.

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
