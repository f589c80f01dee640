"""The golden model: the hardware's arithmetic, bit for bit, in numpy.

It runs the integer model of :mod:`ese.sw.runtime.quantized` with the rules of
:mod:`ese.sw.contract.arithmetic`, so its outputs are exactly the words the RTL produces. Sums
of products are computed as float64 sparse matrix products: every product of a weight and an
activation is an integer below 2**(weight_bits + activation_bits - 2) and the compiler bounds
the row sums (see :func:`~ese.sw.runtime.quantized.check_accumulator_bound`), so every
partial sum is an integer that float64 represents exactly, and the result does not depend on
summation order.
"""

import numpy as np
from scipy import sparse

from ..contract.arithmetic import (
    cell_update,
    delta_columns,
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
            GRU's h). A delta layer broadcasts its columns' deltas, zero where a column is
            not transmitted: its trace holds those.
        saturated : dict, optional
            If given, counts the values that saturated in the datapath, by layer:
            ``"layer0.cell"`` (cell states), ``"layer0.output"`` (projection outputs y).
        state : list of (y, c), optional
            Each layer's state to start from: y (its output format) and c (the cell format),
            int arrays; zero state if None. A GRU layer's c is its h kept where the cell
            unit reads it (the hardware's cell state memory), in the activation format:
            the recurrent products read y, the update reads c. A delta layer's entry may
            have a third element, the delta state a previous piece of the same sequence left
            in ``final``; without it the layer starts as at a sequence start (every last
            transmitted value and every sum zero), so y's non-zero columns are transmitted
            in the first frame like any change.
        final : list, optional
            If given, receives each layer's state after the last frame, as ``state`` takes it
            (with a delta layer's delta state as the third element).

        Returns
        -------
        int64 array (frames, outputs)
            The last layer's y for every frame, in its output format.
        """
        sequence = np.asarray(codes, dtype=np.int64)
        for index, (layer, input_weights, recurrent_weights, projection) in enumerate(
                self._layers):
            formats = layer.formats
            counts = {} if saturated is not None else None
            # W_x x_t does not depend on the recurrence: all frames in one product, aligned
            # onto the accumulator grid as the PEs align every product.
            if layer.delta is None:
                from_input = _exact(input_weights @ sequence.T.astype(np.float64)).T
                from_input = from_input << formats.alignments()["input_align"]
            recurrent_align = formats.alignments()["recurrent_align"]
            projection_align = formats.projection
            cells = layer.cells
            bias = layer.bias.reshape(4, cells)
            if state is None:
                y = np.zeros(layer.recurrent, dtype=np.int64)
                c = np.zeros(cells, dtype=np.int64)
                carried = None
            else:
                y = np.array(state[index][0], dtype=np.int64)
                c = np.array(state[index][1], dtype=np.int64)
                carried = state[index][2] if len(state[index]) > 2 else None
            outputs = np.empty((len(sequence), layer.outputs), dtype=np.int64)
            if trace is not None:
                recorded = {"inputs": sequence.copy(),
                            "recurrent": np.empty((len(sequence), layer.recurrent), np.int64),
                            "cells": np.empty((len(sequence), cells), np.int64)}
                trace.append(recorded)
            if layer.delta is not None:
                y, c, carried = self._run_delta(layer, input_weights, recurrent_weights,
                                                projection, sequence, y, c, carried, outputs,
                                                recorded if trace is not None else None,
                                                counts)
                if final is not None:
                    final.append((y.copy(), c.copy(), carried))
            else:
                for t in range(len(sequence)):
                    if trace is not None:
                        recorded["recurrent"][t] = y
                    gates = from_input[t] + (_exact(recurrent_weights @ y.astype(np.float64))
                                             << recurrent_align)
                    c, m = self._update(layer, gates, bias, c, counts)
                    if trace is not None:
                        recorded["cells"][t] = m
                    y = m if projection is None else self._project(
                        layer, _exact(projection @ m.astype(np.float64)) << projection_align,
                        counts)
                    outputs[t] = y
                if final is not None:
                    final.append((y.copy(), c.copy()))
            if saturated is not None:
                for name, count in counts.items():
                    key = f"layer{index}.{name}"
                    saturated[key] = saturated.get(key, 0) + count
            sequence = outputs
        return sequence

    def _update(self, layer, gates, bias, c, counts):
        """The cell update from the gates' sums: ``(c', m)`` (a GRU's h' is both)."""
        cells = layer.cells
        if layer.is_gru:
            h = gru_update(self.config, gates.reshape(4, cells), bias, c, self.sigmoid,
                           self.tanh, layer.formats, rnn=layer.is_rnn)
            return h, h
        return cell_update(self.config, gates.reshape(4, cells), bias, layer.peephole, c,
                           self.sigmoid, self.tanh, layer.formats, counts)

    def _project(self, layer, total, counts):
        """y from the projection's sum (on the accumulator grid)."""
        formats = layer.formats
        y = project_output(self.config, total, formats)
        if counts is not None:
            wide = round_shift(total >> formats.output, self.config.weight_frac_bits)
            counts["output"] = counts.get("output", 0) + int(np.count_nonzero(wide != y))
        return y

    def _run_delta(self, layer, input_weights, recurrent_weights, projection, sequence, y, c,
                   carried, outputs, recorded, counts):
        """One delta layer over the sequence (docs/arithmetic.md, "Delta layers").

        ``carried`` is the delta state a previous piece of the sequence left (None: a
        sequence start, where every last transmitted value and every sum is zero); returns the
        final ``(y, c, carried)``. The trace records the deltas broadcast (zero where a column
        is not transmitted), which is what the hardware sends.
        """
        aligns = layer.formats.alignments()
        thresholds = layer.delta
        cells = layer.cells
        bias = layer.bias.reshape(4, cells)
        if carried is None:
            carried = {"x": np.zeros(layer.inputs, np.int64),
                       "h": np.zeros(layer.recurrent, np.int64),
                       "m": np.zeros(cells if projection is not None else 0, np.int64),
                       "gates": np.zeros(4 * cells, np.int64),
                       "projection": np.zeros(layer.proj, np.int64)}
        else:
            carried = {name: np.array(value, dtype=np.int64) for name, value in carried.items()}
        last_x, last_h, last_m = carried["x"], carried["h"], carried["m"]
        gates, projected = carried["gates"], carried["projection"]
        for t in range(len(sequence)):
            dx, sent_x = delta_columns(sequence[t], last_x, thresholds.x)
            dh, sent_h = delta_columns(y, last_h, thresholds.h)
            last_x[sent_x] = sequence[t][sent_x]
            last_h[sent_h] = y[sent_h]
            gates += ((_exact(input_weights @ dx.astype(np.float64)) << aligns["input_align"])
                      + (_exact(recurrent_weights @ dh.astype(np.float64))
                         << aligns["recurrent_align"]))
            c, m = self._update(layer, gates, bias, c, counts)
            if recorded is not None:
                recorded["inputs"][t] = dx
                recorded["recurrent"][t] = dh
            if projection is None:
                y = m
                if recorded is not None:
                    recorded["cells"][t] = m
            else:
                dm, sent_m = delta_columns(m, last_m, thresholds.m)
                last_m[sent_m] = m[sent_m]
                projected += _exact(projection @ dm.astype(np.float64)) << aligns[
                    "projection_align"]
                y = self._project(layer, projected, counts)
                if recorded is not None:
                    recorded["cells"][t] = dm
            outputs[t] = y
        return y, c, carried


def _exact(values):
    """Convert float64 sums of integer products back to int64, checking they were exact."""
    values = np.asarray(values)
    if values.size and np.abs(values).max() >= _EXACT_LIMIT:
        raise OverflowError("a sum left the range float64 represents exactly")
    return np.rint(values).astype(np.int64)
