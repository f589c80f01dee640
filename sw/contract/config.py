"""Hardware parameters: the one place that says how wide, how many and how deep.

The compiler, the hardware generator, the weight-image header and the simulator all read a
:class:`Config`; nothing derives a bit width or a PE count on its own. Bit widths default to
ESE's (12-bit weights with 4-bit relative indices, 16-bit activations). Memory capacities
default to ``None``, which means "size the memories for the model being compiled"; a compiled
:class:`~ese.sw.runtime.program.Program` always carries a config with every capacity resolved.
"""

import dataclasses
from dataclasses import dataclass, fields

from .arithmetic import FixedFormat
from .errors import ConfigError

__all__ = ["Config", "CAPACITY_FIELDS", "RELAID_FIELDS"]


#: Memory capacities, in the order the hardware lists them. ``None`` means "fit the model".
CAPACITY_FIELDS = (
    "max_layers",          # layer descriptors the controller can hold
    "input_depth",         # words of one input frame (two frames are buffered)
    "pointer_depth",       # column pointers per PE (all layers' columns, plus one end pointer)
    "entry_depth",         # sparse (value, relative index) entries per PE
    "cells_per_pe",        # cells of one layer per PE (a PE holds up to 4x as many gate rows)
    "projections_per_pe",  # projection rows of one layer a PE holds
    "cell_depth",          # LSTM cells across all layers (cell state, biases, peepholes)
    "vector_depth",        # activation words: recurrent outputs y and cell outputs m
)

#: Parameters that an image is laid out again for, rather than refused on, when it meets
#: hardware that differs in them: the clock (it only reports), and the memory bus (it sets the
#: beat alignment of the load stream's streamed sections; the driver checks the address range).
RELAID_FIELDS = ("clock_mhz", "memory_data_bits", "memory_address_bits")


