"""The benchmark: ESE's operating point in RTL simulation, against its bound, a model and CPUs.

``ese bench`` builds the benchmark layer of ESE (input 153, 1024 cells, projection 512,
peepholes) pruned to density 0.112, compiles it for 32 PEs, runs frames through the Verilator
model of the hardware and reports cycles per frame against the compute bound (non-zeros per
PE), the analytical model's prediction, and PyTorch on this machine's CPU for the same layer,
all measured in one run. ``--cell gru`` does the same for a GRU of the same size (153 inputs,
1024 units). It runs the same with global pruning to show what load-balance-aware
pruning buys, and can sweep the PE count and plot utilization.
"""

import dataclasses
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from .reports import BenchReport, ModelBenchReport, StreamingBenchReport, StreamingRun
from .workloads import random_program

__all__ = ["BenchSettings", "run_benchmark", "model_benchmark", "sweep_pe_counts", "plot_sweep",
           "layer_name", "ESE_LATENCY_US", "ESE_GOPS"]

#: ESE's reported latency for this layer on 32 PEs at 200 MHz (FPGA 2017).
ESE_LATENCY_US = 82.7
#: ESE's reported throughput on the sparse model, 32 channels x 32 PEs.
ESE_GOPS = 282
#: Frames run before the steady state is measured (pipeline fill, first-frame zero state).
WARMUP_FRAMES = 2


def _card_memory_bits():
    from ...boards import DEFAULT_BOARD, board
    return board(DEFAULT_BOARD).memory_data_bits


@dataclass
class BenchSettings:
    cell: str = "lstmp"          # or "gru" (workloads.CELLS): then ``cells`` GRU units, no proj
    inputs: int = 153
    cells: int = 1024
    proj: int = 512
    pes: int = 32
    channels: int = 1
    block_columns: int = 1
    cell_lanes: int = 1
    entries_per_read: int = 4
    #: The board's preset these settings come from, if any (for the reports).
    preset: str = ""
    density: float = 0.112
    pruning: str = "balanced"
    frames: int = 12
    seed: int = 0
    queue_depth: int = 16
    row_spread: float = 0.0
    stream_window: int = 0
    #: The memory port, when the weights are streamed: the default board's.
    memory_bits: int = dataclasses.field(default_factory=_card_memory_bits)


def build_program(settings):
    """The benchmark layer, pruned and compiled for ``settings`` (see
    :func:`~ese.sw.tools.workloads.random_peephole_program` for ``row_spread``): ESE's LSTMP,
    or a GRU of ``settings.cells`` units."""
    import ese
    streaming = {}
    if settings.stream_window:
        streaming = {"stream_window": settings.stream_window,
                     "memory_data_bits": settings.memory_bits}
    config = ese.Config(pes=settings.pes, channels=settings.channels,
                        block_columns=settings.block_columns, cell_lanes=settings.cell_lanes,
                        entries_per_read=settings.entries_per_read,
                        activation_queue_depth=settings.queue_depth, **streaming)
    return random_program(settings.cell, settings.inputs, settings.cells, settings.proj, config,
                          density=settings.density, pruning=settings.pruning,
                          seed=settings.seed, row_spread=settings.row_spread)


def machine(settings):
    """The machine a benchmark runs, for its report: the preset (if any) and the parameters
    that make it."""
    return {"preset": settings.preset or None, "pes": settings.pes,
            "block_columns": settings.block_columns, "cell_lanes": settings.cell_lanes,
            "entries_per_read": settings.entries_per_read}


def bound_cycles(settings, nonzeros):
    """ESE's bound: the cycles of a frame if every multiplier did useful work every cycle
    (non-zeros over the PEs' multipliers: ``block_columns`` a PE)."""
    return nonzeros / (settings.pes * settings.block_columns)


def _proj(settings):
    """The layer's projection size: none for a GRU."""
    return 0 if settings.cell == "gru" else settings.proj


def steady_cycles(cycles_per_frame):
    """Median steady-state cycles per frame.

    The frames after the warm-up are taken in overlapping pairs: the filler does the next
    frame's input products in the current frame's gaps, so work moves between neighbouring
    frames' intervals.
    """
    steady = cycles_per_frame[WARMUP_FRAMES:]
    pairs = [(a + b) / 2 for a, b in zip(steady, steady[1:])] or steady
    return float(statistics.median(pairs))


