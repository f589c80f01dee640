"""The arithmetic contract: fixed-point formats, rounding, saturation and activation tables.

The golden model (:mod:`ese.sw.runtime.golden`) and the hardware (:mod:`ese.hw`) both take their
rules and constants from this module, so they cannot drift apart. ``docs/arithmetic.md``
states the same contract in prose. In short:

* Every value is a signed two's-complement integer ``v`` standing for ``v / 2**frac``.
* Rounding happens only where precision is dropped, always the same way: round to nearest,
  ties towards plus infinity (add half an LSB, then shift right arithmetically).
* Every value that is narrowed saturates to its format's range; nothing wraps around.
* Accumulators are wide enough that they cannot overflow (the compiler checks the bound),
  so sums are exact and independent of the order of accumulation.
* Sigmoid and tanh come from tables of ``2**table_index_bits`` segments spanning the whole
  activation range, with linear interpolation between adjacent entries.

Functions work on numpy integer arrays (int64) and on Python ints.
"""

from dataclasses import dataclass

import numpy as np

from .memory_map import DELTA_THRESHOLDS, GRU_SLOTS

__all__ = [
    "FixedFormat", "round_shift", "saturate", "requantize", "quantize", "dequantize",
    "ActivationTable", "sigmoid_table", "tanh_table", "cell_update", "LayerFormats",
    "project_output", "gru_update", "gru_hidden_format", "gru_candidate_frac_bits",
    "DeltaThresholds", "delta_columns",
]


@dataclass(frozen=True)
class FixedFormat:
    """A signed fixed-point format: ``bits`` in all, ``frac`` of them after the point."""

    bits: int
    frac: int

    @property
    def min_code(self):
        return -(1 << (self.bits - 1))

    @property
    def max_code(self):
        return (1 << (self.bits - 1)) - 1

    @property
    def scale(self):
        return float(1 << self.frac)

    @property
    def min_value(self):
        return self.min_code / self.scale

    @property
    def max_value(self):
        return self.max_code / self.scale

    def __str__(self):
        return f"Q{self.bits - self.frac - 1}.{self.frac} ({self.bits}-bit signed)"


@dataclass(frozen=True)
class LayerFormats:
    """The fixed-point formats of one layer, as shifts from the configured ones.

    Each field says how many fraction bits fewer than the configured format of its kind a
    layer's values have: 0 is the configured format itself (``Config.weight_format`` for the
    matrices and peepholes, ``bias_format`` for the biases, ``activation_format`` for the
    input x and the output y), ``k`` the same width with ``k`` fewer fraction bits, so ``2**k``
    times the range, and ``-k`` (weights and the first input only; see :meth:`check`) ``k``
    more. The compiler chooses them (:mod:`ese.sw.compiler.formats`); the hardware
    and the golden model align every product onto the accumulator grid of the configured
    formats (``product_frac_bits``) with the shifts of :meth:`alignments`, so that sums stay
    exact. ``output`` is 0 without a projection (y = m, in the activation format); a layer's
    ``input`` is the previous layer's ``output``.
    """

    input: int = 0
    output: int = 0
    input_weights: int = 0
    recurrent_weights: int = 0
    projection: int = 0
    peephole: int = 0
    bias: int = 0

    NAMES = ("input", "output", "input_weights", "recurrent_weights", "projection",
             "peephole", "bias")

    def format(self, config, name):
        """The :class:`FixedFormat` of ``name`` (one of :attr:`NAMES`) under ``config``."""
        base = {"input": config.activation_format, "output": config.activation_format,
                "bias": config.bias_format}.get(name, config.weight_format)
        return FixedFormat(base.bits, base.frac - getattr(self, name))

    def alignments(self):
        """Left shifts that bring each kind of term onto the accumulator grid, beyond the
        configured formats' own fixed shifts: the layer descriptor's alignment fields."""
        return {
            "input_align": self.input_weights + self.input,        # W_x x
            "recurrent_align": self.recurrent_weights + self.output,  # W_r y_{t-1}
            "projection_align": self.projection,                   # W_ym m (m: activation)
            "bias_align": self.bias,
            "peephole_align": self.peephole,
            "output_align": self.output,                           # y = requant(W_ym m)
        }

    def to_dict(self):
        return {name: getattr(self, name) for name in self.NAMES}

    @classmethod
    def from_dict(cls, values):
        return cls(**{name: int(values[name]) for name in cls.NAMES})

    def check(self, config, proj, what="a layer"):
        """Refuse formats the hardware cannot align.

        Every shift is a count, except that a matrix's weights may be finer than configured
        (a negative shift) where its input is coarser: the product grid only needs the two
        together, ``input_weights + input`` and ``recurrent_weights + output``, at least 0.
        The first layer's input may likewise be finer where W_x is coarser. Every alignment
        must fit ``Config.align_bits``, and every format keep at least 0 fraction bits.
        """
        for name in self.NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{what}: format shift {name}={value!r} is not an integer")
            if value < 0 and name not in ("input", "input_weights", "recurrent_weights"):
                raise ValueError(f"{what}: format shift {name}={value} may not be negative")
            if self.format(config, name).frac < 0:
                raise ValueError(f"{what}: format shift {name}={value} leaves fewer than 0 "
                                 f"fraction bits")
        for name, value in self.alignments().items():
            if not 0 <= value <= config.max_align:
                raise ValueError(f"{what}: alignment {name}={value} is outside 0 .. "
                                 f"{config.max_align} (Config.align_bits={config.align_bits})")
        if not proj and self.output:
            raise ValueError(f"{what}: a layer without projection outputs m in the activation "
                             f"format (output shift 0, not {self.output})")


