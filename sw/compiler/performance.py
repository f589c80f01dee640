"""An analytical performance model of the accelerator: cycles per frame from the image alone.

The model follows the hardware's structure (see :mod:`ese.hw.pe` and
:mod:`ese.hw.accelerator`) and replays each frame step's serial chain with the PEs' work
inside it (:func:`step_chain_ends`):

* The broadcast sends one column (with a non-zero activation) per cycle to every PE at once,
  and only while every PE's activation queue has room.
* Each PE's column stage takes a column from its queue per cycle; its multiply-accumulate
  stage then spends one cycle per real (non-padding) entry of the column. (The fetch stage,
  reading ``entries_per_read`` entries per cycle, keeps ahead of it; padding costs nothing.)
  For column j, with ``D`` the activation queue depth, ``B`` the columns the column stage may
  run ahead of the multiplier, ``w[k, j]`` PE k's multiplies, ``c[k, j]`` the cycle its
  column stage takes the column and ``s[k, j]`` the cycle its multiplier starts on it::

      broadcast[j] >= broadcast[j-1] + 1,   broadcast[j] >= max_k c[k, j-D]   (queue room)
      c[k, j]      = max(c[k, j-1] + 1, broadcast[j] + 1, s[k, j-B])
      s[k, j]      = max(s[k, j-1] + w[k, j-1], c[k, j] + 1, broadcast[j] + issue)

* Around them, the chain: the readers read every word of a vector, one per cycle, and stall
  while a column waits for the broadcast; a fence follows each phase's last column through
  the PEs; the cell unit and the writeback issue their items, their accumulator reads taking
  the PEs' memory port; the projection's reads follow the cell unit's outputs, the next
  layer's the writeback's; the sequencer hands each layer and step on; and the filler sends
  the next step's first-layer input columns wherever the critical path leaves the broadcast
  free.

Every latency comes in a :class:`~ese.sw.contract.timing.Timing`
(``ese.hw.timing.hardware_timing(config)`` gives the hardware's own, each from the module
that causes it), so the model follows any configuration the hardware takes. A streamed
configuration (``Config.stream_window``) also reads every PE's entries from the off-chip
memory every step, one beat per cycle at most and one burst request per
``burst_issue_cycles``: the step takes at least that long, whatever the activations; and any
step takes at least as many cycles as its frame has input words or its result output
words, which stream a word a cycle. Zero
activations are never broadcast: with a trace of the golden model the prediction follows
them frame by frame; without one, every activation counts as non-zero. Delta layers
(docs/arithmetic.md, "Delta layers") send only the columns that changed: their traces hold
the changes sent. ``ese bench`` compares the prediction with the RTL.
"""

from dataclasses import dataclass, field

import numpy as np

from ..contract.errors import ConfigError
from ..contract.memory_map import GATES, MemoryMap
from ..contract.placement import Placement

__all__ = ["PerformancePrediction", "predict_performance", "phase_demands", "stream_traffic",
           "step_chain_ends"]