def cpu_latency_us(program, repeats=7, frames=200):
    """PyTorch on this CPU, batch 1: microseconds per frame of the pruned float layer.

    Returns ``{"dense": ..., "sparse": ..., "module": ...}``: the layer's frame step written
    with its weight matrices dense (``torch.mv``) and as CSR sparse matrices
    (``torch.sparse.mm``), and, for a GRU, ``torch.nn.GRU``'s own forward over the frames
    (its fused kernel; the LSTMP is ese's Python ``PeepholeLSTM``, so it has none). Each
    figure is the median of ``repeats`` runs, the kinds taking turns.
    """
    import torch

    from ..compiler.converters import GRU_INPUT_SLOTS, GRU_RECURRENT_SLOTS
    layer = program.float_model.layers[0]
    gru = layer.is_gru
    cells = layer.cells
    tensor = lambda array: torch.tensor(array, dtype=torch.float32)    # noqa: E731
    if gru:
        # PyTorch's form of the description's slots: W_ih (r, z, n_x), W_hh (r, z, n_h).
        rows = lambda slots: np.concatenate([np.arange(s * cells, (s + 1) * cells)  # noqa: E731
                                             for s in slots])
        bias_hh = np.zeros(3 * cells)
        bias_hh[2 * cells:] = layer.bias[rows(GRU_RECURRENT_SLOTS)][2 * cells:]
        weights = {"input_weights": tensor(layer.input_weights[rows(GRU_INPUT_SLOTS)]),
                   "recurrent_weights": tensor(layer.recurrent_weights[rows(GRU_RECURRENT_SLOTS)]),
                   "bias_ih": tensor(layer.bias[rows(GRU_INPUT_SLOTS)]),
                   "bias_hh": tensor(bias_hh)}
        module = torch.nn.GRU(layer.inputs, cells)
        with torch.no_grad():
            for ours, theirs in (("input_weights", "weight_ih_l0"),
                                 ("recurrent_weights", "weight_hh_l0"),
                                 ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
                getattr(module, theirs).copy_(weights[ours])
        matrix_names = ("input_weights", "recurrent_weights")
    else:
        weights = {name: tensor(getattr(layer, name))
                   for name in ("input_weights", "recurrent_weights", "bias", "peephole",
                                "projection") if getattr(layer, name) is not None}
        matrix_names = ("input_weights", "recurrent_weights", "projection")
    sparse = {**weights, **{k: weights[k].to_sparse_csr() for k in matrix_names}}
    xs = torch.randn(frames, program.inputs)

    def lstmp(matrices, multiply):
        bias, peep = matrices["bias"], matrices["peephole"]
        y = torch.zeros(program.outputs)
        c = torch.zeros(cells)
        for x in xs:
            pre = multiply(matrices["input_weights"], x) + multiply(
                matrices["recurrent_weights"], y) + bias
            i = torch.sigmoid(pre[:cells] + peep[0] * c)
            f = torch.sigmoid(pre[cells:2 * cells] + peep[1] * c)
            g = torch.tanh(pre[2 * cells:3 * cells])
            c = f * c + i * g
            o = torch.sigmoid(pre[3 * cells:] + peep[2] * c)
            y = multiply(matrices["projection"], o * torch.tanh(c))
        return y

    def gru_step(matrices, multiply):
        h = torch.zeros(cells)
        for x in xs:
            gi = multiply(matrices["input_weights"], x) + matrices["bias_ih"]
            gh = multiply(matrices["recurrent_weights"], h) + matrices["bias_hh"]
            r = torch.sigmoid(gi[:cells] + gh[:cells])
            z = torch.sigmoid(gi[cells:2 * cells] + gh[cells:2 * cells])
            n = torch.tanh(gi[2 * cells:] + r * gh[2 * cells:])
            h = (1 - z) * n + z * h
        return h

    def fused(_matrices, _multiply):
        module(xs)

    step = gru_step if gru else lstmp
    dense_mv = torch.mv
    sparse_mv = lambda matrix, vector: torch.sparse.mm(matrix, vector[:, None])[:, 0]
    runs = {"dense": (step, weights, dense_mv), "sparse": (step, sparse, sparse_mv)}
    if gru:
        runs["module"] = (fused, None, None)
    times = {name: [] for name in runs}
    with torch.no_grad():
        for run, matrices, multiply in runs.values():
            run(matrices, multiply)                      # warm up
        # The kinds take turns, so that a slow spell of a shared machine slows all of them.
        for _ in range(repeats):
            for name, (run, matrices, multiply) in runs.items():
                started = time.perf_counter()
                run(matrices, multiply)
                times[name].append((time.perf_counter() - started) / frames * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def _channel_traces(program, settings):
    """One random utterance per channel, and the golden model's trace of each."""
    rng = np.random.default_rng(settings.seed + 1)
    sequences = [rng.normal(size=(settings.frames, settings.inputs))
                 for _ in range(settings.channels)]
    traces = []
    for sequence in sequences:
        codes, _ = program.encode_inputs(sequence)
        traces.append([])
        program.predict_codes(codes, trace=traces[-1])
    return sequences, traces


def _throughput(settings, nonzeros, cycles, clock_mhz):
    """Frames per second (all channels) and GOPS (two operations per non-zero weight)."""
    step_seconds = cycles / clock_mhz * 1e-6
    return {"frames_per_second": settings.channels / step_seconds,
            "gops": 2 * nonzeros * settings.channels / step_seconds / 1e9,
            "gops_per_channel": 2 * nonzeros / step_seconds / 1e9,
            "ese_gops": ESE_GOPS}


def model_benchmark(settings):
    """The analytical model alone, for machines too large to simulate here (e.g. 32 x 32).

    The channels run in lock step, so a step costs what one frame costs, except that a
    column is skipped only when its activation is zero in every channel: the model replays
    the golden model's traces of every channel's utterance.
    """
    from ...hw.timing import hardware_timing
    from ..compiler.performance import predict_performance
    program = build_program(settings)
    _, traces = _channel_traces(program, settings)
    prediction = predict_performance(program.image, hardware_timing(program.config),
                                     trace=traces, warmup=WARMUP_FRAMES)
    nonzeros = program.summary()["nonzeros"]
    cycles = prediction.cycles_per_frame
    clock = program.config.clock_mhz
    return ModelBenchReport(**{
        "measured_by": "analytical model (sw/compiler/performance.py), no RTL simulation",
        **machine(settings), "cell": settings.cell, "channels": settings.channels,
        "inputs": settings.inputs, "cells": settings.cells, "proj": _proj(settings),
        "density": settings.density,
        "pruning": settings.pruning, "nonzeros": nonzeros,
        "bound_cycles": bound_cycles(settings, nonzeros),
        "effective_bound_cycles": prediction.effective_bound_cycles,
        "model_cycles_per_frame": cycles,
        "model_limited_by": prediction.limited_by, "clock_mhz": clock,
        "stream_window": settings.stream_window,
        "memory_cycles_per_step": prediction.memory_cycles,
        "latency_us": cycles / clock, **_throughput(settings, nonzeros, cycles, clock),
        "frames": settings.frames,
    })


def streaming_benchmark(settings, log=None):
    """Streamed weights through the whole system (the driver, the AXI bus models and the DDR
    model), against the same model with its weights on chip, in the same run.

    The card's counters give the cycles of the last step and the busy cycles of all (the
    first step also waits for the rings to fill); the analytical model adds the memory
    port's bound to the PEs' (see :func:`ese.sw.compiler.performance.stream_traffic`).
    """
    from ...hw.timing import hardware_timing
    from ...sim.runner import run_system
    from ..compiler.performance import predict_performance
    runs = {}
    for name, window in (("streamed", settings.stream_window), ("resident", 0)):
        program = build_program(dataclasses.replace(settings, stream_window=window))
        sequences, traces = _channel_traces(program, settings)
        outputs, counters = run_system(program, sequences, log=log)
        exact = all(np.array_equal(out[0], program.predict(sequence))
                    for out, sequence in zip(outputs, sequences))
        prediction = predict_performance(program.image, hardware_timing(program.config),
                                         trace=traces, warmup=WARMUP_FRAMES)
        words = max(len(program.image.entry_words(pe)) for pe in range(settings.pes))
        runs[name] = StreamingRun(**{
            "stream_window": window,
            "entry_words_per_pe": words,
            "on_chip_entry_words_per_pe": 2 * window if window else words,
            "step_cycles": counters["step_cycles"],
            "busy_cycles_per_step": counters["busy_cycles"] / counters["steps_out"],
            "model_cycles_per_step": prediction.cycles_per_frame,
            "model_memory_cycles_per_step": prediction.memory_cycles,
            "model_limited_by": prediction.limited_by,
            "bitexact": exact,
        })
    return StreamingBenchReport(settings=asdict(settings), **runs)


def run_benchmark(settings, log=None, cpu=True):
    """Run one benchmark configuration in RTL simulation; returns a
    :class:`~ese.sw.tools.reports.BenchReport`."""
    from ...hw.timing import hardware_timing
    from ..compiler.performance import predict_performance
    program = build_program(settings)
    summary = program.summary()
    # One independent utterance per channel; the channels run in lock step, so a step (one
    # frame of every channel) is what the cycle counts measure.
    sequences, traces = _channel_traces(program, settings)
    frames = sequences[0]
    started = time.monotonic()
    result = program.simulate(frames if settings.channels == 1 else sequences, log=log)
    cycles = steady_cycles(result.cycles_per_frame)
    # A frame arriving at an idle machine: its input streams in, then every phase runs.
    paced = program.simulate(frames[:4], log=log, paced=True)
    isolated = float(statistics.median(paced.cycles_per_frame[1:]))
    clock = program.config.clock_mhz
    latency = cycles / clock
    prediction = predict_performance(program.image, hardware_timing(program.config),
                                     trace=traces, warmup=WARMUP_FRAMES)
    nonzeros = summary["nonzeros"]
    bound = bound_cycles(settings, nonzeros)
    figures = {
        **machine(settings),
        "cell": settings.cell,
        "channels": program.config.channels,
        "inputs": settings.inputs,
        "cells": settings.cells,
        "proj": _proj(settings),
        "density": settings.density,
        "pruning": settings.pruning,
        "nonzeros": nonzeros,
        "padding_entries": summary["padding_entries"],
        "nonzeros_per_pe_max": int(program.image.nonzeros_per_pe.max()),
        "bound_cycles": bound,
        "cycles_per_frame": cycles,
        "cycles_per_frame_all": result.cycles_per_frame,
        "clock_mhz": clock,
        "latency_us": latency,
        "frame_latency_cycles": isolated,
        "frame_latency_us": isolated / clock,
        "utilization": bound / cycles,
        "effective_bound_cycles": prediction.effective_bound_cycles,
        "effective_utilization": prediction.effective_bound_cycles / cycles,
        "model_cycles_per_frame": prediction.cycles_per_frame,
        "model_error": prediction.cycles_per_frame / cycles - 1.0,
        "model_limited_by": prediction.limited_by,
        **_throughput(settings, nonzeros, cycles, clock),
        "bitexact": bool(result.bitexact and paced.bitexact),
        "mismatches": result.mismatches + paced.mismatches,
        "frames": settings.frames,
        "queue_depth": settings.queue_depth,
        "row_spread": settings.row_spread,
        "verilator_build_seconds": result.details["build_recorded_seconds"],
        "verilator_build_cached": result.build_cached,
        "simulation_seconds": result.wall_seconds,
        "simulated_cycles": result.total_cycles,
        "simulated_cycles_per_second": result.simulated_cycles_per_second,
        "benchmark_seconds": time.monotonic() - started,
    }
    if cpu:
        times = cpu_latency_us(program)
        figures.update({"cpu_dense_us": times["dense"], "cpu_sparse_us": times["sparse"],
                        "speedup_vs_cpu_dense": times["dense"] / latency,
                        "speedup_vs_cpu_sparse": times["sparse"] / latency})
        if "module" in times:
            figures.update({"cpu_module_us": times["module"],
                            "speedup_vs_cpu_module": times["module"] / latency})
        if settings.cell == "lstmp":
            figures.update({"ese_latency_us": ESE_LATENCY_US,
                            "speedup_vs_ese": ESE_LATENCY_US / latency})
    return BenchReport(**figures)


def sweep_pe_counts(pe_counts, settings, log=None):
    """Run both pruning kinds for each PE count; returns a list of BenchReports."""
    results = []
    for pes in pe_counts:
        for pruning in ("balanced", "global"):
            run = BenchSettings(**{**asdict(settings), "pes": pes, "pruning": pruning})
            if log is not None:
                log(f"{pes} PEs, {pruning} pruning")
            results.append(run_benchmark(run, log=log, cpu=False))
    return results


def layer_name(report):
    """The benchmark layer, for titles: "LSTMP 153-1024-512" or "GRU 153-1024"."""
    if report.cell == "gru":
        return f"GRU {report.inputs}-{report.cells}"
    return f"LSTMP {report.inputs}-{report.cells}-{report.proj}"


def plot_sweep(results, path):
    """Plot PE utilization against PE count for both pruning kinds, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    figure, axes = pyplot.subplots(figsize=(6.4, 4.2), dpi=120)
    for pruning, marker in (("balanced", "o"), ("global", "s")):
        rows = sorted((r for r in results if r.pruning == pruning), key=lambda r: r.pes)
        pes = [r.pes for r in rows]
        axes.plot(pes, [r.effective_utilization for r in rows], marker=marker,
                  label=f"{'load-balanced' if pruning == 'balanced' else 'global'} pruning (RTL)")
        axes.plot(pes, [r.effective_bound_cycles / r.model_cycles_per_frame for r in rows],
                  linestyle=":", color=axes.lines[-1].get_color(), label="  model")
    axes.axhline(0.9, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xscale("log", base=2)
    axes.set_xticks([r.pes for r in results], [str(r.pes) for r in results])
    axes.set_ylim(0.5, 1.05)
    axes.set_xlabel("processing elements")
    axes.set_ylabel("PE utilization (useful multiplies / PE cycles)")
    first = results[0]
    weights = (f"row spread {first.row_spread}" if first.row_spread
               else "i.i.d. random weights")
    axes.set_title(f"{layer_name(first)}, density {first.density}, {weights}", fontsize=10)
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