@dataclass(frozen=True)
class DeltaThresholds:
    """A delta layer's thresholds (docs/arithmetic.md, "Delta layers: temporal sparsity").

    Each is a count of LSBs of its columns' format: ``x`` of the layer's input (its
    ``input`` format), ``h`` of its recurrent input y_{t-1} (its ``output`` format) and ``m``
    of the cell outputs the projection reads (the activation format; unused without a
    projection). A column is transmitted when its change since it was last transmitted
    exceeds the threshold; with every threshold 0 a delta layer computes exactly what the
    layer does without them.
    """

    x: int = 0
    h: int = 0
    m: int = 0

    NAMES = DELTA_THRESHOLDS

    def check(self, config, what="a layer"):
        limit = (1 << config.activation_bits) - 1
        for name in self.NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{what}: delta threshold {name}={value!r} is not an integer "
                                 f"count of LSBs")
            if not 0 <= value <= limit:
                raise ValueError(f"{what}: delta threshold {name}={value} is outside 0 .. "
                                 f"{limit} LSBs (activation_bits={config.activation_bits})")

    def descriptor_fields(self):
        """The layer descriptor's threshold fields (``theta_x``, ...)."""
        return {f"theta_{name}": int(getattr(self, name)) for name in self.NAMES}

    @classmethod
    def from_descriptor(cls, descriptor):
        """The thresholds of a layer descriptor, None where its ``delta`` bit is clear."""
        if not descriptor["delta"]:
            return None
        return cls(**{name: int(descriptor[f"theta_{name}"]) for name in cls.NAMES})


def delta_columns(values, last, threshold):
    """The delta rule for one vector of columns (docs/arithmetic.md).

    ``values`` is v_t and ``last`` the last transmitted values v_hat (int arrays of one
    shape), ``threshold`` a count of LSBs. Returns ``(delta, transmitted)``: ``delta`` is
    ``values - last`` where ``|values - last| > threshold`` and 0 elsewhere (one bit wider
    than the values' format: the difference of two codes), ``transmitted`` the boolean mask.
    The caller updates ``last[transmitted] = values[transmitted]``.
    """
    change = np.asarray(values, dtype=np.int64) - np.asarray(last, dtype=np.int64)
    transmitted = np.abs(change) > threshold
    return np.where(transmitted, change, 0), transmitted


def round_shift(value, shift):
    """Divide by ``2**shift`` with round-to-nearest, ties up; multiply if ``shift <= 0``.

    ``(v + 2**(shift-1)) >> shift`` with an arithmetic shift, exactly what the hardware does.
    """
    if shift > 0:
        return (value + (1 << (shift - 1))) >> shift
    return value << (-shift)


