"""Per-PE encoding: the integer model becomes the contents of the accelerator's memories.

Interleaved compressed sparse column (EIE, ESE). Which PE holds which row of every matrix, and
at which local row, is the machine's :class:`~ese.sw.contract.placement.Placement`: PE ``k``
owns rows ``k, k + pes, ...`` of the projection and of the gate matrix ``[W_x | W_r]``, whose
rows are interleaved cell by cell (and rotated in a GRU layer). For each column it stores
the non-zero weights of its rows in row order, each with the number of zero rows skipped since
the previous one (``index_bits`` wide). A longer run of zeros is bridged by padding entries of
weight zero that skip ``2**index_bits`` rows each. Column pointers mark where each column's
entries start; the columns of all layers form one column space::

    layer l:  [ x (inputs) | y_{t-1} (recurrent) | m (cells, only with a projection) ]

The :class:`HardwareImage` also holds the shared memories (cell parameters, layer
descriptors) and the layout of the activation vector memory, and produces the load stream
(:meth:`HardwareImage.load_words`). :func:`decode_image` inverts the encoding, so that a
loaded image can be checked and run by the golden model.
"""

from dataclasses import dataclass, field

import numpy as np

from ..contract.arithmetic import DeltaThresholds, LayerFormats
from ..contract.errors import ConfigError, ImageError
from ..contract.memory_map import (
    CELL_PARAMETERS,
    GATES,
    GRU_SLOTS,
    LOAD_WORD_BITS,
    RECORD_HEADER_WORDS,
    LoadTarget,
    MemoryMap,
    pack_fields,
    words_per_element,
)
from ..contract.placement import Placement
from ..contract.wire import channel_word
from .quantized import QuantizedLayer, QuantizedModel

__all__ = ["HardwareImage", "encode_model", "decode_image", "layout_model", "encode_columns",
           "state_load_words", "state_dump_words", "decode_state_dump"]


def ceil_div(a, b):
    return -(-a // b)


def encode_columns(local, config):
    """Encode a (rows, columns) integer matrix as one PE's entries, column by column.

    Returns ``(words, counts, padding)``: the entry words in column-major order, the number of
    entries (padding included) per column, and the number of padding entries.
    """
    rows, columns = local.shape
    column_of, row_of = np.nonzero(local.T)          # ordered by column, then row
    values = local[row_of, column_of]
    previous = np.full(len(row_of), -1, dtype=np.int64)
    continues = np.zeros(len(row_of), dtype=bool)
    continues[1:] = column_of[1:] == column_of[:-1]
    previous[1:][continues[1:]] = row_of[:-1][continues[1:]]
    gap = row_of - previous - 1
    step = config.max_run + 1
    pads, run = gap // step, gap % step
    per_nonzero = pads + 1
    weight_mask = (1 << config.weight_bits) - 1
    padding_word = config.max_run << config.weight_bits
    words = np.full(int(per_nonzero.sum()), padding_word, dtype=np.int64)
    words[np.cumsum(per_nonzero) - 1] = (values & weight_mask) | (run << config.weight_bits)
    counts = np.bincount(column_of, weights=per_nonzero, minlength=columns).astype(np.int64)
    return words, counts, int(pads.sum())


@dataclass
class ModelLayout:
    """Where each layer lives in the shared memories and the column space."""

    descriptors: list
    columns: int             # total columns of all layers
    cells: int               # total cells of all layers
    vector_words: int        # activation vector memory words used
    inputs: int              # words of an input frame
    cells_per_pe: int        # most cells of one layer on one PE
    projections_per_pe: int  # most projection rows of one layer on one PE


def layout_model(layers, pes):
    """Place the layers in the column space, the cell memory and the vector memory.

    The first layer's input frames live in their own double-buffered input memory; every
    other activation vector (each layer's y, and the scratch m of projected layers) lives in
    the vector memory, where layer ``l + 1`` reads layer ``l``'s y as its input. Each
    descriptor also holds its layer's alignment shifts (``layer.formats``, the configured
    formats where a layer has none).
    """
    descriptors = []
    column, cell, vector = 0, 0, 0
    projection_cells = max((layer.cells for layer in layers if layer.proj), default=0)
    recurrent_bases = []
    for layer in layers:
        recurrent_bases.append(vector)
        vector += layer.recurrent
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
            "last": int(index == len(layers) - 1),
            "gru": int(getattr(layer, "kind", "lstm") == "gru"),
            "delta": int(getattr(layer, "delta", None) is not None),
            **(getattr(layer, "delta", None) or DeltaThresholds()).descriptor_fields(),
            **(getattr(layer, "formats", None) or LayerFormats()).alignments(),
        })
        column += layer.inputs + layer.recurrent + (layer.cells if layer.proj else 0)
        cell += layer.cells
    return ModelLayout(
        descriptors, columns=column, cells=cell, vector_words=max(1, vector),
        inputs=layers[0].inputs,
        cells_per_pe=max(ceil_div(layer.cells, pes) for layer in layers),
        projections_per_pe=max(1, max(ceil_div(layer.proj, pes) for layer in layers)))


