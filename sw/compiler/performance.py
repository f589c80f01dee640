"""An analytical performance model of the accelerator: cycles per frame from the image alone.

The model follows the hardware's structure (see :mod:`ese.hw.pe` and
:mod:`ese.hw.accelerator`):

* The broadcast sends one column (with a non-zero activation) per cycle to every PE at once,
  and only while every PE's activation queue has room.
* Each PE's column stage takes a column from its queue per cycle; its multiply-accumulate
  stage then spends one cycle per real (non-padding) entry of the column. (The fetch stage,
  reading ``entries_per_read`` entries per cycle, keeps ahead of it; padding costs nothing.)
* The critical path's gaps (fences, the cell unit's start, the writeback) are filled with the
  next frame's input products, so the PEs see one continuous stream of columns: per frame,
  the gates' columns (x, y_{t-1}) then the projection's (m), layer by layer.

So the model is a max-plus recurrence over that stream: for column j, with ``D`` the
activation queue depth, ``B`` the columns the column stage may run ahead of the multiplier,
``w[k, j]`` PE k's multiplies, ``c[k, j]`` the cycle its column stage takes the column and
``s[k, j]`` the cycle its multiplier starts on it::

    broadcast[j] >= broadcast[j-1] + 1,   broadcast[j] >= max_k c[k, j-D]   (queue room)
    c[k, j]      = max(c[k, j-1] + 1, broadcast[j] + 1, s[k, j-B])
    s[k, j]      = max(s[k, j-1] + w[k, j-1], c[k, j] + 1)

A frame costs the stream's advance per frame in steady state, plus the pipeline latency of
the chain that no work can hide. A streamed configuration (``Config.stream_window``) also
reads every PE's entries from the off-chip memory every step, one beat per cycle at most and
one burst request per ``burst_issue_cycles``: the step takes at least that long, whatever the
activations. The hardware's latencies come in a :class:`~ese.sw.contract.timing.Timing`
(``ese.hw.timing.hardware_timing(config)`` gives the hardware's own). Zero activations are
never broadcast: with a trace of the golden model the prediction follows them frame by frame;
without one, every activation counts as non-zero. ``ese bench`` compares the prediction with
the RTL.
"""

from dataclasses import dataclass, field

import numpy as np

from ..contract.memory_map import GATES, MemoryMap

__all__ = ["PerformancePrediction", "predict_performance", "phase_demands", "stream_traffic"]


@dataclass
class Phase:
    """The work of one broadcast phase (a layer's gates or its projection), per column.

    ``macs`` and ``words`` are (PEs, columns): real entries and entry words of each column in
    each PE. ``readout`` is (PEs,): the accumulator rows read from each PE after the phase
    (a cell's four gates, or a projection row); each read takes the PE's accumulator memory
    for a cycle, in which it issues no multiply.
    """

    name: str
    layer: int
    kind: str              # "gates" or "projection"
    macs: np.ndarray
    words: np.ndarray
    readout: np.ndarray

    @property
    def columns(self):
        return self.macs.shape[1]

    def cycles(self, active=None):
        """Per PE: cycles the phase needs with its stages overlapped.

        ``active`` is a boolean mask of the columns whose activation is non-zero (all if
        None); the others are never broadcast.
        """
        if active is None:
            active = np.ones(self.columns, dtype=bool)
        active = np.asarray(active, dtype=np.int64)
        return np.maximum(np.maximum(self.macs @ active, self.words @ active), active.sum())


@dataclass
class PerformancePrediction:
    """Predicted cycles per frame, and where they go."""

    cycles_per_frame: float
    bound_cycles: float               # non-zeros / PEs: every PE multiplying every cycle
    effective_bound_cycles: float     # multiplies with non-zero activations / PEs
    nonzeros: int
    pes: int
    phases: list = field(default_factory=list)
    limited_by: str = "multiply-accumulate"
    memory_cycles: float = 0.0        # streamed weights: the memory port's cycles per step

    @property
    def utilization(self):
        return self.bound_cycles / self.cycles_per_frame

    def to_dict(self):
        return {
            "cycles_per_frame": self.cycles_per_frame,
            "bound_cycles": self.bound_cycles,
            "effective_bound_cycles": self.effective_bound_cycles,
            "utilization": self.utilization,
            "limited_by": self.limited_by,
            "memory_cycles": self.memory_cycles,
        }