def saturate(value, bits):
    """Clamp to the range of a ``bits``-wide signed integer."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if isinstance(value, np.ndarray):
        return np.clip(value, low, high)
    return min(max(value, low), high)


def requantize(value, frac, fmt):
    """Convert ``value`` (with ``frac`` fraction bits) to ``fmt``: round, then saturate."""
    return saturate(round_shift(value, frac - fmt.frac), fmt.bits)


def quantize(values, fmt):
    """Encode real numbers in ``fmt``.

    Rounds to nearest (ties to even, as numpy does) and saturates. Returns the int64 codes and
    the number of values that saturated. The caller refuses NaN and infinities first.
    """
    scaled = np.rint(np.asarray(values, dtype=np.float64) * fmt.scale)
    saturated = int(np.count_nonzero((scaled < fmt.min_code) | (scaled > fmt.max_code)))
    return np.clip(scaled, fmt.min_code, fmt.max_code).astype(np.int64), saturated


def dequantize(codes, fmt):
    """The real numbers that ``codes`` in ``fmt`` stand for."""
    return np.asarray(codes, dtype=np.float64) / fmt.scale


class ActivationTable:
    """A sigmoid or tanh lookup table with linear interpolation.

    The input is an activation code ``u`` (``input_format``). Its offset ``u + 2**(bits-1)``
    is split into a segment index (the top ``index_bits``) and a position inside the segment
    (the low ``bits - index_bits``, called ``F``). The result, with the activation format's
    fraction bits, is ``base[index] + round_shift(slope[index] * position, F)``, where
    ``base[k]`` is the function at the segment's left end and ``slope[k]`` the step to the next
    segment's left end (both rounded to nearest). The table spans the whole input range, so no
    input falls outside it.
    """

    def __init__(self, function, input_format, index_bits, name):
        self.name = name
        self.input_format = input_format
        self.index_bits = index_bits
        self.position_bits = input_format.bits - index_bits
        segments = 1 << index_bits
        ends = (np.arange(segments + 1, dtype=np.float64) * (1 << self.position_bits)
                + input_format.min_code) / input_format.scale
        points = np.rint(function(ends) * input_format.scale).astype(np.int64)
        self.base = points[:-1].copy()
        self.slope = np.diff(points)

    @property
    def base_bits(self):
        """Signed width that holds every base value."""
        return _signed_width(self.base)

    @property
    def slope_bits(self):
        """Signed width that holds every slope value."""
        return _signed_width(self.slope)

    def lookup(self, codes):
        """Evaluate the table on activation codes (numpy array or int)."""
        fmt = self.input_format
        offset = np.asarray(codes, dtype=np.int64) - fmt.min_code
        index = offset >> self.position_bits
        position = offset & ((1 << self.position_bits) - 1)
        return self.base[index] + round_shift(self.slope[index] * position, self.position_bits)


def _signed_width(values):
    low, high = int(np.min(values)), int(np.max(values))
    width = 1
    while not (-(1 << (width - 1)) <= low and high <= (1 << (width - 1)) - 1):
        width += 1
    return width


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_table(config):
    """The sigmoid table of ``config`` (see :class:`ActivationTable`)."""
    return ActivationTable(_sigmoid, config.activation_format, config.table_index_bits, "sigmoid")


def tanh_table(config):
    """The tanh table of ``config`` (see :class:`ActivationTable`)."""
    return ActivationTable(np.tanh, config.activation_format, config.table_index_bits, "tanh")


def project_output(config, total, formats):
    """y from a projection accumulator (``product_frac_bits``, products aligned), in the
    layer's output format: a floor shift by ``formats.output`` (exact division by its power
    of two, rounding down), then rounding and saturation to the activation width as with the
    configured format. With ``weight_frac_bits >= 1`` this is round-to-nearest, ties up,
    straight to the output format."""
    return requantize(total >> formats.output, config.product_frac_bits,
                      config.activation_format)


def cell_update(config, gates, bias, peephole, cell, sigmoid=None, tanh=None, formats=None,
                saturated=None):
    """One LSTM cell update in integers, exactly as the hardware's cell unit does it.

    Parameters
    ----------
    gates : int64 array (4, cells)
        Accumulated ``W_x x + W_r y`` per gate (i, f, g, o), with ``product_frac_bits``.
    bias : int64 array (4, cells)
        Biases in ``bias_format``.
    peephole : int64 array (3, cells)
        Peephole weights w_ic, w_fc, w_oc in ``weight_format`` (zeros where there are none).
    cell : int64 array (cells,)
        Previous cell state in ``cell_format``.
    formats : LayerFormats, optional
        The layer's formats (the configured ones by default): biases in
        ``formats.format(config, "bias")``, peepholes in ``format(config, "peephole")``.
    saturated : dict, optional
        If given, ``saturated["cell"]`` is increased by the cell states that saturated.

    Returns
    -------
    (cell, output) : int64 arrays
        The new cell state (``cell_format``) and m = o * tanh(c) (``activation_format``).
    """
    sigmoid = sigmoid or sigmoid_table(config)
    tanh = tanh or tanh_table(config)
    act = config.activation_format
    acc_frac = config.product_frac_bits
    formats = formats or LayerFormats()
    bias_shift = acc_frac - config.bias_frac_bits + formats.bias
    # Peephole products carry weight_frac + cell_frac fraction bits; the accumulator grid has
    # weight_frac + activation_frac, so they move left by the difference, exactly.
    cell_shift = config.activation_frac_bits - config.cell_frac_bits
    peep_shift = cell_shift + formats.peephole

    def gate_input(gate, peep=None):
        total = gates[gate] + (bias[gate] << bias_shift)
        if peep is not None:
            total = total + (peep << peep_shift)
        return requantize(total, acc_frac, act)

    i = sigmoid.lookup(gate_input(0, peephole[0] * cell))
    f = sigmoid.lookup(gate_input(1, peephole[1] * cell))
    g = tanh.lookup(gate_input(2))
    # f*c has activation_frac + cell_frac fraction bits and i*g has 2*activation_frac: align
    # f*c to i*g, add exactly, then round once into the cell format.
    mixed = ((f * cell) << cell_shift) + i * g
    new_cell = requantize(mixed, 2 * config.activation_frac_bits, config.cell_format)
    if saturated is not None:
        exact = round_shift(mixed, 2 * config.activation_frac_bits - config.cell_frac_bits)
        saturated["cell"] = saturated.get("cell", 0) + int(np.count_nonzero(exact != new_cell))
    o = sigmoid.lookup(gate_input(3, peephole[2] * new_cell))
    squashed = tanh.lookup(requantize(new_cell, config.cell_frac_bits, act))
    output = requantize(o * squashed, 2 * config.activation_frac_bits, act)
    return new_cell, output


def gru_hidden_format(config):
    """The format of a GRU's n_h sum (``W_hn h + b_hn``) where the reset gate multiplies it:
    the activation format's fraction bits, and the accumulator's range (``accumulator_bits -
    weight_frac_bits`` bits), so it is rounded once and never saturates on a sum the
    accumulators hold. 26 bits with ESE's widths: one DSP48E2 multiplies it by r."""
    return FixedFormat(config.accumulator_bits - config.weight_frac_bits,
                       config.activation_frac_bits)