@dataclass
class Phase:
    """The work of one broadcast phase (a layer's gates or its projection), per column.

    ``macs`` is (PEs, columns): the real entries of each column (block of columns) in each
    PE. ``readout`` is (PEs,): the accumulator rows read from each PE after the phase
    (a cell's four gates, or a projection row); each read takes the PE's accumulator memory
    for a cycle, in which it issues no multiply.
    """

    name: str
    layer: int
    kind: str              # "gates" or "projection"
    macs: np.ndarray
    readout: np.ndarray

    @property
    def columns(self):
        return self.macs.shape[1]


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
    #: With a trace: each frame's cycles (the first frame's from the start), as the RTL's
    #: ``SimulationResult.cycles_per_frame`` counts them.
    frame_cycles: list = field(default_factory=list)

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
            **({"frame_cycles": list(self.frame_cycles)} if self.frame_cycles else {}),
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
    placement = Placement.of(config)
    pointers = image.pointers
    real_before = []          # per PE: real entries before each entry index
    for entries in image.entries:
        real = np.asarray(entries)[:, 1:].any(axis=1)      # padding's weights are all zero
        real_before.append(np.concatenate([[0], np.cumsum(real)]))
    phases = []
    for index, d in enumerate(image.descriptors):
        blocks = placement.blocks
        gates = (d["column_base"],
                 d["column_base"] + blocks(d["inputs"]) + blocks(d["recurrent"]))
        spans = [("gates", gates)]
        if d["proj"]:
            spans.append(("projection", (gates[1], gates[1] + blocks(d["cells"]))))
        for kind, (first, stop) in spans:
            start, end = pointers[:, first:stop], pointers[:, first + 1:stop + 1]
            macs = np.stack([counts[end[pe]] - counts[start[pe]]
                             for pe, counts in enumerate(real_before)])
            rows = GATES * d["cells"] if kind == "gates" else d["proj"]
            readout = np.array([placement.rows_held(rows, pe) for pe in range(config.pes)])
            phases.append(Phase(f"layer {index} {kind}", index, kind, macs, readout))
    return phases


def _active_masks(phases, traces, frame, placement):
    """Per phase, the blocks of columns broadcast in step ``frame``: those with a non-zero
    activation in at least one column and channel (from each channel's golden trace)."""
    def blocks(vector):
        return placement.blocked(np.asarray(vector)[None, :])[0].any(axis=1)

    masks = []
    for phase in phases:
        mask = None
        for trace in traces:
            layer = trace[phase.layer]
            if phase.kind == "gates":
                sent = np.concatenate([blocks(layer["inputs"][frame] != 0),
                                       blocks(layer["recurrent"][frame] != 0)])
            else:
                sent = blocks(layer["cells"][frame] != 0)
            mask = sent if mask is None else mask | sent
        masks.append(mask)
    return masks


def predict_performance(image, timing, trace=None, warmup=2):
    """Predict steady-state cycles per frame of ``image`` on hardware of ``timing`` (a
    :class:`~ese.sw.contract.timing.Timing`).

    Without ``trace`` every activation counts as non-zero (five identical frames are
    replayed). With a trace of the golden model (``GoldenModel.run(codes, trace=...)``), the
    zero activations the hardware skips are left out frame by frame (a delta layer's trace
    holds the changes sent, zero where a column is not transmitted) and ``frame_cycles``
    gives every frame's cycles. The prediction is the mean frame after ``warmup`` frames,
    without the last: no next input fills its gaps. With several channels in lock step,
    ``trace`` is a list of every channel's trace: a column is skipped only where it is zero in
    all of them, and a step (one frame of every channel) costs what a frame costs.
    A bidirectional model's image (``image.directions``) runs in passes, which this model
    does not follow: it is refused by name.
    """
    if getattr(image, "directions", None):
        raise ConfigError("the performance model follows one frame step through every layer; "
                          "a bidirectional model runs in passes, one utterance each: simulate "
                          "it (Program.simulate) for its cycles")
    phases = phase_demands(image)
    config = image.config
    pes = config.pes
    nonzeros = int(sum(phase.macs.sum() for phase in phases))
    if trace is None:
        frames_masks = [[None] * len(phases)] * 5
    else:
        traces = trace if isinstance(trace[0], list) else [trace]
        count = min(len(t[0]["inputs"]) for t in traces)
        placement = Placement.of(config)
        frames_masks = [_active_masks(phases, traces, t, placement) for t in range(count)]
    ends = step_chain_ends(image, timing, frames_masks)
    frame_cycles = [float(c) for c in np.diff([0.0] + ends)]
    count = len(frame_cycles)
    first = min(warmup, count - 1)
    steady = frame_cycles[first:count - 1] or frame_cycles[first:]
    cycles = float(np.mean(steady))
    measured = frames_masks[first:]
    effective = np.mean([sum(int(p.macs.sum() if m is None else p.macs[:, m].sum())
                             for p, m in zip(phases, masks)) / pes for masks in measured])
    # What bounds the busiest PE most: its multiplies, the broadcast columns or the chain.
    masks = measured[0]
    active = [np.ones(p.columns, bool) if m is None else m for p, m in zip(phases, masks)]
    per_pe = sum(p.macs[:, m].sum(axis=1) + p.readout for p, m in zip(phases, active))
    columns = sum(int(m.sum()) for m in active)
    limited_by = ("multiply-accumulate" if per_pe.max() >= columns else "broadcast columns")
    if max(per_pe.max(), columns) < 0.5 * cycles:
        limited_by = "the serial chain of each step"
    elif per_pe.max() < 0.97 * cycles and limited_by == "multiply-accumulate":
        limited_by = "multiply-accumulate, with queue coupling between PEs and the chain"
    # The frames stream in and the results out a word (a value per channel) a cycle.
    words = max(image.descriptors[0]["inputs"], image.descriptors[-1]["recurrent"])
    if words > cycles:
        cycles = float(words)
        limited_by = ("the results' stream: a word a cycle" if words
                      == image.descriptors[-1]["recurrent"] else
                      "the frames' stream: a word a cycle")
    beats, bursts = stream_traffic(image)
    memory = float(max(beats, timing.burst_issue_cycles * bursts))
    if memory > cycles:
        cycles = memory
        limited_by = "off-chip memory: streaming the weights"
    return PerformancePrediction(cycles, nonzeros / pes, float(effective), nonzeros, pes,
                                 phases, limited_by, memory,
                                 frame_cycles if trace is not None else [])


