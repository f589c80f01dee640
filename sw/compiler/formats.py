"""Formats chosen from the model and from calibration data.

ESE's formats (Q1.10 weights, Q3.12 activations) suit models trained for them. A model trained
elsewhere may hold weights beyond +-2 or take inputs beyond +-8, and would saturate. Here
the compiler chooses, per layer, a :class:`~ese.sw.contract.arithmetic.LayerFormats`: for
each matrix (W_x, W_r, W_ym), the peepholes and the biases, the finest format of the
configured width that holds every value (min-max, as PyTorch's default observer does), no
finer than the configured one; and, from calibration frames, the same for the first layer's
input and each projection's output (the input of the layer above). The total widths stay
the configured ones; the hardware shifts each product back onto the common accumulator grid
(see docs/arithmetic.md).

Without calibration frames the inputs and outputs keep the configured format, and whatever
saturates is reported as before.
"""

import dataclasses

import numpy as np

from ..contract.arithmetic import LayerFormats
from ..contract.errors import InputError
from ..contract.memory_map import GRU_SLOTS

__all__ = ["choose_formats", "float_forward", "float_outputs", "calibration_sequences",
           "coarsening"]


def coarsening(values, fmt, low, high):
    """The finest format for ``values``: the smallest shift in ``[low, high]`` (fraction bits
    dropped from ``fmt``; negative adds them) so that they quantize without saturating, and
    ``high`` if none does. Values that are all zero take ``low``."""
    values = np.asarray(values, dtype=np.float64)
    high = min(high, fmt.frac)
    if values.size == 0:
        return low
    largest, smallest = float(values.max()), float(values.min())
    for shift in range(low, high + 1):
        scale = 2.0 ** (fmt.frac - shift)
        if np.rint(largest * scale) <= fmt.max_code and np.rint(smallest * scale) >= fmt.min_code:
            return shift
    return high


