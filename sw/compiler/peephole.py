"""PeepholeLSTM: the LSTM with peepholes and projection ("LSTMP") that ESE runs, in PyTorch.

For each frame t::

    i_t = sigmoid(W_ix x_t + W_ir y_{t-1} + w_ic * c_{t-1} + b_i)
    f_t = sigmoid(W_fx x_t + W_fr y_{t-1} + w_fc * c_{t-1} + b_f)
    g_t = tanh   (W_gx x_t + W_gr y_{t-1}                  + b_g)
    c_t = f_t * c_{t-1} + i_t * g_t
    o_t = sigmoid(W_ox x_t + W_or y_{t-1} + w_oc * c_t     + b_o)
    m_t = o_t * tanh(c_t)
    y_t = W_ym m_t            (y_t = m_t when proj_size == 0)

The module trains with autograd and follows ``torch.nn.LSTM``'s conventions: parameter names
``weight_ih_l{k}``, ``weight_hh_l{k}``, ``weight_hr_l{k}`` (gate order i, f, g, o), shapes of
inputs and outputs, ``batch_first`` and unbatched inputs. It adds ``bias_l{k}`` (one bias per
gate row) and ``weight_peephole_l{k}`` (rows w_ic, w_fc, w_oc).
"""

import math

import torch
from torch import nn

__all__ = ["PeepholeLSTM"]


class PeepholeLSTM(nn.Module):
    """A stack of LSTM layers with peephole connections and an optional projection.

    Parameters
    ----------
    input_size, hidden_size : int
        Features of x and number of cells per layer.
    proj_size : int
        Size of the projection y = W_ym m; 0 for none.
    num_layers : int
        Stacked layers; layer k + 1 reads layer k's y.
    bias : bool
        Whether the gates have biases.
    batch_first : bool
        Inputs and outputs are (batch, time, features) instead of (time, batch, features).
    """

    def __init__(self, input_size, hidden_size, proj_size=0, num_layers=1, bias=True,
                 batch_first=False):
        super().__init__()
        for name, value, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                                 ("proj_size", proj_size, 0), ("num_layers", num_layers, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"PeepholeLSTM {name} must be an integer >= {low}, not {value!r}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size ({proj_size}) must be smaller than hidden_size "
                             f"({hidden_size})")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.proj_size = proj_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        output_size = proj_size or hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else output_size
            self.register_parameter(f"weight_ih_l{layer}",
                                    nn.Parameter(torch.empty(4 * hidden_size, layer_input)))
            self.register_parameter(f"weight_hh_l{layer}",
                                    nn.Parameter(torch.empty(4 * hidden_size, output_size)))
            self.register_parameter(f"weight_peephole_l{layer}",
                                    nn.Parameter(torch.empty(3, hidden_size)))
            self.register_parameter(f"bias_l{layer}", nn.Parameter(torch.empty(4 * hidden_size))
                                    if bias else None)
            self.register_parameter(f"weight_hr_l{layer}",
                                    nn.Parameter(torch.empty(proj_size, hidden_size))
                                    if proj_size else None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    @property
    def output_size(self):
        return self.proj_size or self.hidden_size

    def layer_parameters(self, layer):
        """The parameters of one layer, by role (None where absent)."""
        return {
            "input_weights": getattr(self, f"weight_ih_l{layer}"),
            "recurrent_weights": getattr(self, f"weight_hh_l{layer}"),
            "peephole": getattr(self, f"weight_peephole_l{layer}"),
            "bias": getattr(self, f"bias_l{layer}"),
            "projection": getattr(self, f"weight_hr_l{layer}"),
        }

    def forward(self, input, state=None):
        """Run the stack over a sequence.

        Parameters
        ----------
        input : tensor (time, batch, input_size), or (batch, time, ...) if batch_first,
            or (time, input_size) unbatched.
        state : (y_0, c_0) or None
            Each (num_layers, batch, size), or (num_layers, size) unbatched; zeros if None.

        Returns
        -------
        output, (y_n, c_n)
            ``output`` holds the last layer's y for every frame, shaped like the input.
        """
        unbatched = input.dim() == 2
        if input.dim() not in (2, 3):
            raise ValueError(f"PeepholeLSTM expects a 2-D or 3-D input, not {input.dim()}-D")
        if unbatched:
            input = input.unsqueeze(1)
        elif self.batch_first:
            input = input.transpose(0, 1)
        if input.shape[-1] != self.input_size:
            raise ValueError(f"PeepholeLSTM expects {self.input_size} input features, "
                             f"not {input.shape[-1]}")
        batch = input.shape[1]
        if state is None:
            zeros = input.new_zeros
            y_state = zeros(self.num_layers, batch, self.output_size)
            c_state = zeros(self.num_layers, batch, self.hidden_size)
        else:
            y_state, c_state = state
            if unbatched:
                y_state, c_state = y_state.unsqueeze(1), c_state.unsqueeze(1)
        final_y, final_c = [], []
        sequence = input
        for layer in range(self.num_layers):
            sequence, (y, c) = self._run_layer(layer, sequence, y_state[layer], c_state[layer])
            final_y.append(y)
            final_c.append(c)
        y_n, c_n = torch.stack(final_y), torch.stack(final_c)
        output = sequence
        if unbatched:
            return output.squeeze(1), (y_n.squeeze(1), c_n.squeeze(1))
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (y_n, c_n)

    def _run_layer(self, layer, sequence, y, c):
        p = self.layer_parameters(layer)
        w_ic, w_fc, w_oc = p["peephole"]
        # The input contribution does not depend on the recurrence: one matrix product.
        from_input = sequence @ p["input_weights"].t()
        if p["bias"] is not None:
            from_input = from_input + p["bias"]
        outputs = []
        for step in range(sequence.shape[0]):
            pre = from_input[step] + y @ p["recurrent_weights"].t()
            pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=-1)
            i = torch.sigmoid(pre_i + w_ic * c)
            f = torch.sigmoid(pre_f + w_fc * c)
            g = torch.tanh(pre_g)
            c = f * c + i * g
            o = torch.sigmoid(pre_o + w_oc * c)
            m = o * torch.tanh(c)
            y = m @ p["projection"].t() if p["projection"] is not None else m
            outputs.append(y)
        return torch.stack(outputs), (y, c)

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        return text
