"""Quantization: the real-valued model description becomes the integers the hardware holds.

Each matrix, the peepholes and the biases of a layer go to the format its
:class:`~ese.sw.contract.arithmetic.LayerFormats` names (chosen by :mod:`.formats`; the
configured ``weight_format`` and ``bias_format`` by default). Values beyond a format's range
saturate, and the
:class:`QuantizationReport` counts them per tensor so that the compiler can say how many did.
The accumulator bound is checked here too: a model whose worst-case row sum does not fit
``accumulator_bits`` is refused, which is what lets the hardware accumulate without
saturation logic and still be exact.
"""

import numpy as np

from ..contract.arithmetic import LayerFormats, quantize
from ..contract.errors import CapacityError, ConfigError
from ..runtime.quantized import QuantizationReport, QuantizedLayer, QuantizedModel

__all__ = ["quantize_model", "check_accumulator_bound"]


def quantize_model(description, config, formats=None):
    """Quantize a :class:`~ese.sw.compiler.model.ModelDescription` for ``config``.

    ``formats`` gives each layer's :class:`LayerFormats` (the configured formats by default).
    Returns ``(QuantizedModel, QuantizationReport)``. Raises :class:`CapacityError` if a row
    could overflow the accumulators.
    """
    report = QuantizationReport()
    layers = []
    formats = formats or [LayerFormats() for _ in description.layers]
    for index, (layer, chosen) in enumerate(zip(description.layers, formats)):
        chosen.check(config, layer.proj, f"layer {index}")
        if layer.is_gru and config.cell_bits < config.activation_bits:
            raise ConfigError(
                f"layer {index} is a GRU, whose h the cell unit keeps in the cell state memory: "
                f"Config.cell_bits ({config.cell_bits}) must be at least activation_bits "
                f"({config.activation_bits})")

        def convert(name, values):
            codes, saturated = quantize(values, chosen.format(config, name))
            if saturated:
                report.saturated[f"layer{index}.{name}"] = saturated
            return codes

        peephole = (convert("peephole", layer.peephole) if layer.peephole is not None
                    else np.zeros((3, layer.cells), dtype=np.int64))
        quantized = QuantizedLayer(
            input_weights=convert("input_weights", layer.input_weights),
            recurrent_weights=convert("recurrent_weights", layer.recurrent_weights),
            bias=convert("bias", layer.bias),
            peephole=peephole,
            projection=(convert("projection", layer.projection)
                        if layer.projection is not None else None),
            formats=chosen, kind=layer.kind)
        check_accumulator_bound(quantized, config, index,
                                input_is_m=index > 0 and description.layers[index - 1].proj == 0)
        layers.append(quantized)
    model = QuantizedModel(config, layers, source=description.source)
    report.nonzeros = model.nonzero_count()
    report.weights = model.weight_count()
    return model, report


def check_accumulator_bound(layer, config, index=0, input_is_m=False):
    """Refuse a layer whose worst-case sums could overflow ``accumulator_bits``.

    Every input counts at its format's extreme code, except the cell outputs m (the
    recurrent input without a projection, the projection's input and, with ``input_is_m``,
    the input of a layer after one without projection), which never exceed 1.0: o and
    tanh(c) come from tables of values in [-1, 1].
    """
    largest_activation = 1 << (config.activation_bits - 1)
    largest_m = 1 << config.activation_frac_bits
    largest_cell = 1 << (config.cell_bits - 1)
    aligns = layer.formats.alignments()
    bias_shift = config.product_frac_bits - config.bias_frac_bits + aligns["bias_align"]
    peep_shift = (config.activation_frac_bits - config.cell_frac_bits
                  + aligns["peephole_align"])
    largest_input = largest_m if input_is_m else largest_activation
    largest_recurrent = largest_activation if layer.projection is not None else largest_m
    gate_rows = ((np.abs(layer.input_weights).sum(axis=1) * largest_input)
                 << aligns["input_align"])
    gate_rows = gate_rows + ((np.abs(layer.recurrent_weights).sum(axis=1) * largest_recurrent)
                             << aligns["recurrent_align"])
    gate_rows = gate_rows + (np.abs(layer.bias) << bias_shift)
    peephole_rows = np.zeros(4 * layer.cells, dtype=np.int64)
    peephole_rows[:layer.cells] = np.abs(layer.peephole[0])
    peephole_rows[layer.cells:2 * layer.cells] = np.abs(layer.peephole[1])
    peephole_rows[3 * layer.cells:] = np.abs(layer.peephole[2])
    worst = int((gate_rows + ((peephole_rows * largest_cell) << peep_shift)).max())
    if layer.projection is not None:
        worst = max(worst, int(((np.abs(layer.projection).sum(axis=1) * largest_m)
                                << aligns["projection_align"]).max()))
    limit = 1 << (config.accumulator_bits - 1)
    if worst >= limit:
        raise CapacityError(
            f"layer {index}: a row's worst-case sum needs {worst.bit_length() + 1} bits, more "
            f"than Config.accumulator_bits={config.accumulator_bits}; widen the accumulators")