class _PEStream:
    """The broadcast and the PEs' column and multiply stages, one column at a time: the
    max-plus recurrence of the module's documentation, where a column may also wait to be
    read, and the multipliers share their accumulator memory with the readouts."""

    def __init__(self, pes, depth, lead, front=2):
        from collections import deque
        self.front = front
        self.taken_history = deque(maxlen=depth + 1)
        self.start_history = deque(maxlen=lead)
        self.broadcast = -1.0
        self.taken = np.full(pes, -1.0)
        self.end = np.zeros(pes)      # the cycle after each PE's last multiply
        self.windows = deque(maxlen=4)

    def earliest(self, ready):
        """The cycle a column ready at ``ready`` would be broadcast: once every PE's queue has
        room. A PE's ``accepting`` is registered from its queue's level (below the depth D),
        and the queue has one entry more (:mod:`ese.hw.pe`), so a column may follow the one
        before it in the next cycle once the column D + 1 back has been taken, and otherwise
        two cycles after the column D back has."""
        following = self.broadcast + 1
        history = self.taken_history
        if len(history) < history.maxlen - 1:
            return max(following, ready)
        if ready <= following and (len(history) < history.maxlen
                                   or following >= history[0].max() + 2):
            return following
        return max(following, ready, history[-(history.maxlen - 1)].max() + 2)

    def send(self, work, ready):
        broadcast = self.earliest(ready)
        taken = np.maximum(self.taken + 1, broadcast + 1)
        if len(self.start_history) == self.start_history.maxlen:
            taken = np.maximum(taken, self.start_history[0])
        start = np.maximum(self.end, np.maximum(taken + 1, broadcast + self.front))
        self.end = self._advance(start, np.asarray(work, dtype=float))
        self.broadcast, self.taken = broadcast, taken
        self.taken_history.append(taken)
        self.start_history.append(start)

    def read_out(self, reads, first, cycles):
        """A readout (the cell unit's gate reads, the writeback's projection rows): each PE's
        ``reads`` spread evenly over ``cycles`` from ``first``, each taking the accumulator
        memory for a cycle, in which the PE issues no multiply."""
        self.windows.append((first, first + cycles, np.minimum(reads / cycles, 1.0)))

    def _advance(self, start, work):
        """Each PE's cycle after ``work`` multiplies from ``start``, around the readouts."""
        # A readout every PE is past can no longer delay any: no multiply starts before a
        # PE's last one ends.
        earliest = start.min()
        while self.windows and self.windows[0][1] <= earliest:
            self.windows.popleft()
        if not self.windows:
            return start + work
        at = start.copy()
        for low, high, share in self.windows:
            before = np.clip(low - at, 0, None)
            done = np.minimum(work, before)
            at, work = at + done, work - done
            inside = (work > 0) & (at < high)
            free = np.where(share < 1, 1 - share, 1.0)
            room = np.where(share < 1, (high - at) * (1 - share), 0.0)
            used = np.where(inside, np.minimum(work, room), 0.0)
            at = np.where(inside, np.where(work <= room, at + used / free, high), at)
            work = work - used
        return at + work

    def done(self):
        """The cycle after every PE's last multiply."""
        return float(self.end.max())


