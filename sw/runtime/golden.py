"""The golden model: the hardware's arithmetic, bit for bit, in numpy.

It runs the integer model of :mod:`ese.sw.runtime.quantized` with the rules of
:mod:`ese.sw.contract.arithmetic`, so its outputs are exactly the words the RTL produces. Sums
of products are computed as float64 sparse matrix products: every product of a weight and an
activation is an integer below 2**(weight_bits + activation_bits - 2) and the compiler bounds
the row sums (see :func:`~ese.sw.compiler.quantization.check_accumulator_bound`), so every
partial sum is an integer that float64 represents exactly, and the result does not depend on
summation order.
"""

import numpy as np
from scipy import sparse

from ..contract.arithmetic import (
    cell_update,
    gru_update,
    project_output,
    round_shift,
    sigmoid_table,
    tanh_table,
)

__all__ = ["GoldenModel"]

# float64 holds every integer up to 2**53 exactly.
_EXACT_LIMIT = 1 << 53


class GoldenModel:
    """Bit-exact integer model of one compiled network.

    Parameters
    ----------
    model : QuantizedModel
    """

    def __init__(self, model):
        self.model = model
        self.config = config = model.config
        if config.accumulator_bits > 53:
            raise ValueError("the golden model sums in float64 and needs accumulator_bits <= 53")
        self.sigmoid = sigmoid_table(config)
        self.tanh = tanh_table(config)
        self._layers = []
        for layer in model.layers:
            as_sparse = lambda m: sparse.csr_matrix(m.astype(np.float64))
            self._layers.append((
                layer,
                as_sparse(layer.input_weights),
                as_sparse(layer.recurrent_weights),
                as_sparse(layer.projection) if layer.projection is not None else None,
            ))

    def run(self, codes, trace=None, saturated=None, state=None, final=None):
        """Run one sequence, from zero state or from ``state``.

        Parameters
        ----------
        codes : int64 array (frames, inputs)
            Input frames in the first layer's input format.
        trace : list, optional
            If given, receives one dict per layer with the vectors the hardware broadcasts,
            each (frames, size): ``inputs`` (x), ``recurrent`` (y_{t-1}) and ``cells`` (m; a
            GRU's h).
        saturated : dict, optional
            If given, counts the values that saturated in the datapath, by layer:
            ``"layer0.cell"`` (cell states), ``"layer0.output"`` (projection outputs y).
        state : list of (y, c), optional
            Each layer's state to start from: y (its output format) and c (the cell format),
            int arrays; zero state if None. A GRU layer's c is its h kept where the cell
            unit reads it (the hardware's cell state memory), in the activation format:
            the recurrent products read y, the update reads c.
        final : list, optional
            If given, receives each layer's state after the last frame, as ``state`` takes it.

        Returns
        -------
        int64 array (frames, outputs)
            The last layer's y for every frame, in its output format.
        """
        config = self.config
        sequence = np.asarray(codes, dtype=np.int64)
        for index, (layer, input_weights, recurrent_weights, projection) in enumerate(
                self._layers):
            formats = layer.formats
            counts = {} if saturated is not None else None
            # W_x x_t does not depend on the recurrence: all frames in one product, aligned
            # onto the accumulator grid as the PEs align every product.
            from_input = _exact(input_weights @ sequence.T.astype(np.float64)).T
            from_input = from_input << formats.alignments()["input_align"]
            recurrent_align = formats.alignments()["recurrent_align"]
            projection_align = formats.projection
            cells = layer.cells
            bias = layer.bias.reshape(4, cells)
            if state is None:
                y = np.zeros(layer.recurrent, dtype=np.int64)
                c = np.zeros(cells, dtype=np.int64)
            else:
                y = np.array(state[index][0], dtype=np.int64)
                c = np.array(state[index][1], dtype=np.int64)
            outputs = np.empty((len(sequence), layer.outputs), dtype=np.int64)
            if trace is not None:
                recorded = {"inputs": sequence.copy(),
                            "recurrent": np.empty((len(sequence), layer.recurrent), np.int64),
                            "cells": np.empty((len(sequence), cells), np.int64)}
                trace.append(recorded)
            for t in range(len(sequence)):
                if trace is not None:
                    recorded["recurrent"][t] = y
                gates = from_input[t] + (_exact(recurrent_weights @ y.astype(np.float64))
                                         << recurrent_align)
                if layer.is_gru:
                    m = gru_update(config, gates.reshape(4, cells), bias, c, self.sigmoid,
                                   self.tanh, formats)
                    c = m
                else:
                    c, m = cell_update(config, gates.reshape(4, cells), bias, layer.peephole,
                                       c, self.sigmoid, self.tanh, formats, counts)
                if trace is not None:
                    recorded["cells"][t] = m
                if projection is not None:
                    total = _exact(projection @ m.astype(np.float64)) << projection_align
                    y = project_output(config, total, formats)
                    if counts is not None:
                        wide = round_shift(total >> formats.output,
                                           config.weight_frac_bits)
                        counts["output"] = counts.get("output", 0) + int(
                            np.count_nonzero(wide != y))
                else:
                    y = m
                outputs[t] = y
            if final is not None:
                final.append((y.copy(), c.copy()))
            if saturated is not None:
                for name, count in counts.items():
                    key = f"layer{index}.{name}"
                    saturated[key] = saturated.get(key, 0) + count
            sequence = outputs
        return sequence


def _exact(values):
    """Convert float64 sums of integer products back to int64, checking they were exact."""
    values = np.asarray(values)
    if values.size and np.abs(values).max() >= _EXACT_LIMIT:
        raise OverflowError("a sum left the range float64 represents exactly")
    return np.rint(values).astype(np.int64)
