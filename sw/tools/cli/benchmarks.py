"""Commands that measure: the demo, the benchmark and the soak."""

import json
from pathlib import Path

from ..workloads import CELLS
from .common import (
    STREAM_HELP,
    UsageError,
    density_value,
    existing_file,
    machine,
    machine_options,
    make_console,
    model_source,
    model_source_options,
    non_negative_int,
    number_in,
    positive_int,
    probability_value,
    seed_value,
    threshold_value,
    window_value,
)


def cmd_demo(args):
    from ..demo import DemoSettings, SpeechDemoSettings, run_demo, run_speech_demo
    settings = DemoSettings(pes=args.pes, density=args.density, frames=args.frames,
                            stall_probability=args.stalls, seed=args.seed)
    console = make_console()
    report = run_demo(settings, console)
    if not args.no_speech:
        speech = SpeechDemoSettings(stall_probability=args.stalls)
        if args.sentence:
            speech.sentence = args.sentence
        report.speech = run_speech_demo(speech, console)
    if args.json:
        print(json.dumps(report.to_dict()))
    return 0 if report.passed else 1


def cmd_bench_delta(args):
    from ..delta_bench import DeltaBenchSettings, delta_benchmark
    settings = DeltaBenchSettings(recognizer=args.recognizer or "",
                                  thresholds=tuple(args.thresholds) if args.thresholds else None,
                                  corpus=args.corpus or "", utterances=args.utterances,
                                  seed=args.seed)
    console = make_console()
    with console.status("delta benchmark") as status:
        report = delta_benchmark(settings, log=lambda text: status.update(text))
    if args.output:
        Path(args.output).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print_delta_bench(report, console)
    return 0 if report.passed else 1


def _print_delta_bench(r, console):
    from rich.table import Table
    table = Table(title=f"ese bench --delta: {r.recognizer}, {r.pes} PEs, {r.utterances} test "
                        f"utterances in RTL")
    table.add_column("")
    table.add_column("without thresholds")
    table.add_column("with thresholds")
    runs = (r.without_thresholds, r.with_thresholds)
    for label, name, form in (
            ("mean cycles per frame", "mean_cycles_per_frame", "{:.0f}"),
            ("median", "median_cycles_per_frame", "{:.0f}"),
            ("99th percentile", "p99_cycles_per_frame", "{:.0f}"),
            ("model (mean)", "model_mean_cycles_per_frame", "{:.0f}"),
            ("model vs RTL", "model_error", "{:+.2%}"),
            ("test PER, golden model", "test_golden_per", "{:.2f}%"),
            ("RTL bit-exact, decodes as golden", None, None)):
        if name is None:
            table.add_row(label, *[f"{run.rtl_bitexact}, {run.rtl_decodes_equal_golden}"
                                   for run in runs])
        else:
            table.add_row(label, *[form.format(getattr(run, name)) for run in runs])
    console.print(table)
    sent = ", ".join(f"{kind} {rate:.1%}" for kind, rate in r.transmitted.items())
    console.print(f"{r.mean_ratio:.2f}x fewer cycles per frame (mean; median "
                  f"{r.median_ratio:.2f}x), PER {r.per_difference:+.2f} points; columns sent: "
                  f"{sent}")
    console.print(f"ESE's layer on 32 PEs at these rates (model): "
                  f"{r.ese_layer_cycles_per_frame:.0f} cycles, {r.ese_layer_latency_us:.1f} us "
                  f"per frame (target {r.ese_layer_target_us:g} us; floor "
                  f"{r.ese_layer_floor_cycles:.0f} cycles)")


