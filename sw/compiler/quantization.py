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

from ..contract.arithmetic import LayerFormats, dequantize, quantize
from ..contract.errors import ConfigError
from ..runtime.quantized import (
    QuantizationReport,
    QuantizedLayer,
    QuantizedModel,
    check_accumulator_bound,
)

__all__ = ["quantize_model", "requantization"]


def quantize_model(description, config, formats=None):
    """Quantize a :class:`~ese.sw.compiler.model.ModelDescription` for ``config``.

    ``formats`` gives each layer's :class:`LayerFormats` (the configured formats by default).
    Returns ``(QuantizedModel, QuantizationReport)``. Raises :class:`CapacityError` if a row
    could overflow the accumulators.
    """
    report = QuantizationReport()
    layers = []
    formats = formats or [LayerFormats() for _ in description.layers]
    reads_m = description.reads_cell_outputs()
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
            formats=chosen, kind=layer.kind, direction=layer.direction)
        check_accumulator_bound(quantized, config, index, input_is_m=reads_m[index])
        layers.append(quantized)
    model = QuantizedModel(config, layers, source=description.source)
    report.nonzeros = model.nonzero_count()
    report.weights = model.weight_count()
    return model, report


def requantization(description, model, config, names):
    """Per matrix named in ``names`` (``layer0.input_weights``, as a front end notes its
    trained quantizers), the largest difference between the description's weights and the
    quantized model's: 0 where the trained weights lie on the chosen format's grid."""
    found = {}
    for name in names:
        index, _, matrix = name.partition(".")
        index = int(index[len("layer"):])
        layer = model.layers[index]
        values = getattr(description.layers[index], matrix)
        codes = getattr(layer, matrix)
        difference = np.abs(dequantize(codes, layer.formats.format(config, matrix)) - values)
        found[name] = float(difference.max()) if difference.size else 0.0
    return found
