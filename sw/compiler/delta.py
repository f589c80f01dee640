"""Delta layers in float PyTorch: the forward pass that delta-aware training runs.

:func:`delta_forward` runs a ``torch.nn.LSTM`` (with or without projection) or
``torch.nn.GRU`` as delta layers (docs/arithmetic.md, "Delta layers"): each layer keeps the
last transmitted value of its input, recurrent and (with a projection) cell-output columns
and carried sums; a column whose change exceeds its threshold is transmitted and its change
added, through the weights, to the sums. Training through it (DeltaRNN, EdgeDRNN, Spartus)
teaches the network the thresholds' approximation. The threshold's mask is a step function
whose gradient is zero almost everywhere; autograd takes the gradient of the transmitted
changes as they are (straight through the columns transmitted, none through those skipped),
which is the papers' training. The sums are real numbers here; ``Program.predict`` of a
program compiled with the same thresholds (``ese.compile(..., delta=...)``) is the
bit-exact fixed-point model of what the hardware does.

The module's parameters are read as the module holds them, including
``torch.nn.utils.prune``'s masked weights (``weight_orig * weight_mask``), so pruned
weights stay zero and get no gradient.
"""

import contextlib

import torch
from torch import nn

from ..contract.errors import ConfigError, UnsupportedModelError
from ..runtime.quantized import real_thresholds

__all__ = ["delta_forward", "column_changes"]


def _parameter(module, name):
    """A parameter as the module's forward would see it (pruning's reparametrisation)."""
    if hasattr(module, name + "_orig"):
        return getattr(module, name + "_orig") * getattr(module, name + "_mask")
    return getattr(module, name)


def _thresholds(thresholds, layers):
    """Each layer's ``[theta_x, theta_h, theta_m]`` (as ``ese.compile``'s ``delta`` reads
    them)."""
    per_layer = list(thresholds) if isinstance(thresholds, list) else [thresholds] * layers
    if len(per_layer) != layers:
        raise ConfigError(f"{len(per_layer)} layers' thresholds for {layers} layers")
    return [real_thresholds(entry, f"layer {index}") for index, entry in enumerate(per_layer)]


def _transmit(values, last, threshold):
    """The delta rule: (transmitted change, new last values, transmitted mask)."""
    change = values - last
    sent = (change.abs() > threshold).to(values.dtype)
    delta = change * sent
    return delta, last + delta, sent


