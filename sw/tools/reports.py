"""What the tools report, as typed records: the demo, the benchmarks and the soak.

Each report is a dataclass whose fields are its figures; the command line prints them by
name, and ``to_dict()`` gives the JSON form (``--json`` and the files under reports/), with
the same keys as the fields. Optional figures that a run did not measure are left out.
"""

import dataclasses
from dataclasses import dataclass, field

__all__ = ["Report", "BenchPoint", "DemoReport", "SpeechDemoReport", "BenchReport",
           "ModelBenchReport", "StreamingRun", "StreamingBenchReport", "SweepReport",
           "SoakReport", "DeltaRun", "DeltaBenchReport"]


class Report:
    """A report's JSON form: its fields by name, without the optional ones left unset."""

    #: Fields written to JSON under another key.
    _KEYS = {}

    def to_dict(self):
        values = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and item.default is None:
                continue
            if isinstance(value, Report):
                value = value.to_dict()
            elif isinstance(value, list) and value and isinstance(value[0], Report):
                value = [entry.to_dict() for entry in value]
            values[self._KEYS.get(item.name, item.name)] = value
        return values


@dataclass
class DemoReport(Report):
    """``ese demo``'s compiled LSTMP on the RTL."""

    model: str
    pes: int
    weights: int
    nonzeros: int
    density: float
    padding_entries: int
    entries_per_pe: list            # [min, max]
    frames: int
    mismatches: int
    bitexact: bool
    max_error_vs_float: float
    cycles_per_frame: int
    latency_us: float
    clock_mhz: float
    load_cycles: int
    build_seconds: float
    simulation_seconds: float
    speech: "SpeechDemoReport | None" = None

    @property
    def passed(self):
        return self.bitexact and (self.speech is None or self.speech.passed)


@dataclass
class SpeechDemoReport(Report):
    """The committed recognizer hearing a sentence through the RTL."""

    sentence: str
    voice: str
    frames: int
    reference_phones: list          # espeak-ng's
    recognised_phones: list         # decoded from the RTL's outputs
    phone_errors: int
    phone_error_rate: float
    bitexact: bool
    decode_equals_golden: bool
    pes: int
    nonzeros: int
    density: float
    cycles_per_frame: int
    real_time_factor: float
    simulation_seconds: float

    @property
    def passed(self):
        return self.bitexact and self.decode_equals_golden


@dataclass
class BenchPoint(Report):
    """The machine and the layer a benchmark ran (``cell``: "lstmp" or "gru"; ``preset``: the
    board's named machine, or None)."""

    cell: str
    preset: "str | None"
    pes: int
    block_columns: int
    cell_lanes: int
    entries_per_read: int
    channels: int
    inputs: int
    cells: int
    proj: int
    density: float
    pruning: str


@dataclass
class BenchReport(BenchPoint):
    """``ese bench``: one configuration in RTL simulation, against its bound, the model and
    (optionally) PyTorch on this CPU."""

    nonzeros: int
    padding_entries: int
    nonzeros_per_pe_max: int
    bound_cycles: float
    cycles_per_frame: float
    cycles_per_frame_all: list
    clock_mhz: float
    latency_us: float
    frame_latency_cycles: float
    frame_latency_us: float
    utilization: float
    effective_bound_cycles: float
    effective_utilization: float
    model_cycles_per_frame: float
    model_error: float
    model_limited_by: str
    frames_per_second: float
    gops: float
    gops_per_channel: float
    ese_gops: float
    bitexact: bool
    mismatches: int
    frames: int
    queue_depth: int
    row_spread: float
    verilator_build_seconds: float
    verilator_build_cached: bool
    simulation_seconds: float
    simulated_cycles: int
    simulated_cycles_per_second: float
    benchmark_seconds: float
    cpu_dense_us: float = None
    cpu_sparse_us: float = None
    speedup_vs_cpu_dense: float = None
    speedup_vs_cpu_sparse: float = None
    cpu_module_us: float = None
    speedup_vs_cpu_module: float = None
    ese_latency_us: float = None
    speedup_vs_ese: float = None
    global_pruning: "BenchReport | None" = None
    load_balance_speedup: float = None

    _KEYS = {"global_pruning": "global"}


