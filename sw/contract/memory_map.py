"""The memory map shared by the encoder, the image loader in hardware, and the host.

Everything both sides of the weight-load interface must agree on lives here as plain Python:
the load-record format, the targets it can write, the widths of every memory word and the
fields of the packed words (cell parameters, layer descriptors). The software side packs with
these definitions; the hardware builds its memories and ``data.StructLayout`` s from them.

The load stream is a sequence of 32-bit words made of records::

    word 0   target (bits 0-7) | PE (bits 8-23)
    word 1   first element address
    word 2   element count
    ...      the elements, each as ceil(width / 32) words, least significant word first

Per-PE targets (column pointers, sparse entries) use the PE field; shared targets require it
to be zero.

Streamed configurations (``Config.stream_window``) keep the sparse entries in the off-chip
memory, where the stored load stream itself is what the streamer reads: each PE's entries
come as two ENTRIES records (the first layer's input columns, then every other column), each
preceded by a PADDING record so that its elements start on a memory beat, and a STREAMS
record tells the streamer and the PEs where those sections are. The loader does not write
ENTRIES into the PEs then; the streamer moves them every frame step.
"""

import enum
from dataclasses import dataclass

__all__ = ["FORMAT_VERSION", "ALIGNMENT_FIELDS", "DELTA_THRESHOLDS", "GATES", "PEEPHOLES",
           "CELL_PARAMETERS",
           "CELL_KINDS", "GRU_SLOTS", "STRUCTURAL_ZEROS", "structural_zero_rows", "LoadTarget",
           "RECORD_HEADER_WORDS", "LOAD_WORD_BITS", "MemoryMap", "words_per_element",
           "pack_fields", "unpack_fields", "address_bits", "count_bits", "state_dump_supported"]

#: The version of the weight image and of the load stream it holds, which the hardware
#: reports in a register so that a host never loads an image of another layout.
#: 1: first release. 2: the gate matrix's rows are interleaved cell by cell across the PEs
#: (see ese.sw.runtime.encoding), so a version 1 image's per-PE entries mean other rows. 3: the
#: hardware parameters include ``stream_window``, and the load stream may hold STREAMS and
#: PADDING records (weights streamed from off-chip memory). 4: formats chosen per model: the
#: hardware parameters include ``align_bits``, every layer descriptor holds its alignment
#: shifts and the header its formats (see docs/arithmetic.md); VECTORS and CELL_STATES
#: records load an initial state. 5: GRU layers: every layer descriptor says whether its layer
#: is a GRU (``gru``), whose gate rows are rotated among the PEs
#: (:meth:`ese.sw.contract.placement.Placement.rotation`). 6:
#: delta layers: every layer descriptor says whether its layer transmits only the columns that
#: changed (``delta``) and holds its thresholds (``theta_x``, ``theta_h``, ``theta_m``; see
#: docs/arithmetic.md, "Delta layers"). 7: block entries: the hardware parameters include
#: ``block_columns``; a sparse entry holds one row's weights in that many neighbouring columns,
#: the column pointers count blocks of columns, each layer's segments and vectors are padded
#: to whole blocks, and the image stores each entry as its run and its weights (see
#: ese.sw.runtime.encoding).
FORMAT_VERSION = 8

#: The layer descriptor's alignment shifts (``Config.align_bits`` wide each; see
#: ``ese.sw.contract.arithmetic.LayerFormats.alignments``).
ALIGNMENT_FIELDS = ("input_align", "recurrent_align", "projection_align", "bias_align",
                    "peephole_align", "output_align")

#: A delta layer's thresholds (``ese.sw.contract.arithmetic.DeltaThresholds``), in LSBs of
#: the columns they apply to: the input x, the recurrent input y_{t-1} and the cell outputs m
#: the projection reads. The layer descriptor holds them as ``theta_x``, ``theta_h``,
#: ``theta_m`` (``activation_bits`` wide each).
DELTA_THRESHOLDS = ("x", "h", "m")