def cmd_bench(args):
    from dataclasses import asdict

    if args.delta:
        return cmd_bench_delta(args)

    from ..bench import (
        BenchSettings,
        model_benchmark,
        plot_sweep,
        run_benchmark,
        streaming_benchmark,
        sweep_pe_counts,
    )
    from ..reports import StreamingBenchReport, SweepReport
    settings = BenchSettings(cell=args.cell, inputs=args.inputs, cells=args.cells,
                             proj=args.proj, **machine(args), preset=args.preset or "",
                             density=args.density, frames=args.frames,
                             seed=args.seed, queue_depth=args.queue_depth,
                             row_spread=args.row_spread, stream_window=args.stream_window,
                             memory_bits=args.memory_bits)
    console = make_console()
    with console.status("benchmark") as status:
        log = lambda text: status.update(text)
        if args.stream_window and not args.model_only:
            if args.sweep:
                raise UsageError("--stream-window does not combine with --sweep")
            report = streaming_benchmark(settings, log=log)
        elif args.model_only:
            if args.sweep:
                raise UsageError("--model-only does not combine with --sweep")
            report = model_benchmark(settings)
        elif args.sweep:
            results = sweep_pe_counts(args.sweep, settings, log=log)
            if args.plot:
                plot_sweep(results, args.plot)
            report = SweepReport(results, asdict(settings))
        else:
            report = run_benchmark(settings, log=log)
            if args.pruning == "both":
                other = BenchSettings(**{**asdict(settings), "pruning": "global"})
                report.global_pruning = run_benchmark(other, log=log, cpu=False)
                report.load_balance_speedup = (report.global_pruning.cycles_per_frame
                                               / report.cycles_per_frame)
    if args.json:
        print(json.dumps(report.to_dict()))
    elif isinstance(report, StreamingBenchReport):
        for name in ("streamed", "resident"):
            r = getattr(report, name)
            console.print(f"{name:9s}: {r.entry_words_per_pe} entry words per PE, "
                          f"{r.on_chip_entry_words_per_pe} on chip; last step "
                          f"{r.step_cycles} cycles, {r.busy_cycles_per_step:.0f} busy "
                          f"per step; model {r.model_cycles_per_step:.0f} "
                          f"({r.model_limited_by}); bit-exact {r.bitexact}")
    elif args.model_only:
        r = report
        console.print(f"model only ({r.pes} PEs x {r.channels} channels): "
                      f"{r.model_cycles_per_frame:.0f} cycles per step, "
                      f"{r.latency_us:.1f} us, {r.frames_per_second:,.0f} frames/s, "
                      f"{r.gops:.1f} GOPS (ESE: {r.ese_gops} GOPS)")
    elif args.sweep:
        for r in results:
            console.print(f"{r.pes:3d} PEs {r.pruning:8s}: {r.cycles_per_frame:9.0f} "
                          f"cycles/frame, bound {r.bound_cycles:9.0f}, utilization "
                          f"{r.utilization:.3f}, model {r.model_cycles_per_frame:9.0f} "
                          f"({100 * r.model_error:+.1f}%), bit-exact {r.bitexact}")
        if args.plot:
            console.print(f"plot written to {args.plot}")
    else:
        _print_bench(report, console)
    if args.model_only:
        return 0
    if isinstance(report, SweepReport):
        runs = report.sweep
    elif isinstance(report, StreamingBenchReport):
        runs = [report.streamed, report.resident]
    else:
        runs = [report]
    return 0 if all(r.bitexact for r in runs) else 1


