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

from ..contract.arithmetic import cell_update, requantize, sigmoid_table, tanh_table

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

    def run(self, codes, trace=None):
        """Run one sequence from zero state.

        Parameters
        ----------
        codes : int64 array (frames, inputs)
            Input frames in the activation format.
        trace : list, optional
            If given, receives one dict per layer with the vectors the hardware broadcasts,
            each (frames, size): ``inputs`` (x), ``recurrent`` (y_{t-1}) and ``cells`` (m).

        Returns
        -------
        int64 array (frames, outputs)
            The last layer's y for every frame, in the activation format.
        """
        config = self.config
        act = config.activation_format
        acc_frac = config.product_frac_bits
        sequence = np.asarray(codes, dtype=np.int64)
        for layer, input_weights, recurrent_weights, projection in self._layers:
            # W_x x_t does not depend on the recurrence: all frames in one product.
            from_input = _exact(input_weights @ sequence.T.astype(np.float64)).T
            cells = layer.cells
            bias = layer.bias.reshape(4, cells)
            y = np.zeros(layer.recurrent, dtype=np.int64)
            c = np.zeros(cells, dtype=np.int64)
            outputs = np.empty((len(sequence), layer.outputs), dtype=np.int64)
            if trace is not None:
                recorded = {"inputs": sequence.copy(),
                            "recurrent": np.empty((len(sequence), layer.recurrent), np.int64),
                            "cells": np.empty((len(sequence), cells), np.int64)}
                trace.append(recorded)
            for t in range(len(sequence)):
                if trace is not None:
                    recorded["recurrent"][t] = y
                gates = from_input[t] + _exact(recurrent_weights @ y.astype(np.float64))
                c, m = cell_update(config, gates.reshape(4, cells), bias, layer.peephole, c,
                                   self.sigmoid, self.tanh)
                if trace is not None:
                    recorded["cells"][t] = m
                if projection is not None:
                    y = requantize(_exact(projection @ m.astype(np.float64)), acc_frac, act)
                else:
                    y = m
                outputs[t] = y
            sequence = outputs
        return sequence


def _exact(values):
    """Convert float64 sums of integer products back to int64, checking they were exact."""
    values = np.asarray(values)
    if values.size and np.abs(values).max() >= _EXACT_LIMIT:
        raise OverflowError("a sum left the range float64 represents exactly")
    return np.rint(values).astype(np.int64)