#: Gate rows per cell (i, f, g, o): the encoding interleaves them cell by cell across the PEs
#: and the hardware keeps one accumulator row each.
GATES = 4
#: The kinds of recurrent layer the hardware runs; a layer descriptor's ``gru`` and ``rnn`` bits
#: say which. A simple RNN (Elman's: h' = tanh(W x + U h + b), ``torch.nn.RNN``) runs on the
#: GRU's update with its update gate held at zero (``rnn``: z = 0, so h' = n), its weights and
#: bias in the n_x slot alone (both W and U: a slot's row reads every column of [x; h]) and
#: its r, z and n_h slots empty, so n = tanh(n_x + r * 0).
CELL_KINDS = ("lstm", "gru", "rnn")
#: What a GRU layer keeps in the four gate slots of a cell (the LSTM's i, f, g, o): the sums of
#: its reset gate r (W_ir x + W_hr h), its update gate z (W_iz x + W_hz h), its candidate's
#: input part n_x (W_in x) and recurrent part n_h (W_hn h, which r multiplies before it meets
#: the input part); the biases in the same slots are b_ir + b_hr, b_iz + b_hz, b_in and b_hn.
#: r and z take the slots whose sums the cell unit turns into sigmoid table inputs first (i
#: and f), and n_h the one it carries furthest (o), which is when the GRU update needs them
#: (see ``ese.hw.cell``).
GRU_SLOTS = ("r", "z", "n_x", "n_h")
#: The slots a layer of each kind leaves empty, by part: its input weights', its recurrent
#: weights' and its biases' rows there are structural zeros, which the encoding holds no entry
#: for, no count of weights includes and an image's loader refuses to find non-zero.
STRUCTURAL_ZEROS = {
    "lstm": {"input": (), "recurrent": (), "bias": ()},
    "gru": {"input": ("n_h",), "recurrent": ("n_x",), "bias": ()},
    "rnn": {"input": ("r", "z", "n_h"), "recurrent": ("r", "z", "n_h"), "bias": ("r", "z", "n_h")},
}


def structural_zero_rows(kind, part, cells):
    """The rows of a layer's stacked gate matrix (or bias) of ``part`` ("input",
    "recurrent" or "bias") that a layer of ``kind`` leaves zero, as ``slice`` s."""
    return [slice(GRU_SLOTS.index(slot) * cells, (GRU_SLOTS.index(slot) + 1) * cells)
            for slot in STRUCTURAL_ZEROS[kind][part]]
#: Peephole weights per cell (w_ic, w_fc, w_oc).
PEEPHOLES = 3
#: Parameters of a cell in the cell parameter memory: a bias per gate, then the peepholes
#: (:attr:`MemoryMap.cell_parameter_fields`).
CELL_PARAMETERS = GATES + PEEPHOLES

LOAD_WORD_BITS = 32
RECORD_HEADER_WORDS = 3
#: Elements a PADDING record may hold (it is never written anywhere).
PADDING_DEPTH = 1 << 16


class LoadTarget(enum.IntEnum):
    """Memories that a load record can write."""
    POINTERS = 1           # per PE: column pointers into the entry memory
    ENTRIES = 2            # per PE: words of entries_per_read sparse entries
    CELL_PARAMETERS = 3    # shared: biases and peephole weights of every cell
    LAYER_DESCRIPTORS = 4  # shared: sizes and base addresses of every layer
    STREAMS = 5            # shared, streamed configurations: each PE's entry sections
    PADDING = 6            # shared: words that align what follows; never written
    VECTORS = 7            # shared: activation vector words (a layer's y: an initial state)
    CELL_STATES = 8        # shared: cell state words (a layer's c: an initial state)

    @property
    def per_pe(self):
        return self in (LoadTarget.POINTERS, LoadTarget.ENTRIES)


def state_dump_supported(config):
    """Whether ``config``'s hardware reads its state out through the output stream (a state
    dump, ``ese.hw.dump``): a cell state must fit an activation word."""
    return config.cell_bits <= config.activation_bits


def address_bits(depth):
    """Bits of an address into ``depth`` words (at least 1)."""
    return max(1, (depth - 1).bit_length())


def count_bits(limit):
    """Bits of a count from 0 to ``limit`` inclusive."""
    return max(1, limit.bit_length())