def _print_bench(r, console):
    from rich.table import Table

    from ..bench import layer_name
    table = Table(title=f"ese bench: {layer_name(r)}, density {r.density}, {r.pes} PEs x "
                        f"{r.channels} channels at {r.clock_mhz:g} MHz",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("non-zeros / padding entries", f"{r.nonzeros} / {r.padding_entries}"),
        ("bound (non-zeros / PEs)", f"{r.bound_cycles:.0f} cycles"),
        ("RTL cycles per frame", f"{r.cycles_per_frame:.0f} (median, steady state)"),
        ("utilization", f"{r.utilization:.3f}"),
        ("model cycles per frame", f"{r.model_cycles_per_frame:.0f} "
                                   f"({100 * r.model_error:+.2f}% vs RTL)"),
        ("latency", f"{r.latency_us:.1f} us" + (
            f" (ESE: {r.ese_latency_us} us, {r.speedup_vs_ese:.2f}x)"
            if r.ese_latency_us is not None else "")),
        ("one frame on an idle machine", f"{r.frame_latency_cycles:.0f} cycles, "
                                         f"{r.frame_latency_us:.1f} us (input to output)"),
        ("throughput", f"{r.frames_per_second:,.0f} frames/s, {r.gops:.1f} GOPS on the "
                       f"sparse layer ({r.channels} channel{'s' * (r.channels > 1)}; "
                       f"ESE: {r.ese_gops} GOPS on 32)"),
        ("PyTorch CPU, batch 1", f"dense {r.cpu_dense_us:.0f} us, sparse "
                                 f"{r.cpu_sparse_us:.0f} us per frame" + (
                                     f", torch.nn.GRU {r.cpu_module_us:.0f} us"
                                     if r.cpu_module_us is not None else "")),
        ("bit-exact with predict", str(r.bitexact)),
        ("Verilator build", f"{r.verilator_build_seconds:.0f} s"
         + (" (cached from an earlier run)" if r.verilator_build_cached else "")),
        ("simulation", f"{r.simulated_cycles} cycles in {r.simulation_seconds:.1f} s "
                       f"({r.simulated_cycles_per_second:.0f} cycles/s)"),
    ]
    if r.global_pruning is not None:
        g = r.global_pruning
        rows.append(("global pruning", f"{g.cycles_per_frame:.0f} cycles per frame, "
                                       f"utilization {g.utilization:.3f}"))
        rows.append(("load balance buys", f"{r.load_balance_speedup:.3f}x"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def cmd_frontends(args):
    from ..frontends_table import frontends_table
    console = make_console()
    with console.status("compiling") as status:
        rows = frontends_table(rtl=args.rtl, log=lambda text: status.update(text))
    report = {"command": args.command_line, "rows": rows}
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report))
        return 0
    for row in rows:
        what = f"{row['front_end']}: {row['layer']} (against {row['reference']})"
        if "refused" in row:
            console.print(f"{what}: refused: {row['refused']}", markup=False)
            continue
        rtl = ("" if "rtl_bitexact" not in row else
               "; RTL bit-exact" if row["rtl_bitexact"] else "; RTL DIFFERS")
        console.print(f"{what}: float reference {row['float_error']:.1e}, predict "
                      f"{row['predict_error']:.1e} (density {row['density']}){rtl}",
                      markup=False)
    return 0 if all(row.get("rtl_bitexact", True) for row in rows) else 1


