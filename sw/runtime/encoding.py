"""Per-PE encoding: the integer model becomes the contents of the accelerator's memories.

Interleaved compressed sparse column (EIE, ESE). Which PE holds which row of every matrix, and
at which local row, is the machine's :class:`~ese.sw.contract.placement.Placement`: PE ``k``
owns rows ``k, k + pes, ...`` of the projection and of the gate matrix ``[W_x | W_r]``, whose
rows are interleaved cell by cell (and rotated in a GRU layer). Columns are taken
``block_columns`` at a time (ESE: one). For each block of columns a PE stores an *entry* for
each of its rows with a non-zero weight in the block, in row order: the row's
``block_columns`` weights there, and the number of rows skipped since the previous entry
(``index_bits`` wide). A longer run of rows is bridged by *padding entries*, whose weights are
all zero, that skip ``2**index_bits`` rows each; no other entry is all zeros, which is what
marks them. Column pointers mark where each block's entries start; the blocks of all layers
form one column space, each segment padded to whole blocks::

    layer l:  [ x (inputs) | y_{t-1} (recurrent) | m (cells, only with a projection) ]

In memory, an entry is its weights in the low bits (the block's first column lowest) and its
run above them (:attr:`~ese.sw.contract.config.Config.entry_bits`); in a
:class:`HardwareImage`, each PE's entries are an (entries, 1 + block_columns) integer array of
runs and weights.

The :class:`HardwareImage` also holds the shared memories (cell parameters, layer
descriptors) and the layout of the activation vector memory, and produces the load stream
(:meth:`HardwareImage.load_words`). :func:`decode_image` inverts the encoding, so that a
loaded image can be checked and run by the golden model.
"""

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..contract.arithmetic import DeltaThresholds, LayerFormats
from ..contract.errors import ConfigError, ImageError
from ..contract.memory_map import (
    CELL_PARAMETERS,
    GATES,
    LOAD_WORD_BITS,
    RECORD_HEADER_WORDS,
    STRUCTURAL_ZEROS,
    LoadTarget,
    MemoryMap,
    pack_fields,
    structural_zero_rows,
    words_per_element,
)
from ..contract.placement import Placement
from ..contract.wire import channel_word
from .quantized import QuantizedLayer, QuantizedModel, StackShape

__all__ = ["HardwareImage", "encode_model", "decode_image", "layout_model", "encode_columns",
           "entry_words", "layer_segments", "stage_format_problem",
           "state_load_words", "state_dump_words", "decode_state_dump"]