def words_per_element(width):
    return -(-width // LOAD_WORD_BITS)


def pack_fields(values, fields):
    """Pack ``{name: int}`` into one integer, first field in the least significant bits.

    Signed values are stored in two's complement; a value that does not fit raises ValueError.
    """
    word, offset = 0, 0
    for name, width, signed in fields:
        value = int(values[name])
        if signed:
            low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
        else:
            low, high = 0, (1 << width) - 1
        if not low <= value <= high:
            raise ValueError(f"field {name}={value} does not fit {width} bits")
        word |= (value & ((1 << width) - 1)) << offset
        offset += width
    return word


def unpack_fields(word, fields):
    """Inverse of :func:`pack_fields`."""
    values, offset = {}, 0
    for name, width, signed in fields:
        value = (word >> offset) & ((1 << width) - 1)
        if signed and value >> (width - 1):
            value -= 1 << width
        values[name] = value
        offset += width
    return values


@dataclass(frozen=True)
class MemoryMap:
    """Widths and packed-word layouts of a sized :class:`~ese.sw.contract.config.Config`."""

    config: object

    def __post_init__(self):
        self.config.require_sized()

    # Word widths of the loadable memories.

    @property
    def pointer_bits(self):
        return count_bits(self.config.entry_depth)

    @property
    def entry_bits(self):
        return self.config.entry_bits

    @property
    def entry_word_bits(self):
        """One entry memory word: entries_per_read entries, the first in the low bits."""
        return self.config.entries_per_read * self.config.entry_bits

    @property
    def entry_words(self):
        return self.config.entry_depth // self.config.entries_per_read

    @property
    def cell_parameter_fields(self):
        """Biases of gates i, f, g, o, then peepholes w_ic, w_fc, w_oc (a GRU layer: the
        biases of its slots :data:`GRU_SLOTS`, and zero peepholes)."""
        c = self.config
        return ([(f"bias_{g}", c.bias_bits, True) for g in "ifgo"]
                + [(f"peephole_{g}", c.weight_bits, True) for g in "ifo"])

    @property
    def cell_parameter_bits(self):
        return sum(width for _, width, _ in self.cell_parameter_fields)

    @property
    def descriptor_fields(self):
        """Fields of one layer descriptor (see ``ese.sw.runtime.encoding.layout_model``)."""
        c = self.config
        vector = count_bits(c.vector_depth)
        return [
            ("inputs", count_bits(max(c.vector_depth, c.input_depth)), False),  # columns of x
            ("recurrent", vector, False),          # columns of y_{t-1}
            ("cells", count_bits(c.cell_depth), False),
            ("proj", vector, False),               # 0: no projection, y = m
            ("column_base", address_bits(c.pointer_depth), False),
            ("input_base", address_bits(c.vector_depth), False),   # layers after the first
            ("recurrent_base", address_bits(c.vector_depth), False),
            ("cell_output_base", address_bits(c.vector_depth), False),
            ("cell_base", address_bits(c.cell_depth), False),
            ("last", 1, False),
            ("gru", 1, False),                     # 1: a GRU layer (see GRU_SLOTS), or an RNN's
            ("rnn", 1, False),                     # 1: a simple RNN (gru too; z held at 0)
            ("delta", 1, False),                   # 1: a delta layer, with thresholds:
        ] + [(f"theta_{name}", c.activation_bits, False) for name in DELTA_THRESHOLDS] + [
            (name, c.align_bits, False) for name in ALIGNMENT_FIELDS]

    @property
    def descriptor_bits(self):
        return sum(width for _, width, _ in self.descriptor_fields)

    def element_bits(self, target):
        return {
            LoadTarget.POINTERS: self.pointer_bits,
            LoadTarget.ENTRIES: self.entry_word_bits,
            LoadTarget.CELL_PARAMETERS: self.cell_parameter_bits,
            LoadTarget.LAYER_DESCRIPTORS: self.descriptor_bits,
            LoadTarget.STREAMS: self.stream_bits,
            LoadTarget.PADDING: LOAD_WORD_BITS,
            LoadTarget.VECTORS: self.config.channels * self.config.activation_bits,
            LoadTarget.CELL_STATES: self.config.channels * self.config.cell_bits,
        }[LoadTarget(target)]

    def depth(self, target):
        c = self.config
        return {
            LoadTarget.POINTERS: c.pointer_depth,
            LoadTarget.ENTRIES: self.entry_words,
            LoadTarget.CELL_PARAMETERS: c.cell_depth,
            LoadTarget.LAYER_DESCRIPTORS: c.max_layers,
            LoadTarget.STREAMS: c.pes,
            LoadTarget.PADDING: PADDING_DEPTH,
            LoadTarget.VECTORS: c.vector_depth,
            LoadTarget.CELL_STATES: c.cell_depth,
        }[LoadTarget(target)]

    def targets(self):
        """The load targets this configuration accepts."""
        shared = [LoadTarget.POINTERS, LoadTarget.ENTRIES, LoadTarget.CELL_PARAMETERS,
                  LoadTarget.LAYER_DESCRIPTORS, LoadTarget.PADDING, LoadTarget.VECTORS,
                  LoadTarget.CELL_STATES]
        return shared + [LoadTarget.STREAMS] if self.config.streamed else shared

    # Streaming the entries (Config.stream_window).

    @property
    def stored_entry_word_bits(self):
        """Bits an entry word takes in the stored load stream (whole 32-bit words)."""
        return LOAD_WORD_BITS * words_per_element(self.entry_word_bits)

    @property
    def words_per_beat(self):
        """Entry words in one beat of the memory port."""
        return self.config.memory_data_bits // self.stored_entry_word_bits

    @property
    def load_words_per_beat(self):
        return self.config.memory_data_bits // LOAD_WORD_BITS

    @property
    def ring_beats(self):
        """Memory beats each of a PE's two entry rings holds."""
        return self.config.stream_window // self.words_per_beat

    @property
    def burst_beats(self):
        """Beats of one streamer burst: at most 16, and half a ring so that two fit."""
        return min(16, self.ring_beats // 2)

    @property
    def stream_fields(self):
        """A PE's entry sections in the stored load stream (offsets in memory beats from the
        image's start): the first layer's input columns (the filler's) from entry word 0, and
        every other column (the critical path's) from entry word ``critical_first``."""
        return [("filler_offset", 32, False), ("filler_beats", 32, False),
                ("critical_offset", 32, False), ("critical_beats", 32, False),
                ("critical_first", 32, False)]

    @property
    def stream_bits(self):
        return sum(width for _, width, _ in self.stream_fields)