@dataclass
class ModelBenchReport(BenchPoint):
    """``ese bench --model-only``: the analytical model alone, for machines too large to
    simulate here."""

    measured_by: str
    nonzeros: int
    bound_cycles: float
    effective_bound_cycles: float
    model_cycles_per_frame: float
    model_limited_by: str
    clock_mhz: float
    stream_window: int
    memory_cycles_per_step: float
    latency_us: float
    frames_per_second: float
    gops: float
    gops_per_channel: float
    ese_gops: float
    frames: int


@dataclass
class StreamingRun(Report):
    """One side of ``ese bench --stream-window``: the system with its weights streamed or on
    chip."""

    stream_window: int
    entry_words_per_pe: int
    on_chip_entry_words_per_pe: int
    step_cycles: int
    busy_cycles_per_step: float
    model_cycles_per_step: float
    model_memory_cycles_per_step: float
    model_limited_by: str
    bitexact: bool


@dataclass
class StreamingBenchReport(Report):
    settings: dict
    streamed: StreamingRun
    resident: StreamingRun


@dataclass
class SoakReport(Report):
    """``ese soak``: frames through the whole simulated machine, every one checked."""

    cell: str                       # the model: "lstmp" or "gru"
    frame_steps: int
    channels: int
    frames: int
    sequences: int
    mismatched_frames: int
    stall_probability: float
    pes: int
    simulated_cycles: int
    steps_out: int
    wall_seconds: float
    build_tree: str = None          # the card's build tree simulated, if not the bare system
    resets: int = 0                 # runs cut short by a reset (each then run again in full)
    delta: list = None              # delta layers' thresholds (theta_x, theta_h), if any

    @property
    def passed(self):
        return self.mismatched_frames == 0


@dataclass
class SweepReport(Report):
    """``ese bench --sweep``: both pruning kinds at each PE count."""

    sweep: list = field(default_factory=list)       # BenchReport per PE count and kind
    settings: dict = field(default_factory=dict)


@dataclass
class DeltaRun(Report):
    """One program of ``ese bench --delta`` (with or without thresholds): its steady frames in
    RTL (each utterance's first ``warmup_frames`` left out), the performance model on the
    same frames, and its phone error rates."""

    thresholds: list                 # per layer: {"x", "h", "m"} in LSBs, or None
    frames: int
    mean_cycles_per_frame: float
    median_cycles_per_frame: float
    p99_cycles_per_frame: float
    model_mean_cycles_per_frame: float
    model_error: float               # model / RTL - 1, on the mean
    latency_us: float                # the mean frame at the clock
    test_golden_per: float           # the golden model over the whole test split
    test_utterances: int
    rtl_per: float                   # the RTL's decodes of the simulated utterances
    rtl_bitexact: bool
    rtl_decodes_equal_golden: bool
    seconds: float


@dataclass
class DeltaBenchReport(Report):
    """``ese bench --delta``: the recognizer with and without thresholds, in one run."""

    recognizer: str
    pes: int
    corpus: str
    utterances: int                  # simulated in RTL (the PER is over the whole split)
    warmup_frames: int
    without_thresholds: DeltaRun
    with_thresholds: DeltaRun
    mean_ratio: float                # cycles per frame without / with
    median_ratio: float
    per_difference: float            # golden PER with - without, in points
    transmitted: dict                # fractions of columns sent, by kind
    ese_layer_cycles_per_frame: float
    ese_layer_latency_us: float
    ese_layer_floor_cycles: float    # nothing transmitted
    ese_layer_target_us: float
    clock_mhz: float

    @property
    def passed(self):
        return all(run.rtl_bitexact and run.rtl_decodes_equal_golden
                   for run in (self.without_thresholds, self.with_thresholds))