def _pair(weights, weight_format, given, given_low, given_high, limit):
    """Shifts of a matrix and its input whose sum (the product's alignment) lies in
    ``[0, limit]``: each as fine as its values allow, then the pair coarsened as little as
    the grid needs, half each (the weights take the odd bit), the input only between
    ``given_low`` and ``given_high``."""
    weight = coarsening(weights, weight_format, -limit, limit)
    deficit = -(weight + given)
    if deficit > 0:
        extra_input = min(deficit // 2, given_high - given)
        given += max(0, extra_input)
        weight = -given if weight + given < 0 else weight
    weight = min(weight, limit - given)
    return weight, given


def calibration_sequences(calibration, inputs):
    """Calibration frames as a list of (frames, inputs) float arrays: one sequence (2-D), a
    batch of sequences (3-D) or a list of sequences."""
    if isinstance(calibration, np.ndarray) and calibration.ndim in (2, 3):
        sequences = [calibration] if calibration.ndim == 2 else list(calibration)
    elif isinstance(calibration, (list, tuple)):
        sequences = [np.asarray(s, dtype=np.float64) for s in calibration]
    else:
        array = np.asarray(calibration, dtype=np.float64)
        if array.ndim not in (2, 3):
            raise InputError(f"calibration frames must be one sequence (frames, {inputs}), a "
                             f"batch (sequences, frames, {inputs}) or a list of sequences, "
                             f"not an array of shape {array.shape}")
        sequences = [array] if array.ndim == 2 else list(array)
    checked = []
    for index, sequence in enumerate(sequences):
        sequence = np.asarray(sequence, dtype=np.float64)
        if sequence.ndim != 2 or sequence.shape[1] != inputs or len(sequence) == 0:
            raise InputError(f"calibration sequence {index} has shape {sequence.shape}; the "
                             f"model takes frames of {inputs} inputs")
        if not np.all(np.isfinite(sequence)):
            raise InputError(f"calibration sequence {index} holds NaN or infinite values")
        checked.append(sequence)
    if not checked:
        raise InputError("calibration data holds no sequence")
    return checked


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def float_forward(description, frames, state=None):
    """Run a :class:`~ese.sw.compiler.model.ModelDescription` in float64, from zero state or
    from ``state``: each layer's ``(y0, c0)`` (a GRU layer's c0 unused).

    Returns the list of every layer's outputs y, each (frames, outputs), in time order (a
    bidirectional layer's backward half runs over the frames in reverse): the same equations
    as PyTorch's (gates i, f, g, o; peepholes; projection; or a GRU's, or a simple RNN's),
    with the same real weights. This is every front end's float reference: what a compiled
    program is compared with, whatever framework the model came from.
    """
    sequence = np.asarray(frames, dtype=np.float64)
    outputs = [None] * len(description.layers)
    for stage in description.stages():
        for index in stage:
            layer = description.layers[index]
            backward = layer.direction == "backward"
            start = None if state is None else state[index]
            result = _layer_forward(layer, sequence[::-1] if backward else sequence, start)
            outputs[index] = result[::-1] if backward else result
        sequence = np.concatenate([outputs[index] for index in stage], axis=1)
    return outputs


def _layer_forward(layer, sequence, state):
    """One layer over a sequence (frames, inputs) from zero state or ``state`` (y0, c0)."""
    cells = layer.cells
    from_input = sequence @ layer.input_weights.T + layer.bias
    y = np.zeros(layer.recurrent)
    c = np.zeros(cells)
    if state is not None:
        y = np.asarray(state[0], dtype=np.float64).reshape(layer.recurrent)
        if not layer.is_gru:
            c = np.asarray(state[1], dtype=np.float64).reshape(cells)
    peephole = layer.peephole if layer.peephole is not None else np.zeros((3, cells))
    result = np.empty((len(sequence), layer.outputs))
    for t in range(len(sequence)):
        gates = (from_input[t] + layer.recurrent_weights @ y).reshape(4, cells)
        if layer.is_rnn:
            y = np.tanh(gates[GRU_SLOTS.index("n_x")])
        elif layer.is_gru:
            slot = dict(zip(GRU_SLOTS, gates))
            r, z = _sigmoid(slot["r"]), _sigmoid(slot["z"])
            n = np.tanh(slot["n_x"] + r * slot["n_h"])
            y = (1 - z) * n + z * y
        else:
            i = _sigmoid(gates[0] + peephole[0] * c)
            f = _sigmoid(gates[1] + peephole[1] * c)
            g = np.tanh(gates[2])
            c = f * c + i * g
            o = _sigmoid(gates[3] + peephole[2] * c)
            m = o * np.tanh(c)
            y = layer.projection @ m if layer.projection is not None else m
        result[t] = y
    return result


def float_outputs(description, frames, state=None):
    """The model's outputs by :func:`float_forward` (its last stage's: a bidirectional
    layer's halves concatenated): what a program's float reference returns."""
    outputs = float_forward(description, frames, state)
    return np.concatenate([outputs[index] for index in description.stages()[-1]], axis=1)


def choose_formats(description, config, calibration=None, runs=None):
    """Each layer's :class:`LayerFormats` for ``config``.

    Each matrix, the peepholes and the biases take the finest format of their width that
    holds them (min-max), within what the accumulator grid allows: a matrix may be finer than
    configured only where its input is coarser, since a product's fraction bits are the sum
    of its factors'. ``calibration`` (a list of (frames, inputs) arrays, or None) chooses the
    first layer's input format and each projection's output format the same way from the
    values the float model sees on it; without it they are the configured one. Where the
    alignment range (``Config.align_bits``) cannot hold a pair, the matrix keeps the finer
    format and saturates (the report counts it). ``runs`` may give :func:`float_forward`'s
    result on each calibration sequence, computed once for the caller's own use too.
    """
    limit = config.max_align
    inputs = outputs = None
    if calibration is not None:
        inputs = np.concatenate([s.ravel() for s in calibration])
        if runs is None:
            runs = [float_forward(description, s) for s in calibration]
        outputs = [np.concatenate([run[k].ravel() for run in runs])
                   for k in range(len(description.layers))]
    weight, bias, act = config.weight_format, config.bias_format, config.activation_format
    chosen = [None] * len(description.layers)
    stage_output = None          # the shift of the previous stage's output y
    for stage in description.stages():
        for index in stage:
            layer = description.layers[index]
            if index != stage[0]:
                # A bidirectional layer's backward half reads the forward half's input as it is.
                given = chosen[stage[0]].input
                input_shift, input_low, input_high = given, given, given
            elif stage_output is not None:
                input_shift, input_low, input_high = stage_output, stage_output, stage_output
            elif inputs is not None:
                input_shift = coarsening(inputs, act, -limit, limit)
                input_low, input_high = input_shift, limit
            else:
                input_shift = input_low = input_high = 0
            input_weights, input_shift = _pair(layer.input_weights, weight, input_shift,
                                               input_low, input_high, limit)
            if layer.projection is not None:
                # y may be coarser than its values need, so that a W_r of small weights can
                # be finer: both are this layer's choice (the next layer reads y as it is).
                output_low = (coarsening(outputs[index], act, 0, limit) if outputs is not None
                              else 0)
                recurrent_weights, output_shift = _pair(layer.recurrent_weights, weight,
                                                        output_low, output_low, limit, limit)
            else:
                recurrent_weights, output_shift = _pair(layer.recurrent_weights, weight, 0, 0,
                                                        0, limit)
            chosen[index] = LayerFormats(
                input=input_shift,
                output=output_shift,
                input_weights=input_weights,
                recurrent_weights=recurrent_weights,
                projection=(coarsening(layer.projection, weight, 0, limit)
                            if layer.projection is not None else 0),
                peephole=(coarsening(layer.peephole, weight, 0, limit)
                          if layer.peephole is not None else 0),
                bias=coarsening(layer.bias, bias, 0, limit))
        # The stage's halves share one output format (the next stage reads them as one
        # vector): the coarser, each W_r kept within the alignment range beside it.
        stage_output = max(chosen[index].output for index in stage)
        for index in stage:
            formats = chosen[index]
            chosen[index] = dataclasses.replace(
                formats, output=stage_output,
                recurrent_weights=min(formats.recurrent_weights, limit - stage_output))
    return chosen