def _is_power_of_two(value):
    return isinstance(value, int) and value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class Config:
    """Parameters of one generated accelerator.

    Parameters
    ----------
    pes : int
        Processing elements per channel, a power of two. Row ``r`` of every matrix goes to
        PE ``r mod pes`` (for the gate matrix, ``r`` counts cells; see
        :class:`~ese.sw.contract.placement.Placement`).
    block_columns : int
        Columns per sparse entry, a power of two up to 16: an entry holds the weights of one
        row in ``block_columns`` neighbouring columns under one relative row index (ESE: 1).
        The broadcast sends that many columns per beat and a PE multiplies a whole entry in
        one cycle, so a PE does ``block_columns`` multiplies per cycle for the price of one
        entry's control, and load-balanced pruning keeps or drops whole blocks (Mao et al.
        2017: coarse-grained sparsity). Each layer's inputs, recurrent inputs and cell
        outputs are padded to whole blocks.
    cell_lanes : int
        Cells the cell unit updates per cycle, and projection rows the writeback writes per
        cycle (ESE: 1), a power of two: each lane has its own arithmetic for every channel,
        and the readout brings it its cell's four gates, so above one the PEs must be at least
        four times as many (``pes >= 4 * cell_lanes``), and a cycle's outputs go into one word
        of the vector memory (``cell_lanes <= block_columns``).
    channels : int
        Independent utterances processed in parallel on the same weights.
    weight_bits, weight_frac_bits : int
        Signed fixed-point weights: total bits and fraction bits (ESE: 12 bits).
    index_bits : int
        Relative row index stored beside each weight (ESE: 4). A run of more zero rows than
        ``2**index_bits - 1`` costs a padding entry.
    activation_bits, activation_frac_bits : int
        Signed fixed-point activations: inputs, gate values, cell outputs, projections.
    cell_bits, cell_frac_bits : int
        Signed fixed-point cell state. ``cell_frac_bits`` may not exceed
        ``activation_frac_bits``.
    bias_bits, bias_frac_bits : int
        Signed fixed-point biases (the sum of PyTorch's two bias vectors).
    accumulator_bits : int
        Width of the accumulators. The compiler refuses a model whose rows could overflow
        them, so accumulation is always exact. 36 bits with ESE's formats hold sums up to
        8192 in magnitude: a row's absolute weights may add up to 1024 even with every
        activation at its extreme. Every channel of every PE keeps one accumulator per row,
        so this width sets most of the accelerator's memory and adder size.
    align_bits : int
        Width of the alignment shifts in each layer descriptor (see docs/arithmetic.md,
        "Formats chosen per model"): a matrix's weights, a layer's input or output and its
        biases and peepholes may each take a format up to ``2**align_bits - 1`` fraction bits
        coarser than the configured one, chosen by the compiler from the model (and from
        calibration frames), and the hardware shifts them back onto the common grid before
        they meet. 0 builds no shifters: every format is the configured one.
    gru : int
        1 (the default): the cell unit computes the GRU update besides the LSTM's, so one
        build runs LSTM and GRU layers alike (each layer descriptor says which). 0 builds the
        LSTM update alone, without the GRU's datapath in every channel's cell arithmetic
        (about 300 LUTs and 500 flip-flops each) and the readout's slot rotation (four 4-way
        choices of an accumulator per channel); such hardware runs no GRU layer.
    delta : int
        1: the hardware runs delta layers (docs/arithmetic.md, "Delta layers"): the broadcast
        sends only the columns whose change exceeds the layer's thresholds, and the sums are
        carried from frame to frame. 0 (the default): every non-zero column is sent every
        frame; such hardware runs no delta layer.
    table_index_bits : int
        The sigmoid and tanh tables have ``2**table_index_bits`` segments over the whole
        activation range, with linear interpolation inside a segment.
    entries_per_read : int
        Sparse entries each PE reads from its entry memory per cycle (a power of two). The
        fetch stage turns them into at most one multiply per cycle, skipping padding entries,
        so padding costs no multiply cycles while the reads keep ahead.
    activation_queue_depth : int
        Depth of each PE's queue of broadcast (column, activation) pairs (EIE found 8 best
        for its design; deeper queues absorb more column-to-column imbalance).
    clock_mhz : float
        Clock the design is built and reported for: ESE's 200 MHz unless told otherwise. A
        card's own clock and memory port come from its Board (``ese.boards``), whose
        ``hardware(config)`` sets them.
    memory_data_bits, memory_address_bits : int
        Width of the AXI4 port to the off-chip memory (DDR) that holds the weight image.
    stream_window : int
        0 (the default): every PE holds all its sparse entries on chip, loaded once with the
        image, and the model must fit the entry memories. A power of two: the entries stay in
        the off-chip memory and are streamed into each PE every frame step, through two rings
        of ``stream_window`` entry words per PE (one for the first layer's input columns,
        one for every other column), so models of any size run; each ring must hold at
        least two memory beats. See :mod:`ese.hw.streamer`.
    max_layers, input_depth, pointer_depth, entry_depth, cells_per_pe, projections_per_pe, \
    cell_depth, vector_depth : int
        Memory capacities; ``None`` sizes them for the compiled model (to the next power of
        two, so that similar models share one hardware build).
    """

    pes: int = 32
    block_columns: int = 1
    cell_lanes: int = 1
    channels: int = 1
    weight_bits: int = 12
    weight_frac_bits: int = 10
    index_bits: int = 4
    activation_bits: int = 16
    activation_frac_bits: int = 12
    cell_bits: int = 16
    cell_frac_bits: int = 11
    bias_bits: int = 16
    bias_frac_bits: int = 12
    accumulator_bits: int = 36
    align_bits: int = 4
    gru: int = 1
    delta: int = 0
    table_index_bits: int = 10
    entries_per_read: int = 4
    activation_queue_depth: int = 16
    clock_mhz: float = 200.0
    memory_data_bits: int = 64
    memory_address_bits: int = 32
    stream_window: int = 0
    max_layers: "int | None" = None
    input_depth: "int | None" = None
    pointer_depth: "int | None" = None
    entry_depth: "int | None" = None
    cells_per_pe: "int | None" = None
    projections_per_pe: "int | None" = None
    cell_depth: "int | None" = None
    vector_depth: "int | None" = None

    def __post_init__(self):
        for name in ("gru", "delta"):
            if isinstance(getattr(self, name), bool):
                object.__setattr__(self, name, int(getattr(self, name)))

        def positive_int(name, value, low=1, high=None):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"Config.{name} must be an integer, not {value!r}")
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise ConfigError(f"Config.{name} must be {bound}, not {value}")

        positive_int("pes", self.pes, 1, 1024)
        if not _is_power_of_two(self.pes):
            raise ConfigError(f"Config.pes (the PE count) must be a power of two, not {self.pes}")
        positive_int("block_columns", self.block_columns, 1, 16)
        if not _is_power_of_two(self.block_columns):
            raise ConfigError(f"Config.block_columns (columns per sparse entry) must be a power "
                              f"of two, not {self.block_columns}")
        positive_int("cell_lanes", self.cell_lanes, 1, 16)
        if not _is_power_of_two(self.cell_lanes):
            raise ConfigError(f"Config.cell_lanes (cells updated per cycle) must be a power of "
                              f"two, not {self.cell_lanes}")
        if self.cell_lanes > self.block_columns:
            raise ConfigError(
                f"Config.cell_lanes ({self.cell_lanes}) may not exceed block_columns "
                f"({self.block_columns}): a cycle's outputs go into one word of the vector "
                f"memory, which holds a block of columns")
        if self.cell_lanes > 1 and self.pes < 4 * self.cell_lanes:
            raise ConfigError(
                f"Config.cell_lanes = {self.cell_lanes} needs at least {4 * self.cell_lanes} "
                f"PEs (pes = {self.pes}): each cell's four gates come from four PEs in the same "
                f"cycle")
        positive_int("channels", self.channels, 1, 256)
        positive_int("weight_bits", self.weight_bits, 2, 32)
        positive_int("index_bits", self.index_bits, 1, 8)
        positive_int("activation_bits", self.activation_bits, 4, 32)
        positive_int("cell_bits", self.cell_bits, 4, 40)
        positive_int("bias_bits", self.bias_bits, 2, 40)
        positive_int("accumulator_bits", self.accumulator_bits, 8, 64)
        positive_int("align_bits", self.align_bits, 0, 5)
        positive_int("gru", self.gru, 0, 1)
        positive_int("delta", self.delta, 0, 1)
        positive_int("activation_queue_depth", self.activation_queue_depth, 2, 1024)
        positive_int("entries_per_read", self.entries_per_read, 1, 8)
        if not _is_power_of_two(self.entries_per_read):
            raise ConfigError(f"Config.entries_per_read must be a power of two, not "
                              f"{self.entries_per_read}")
        for name, total in (("weight_frac_bits", self.weight_bits),
                            ("activation_frac_bits", self.activation_bits),
                            ("cell_frac_bits", self.cell_bits),
                            ("bias_frac_bits", self.bias_bits)):
            positive_int(name, getattr(self, name), 0, total - 1)
        if self.entries_per_read * self.entry_bits > 4096:
            raise ConfigError(
                f"an entry word holds entries_per_read * (block_columns * weight_bits + "
                f"index_bits) = {self.entries_per_read * self.entry_bits} bits; at most 4096 "
                f"are supported")
        if self.cell_frac_bits > self.activation_frac_bits:
            raise ConfigError(
                f"Config.cell_frac_bits ({self.cell_frac_bits}) may not exceed "
                f"activation_frac_bits ({self.activation_frac_bits}): the cell update aligns "
                f"cell values to the activation grid without rounding")
        if self.bias_frac_bits > self.product_frac_bits:
            raise ConfigError(
                f"Config.bias_frac_bits ({self.bias_frac_bits}) may not exceed the accumulator's "
                f"fraction bits (activation_frac_bits + weight_frac_bits = "
                f"{self.product_frac_bits})")
        positive_int("table_index_bits", self.table_index_bits, 2, self.activation_bits - 1)
        if self.accumulator_bits < self.product_bits + 1:
            raise ConfigError(
                f"Config.accumulator_bits ({self.accumulator_bits}) must exceed the product width "
                f"weight_bits + activation_bits = {self.product_bits}")
        if (isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float))
                or not 0 < self.clock_mhz <= 1000):
            raise ConfigError(
                f"Config.clock_mhz must be a frequency in MHz, not {self.clock_mhz!r}")
        positive_int("memory_data_bits", self.memory_data_bits, 32, 1024)
        if not _is_power_of_two(self.memory_data_bits):
            raise ConfigError(f"Config.memory_data_bits must be a power of two from 32 to 1024, "
                              f"not {self.memory_data_bits}")
        positive_int("memory_address_bits", self.memory_address_bits, 16, 64)
        positive_int("stream_window", self.stream_window, 0, 1 << 20)
        if self.stream_window and not _is_power_of_two(self.stream_window):
            raise ConfigError(f"Config.stream_window must be 0 (weights resident on chip) or a "
                              f"power of two (entry words per stream ring), not "
                              f"{self.stream_window}")
        if self.block_columns > 1 and self.stream_window:
            raise ConfigError(
                f"weights streamed from off-chip memory (Config.stream_window) cannot feed "
                f"block entries (Config.block_columns = {self.block_columns}): their PEs read "
                f"several times the memory port's bandwidth; keep the weights on chip "
                f"(stream_window=0) or use block_columns=1")
        if self.block_columns > 1 and self.delta:
            raise ConfigError(
                f"delta units (Config.delta) are built for entries of one column only, not "
                f"Config.block_columns = {self.block_columns}; use block_columns=1 for delta "
                f"layers")
        if self.stream_window:
            # An entry word is stored in whole 32-bit load words; a memory beat must hold a
            # power of two of them, and a ring at least two beats.
            stored = 32 * -(-self.entries_per_read * self.entry_bits // 32)
            per_beat = self.memory_data_bits // stored
            if self.memory_data_bits % stored or per_beat & (per_beat - 1):
                raise ConfigError(
                    f"streaming needs whole entry words in a memory beat: an entry word is "
                    f"stored in {stored} bits and a beat is Config.memory_data_bits = "
                    f"{self.memory_data_bits}; make it a power-of-two multiple")
            if self.stream_window < 2 * per_beat:
                raise ConfigError(
                    f"Config.stream_window ({self.stream_window} entry words) must hold at "
                    f"least two memory beats ({2 * per_beat} entry words)")
        for name in CAPACITY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                positive_int(name, value, 1, 1 << 24)
        if self.pointer_depth is not None and self.pointer_depth % 2:
            raise ConfigError(f"Config.pointer_depth must be even (two pointer banks), not "
                              f"{self.pointer_depth}")
        for name, word, what in (("input_depth", self.block_columns, "block_columns"),
                                 ("vector_depth", self.block_columns, "block_columns"),
                                 ("cell_depth", self.cell_lanes, "cell_lanes")):
            value = getattr(self, name)
            if value is not None and value % word:
                raise ConfigError(
                    f"Config.{name} must be a multiple of {what} ({word}): a word of the "
                    f"memory holds that many, not {value}")
        if self.entry_depth is not None and self.entry_depth % self.entries_per_read:
            raise ConfigError(
                f"Config.entry_depth must be a multiple of entries_per_read "
                f"({self.entries_per_read}), not {self.entry_depth}")

    # Fixed-point formats of the arithmetic contract (see ese.sw.contract.arithmetic).

    @property
    def weight_format(self):
        return FixedFormat(self.weight_bits, self.weight_frac_bits)

    @property
    def activation_format(self):
        return FixedFormat(self.activation_bits, self.activation_frac_bits)

    @property
    def cell_format(self):
        return FixedFormat(self.cell_bits, self.cell_frac_bits)

    @property
    def bias_format(self):
        return FixedFormat(self.bias_bits, self.bias_frac_bits)

    @property
    def max_align(self):
        """The largest alignment shift a layer descriptor holds (``2**align_bits - 1``)."""
        return (1 << self.align_bits) - 1

    @property
    def product_bits(self):
        """Width of a weight times an activation."""
        return self.weight_bits + self.activation_bits

    @property
    def product_frac_bits(self):
        """Fraction bits of products and of the accumulators."""
        return self.weight_frac_bits + self.activation_frac_bits

    @property
    def entry_bits(self):
        """Width of one sparse entry: its ``block_columns`` weights in the low bits (the first
        column's lowest), the relative index above."""
        return self.block_columns * self.weight_bits + self.index_bits

    @property
    def max_run(self):
        """Longest run of zero rows one entry can skip; longer runs need padding entries."""
        return (1 << self.index_bits) - 1

    @property
    def streamed(self):
        """Whether the sparse entries are streamed from off-chip memory every frame step."""
        return self.stream_window > 0

    # Capacities.

    @property
    def capacities(self):
        return {name: getattr(self, name) for name in CAPACITY_FIELDS}

    @property
    def is_sized(self):
        """Whether every memory capacity is set, so that hardware can be generated."""
        return all(value is not None for value in self.capacities.values())

    def require_sized(self):
        if not self.is_sized:
            missing = ", ".join(name for name, value in self.capacities.items() if value is None)
            raise ConfigError(
                f"this Config has no size for {missing}; compile a model with it "
                f"(ese.compile) or set the capacities explicitly")

    def sized_for(self, requirements):
        """Return a copy with every capacity at least ``requirements[name]``.

        A capacity left as ``None`` becomes the next power of two of the requirement (at least
        16); a capacity set too small raises :class:`~ese.sw.contract.errors.CapacityError`.
        """
        from .errors import CapacityError
        sized = {}
        for name in CAPACITY_FIELDS:
            need = int(requirements[name])
            have = getattr(self, name)
            if have is None:
                smallest = 1 if name == "max_layers" else 16
                have = max(smallest, 1 << max(0, need - 1).bit_length())
            elif have < need:
                raise CapacityError(
                    f"the model needs Config.{name} >= {need}, but this hardware has {have}; "
                    f"raise it or leave it as None to size it for the model")
            sized[name] = have
        return self.replace(**sized)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    # Serialisation (weight image headers, build identifiers).

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values):
        if not isinstance(values, dict):
            raise ConfigError(f"a Config is described by a mapping, not {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown Config fields: {', '.join(map(str, unknown))}")
        missing = sorted(known - set(values))
        if missing:
            raise ConfigError(f"Config fields missing: {', '.join(missing)}")
        return cls(**values)