def gru_candidate_frac_bits(config):
    """Fraction bits of the GRU candidate's exact sum ``n_x + r * n_h``: the finer of the
    accumulator grid (n_x) and of r's product with n_h (twice the activation's)."""
    return max(config.product_frac_bits, 2 * config.activation_frac_bits)


def gru_update(config, gates, bias, previous, sigmoid=None, tanh=None, formats=None,
               rnn=False):
    """One GRU update in integers, exactly as the hardware's cell unit does it.

    PyTorch's ``nn.GRU``: r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z = sigmoid(W_iz x +
    b_iz + W_hz h + b_hz), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n +
    z * h, computed as h' = n + z * (h - n). With ``rnn`` (a simple RNN's layer, see
    :data:`~ese.sw.contract.memory_map.CELL_KINDS`) z is held at zero, so h' = n.

    Parameters
    ----------
    gates : int64 array (4, cells)
        Accumulated sums per slot (r, z, n_x, n_h; ``ese.sw.contract.memory_map.GRU_SLOTS``),
        with ``product_frac_bits``.
    bias : int64 array (4, cells)
        The slots' biases in the layer's bias format.
    previous : int64 array (cells,)
        h_{t-1} in the activation format.
    formats : LayerFormats, optional
        The layer's formats (the configured ones by default).

    Returns
    -------
    int64 array (cells,)
        h_t in the activation format.
    """
    sigmoid = sigmoid or sigmoid_table(config)
    tanh = tanh or tanh_table(config)
    act = config.activation_format
    acc_frac = config.product_frac_bits
    frac = config.activation_frac_bits
    formats = formats or LayerFormats()
    bias_shift = acc_frac - config.bias_frac_bits + formats.bias
    total = lambda name: gates[GRU_SLOTS.index(name)] + (bias[GRU_SLOTS.index(name)]
                                                        << bias_shift)
    r = sigmoid.lookup(requantize(total("r"), acc_frac, act))
    z = sigmoid.lookup(requantize(total("z"), acc_frac, act))
    if rnn:
        z = np.zeros_like(z)
    hidden = requantize(total("n_h"), acc_frac, gru_hidden_format(config))
    grid = gru_candidate_frac_bits(config)
    candidate = (total("n_x") << (grid - acc_frac)) + ((r * hidden) << (grid - 2 * frac))
    n = tanh.lookup(requantize(candidate, grid, act))
    return requantize((n << frac) + z * (previous - n), 2 * frac, act)