def stream_traffic(image):
    """Beats and bursts the streamer reads per frame step for ``image`` (0, 0 when the
    weights are resident)."""
    config = image.config
    if not config.streamed:
        return 0, 0
    mm = MemoryMap(config)
    beats = bursts = 0
    for pe in range(config.pes):
        for _, _, section in image.section_spans(pe):
            beats += section
            bursts += -(-section // mm.burst_beats)
    return beats, bursts


def phase_demands(image):
    """The :class:`Phase` s of one frame, from a HardwareImage."""
    config = image.config
    lanes = config.entries_per_read
    weight_mask = (1 << config.weight_bits) - 1
    pointers = image.pointers
    real_before = []          # per PE: real entries before each entry index
    for entries in image.entries:
        real = (np.asarray(entries, dtype=np.int64) & weight_mask) != 0
        real_before.append(np.concatenate([[0], np.cumsum(real)]))
    phases = []
    for index, d in enumerate(image.descriptors):
        gates = (d["column_base"], d["column_base"] + d["inputs"] + d["recurrent"])
        spans = [("gates", gates)]
        if d["proj"]:
            spans.append(("projection", (gates[1], gates[1] + d["cells"])))
        for kind, (first, stop) in spans:
            start, end = pointers[:, first:stop], pointers[:, first + 1:stop + 1]
            words = np.where(end > start, (end - 1) // lanes - start // lanes + 1, 0)
            macs = np.stack([counts[end[pe]] - counts[start[pe]]
                             for pe, counts in enumerate(real_before)])
            rows = GATES * d["cells"] if kind == "gates" else d["proj"]
            readout = np.array([len(range(pe, rows, config.pes)) for pe in range(config.pes)])
            phases.append(Phase(f"layer {index} {kind}", index, kind, macs, words, readout))
    return phases


def _active_masks(phases, traces, frame):
    """Per phase, the columns broadcast in step ``frame``: those with a non-zero activation
    in at least one channel (from each channel's golden trace)."""
    masks = []
    for phase in phases:
        mask = None
        for trace in traces:
            layer = trace[phase.layer]
            if phase.kind == "gates":
                vector = np.concatenate([layer["inputs"][frame], layer["recurrent"][frame]])
            else:
                vector = layer["cells"][frame]
            mask = (vector != 0) if mask is None else mask | (vector != 0)
        masks.append(mask)
    return masks


def _stream(phases, frames_masks):
    """Per frame: (per-PE busy cycles (PEs, columns)) of the broadcast stream, in order.

    A phase's accumulator reads fall between its columns and the next phase's: they are
    counted with its last broadcast column.
    """
    for masks in frames_masks:
        pieces = []
        for phase, mask in zip(phases, masks):
            piece = phase.macs if mask is None else phase.macs[:, mask]
            if piece.shape[1]:
                piece = piece.copy()
                piece[:, -1] += phase.readout
            pieces.append(piece)
        yield np.concatenate(pieces, axis=1)


def _replay(streams, depth, lead):
    """Run the max-plus recurrence over the frames' streams; returns each frame's end."""
    from collections import deque
    taken_history = deque(maxlen=depth)   # column-stage take times of the last D columns
    start_history = deque(maxlen=lead)    # multiplier start times of the last B columns
    broadcast = -1.0
    taken = start = previous_work = None
    ends = []
    for work in streams:
        if taken is None:
            pes = work.shape[0]
            taken, start, previous_work = np.full(pes, -1.0), np.zeros(pes), np.zeros(pes)
        for column in range(work.shape[1]):
            broadcast += 1
            if len(taken_history) == depth:
                broadcast = max(broadcast, taken_history[0].max())
            taken = np.maximum(taken + 1, broadcast + 1)
            if len(start_history) == lead:
                taken = np.maximum(taken, start_history[0])
            start = np.maximum(start + previous_work, taken + 1)
            previous_work = work[:, column]
            taken_history.append(taken)
            start_history.append(start)
        ends.append(float((start + previous_work).max()))
    return ends


def predict_performance(image, timing, trace=None, warmup=2):
    """Predict steady-state cycles per frame of ``image`` on hardware of ``timing`` (a
    :class:`~ese.sw.contract.timing.Timing`).

    Without ``trace`` every activation counts as non-zero (three identical frames are
    replayed). With a trace of the golden model (``GoldenModel.run(codes, trace=...)``), the
    zero activations the hardware skips are left out frame by frame, and the prediction is
    the mean advance per frame after ``warmup`` frames. With several channels in lock step,
    ``trace`` is a list of every channel's trace: a column is skipped only where it is zero
    in all of them, and a step (one frame of every channel) costs what a frame costs.
    """
    phases = phase_demands(image)
    config = image.config
    pes = config.pes
    nonzeros = int(sum(phase.macs.sum() for phase in phases))
    if trace is None:
        frames_masks = [[None] * len(phases)] * 3
        warmup = 1
    else:
        traces = trace if isinstance(trace[0], list) else [trace]
        count = min(len(t[0]["inputs"]) for t in traces)
        frames_masks = [_active_masks(phases, traces, t) for t in range(count)]
        warmup = min(warmup, count - 1)
    ends = _replay(_stream(phases, frames_masks), config.activation_queue_depth,
                   timing.column_lead)
    steady = np.diff(ends)[warmup - 1:] if warmup else np.diff([0.0] + ends)
    latency = timing.chain_cycles * len(image.descriptors)
    cycles = float(np.mean(steady)) + latency
    measured = frames_masks[warmup:]
    effective = np.mean([sum(int(p.macs.sum() if m is None else p.macs[:, m].sum())
                             for p, m in zip(phases, masks)) / pes for masks in measured])
    # What bounds the busiest PE most: its multiplies or the broadcast columns.
    masks = measured[0]
    active = [np.ones(p.columns, bool) if m is None else m for p, m in zip(phases, masks)]
    per_pe = sum(p.macs[:, m].sum(axis=1) for p, m in zip(phases, active))
    columns = sum(int(m.sum()) for m in active)
    limited_by = ("multiply-accumulate" if per_pe.max() >= columns else "broadcast columns")
    if per_pe.max() < 0.97 * (cycles - latency) and limited_by == "multiply-accumulate":
        limited_by = "multiply-accumulate, with queue coupling between PEs"
    beats, bursts = stream_traffic(image)
    memory = float(max(beats, timing.burst_issue_cycles * bursts))
    if memory > cycles:
        cycles = memory
        limited_by = "off-chip memory: streaming the weights"
    return PerformancePrediction(cycles, nonzeros / pes, float(effective), nonzeros, pes,
                                 phases, limited_by, memory)