def step_chain_ends(image, timing, frames_masks):
    """The step-chain model: each frame's end (its last output written), in cycles.

    A frame costs each layer's serial chain, with the PEs' work inside it: the readers read
    every word of a vector, one per cycle, sent or not, and stall while a column waits for the
    broadcast (:mod:`ese.hw.broadcast`); a fence follows each phase's last column through the
    PEs; the cell unit issues a cell per ``cell_issue_gap`` cycles; the projection's reads
    follow the cell unit's outputs, the next layer's the writeback's (or the cell unit's); and
    the sequencer hands each layer and step on (:mod:`ese.hw.sequencer`). The transmitted
    columns go through the PEs (:class:`_PEStream`), each once it is read, and the next step's
    first-layer input columns (the filler's) wherever the critical reader leaves the broadcast
    free. ``frames_masks`` gives, per frame, each phase's transmitted columns (None: all).
    """
    config = image.config
    phases = phase_demands(image)
    layers = image.descriptors
    placement = Placement.of(config)
    width = config.block_columns      # a reader's word is a block of columns
    per_issue = config.cell_lanes     # items the cell unit and the writeback issue at once
    gates = {p.layer: p for p in phases if p.kind == "gates"}
    projections = {p.layer: p for p in phases if p.kind == "projection"}
    order = {(p.layer, p.kind): index for index, p in enumerate(phases)}
    t = timing
    stream = _PEStream(config.pes, config.activation_queue_depth, t.column_lead,
                       t.issue_cycles)
    fillers = []              # the filler's jobs not yet sent, oldest first

    def transmitted(masks, layer, kind, low, high):
        mask = masks[order[(layer, kind)]]
        columns = np.arange(high) if mask is None else np.flatnonzero(mask[:high])
        return columns[columns >= low] - low

    def readable(producer, word):
        """When a reader following ``producer`` may read ``word``: once the producer has
        written every item of the block of columns (a producer is ``(first item written,
        cycles between issues, items per issue, items)``)."""
        first, gap, items_per_issue, items = producer
        last_item = min((word + 1) * width, items) - 1
        return first + (last_item // items_per_issue) * gap

    def ready(reader, word):
        at = reader["base"] + word
        return at if reader["follow"] is None else max(at, readable(reader["follow"], word))

    def send(reader, work, word):
        """Send the column block of a reader's word once read and the broadcast is free. A
        block waiting for the broadcast holds the reader's two stages: the word two behind it
        is read only as it goes."""
        stream.send(work, ready(reader, word) + t.read_cycles)
        reader["base"] = max(reader["base"], stream.broadcast - word - t.read_cycles)

    def last_read(reader):
        return ready(reader, reader["length"] - 1)

    def send_fillers(before=None, step=None):
        """Send the filler's blocks that the broadcast reaches before cycle ``before``; or
        (``step``) every block of that step's job and those before it, returning the job's
        last read."""
        for job in fillers:
            while job["next"] < len(job["columns"]):
                word = int(job["columns"][job["next"]])
                if (step is None
                        and stream.earliest(job["base"] + word + t.read_cycles) >= before):
                    return None
                send(job, job["phase"].macs[:, word], word)
                job["next"] += 1
            if job["step"] == step:
                return last_read(job)
        return None

    def critical(phase, columns, offset, length, first_read, follow=None):
        """A critical read job of ``length`` words from ``first_read`` (a word no sooner than
        its producer, ``follow``, has written it); returns its last read."""
        reader = {"base": first_read, "follow": follow, "length": length}
        for word in columns:
            word = int(word)
            send_fillers(ready(reader, word) + t.read_cycles)
            send(reader, phase.macs[:, offset + word], word)
        return last_read(reader)

    def fenced_start(last, *free):
        fence = last + t.read_cycles + t.fence_cycles
        send_fillers(fence)
        return max(fence + t.fence_trip_cycles, stream.done() + t.fence_drain_cycles, *free)

    def queue_filler(step, offered):
        inputs = placement.blocks(layers[0]["inputs"])
        fillers.append({"step": step, "phase": gates[0],
                        "columns": transmitted(frames_masks[step], 0, "gates", 0, inputs),
                        "next": 0, "base": offered + t.job_cycles, "follow": None,
                        "length": inputs})

    def issues(items):
        return -(-items // per_issue)

    ends = []
    step_job = 0.0            # the cycle the step's first read job is offered
    cells_free = writeback_free = 0.0
    previous_output = None    # the last layer's output's producer
    queue_filler(0, 0.0)
    for frame, masks in enumerate(frames_masks):
        if frame + 1 < len(frames_masks):
            # The next step's input products: read once this step runs and their bank's last
            # reader, the previous step's last cell unit, is done.
            queue_filler(frame + 1, max(step_job - 1, cells_free))
        job_at = step_job
        produced = previous_output   # the previous layer's output's producer
        for index, d in enumerate(layers):
            phase = gates[index]
            inputs, recurrent = placement.blocks(d["inputs"]), placement.blocks(d["recurrent"])
            cells = d["cells"]
            first_read = job_at + t.job_cycles
            if index:
                last = critical(phase, transmitted(masks, index, "gates", 0, inputs), 0,
                                inputs, first_read, produced)
                first_read = last + t.job_turn_cycles
            follow = previous_output if len(layers) == 1 else None
            last = critical(phase, transmitted(masks, index, "gates", inputs, inputs + recurrent),
                            inputs, recurrent, first_read, follow)
            if index == 0:
                # The gate fence also waits for the step's input products (filled).
                last = max(last, send_fillers(step=frame) + 1)
                fillers[:] = [job for job in fillers if job["step"] > frame]
            start = fenced_start(last, cells_free, writeback_free)
            # A unit issues its first items a cycle after its start, whose reads reach the PEs
            # a cycle later; an output is readable (counted as produced) a cycle after it is
            # written.
            stream.read_out(phase.readout, start + 2, issues(cells) * t.cell_issue_gap)
            written = start + 2 + t.cell_latency
            cells_free = written + (issues(cells) - 1) * t.cell_issue_gap
            produced = (written, t.cell_issue_gap, per_issue, cells)
            if d["proj"]:
                proj = projections[index]
                blocks = placement.blocks(cells)
                last = critical(proj, transmitted(masks, index, "projection", 0, blocks), 0,
                                blocks, start + 1 + t.job_cycles, produced)
                start = fenced_start(last)
                stream.read_out(proj.readout, start + 2, issues(d["proj"]))
                written = start + 2 + t.writeback_latency
                writeback_free = written + issues(d["proj"]) - 1
                produced = (written, 1, per_issue, d["proj"])
            # The next layer's job; one following the cell unit waits until it is done.
            job_at = start + t.layer_job_cycles
            if not d["proj"]:
                job_at = max(job_at, cells_free)
        first, gap, items_per_issue, items = produced
        ends.append(first + ((items - 1) // items_per_issue) * gap)
        previous_output = produced
        step_job = start + t.step_job_cycles
    return ends