def cmd_explore(args):
    from ..explore import ExploreSettings, explore, plot_front
    if args.calibrate:
        return _calibrate(args)
    settings = ExploreSettings(
        model=str(existing_file(args.model, "model file")) if args.model else "",
        source=model_source(args), cell=args.cell, density=args.density, board=args.board,
        pes=tuple(args.pes),
        block_columns=tuple(args.block_columns), cell_lanes=tuple(args.cell_lanes),
        channels=tuple(args.channels), entries_per_read=tuple(args.entries_per_read or ()),
        frames=args.frames, seed=args.seed, latency_us=args.latency_us or 0.0)
    console = make_console()
    with console.status("exploring") as status:
        report = explore(settings, log=lambda text: status.update(text))
    # The report names the command that made it (as speech-eval's does).
    report = {"command": args.command_line, **report}
    output = Path(args.output) if args.output else None
    if output:
        output.write_text(json.dumps(report, indent=1) + "\n")
    plot = args.plot or (output.with_suffix(".png") if output else None)
    if plot:
        plot_front(report, plot)
    if args.json:
        print(json.dumps(report))
        return 0 if not args.latency_us or report["chosen"] else 1
    from rich.table import Table
    table = Table(title=f"Pareto front: {report['settings']['model'] or 'ESE layer'} on the "
                        f"{report['device']} (performance model; resource model)")
    for heading in ("PEs", "columns", "lanes", "channels", "reads", "cycles", "us",
                    "frames/s", "LUT %", "FF %", "DSP %", "BRAM %"):
        table.add_column(heading, justify="right")
    for row in report["pareto_front"]:
        table.add_row(*map(str, (row["pes"], row["block_columns"], row["cell_lanes"],
                                 row["channels"], row["entries_per_read"])),
                      f"{row['cycles_per_frame']:.0f}", f"{row['latency_us']:.2f}",
                      f"{row['frames_per_second']:,.0f}",
                      *(f"{row[name + '_percent']:.1f}" for name in ("lut", "ff", "dsp",
                                                                     "bram36")))
    console.print(table)
    console.print(f"{len(report['machines'])} machines, "
                  f"{sum(r['fits'] for r in report['machines'])} fit the device; ESE: "
                  f"{report['ese']['latency_us']} us, {report['ese']['lut']:,} LUTs")
    if args.latency_us:
        chosen = report["chosen"]
        console.print(
            f"smallest machine meeting {args.latency_us:g} us: " + (
                ", ".join(f"{key} {chosen[key]}" for key in (
                    "pes", "block_columns", "cell_lanes", "channels", "entries_per_read"))
                + f" ({chosen['latency_us']:.2f} us, {chosen['lut_percent']:.1f}% LUT)"
                if chosen else "none of these"))
    if plot:
        console.print(f"plot written to {plot}")
    return 0 if not args.latency_us or report["chosen"] else 1


def _calibrate(args):
    """Fit the generator's resource model to syntheses of its calibration machines."""
    from ....boards import board
    from ....boards.estimate import synthesize
    from ....boards.resource_model import MODEL_PATH, calibrate
    console = make_console()
    with console.status("calibrating the resource model") as status:
        model = calibrate(board(args.board), synthesize, log=lambda text: status.update(text))
    path = Path(args.output) if args.output else MODEL_PATH
    path.write_text(json.dumps(model.to_dict(), indent=1) + "\n")
    worst = {name: max(abs(errors[name]) for errors in model.residuals.values())
             for name in ("lut", "ff", "dsp", "bram36")}
    console.print(f"resource model written to {path}; largest error on its machines: "
                  + ", ".join(f"{name} {100 * value:.1f}%" for name, value in worst.items()))
    return 0


def cmd_soak(args):
    from ..soak import SoakSettings, run_soak
    settings = SoakSettings(cell=args.cell, frames=args.frames, channels=args.channels,
                            pes=args.pes,
                            stall_probability=args.stalls, seed=args.seed,
                            build_tree=args.build_tree, resets=args.resets,
                            delta=tuple(args.delta) if args.delta else None)
    console = make_console()
    with console.status("soak") as status:
        report = run_soak(settings, log=lambda text: status.update(text))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        model = "GRU" if report.cell == "gru" else "LSTMP"
        console.print(
            f"{report.frames} frames of a two-layer {model} ({report.frame_steps} steps x "
            f"{report.channels} "
            f"channels, {report.sequences} sequences) through "
            f"{'the build tree ' + report.build_tree if report.build_tree else 'the system RTL'}"
            f" with "
            f"{report.stall_probability:g} stalls on every bus: "
            f"{report.mismatched_frames} mismatched frames; {report.simulated_cycles} "
            f"simulated cycles in {report.wall_seconds:.0f} s")
    return 0 if report.passed else 1