def delta_forward(module, x, thresholds, statistics=None):
    """Run ``module`` over ``x`` as delta layers from zero state; returns its output.

    Parameters
    ----------
    module : torch.nn.LSTM or torch.nn.GRU
        Unidirectional, any layer count, with or without biases (an LSTM's projection too).
    x : tensor
        (batch, time, inputs) if ``module.batch_first``, else (time, batch, inputs); or one
        unbatched sequence (time, inputs).
    thresholds : (theta_x, theta_h) or (theta_x, theta_h, theta_m), or a list per layer
        Real thresholds (theta_m defaults to theta_h).
    statistics : dict, optional
        Receives, per column kind (``x``, ``h``, ``m``), the columns transmitted and the
        columns seen (sums over layers, frames and the batch, padding included), and as
        ``change`` (a tensor in the graph) the mean absolute change of the recurrent and
        cell-output columns from one frame to the next: the L1 term that delta-aware training
        may add to its loss to make the states change less often (Neil et al., "Delta
        Networks", 2017).

    Returns
    -------
    tensor
        The last layer's output, shaped as ``module(x)[0]``.
    """
    if not isinstance(module, (nn.LSTM, nn.GRU)) or module.bidirectional:
        raise UnsupportedModelError("delta_forward runs unidirectional torch.nn.LSTM and "
                                    f"torch.nn.GRU modules, not {type(module).__name__}")
    gru = isinstance(module, nn.GRU)
    per_layer = _thresholds(thresholds, module.num_layers)
    unbatched = x.dim() == 2
    if unbatched:
        sequence = x[None]
    else:
        sequence = x if module.batch_first else x.transpose(0, 1)  # (batch, time, features)
    batch, frames = sequence.shape[:2]
    counts = statistics if statistics is not None else {}
    for kind in "xhm":
        counts.setdefault(kind, [0.0, 0.0])
    change_sum, change_count = 0.0, 0
    for index in range(module.num_layers):
        theta_x, theta_h, theta_m = per_layer[index]
        w_ih = _parameter(module, f"weight_ih_l{index}")
        w_hh = _parameter(module, f"weight_hh_l{index}")
        hidden = module.hidden_size
        bias = torch.zeros(w_ih.shape[0], dtype=sequence.dtype)
        recurrent_bias = torch.zeros(w_hh.shape[0], dtype=sequence.dtype)
        if module.bias:
            bias = _parameter(module, f"bias_ih_l{index}")
            recurrent_bias = _parameter(module, f"bias_hh_l{index}")
        projection = (_parameter(module, f"weight_hr_l{index}")
                      if not gru and module.proj_size else None)
        outputs_size = projection.shape[0] if projection is not None else hidden
        # The input's changes do not depend on this layer's recurrence, so its sums of
        # W_ih * change are one product, summed over time; the first layer's changes
        # depend on no parameter and are found without the graph.
        with torch.no_grad() if index == 0 else contextlib.nullcontext():
            last = torch.zeros_like(sequence[:, 0])
            changes = []
            for t in range(frames):
                delta, last, sent = _transmit(sequence[:, t], last, theta_x)
                changes.append(delta)
                counts["x"][0] += float(sent.detach().sum())
            counts["x"][1] += float(sequence.numel())
            changes = torch.stack(changes, 1)
        from_input = torch.cumsum(changes @ w_ih.T, dim=1) + bias
        y = torch.zeros(batch, outputs_size, dtype=sequence.dtype)
        last_h = torch.zeros_like(y)
        carried_h = recurrent_bias.expand(batch, -1)
        c = torch.zeros(batch, hidden, dtype=sequence.dtype)
        if projection is not None:
            last_m = torch.zeros(batch, hidden, dtype=sequence.dtype)
            carried_y = torch.zeros(batch, outputs_size, dtype=sequence.dtype)
        outputs = []
        previous_m = None
        for t in range(frames):
            delta_h, last_h, sent = _transmit(y, last_h, theta_h)
            counts["h"][0] += float(sent.detach().sum())
            counts["h"][1] += float(sent.numel())
            carried_h = carried_h + delta_h @ w_hh.T
            if gru:
                x_r, x_z, x_n = from_input[:, t].chunk(3, 1)
                h_r, h_z, h_n = carried_h.chunk(3, 1)
                r = torch.sigmoid(x_r + h_r)
                z = torch.sigmoid(x_z + h_z)
                n = torch.tanh(x_n + r * h_n)
                y = c = n + z * (c - n)
            else:
                i, f, g, o = (from_input[:, t] + carried_h).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                m = torch.sigmoid(o) * torch.tanh(c)
                if projection is None:
                    y = m
                else:
                    if previous_m is not None:
                        change_sum = change_sum + (m - previous_m).abs().sum()
                        change_count += m.numel()
                    previous_m = m
                    delta_m, last_m, sent = _transmit(m, last_m, theta_m)
                    counts["m"][0] += float(sent.detach().sum())
                    counts["m"][1] += float(sent.numel())
                    carried_y = carried_y + delta_m @ projection.T
                    y = carried_y
            if outputs:
                change_sum = change_sum + (y - outputs[-1]).abs().sum()
                change_count += y.numel()
            outputs.append(y)
        sequence = torch.stack(outputs, 1)
    counts["change"] = change_sum / max(change_count, 1)
    if unbatched:
        return sequence[0]
    return sequence if module.batch_first else sequence.transpose(0, 1)


def column_changes(statistics):
    """The fraction of columns transmitted per kind, from :func:`delta_forward`'s
    ``statistics``."""
    return {kind: (sent / seen if seen else 0.0) for kind, (sent, seen) in statistics.items()
            if kind in "xhm"}