@dataclass
class HardwareImage:
    """Contents of every loadable memory of one accelerator, for one model.

    Attributes
    ----------
    config : Config
        The sized hardware parameters.
    pointers : int64 array (pes, columns + 1)
        Column pointers of each PE.
    entries : list of int64 arrays
        Each PE's sparse entry words.
    cell_parameters : int64 array (cells, CELL_PARAMETERS)
        Biases of i, f, g, o and peepholes w_ic, w_fc, w_oc for every cell of every layer.
    descriptors : list of dict
        One per layer (see :attr:`MemoryMap.descriptor_fields`).
    padding : int64 array (pes,)
        Padding entries per PE.
    formats : list of LayerFormats
        Each layer's formats (the descriptors hold their alignment shifts; the host needs
        the input and output formats, and decoding the rest).
    """

    config: object
    pointers: np.ndarray
    entries: list
    cell_parameters: np.ndarray
    descriptors: list
    padding: np.ndarray = field(default=None)
    formats: list = field(default=None)

    @property
    def memory_map(self):
        return MemoryMap(self.config)

    @property
    def entries_per_pe(self):
        return np.array([len(e) for e in self.entries], dtype=np.int64)

    @property
    def nonzeros_per_pe(self):
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
        stream.record(LoadTarget.CELL_PARAMETERS, 0, 0, cells)
        layers = [pack_fields(d, mm.descriptor_fields) for d in self.descriptors]
        stream.record(LoadTarget.LAYER_DESCRIPTORS, 0, 0, layers)
        if config.streamed:
            sections = [self._stream_sections(stream, pe) for pe in range(config.pes)]
            stream.record(LoadTarget.STREAMS, 0, 0,
                          [pack_fields(section, mm.stream_fields) for section in sections])
        if block_words:
            stream.pad(block_words)
        return stream.words()

    def stream_split(self, pe):
        """PE ``pe``'s entry sections: ``(filler_words, critical_first, words)``: the first
        layer's input columns fill entry words ``[0, filler_words)``; every other column lies in
        ``[critical_first, words)`` (the two share a word when a column ends inside one)."""
        lanes = self.config.entries_per_read
        filler_entries = int(self.pointers[pe][self.descriptors[0]["inputs"]])
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
        """PE ``pe``'s entries packed into memory words of ``entries_per_read`` entries."""
        lanes = self.config.entries_per_read
        entries = np.asarray(self.entries[pe], dtype=np.int64)
        padded = np.zeros(-(-len(entries) // lanes) * lanes, dtype=np.int64)
        padded[:len(entries)] = entries
        shifts = np.arange(lanes, dtype=np.int64) * self.config.entry_bits
        return [int(w) for w in (padded.reshape(-1, lanes).astype(object) << shifts).sum(axis=1)]


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
    for index, layer in enumerate(model.layers):
        if layer.is_gru and not config.gru:
            raise ConfigError(f"layer {index} is a GRU, and this hardware has no GRU update "
                              f"(Config.gru=0); build it with Config(gru=1), the default")
        if layer.delta is not None:
            if not config.delta:
                raise ConfigError(f"layer {index} is a delta layer, and this hardware sends "
                                  f"every column every frame (Config.delta=0); build it with "
                                  f"Config(delta=1)")
            try:
                layer.delta.check(config, f"layer {index}")
            except ValueError as error:
                raise ConfigError(str(error)) from None
    layout = layout_model(model.layers, pes)
    placement = Placement.of(config)
    words = [[] for _ in range(pes)]
    counts = [[] for _ in range(pes)]
    padding = np.zeros(pes, dtype=np.int64)
    for layer in model.layers:
        gates = layer.gate_weights
        for pe in range(pes):
            w, n, p = encode_columns(gates[placement.gate_rows(layer.cells, pe, layer.is_gru)],
                                     config)
            words[pe].append(w)
            counts[pe].append(n)
            padding[pe] += p
            if layer.projection is not None:
                w, n, p = encode_columns(
                    layer.projection[placement.projection_rows(layer.proj, pe)], config)
                words[pe].append(w)
                counts[pe].append(n)
                padding[pe] += p
    entries = [np.concatenate(w) if w else np.zeros(0, dtype=np.int64) for w in words]
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
    return HardwareImage(sized, pointers.astype(np.int64), entries, cell_parameters,
                         layout.descriptors, padding, formats)


def _signed(values, bits):
    values = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(values >> (bits - 1), values - (1 << bits), values)


def _decode_columns(words, counts, rows, config, what):
    """Inverse of :func:`encode_columns`; raises ImageError on anything out of place."""
    columns = len(counts)
    local = np.zeros((rows, columns), dtype=np.int64)
    values = _signed(words, config.weight_bits)
    runs = (np.asarray(words, dtype=np.int64) >> config.weight_bits)
    if np.any(runs > config.max_run) or np.any(np.asarray(words) < 0):
        raise ImageError(f"{what}: an entry word has bits beyond its fields")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    column_of = np.repeat(np.arange(columns), counts)
    # Row of each entry: within a column, the running sum of (run + 1), minus one.
    steps = runs + 1
    totals = np.cumsum(steps)
    column_start_total = np.repeat(totals[starts[counts > 0]] - steps[starts[counts > 0]],
                                   counts[counts > 0])
    row_of = totals - column_start_total - 1
    if len(words) and row_of.max() >= rows:
        raise ImageError(f"{what}: an entry points past the PE's last row ({rows} rows)")
    padding = values == 0
    if np.any(padding & (runs != config.max_run)):
        raise ImageError(f"{what}: a zero-weight entry that is not a padding entry")
    real = ~padding
    if np.any(local[row_of[real], column_of[real]]):
        raise ImageError(f"{what}: two entries for one weight")
    local[row_of[real], column_of[real]] = values[real]
    return local


def decode_image(image):
    """Rebuild the :class:`QuantizedModel` an image encodes, checking it on the way.

    Raises :class:`ImageError` if the memories are inconsistent with each other or with the
    descriptors.
    """
    config = image.config
    pes = config.pes
    placement = Placement.of(config)
    descriptors = image.descriptors
    if not descriptors or not descriptors[-1]["last"] or any(d["last"] for d in descriptors[:-1]):
        raise ImageError("the layer descriptors do not end with exactly one last layer")
    total_columns = sum(d["inputs"] + d["recurrent"] + (d["cells"] if d["proj"] else 0)
                        for d in descriptors)
    if image.pointers.shape != (pes, total_columns + 1):
        raise ImageError(f"column pointers have shape {image.pointers.shape}; the layers need "
                         f"({pes}, {total_columns + 1})")
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
        if gru and proj:
            raise ImageError(f"layer {index}: a GRU layer with a projection")
        gates = np.zeros((GATES * cells, inputs + recurrent), dtype=np.int64)
        projection = np.zeros((proj, cells), dtype=np.int64) if proj else None
        base = d["column_base"]
        for pe in range(pes):
            pointer = image.pointers[pe]
            entries = np.asarray(image.entries[pe], dtype=np.int64)
            rows = placement.gate_rows(cells, pe, gru)
            span = slice(base, base + inputs + recurrent)
            words = entries[pointer[span.start]:pointer[span.stop]]
            local = _decode_columns(words, np.diff(pointer[span.start:span.stop + 1]),
                                    len(rows), config, f"layer {index} gates, PE {pe}")
            gates[rows] = local
            if proj:
                span = slice(span.stop, span.stop + cells)
                words = entries[pointer[span.start]:pointer[span.stop]]
                own = placement.projection_rows(proj, pe)
                projection[own] = _decode_columns(
                    words, np.diff(pointer[span.start:span.stop + 1]), len(own), config,
                    f"layer {index} projection, PE {pe}")
        params = image.cell_parameters[d["cell_base"]:d["cell_base"] + cells]
        formats = image.formats[index] if image.formats else LayerFormats()
        if formats.alignments() != {name: d[name] for name in formats.alignments()}:
            raise ImageError(f"layer {index}: the descriptor's alignment shifts do not match "
                             f"the layer's formats")
        n_h, n_x = GRU_SLOTS.index("n_h"), GRU_SLOTS.index("n_x")
        if gru and (np.any(gates[n_h * cells:(n_h + 1) * cells, :inputs])
                    or np.any(gates[n_x * cells:(n_x + 1) * cells, inputs:])
                    or np.any(params[:, GATES:])):
            raise ImageError(f"layer {index}: a GRU layer with input weights in its n_h slot, "
                             f"recurrent weights in its n_x slot or peepholes")
        layers.append(QuantizedLayer(
            input_weights=gates[:, :inputs], recurrent_weights=gates[:, inputs:],
            bias=params[:, :GATES].T.reshape(-1).copy(), peephole=params[:, GATES:].T.copy(),
            projection=projection, formats=formats, kind="gru" if gru else "lstm",
            delta=DeltaThresholds.from_descriptor(d)))
    for index in range(1, len(layers)):
        if layers[index].inputs != layers[index - 1].outputs:
            raise ImageError(f"layer {index} takes {layers[index].inputs} inputs but layer "
                             f"{index - 1} produces {layers[index - 1].outputs}")
        if layers[index].formats.input != layers[index - 1].formats.output:
            raise ImageError(f"layer {index} reads its input in another format than layer "
                             f"{index - 1} writes it")
    return QuantizedModel(config, layers)