def register(commands):
    """Add the benchmarks commands to the parser's subcommands."""
    frontends = commands.add_parser(
        "frontends", help="each front end and layer kind compiled, against its framework's "
                          "forward pass (and with --rtl on the RTL)")
    frontends.add_argument("--rtl", action="store_true",
                           help="also run each program on the RTL in Verilator")
    frontends.add_argument("--json", action="store_true")
    frontends.add_argument("-o", "--output", metavar="FILE", help="write the JSON report")
    frontends.set_defaults(run=cmd_frontends)
    demo = commands.add_parser("demo", help="compile a small LSTMP, simulate it, report")
    demo.add_argument("--pes", type=positive_int, default=4, help="processing elements")
    demo.add_argument("--density", type=density_value, default=0.3, help="weights kept")
    demo.add_argument("--frames", type=positive_int, default=12, help="frames to simulate")
    demo.add_argument("--stalls", type=probability_value, default=0.0,
                      help="probability of an idle or back-pressure cycle on each stream")
    demo.add_argument("--seed", type=seed_value, default=0)
    demo.add_argument("--no-speech", action="store_true",
                      help="skip the phone recognizer on a synthesised sentence")
    demo.add_argument("--sentence", help="what the recognizer hears (default: a sentence it "
                                         "was not trained on)")
    demo.add_argument("--json", action="store_true", help="also print the report as JSON")
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser(
        "bench", help="ESE's benchmark layer in RTL simulation: cycles, bound, model, CPU")
    bench.add_argument("--cell", choices=CELLS, default="lstmp",
                       help="the layer: ESE's peephole LSTMP (default) or a GRU of --cells "
                            "units (--proj unused)")
    machine_options(bench)
    bench.add_argument("--density", type=density_value, default=0.112)
    bench.add_argument("--inputs", type=positive_int, default=153)
    bench.add_argument("--cells", type=positive_int, default=1024)
    bench.add_argument("--proj", type=positive_int, default=512)
    bench.add_argument("--frames", type=positive_int, default=12,
                       help="frames to simulate (the first 2 are warm-up)")
    bench.add_argument("--queue-depth", type=positive_int, default=16,
                       help="activation queue depth per PE")
    bench.add_argument("--row-spread", type=number_in(0.0, 4.0, "a spread in [0, 4)", True),
                       default=0.0,
                       help="scale each weight row by exp(N(0, spread)), like trained networks")
    bench.add_argument("--pruning", choices=["balanced", "both"], default="both",
                       help="also run global pruning at the same density (default)")
    bench.add_argument("--sweep", type=positive_int, nargs="+", metavar="PES",
                       help="run both pruning kinds for each of these PE counts")
    bench.add_argument("--plot", help="with --sweep: write a PNG of utilization vs PE count")
    bench.add_argument("--model-only", action="store_true",
                       help="the analytical model alone, no RTL (for machines too big to "
                            "simulate here)")
    bench.add_argument("--stream-window", type=window_value, default=0, metavar="N",
                       help=STREAM_HELP + "; without --model-only, runs the whole system "
                            "(driver, AXI models, DDR) streamed and resident")
    from ....boards import DEFAULT_BOARD, board
    card_bits = board(DEFAULT_BOARD).memory_data_bits
    bench.add_argument("--memory-bits", type=positive_int, default=card_bits,
                       help=f"with --stream-window: the memory port's width (the card's: "
                            f"{card_bits})")
    bench.add_argument("--delta", action="store_true",
                       help="temporal sparsity on speech: the phone recognizer with and "
                            "without its delta thresholds, in RTL over test utterances (the "
                            "layer options above do not apply)")
    bench.add_argument("--recognizer", metavar="PREFIX",
                       help="with --delta: an exported recognizer (default: the committed one)")
    bench.add_argument("--thresholds", nargs="+", type=threshold_value,
                       metavar="THETA",
                       help="with --delta: THETA_X THETA_H [THETA_M] for a recognizer "
                            "without delta layers (default: the recognizer's own)")
    bench.add_argument("--corpus", help="with --delta: the speech corpus (default: the "
                                        "study's, synthesised if absent)")
    bench.add_argument("--utterances", type=positive_int, default=4,
                       help="with --delta: test utterances simulated in RTL (the PER is over "
                            "the whole test split)")
    bench.add_argument("-o", "--output", help="with --delta: write the report as JSON here")
    bench.add_argument("--seed", type=seed_value, default=0)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=cmd_bench)

    explore = commands.add_parser(
        "explore", help="the design space: latency (performance model) against resources "
                        "(resource model), its Pareto front and the smallest machine for a "
                        "latency")
    explore.add_argument("model", nargs="?",
                         help="a model file (see ese compile) or .ese image (default: ESE's "
                              "layer, or with --cell gru a GRU of its size)")
    model_source_options(explore)
    explore.add_argument("--cell", choices=CELLS, default="lstmp")
    explore.add_argument("--density", type=density_value, default=0.112,
                         help="pruning of a float model (load-balanced, in each machine's "
                              "blocks)")
    from ....boards import BOARDS, DEFAULT_BOARD
    explore.add_argument("--board", choices=sorted(BOARDS), default=DEFAULT_BOARD)
    explore.add_argument("--pes", type=positive_int, nargs="+", default=[16, 32, 64, 128, 256])
    explore.add_argument("--block-columns", type=positive_int, nargs="+",
                         default=[1, 2, 4, 8, 16], metavar="K")
    explore.add_argument("--cell-lanes", type=positive_int, nargs="+", default=[1, 2, 4, 8],
                         metavar="C")
    explore.add_argument("--channels", type=positive_int, nargs="+", default=[1])
    explore.add_argument("--entries-per-read", type=positive_int, nargs="+", metavar="N",
                         help="default: 4 for entries of one column, 2 for blocks")
    explore.add_argument("--frames", type=positive_int, default=8,
                         help="random frames whose zeros the model follows")
    explore.add_argument("--latency-us", type=number_in(0.0, 1e6, "a latency in us", False),
                         help="name the smallest machine (in LUTs) of the front that meets "
                              "this latency per frame")
    explore.add_argument("--seed", type=seed_value, default=0)
    explore.add_argument("-o", "--output", help="write the report as JSON here (with "
                                                "--calibrate: the resource model)")
    explore.add_argument("--plot", help="PNG of latency against LUTs (default: beside -o)")
    explore.add_argument("--calibrate", action="store_true",
                         help="fit the generator's resource model to syntheses of small "
                              "machines (minutes of Yosys) and write it")
    explore.add_argument("--json", action="store_true")
    explore.set_defaults(run=cmd_explore)

    soak = commands.add_parser(
        "soak", help="stream many frames through the simulated machine, checking every one")
    soak.add_argument("--cell", choices=CELLS, default="lstmp",
                      help="the model: a two-layer peephole LSTMP (default) or GRU")
    soak.add_argument("--frames", type=positive_int, default=10_000,
                      help="frame steps (each one frame per channel)")
    soak.add_argument("--channels", type=positive_int, default=2)
    soak.add_argument("--pes", type=positive_int, default=4)
    soak.add_argument("--stalls", type=probability_value, default=0.2,
                      help="probability of an idle or back-pressure cycle on every bus")
    soak.add_argument("--seed", type=seed_value, default=0)
    soak.add_argument("--build-tree", metavar="DIR",
                      help="simulate the card from this build tree (its RTL, clocks and "
                           "vendor-IP interfaces); written for the soak's model if absent")
    soak.add_argument("--resets", type=non_negative_int, default=0,
                      help="with --build-tree: runs cut short by a reset at a random point "
                           "(each part of the frames is then run again in full)")
    soak.add_argument("--delta", nargs=2, type=threshold_value, metavar=("THETA_X", "THETA_H"),
                      help="delta layers with these thresholds (docs/arithmetic.md), on "
                           "hardware with delta units, over slowly changing frames")
    soak.add_argument("--json", action="store_true")
    soak.set_defaults(run=cmd_soak)