def ceil_div(a, b):
    return -(-a // b)


def encode_columns(local, config):
    """Encode a (rows, columns) integer matrix as one PE's entries, block by block.

    Returns ``(entries, counts, padding)``: the entries in block-major order as an int64 array
    (entries, 1 + block_columns) of runs and weights, the number of entries (padding
    included) per block of columns, and the number of padding entries.
    """
    placement = Placement.of(config)
    blocked = placement.blocked(np.asarray(local, dtype=np.int64))
    rows, blocks, width = blocked.shape
    block_of, row_of = np.nonzero(blocked.any(axis=2).T)    # ordered by block, then row
    previous = np.full(len(row_of), -1, dtype=np.int64)
    continues = np.zeros(len(row_of), dtype=bool)
    continues[1:] = block_of[1:] == block_of[:-1]
    previous[1:][continues[1:]] = row_of[:-1][continues[1:]]
    gap = row_of - previous - 1
    step = config.max_run + 1
    pads, run = gap // step, gap % step
    per_entry = pads + 1
    entries = np.zeros((int(per_entry.sum()), 1 + width), dtype=np.int64)
    entries[:, 0] = config.max_run                  # padding entries: all weights zero
    real = np.cumsum(per_entry) - 1
    entries[real, 0] = run
    entries[real, 1:] = blocked[row_of, block_of]
    counts = np.bincount(block_of, weights=per_entry, minlength=blocks).astype(np.int64)
    return entries, counts, int(pads.sum())


def entry_words(entries, config):
    """Entries (runs and weights, as :func:`encode_columns` gives them) packed into entry
    memory words of ``entries_per_read`` entries, the first in the low bits, as ints; the last
    word's missing entries are zeros."""
    slots = config.entries_per_read
    entries = np.asarray(entries, dtype=np.int64).reshape(-1, 1 + config.block_columns)
    weight_mask = (1 << config.weight_bits) - 1
    weight_shifts = np.arange(config.block_columns, dtype=object) * config.weight_bits
    packed = ((entries[:, 1:].astype(object) & weight_mask) << weight_shifts).sum(axis=1) \
        + (entries[:, 0].astype(object) << (config.block_columns * config.weight_bits))
    padded = np.zeros(-(-len(packed) // slots) * slots, dtype=object)
    padded[:len(packed)] = packed
    slot_shifts = np.arange(slots, dtype=object) * config.entry_bits
    return [int(w) for w in (padded.reshape(-1, slots) << slot_shifts).sum(axis=1)]


def layer_segments(layer):
    """A layer's segments of the column space: its inputs, its recurrent inputs and, with a
    projection, its cell outputs (columns each)."""
    return [layer.inputs, layer.recurrent] + ([layer.cells] if layer.proj else [])


@dataclass
class ModelLayout:
    """Where each layer lives in the shared memories and the column space."""

    descriptors: list
    columns: int             # total column blocks of all layers
    cells: int               # cells of the cell memories the layers take (each from a word)
    cell_count: int          # cells of all layers
    vector_words: int        # activation vector memory words used
    inputs: int              # words of an input frame
    cells_per_pe: int        # most cells of one layer on one PE
    projections_per_pe: int  # most projection rows of one layer on one PE


def layout_model(layers, placement):
    """Place the layers in the column space, the cell memory and the vector memory, for the
    machine of ``placement`` (a :class:`~ese.sw.contract.placement.Placement`).

    The first layer's input frames live in their own double-buffered input memory; every
    other activation vector (each layer's y, and the scratch m of projected layers) lives in
    the vector memory, where layer ``l + 1`` reads layer ``l``'s y as its input. Each vector
    starts on a whole block of columns (a word of the vector memory holds a block), and the
    column space counts blocks; each layer's cells start on a word of the cell memories (a
    word holds ``cell_lanes`` cells). Each descriptor also holds its layer's alignment shifts
    (``layer.formats``, the configured formats where a layer has none).
    """
    pes = placement.pes
    stack = StackShape()
    stack.layers = layers
    passes = stack.passes()
    # Each pass's last layer ends a frame step and sends its y to the host; each pass's
    # first layer reads frames from it (descriptor 0 while its pass runs).
    ends = {run.last for run in passes}
    descriptors = []
    column, cell, vector = 0, 0, 0
    projection_cells = max((placement.padded(layer.cells) for layer in layers if layer.proj),
                           default=0)
    recurrent_bases = []
    for layer in layers:
        recurrent_bases.append(vector)
        vector += placement.padded(layer.recurrent)
    cell_output_scratch = vector
    vector += projection_cells
    for index, layer in enumerate(layers):
        descriptors.append({
            "inputs": layer.inputs,
            "recurrent": layer.recurrent,
            "cells": layer.cells,
            "proj": layer.proj,
            "column_base": column,
            "input_base": recurrent_bases[index - 1] if index else 0,
            "recurrent_base": recurrent_bases[index],
            "cell_output_base": cell_output_scratch if layer.proj else recurrent_bases[index],
            "cell_base": cell,
            "last": int(index in ends),
            "gru": int(getattr(layer, "kind", "lstm") in ("gru", "rnn")),
            "rnn": int(getattr(layer, "kind", "lstm") == "rnn"),
            "delta": int(getattr(layer, "delta", None) is not None),
            **(getattr(layer, "delta", None) or DeltaThresholds()).descriptor_fields(),
            **(getattr(layer, "formats", None) or LayerFormats()).alignments(),
        })
        column += sum(placement.blocks(columns) for columns in layer_segments(layer))
        cell += placement.cell_words(layer.cells) * placement.cell_lanes
    return ModelLayout(
        descriptors, columns=column, cells=cell,
        cell_count=sum(layer.cells for layer in layers), vector_words=max(1, vector),
        inputs=max(placement.padded(layers[run.first].inputs) for run in passes),
        cells_per_pe=max(ceil_div(layer.cells, pes) for layer in layers),
        projections_per_pe=max(1, max(ceil_div(layer.proj, pes) for layer in layers)))


@dataclass
class HardwareImage:
    """Contents of every loadable memory of one accelerator, for one model.

    Attributes
    ----------
    config : Config
        The sized hardware parameters.
    pointers : int64 array (pes, blocks + 1)
        Column pointers of each PE (one per block of columns, and the end).
    entries : list of int64 arrays
        Each PE's sparse entries, (entries, 1 + block_columns): each entry's run, then its
        weights.
    cell_parameters : int64 array (cells, CELL_PARAMETERS)
        Biases of i, f, g, o and peepholes w_ic, w_fc, w_oc for every cell of every layer.
    descriptors : list of dict
        One per layer (see :attr:`MemoryMap.descriptor_fields`).
    padding : int64 array (pes,)
        Padding entries per PE.
    formats : list of LayerFormats
        Each layer's formats (the descriptors hold their alignment shifts; the host needs
        the input and output formats, and decoding the rest).
    directions : list of str, or None
        Each layer's direction (:data:`~ese.sw.runtime.quantized.DIRECTIONS`) where the model
        has a bidirectional layer: the host runs its passes; None where every layer runs
        forward. The hardware needs none of it: each pass's descriptors are loaded in turn.
    """

    config: object
    pointers: np.ndarray
    entries: list
    cell_parameters: np.ndarray
    descriptors: list
    padding: np.ndarray = field(default=None)
    formats: list = field(default=None)
    directions: list = field(default=None)

    @property
    def memory_map(self):
        return MemoryMap(self.config)

    @property
    def entries_per_pe(self):
        return np.array([len(e) for e in self.entries], dtype=np.int64)

    @property
    def nonzeros_per_pe(self):
        """Each PE's non-zero weights."""
        return np.array([int(np.count_nonzero(np.asarray(e)[:, 1:])) for e in self.entries],
                        dtype=np.int64)

    @property
    def real_entries_per_pe(self):
        """Each PE's entries that are not padding: its multiply cycles."""
        return self.entries_per_pe - self.padding

    def load_words(self, block_words=None):
        """The load stream as a uint32 array (see :mod:`ese.sw.contract.memory_map`); with
        ``block_words``, ending in a PADDING record on a multiple of that many words."""
        mm = self.memory_map
        config = self.config
        stream = _LoadStream(mm)
        for pe in range(config.pes):
            stream.record(LoadTarget.POINTERS, pe, 0, self.pointers[pe])
            if not config.streamed and len(self.entries[pe]):
                stream.record(LoadTarget.ENTRIES, pe, 0, self.entry_words(pe))
        cells = [pack_fields(dict(zip((n for n, _, _ in mm.cell_parameter_fields), row)),
                             mm.cell_parameter_fields) for row in self.cell_parameters.tolist()]
        first = 0
        for descriptor in self.descriptors:
            # Each layer's cells from its cell base.
            stream.record(LoadTarget.CELL_PARAMETERS, 0, descriptor["cell_base"],
                          cells[first:first + descriptor["cells"]])
            first += descriptor["cells"]
        layers = [pack_fields(d, mm.descriptor_fields) for d in self.descriptors]
        stream.record(LoadTarget.LAYER_DESCRIPTORS, 0, 0, layers)
        if config.streamed:
            sections = [self._stream_sections(stream, pe) for pe in range(config.pes)]
            stream.record(LoadTarget.STREAMS, 0, 0,
                          [pack_fields(section, mm.stream_fields) for section in sections])
        if block_words:
            stream.pad(block_words)
        return stream.words()

    def pass_load_words(self, run):
        """The load stream that makes pass ``run`` (a :class:`~.quantized.Pass`) the one the
        hardware runs: its layers' descriptors from descriptor 0, nothing else (the weights
        stay where the whole image put them)."""
        mm = self.memory_map
        stream = _LoadStream(mm)
        stream.record(LoadTarget.LAYER_DESCRIPTORS, 0, 0,
                      [pack_fields(d, mm.descriptor_fields)
                       for d in self.descriptors[run.first:run.last + 1]])
        return stream.words()

    def stream_split(self, pe):
        """PE ``pe``'s entry sections: ``(filler_words, critical_first, words)``: the first
        layer's input columns fill entry words ``[0, filler_words)``; every other column lies in
        ``[critical_first, words)`` (the two share a word when a column ends inside one)."""
        lanes = self.config.entries_per_read
        filler_blocks = Placement.of(self.config).blocks(self.descriptors[0]["inputs"])
        filler_entries = int(self.pointers[pe][filler_blocks])
        total = len(self.entries[pe])
        words = ceil_div(total, lanes)
        if filler_entries == total:
            return ceil_div(filler_entries, lanes), words, words
        return ceil_div(filler_entries, lanes), filler_entries // lanes, words

    def section_spans(self, pe):
        """PE ``pe``'s two streamed sections (filler's, critical path's) as ``(first word,
        end word, memory beats)``."""
        filler_words, critical_first, total = self.stream_split(pe)
        per_beat = self.memory_map.words_per_beat
        return [(first, end, ceil_div(end - first, per_beat))
                for first, end in ((0, filler_words), (critical_first, total))]

    def _stream_sections(self, stream, pe):
        """Write PE ``pe``'s entries as two beat-aligned records; returns its STREAMS element."""
        words = self.entry_words(pe)
        spans = self.section_spans(pe)
        section = {"critical_first": spans[1][0]}
        for name, (first, end, beats) in zip(("filler", "critical"), spans):
            offset = stream.record(LoadTarget.ENTRIES, pe, first, words[first:end],
                                   aligned=True) if end > first else 0
            section[f"{name}_offset"] = offset // self.memory_map.load_words_per_beat
            section[f"{name}_beats"] = beats
        return section

    def entry_words(self, pe):
        """PE ``pe``'s entries packed into memory words (:func:`entry_words`)."""
        return entry_words(self.entries[pe], self.config)


def state_load_words(image, states):
    """Load records that set an initial state: ``states`` holds, for each channel, each
    layer's ``(y, c)`` codes (``Program.encode_state``), or None for a channel left at zero.
    Every layer's y goes to its recurrent vector (VECTORS records, a word per element holding
    every channel's value) and its c to its cell states (CELL_STATES records)."""
    config = image.config
    channels = config.channels
    if len(states) > channels:
        raise ValueError(f"{len(states)} channels' states for {channels} channels")
    states = list(states) + [None] * (channels - len(states))
    stream = _LoadStream(MemoryMap(config))
    for index, descriptor in enumerate(image.descriptors):
        for target, base, size, part, bits in (
                (LoadTarget.VECTORS, descriptor["recurrent_base"], descriptor["recurrent"], 0,
                 config.activation_bits),
                (LoadTarget.CELL_STATES, descriptor["cell_base"], descriptor["cells"], 1,
                 config.cell_bits)):
            values = np.zeros((size, channels), dtype=np.int64)
            for channel, state in enumerate(states):
                if state is not None:
                    values[:, channel] = state[index][part]
            stream.record(target, 0, base, [channel_word(row, bits) for row in values])
    return stream.words()


def state_dump_words(image):
    """Words of the packet a state dump sends (``ese.hw.dump``): every layer's y, then its c."""
    return sum(d["recurrent"] + d["cells"] for d in image.descriptors)


def decode_state_dump(image, values):
    """Each channel's per-layer ``(y, c)`` codes from a state dump's packet, given as signed
    values (words, channels)."""
    values = np.asarray(values, dtype=np.int64)
    if values.shape != (state_dump_words(image), image.config.channels):
        raise ImageError(f"a state dump of shape {values.shape}; this model's is "
                         f"({state_dump_words(image)}, {image.config.channels})")
    states = [[] for _ in range(image.config.channels)]
    position = 0
    for d in image.descriptors:
        y = values[position:position + d["recurrent"]]
        position += d["recurrent"]
        c = values[position:position + d["cells"]]
        position += d["cells"]
        for channel in range(image.config.channels):
            states[channel].append((y[:, channel].copy(), c[:, channel].copy()))
    return states


class _LoadStream:
    """A load stream being written: records, and padding that aligns a record's elements."""

    def __init__(self, memory_map):
        self.memory_map = memory_map
        self.chunks = []
        self.length = 0

    def _append(self, words):
        words = np.asarray(words, dtype=np.uint64)
        self.chunks.append(words)
        self.length += len(words)

    def record(self, target, pe, address, elements, aligned=False):
        """Append a record; with ``aligned``, first pad so that its elements start on a memory
        beat. Returns the word offset of its first element."""
        if aligned:
            self.pad(self.memory_map.load_words_per_beat, RECORD_HEADER_WORDS)
        self._header(target, pe, address, len(elements))
        first = self.length
        words = words_per_element(self.memory_map.element_bits(target))
        if words == 1:
            self._append(elements)
        else:
            mask = (1 << LOAD_WORD_BITS) - 1
            self._append([(int(e) >> (LOAD_WORD_BITS * w)) & mask
                          for e in elements for w in range(words)])
        return first

    def pad(self, multiple, ahead=0):
        """Append a PADDING record so that the stream's length plus ``ahead`` words becomes a
        multiple of ``multiple`` words (nothing if it is one already)."""
        padding = -(self.length + ahead) % multiple
        if padding:
            # A padding record is at least its header: when the gap is shorter, pad on to a
            # later multiple.
            if padding < RECORD_HEADER_WORDS:
                padding += multiple * ceil_div(RECORD_HEADER_WORDS - padding, multiple)
            self._header(LoadTarget.PADDING, 0, 0, padding - RECORD_HEADER_WORDS)
            self._append(np.zeros(padding - RECORD_HEADER_WORDS))

    def _header(self, target, pe, address, count):
        self._append([int(target) | (pe << 8), address, count])

    def words(self):
        return np.concatenate(self.chunks).astype(np.uint32)


def requirements(layout, entries_per_pe, layers_count):
    """Capacities a model needs, by Config field name."""
    return {
        "max_layers": layers_count,
        "input_depth": layout.inputs,
        "pointer_depth": layout.columns + 1,
        "entry_depth": max(1, int(max(entries_per_pe))),
        "cells_per_pe": layout.cells_per_pe,
        "projections_per_pe": layout.projections_per_pe,
        "cell_depth": layout.cells,
        "vector_depth": layout.vector_words,
    }


def encode_model(model, config):
    """Encode a :class:`QuantizedModel` for ``config``.

    ``config`` may leave capacities as None; they are sized for the model. Returns the
    :class:`HardwareImage`, whose ``config`` is sized.
    """
    pes = config.pes
    if model.bidirectional and config.streamed:
        raise ConfigError("a bidirectional model runs in passes, each loading its layers' "
                          "descriptors, and weights streamed from DDR (Config.stream_window) "
                          "run one pass of every layer; build it with the weights on chip")
    for index, layer in enumerate(model.layers):
        if layer.is_gru and not config.gru:
            raise ConfigError(f"layer {index} is a {layer.kind.upper()}, which runs on the GRU "
                              f"update, and this hardware has none (Config.gru=0); build it "
                              f"with Config(gru=1), the default")
        if layer.delta is not None:
            if not config.delta:
                raise ConfigError(f"layer {index} is a delta layer, and this hardware sends "
                                  f"every column every frame (Config.delta=0); build it with "
                                  f"Config(delta=1)")
            try:
                layer.delta.check(config, f"layer {index}")
            except ValueError as error:
                raise ConfigError(str(error)) from None
    placement = Placement.of(config)
    layout = layout_model(model.layers, placement)
    words = [[] for _ in range(pes)]
    counts = [[] for _ in range(pes)]
    padding = np.zeros(pes, dtype=np.int64)
    for layer in model.layers:
        for pe in range(pes):
            gate_rows = placement.gate_rows(layer.cells, pe, layer.is_gru)
            segments = [layer.input_weights[gate_rows], layer.recurrent_weights[gate_rows]]
            if layer.projection is not None:
                segments.append(layer.projection[placement.projection_rows(layer.proj, pe)])
            for segment in segments:
                w, n, p = encode_columns(segment, config)
                words[pe].append(w)
                counts[pe].append(n)
                padding[pe] += p
    entries = [np.concatenate(w) for w in words]
    pointers = np.stack([np.concatenate([[0], np.cumsum(np.concatenate(c))]) for c in counts])
    sized = config.sized_for(requirements(layout, [len(e) for e in entries], len(model.layers)))
    cell_parameters = np.concatenate(
        [np.concatenate([layer.bias.reshape(GATES, layer.cells), layer.peephole]).T
         for layer in model.layers]).astype(np.int64)
    # The memory map's field widths depend on the sized capacities; check they hold the layout.
    mm = MemoryMap(sized)
    formats = [layer.formats for layer in model.layers]
    for index, (descriptor, layer) in enumerate(zip(layout.descriptors, model.layers)):
        layer.formats.check(sized, layer.proj, f"layer {index}")
        pack_fields(descriptor, mm.descriptor_fields)
    directions = ([layer.direction for layer in model.layers] if model.bidirectional
                  else None)
    return HardwareImage(sized, pointers.astype(np.int64), entries, cell_parameters,
                         layout.descriptors, padding, formats, directions)


def _decode_columns(entries, counts, rows, columns, config, what):
    """Inverse of :func:`encode_columns` for a segment of ``columns`` columns (``counts``
    entries per block of them); raises ImageError on anything out of place."""
    placement = Placement.of(config)
    blocks, width = len(counts), config.block_columns
    entries = np.asarray(entries, dtype=np.int64).reshape(-1, 1 + width)
    runs, weights = entries[:, 0], entries[:, 1:]
    low, high = -(1 << (config.weight_bits - 1)), (1 << (config.weight_bits - 1)) - 1
    if np.any((runs < 0) | (runs > config.max_run)) or np.any((weights < low) | (weights > high)):
        raise ImageError(f"{what}: an entry's run or weight does not fit its field")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    block_of = np.repeat(np.arange(blocks), counts)
    # Row of each entry: within a block, the running sum of (run + 1), minus one.
    steps = runs + 1
    totals = np.cumsum(steps)
    block_start_total = np.repeat(totals[starts[counts > 0]] - steps[starts[counts > 0]],
                                  counts[counts > 0])
    row_of = totals - block_start_total - 1
    if len(entries) and row_of.max() >= rows:
        raise ImageError(f"{what}: an entry points past the PE's last row ({rows} rows)")
    padding = ~weights.any(axis=1)
    if np.any(padding & (runs != config.max_run)):
        raise ImageError(f"{what}: an entry of zero weights that is not a padding entry")
    # Rows rise strictly within a block (every step is at least one), so no two entries
    # share a row of a block.
    real = ~padding
    local = np.zeros((rows, blocks, width), dtype=np.int64)
    local[row_of[real], block_of[real]] = weights[real]
    local = local.reshape(rows, blocks * width)
    if blocks != placement.blocks(columns) or np.any(local[:, columns:]):
        raise ImageError(f"{what}: weights in the columns that pad its last block")
    return local[:, :columns]


def decode_image(image):
    """Rebuild the :class:`QuantizedModel` an image encodes, checking it on the way.

    Raises :class:`ImageError` if the memories are inconsistent with each other or with the
    descriptors.
    """
    config = image.config
    pes = config.pes
    placement = Placement.of(config)
    descriptors = image.descriptors
    directions = image.directions or ["forward"] * len(descriptors)
    if len(directions) != len(descriptors):
        raise ImageError(f"the image names {len(directions)} layers' directions for "
                         f"{len(descriptors)} layers")
    if not descriptors or not descriptors[-1]["last"]:
        raise ImageError("the layer descriptors do not end with a last layer")
    total_blocks = sum(placement.blocks(columns) for d in descriptors
                       for columns in layer_segments(SimpleNamespace(**d)))
    if image.pointers.shape != (pes, total_blocks + 1):
        raise ImageError(f"column pointers have shape {image.pointers.shape}; the layers need "
                         f"({pes}, {total_blocks + 1})")
    for pe in range(pes):
        pointer = image.pointers[pe]
        if pointer[0] != 0 or np.any(np.diff(pointer) < 0) or pointer[-1] != len(image.entries[pe]):
            raise ImageError(f"PE {pe}: column pointers are not an ordered partition of its "
                             f"{len(image.entries[pe])} entries")
    total_cells = sum(d["cells"] for d in descriptors)
    if image.cell_parameters.shape != (total_cells, CELL_PARAMETERS):
        raise ImageError(f"cell parameters have shape {image.cell_parameters.shape}; the layers "
                         f"need ({total_cells}, {CELL_PARAMETERS})")
    layers = []
    for index, d in enumerate(descriptors):
        cells, inputs, recurrent, proj = d["cells"], d["inputs"], d["recurrent"], d["proj"]
        if cells == 0 or inputs == 0 or recurrent != (proj or cells):
            raise ImageError(f"layer {index}: inconsistent sizes {cells} cells, {inputs} inputs, "
                             f"{recurrent} recurrent, {proj} projection")
        gru = bool(d["gru"])
        kind = "rnn" if d["rnn"] else "gru" if gru else "lstm"
        if d["rnn"] and not gru:
            raise ImageError(f"layer {index}: a simple RNN layer not marked as running on the "
                             f"GRU update")
        if gru and proj:
            raise ImageError(f"layer {index}: a {kind.upper()} layer with a projection")
        gates = np.zeros((GATES * cells, inputs + recurrent), dtype=np.int64)
        projection = np.zeros((proj, cells), dtype=np.int64) if proj else None
        for pe in range(pes):
            pointer = image.pointers[pe]
            entries = image.entries[pe]
            block = d["column_base"]

            def segment(columns, rows, what):
                """The next segment's local matrix from its blocks' entries."""
                nonlocal block
                span = slice(block, block + placement.blocks(columns))
                block = span.stop
                return _decode_columns(entries[pointer[span.start]:pointer[span.stop]],
                                       np.diff(pointer[span.start:span.stop + 1]), rows,
                                       columns, config, f"layer {index} {what}, PE {pe}")

            rows = placement.gate_rows(cells, pe, gru)
            gates[rows, :inputs] = segment(inputs, len(rows), "input weights")
            gates[rows, inputs:] = segment(recurrent, len(rows), "recurrent weights")
            if proj:
                own = placement.projection_rows(proj, pe)
                projection[own] = segment(cells, len(own), "projection")
        first_cell = sum(earlier["cells"] for earlier in descriptors[:index])
        params = image.cell_parameters[first_cell:first_cell + cells]
        formats = image.formats[index] if image.formats else LayerFormats()
        if formats.alignments() != {name: d[name] for name in formats.alignments()}:
            raise ImageError(f"layer {index}: the descriptor's alignment shifts do not match "
                             f"the layer's formats")
        bias = params[:, :GATES].T.reshape(-1)
        parts = {"input weights": (gates[:, :inputs], "input"),
                 "recurrent weights": (gates[:, inputs:], "recurrent"), "biases": (bias, "bias")}
        for what, (values, part) in parts.items():
            for slot, rows in zip(STRUCTURAL_ZEROS[kind][part],
                                  structural_zero_rows(kind, part, cells)):
                if np.any(values[rows]):
                    raise ImageError(f"layer {index}: a {kind.upper()} layer with {what} in "
                                     f"its {slot} slot, which it leaves empty")
        if gru and np.any(params[:, GATES:]):
            raise ImageError(f"layer {index}: a {kind.upper()} layer with peepholes")
        layers.append(QuantizedLayer(
            input_weights=gates[:, :inputs], recurrent_weights=gates[:, inputs:],
            bias=params[:, :GATES].T.reshape(-1).copy(), peephole=params[:, GATES:].T.copy(),
            projection=projection, formats=formats, kind=kind,
            delta=DeltaThresholds.from_descriptor(d), direction=directions[index]))
    model = QuantizedModel(config, layers)
    problem = model.stage_problem() or stage_format_problem(layers, model.stages())
    if problem:
        raise ImageError(problem)
    ends = [index for index, d in enumerate(descriptors) if d["last"]]
    if ends != [run.last for run in model.passes()]:
        raise ImageError("the layer descriptors' last-layer flags do not end the passes the "
                         "layers run in")
    return model


def stage_format_problem(layers, stages):
    """What breaks the formats' chain between stages (a message), or None: each stage reads
    its input in the format the stage before writes it, and a bidirectional layer's halves
    read one input format and write one output format."""
    for number, stage in enumerate(stages):
        formats = [layers[index].formats for index in stage]
        if len({f.input for f in formats}) > 1 or len({f.output for f in formats}) > 1:
            return (f"the halves of bidirectional layer {stage[0]} read or write their "
                    f"vectors in different formats")
        if number and formats[0].input != layers[stages[number - 1][0]].formats.output:
            return (f"layer {stage[0]} reads its input in another format than the layer "
                    f"before it writes it")
    return None
