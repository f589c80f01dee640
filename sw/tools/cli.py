"""The ``ese`` command line.

::

    ese demo                                 small LSTMP: compile, simulate, report
    ese compile model.pt -o model.ese        a saved PyTorch module -> weight image
    ese info model.ese                       what an image holds
    ese predict model.ese -i x.npy -o y.npy  golden model on frames from a .npy file
    ese simulate model.ese [-i x.npy]        the RTL in Verilator, checked against predict
    ese verilog model.ese -o top.v           the Verilog of the image's hardware
    ese run model.ese -i frames.npz          frames through the card (XDMA) or its RTL model
    ese build --board adm-pcie-ku3 --out DIR the Vivado build tree (and bitstream, with Vivado)
    ese estimate [--channels 32] [--json]    LUT, FF, DSP, BRAM on the XCKU060 (Yosys)
    ese corpus DIR [--utterances N]          a phone-labelled speech corpus (espeak-ng)
    ese speech-eval [--corpus DIR]           train, prune, quantize, phone error rates

Errors a user can cause (a missing file, an unsupported model, a bad image) end with a
one-line message and exit status 2, never a traceback.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..contract.errors import EseError

__all__ = ["main"]


class UsageError(EseError):
    """A problem with the command line itself (a missing file, a bad option value)."""


def _console():
    from rich.console import Console
    return Console(stderr=False, highlight=False)


def _int_from(low, what):
    """An argparse type: an integer of at least ``low``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, not {value}")
        return value
    return parse


_positive_int = _int_from(1, "a positive integer")
_count = _int_from(0, "a non-negative integer")
_seed = _int_from(0, "a non-negative integer seed")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong, and where to read the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number_in(low, high, what, include_low):
    """An argparse type: a number in (low, high] or [low, high)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        inside = (low <= value < high) if include_low else (low < value <= high)
        if not inside:
            raise argparse.ArgumentTypeError(f"expected {what}, not {value}")
        return value
    return parse


_density = _number_in(0.0, 1.0, "a density in (0, 1]", include_low=False)
_probability = _number_in(0.0, 1.0, "a probability in [0, 1)", include_low=True)


def _existing_file(path, what):
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist")
    if not path.is_file():
        raise UsageError(f"{what} {path} is not a file")
    return path


def _load_frames(path, program):
    path = _existing_file(path, "input file")
    try:
        frames = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{path} is not a .npy array of frames ({error})") from None
    if not isinstance(frames, np.ndarray):
        raise UsageError(f"{path} is a .npz archive; this command takes one .npy array of "
                         f"frames")
    return frames


def _note_saturation(program, sequences):
    """Say how many input values lay beyond the fixed-point range and saturated."""
    saturated = total = 0
    for frames in sequences:
        if frames is not None:
            saturated += program.encode_inputs(frames)[1]
            total += np.size(frames)
    if saturated:
        limit = program.config.activation_format.max_value
        print(f"note: {saturated} of {total} input values lay beyond the fixed-point range "
              f"(+-{limit:g}) and saturated", file=sys.stderr)


def _random_frames(program, count, seed):
    return np.random.default_rng(seed).normal(size=(count, program.inputs))


# Subcommands.

def cmd_demo(args):
    from .demo import DemoSettings, SpeechDemoSettings, run_demo, run_speech_demo
    settings = DemoSettings(pes=args.pes, density=args.density, frames=args.frames,
                            stall_probability=args.stalls, seed=args.seed)
    console = _console()
    report = run_demo(settings, console)
    ok = report["bitexact"]
    if not args.no_speech:
        speech = SpeechDemoSettings(stall_probability=args.stalls)
        if args.sentence:
            speech.sentence = args.sentence
        report["speech"] = run_speech_demo(speech, console)
        ok = ok and report["speech"]["bitexact"] and report["speech"]["decode_equals_golden"]
    if args.json:
        print(json.dumps(report))
    return 0 if ok else 1


def cmd_compile(args):
    import torch

    from ..compiler.pipeline import compile
    from ..contract.config import Config
    path = _existing_file(args.model, "model file")
    try:
        # A full module pickle: only load files you trust.
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:   # torch.load raises many types for a file it cannot read
        raise UsageError(f"{path} is not a PyTorch module saved with torch.save(module) "
                         f"({type(error).__name__}: {error})") from None
    config = Config(pes=args.pes, weight_bits=args.weight_bits,
                    activation_bits=args.activation_bits, **_streaming(args.stream_window))
    program = compile(module, config, density=args.density, pruning=args.pruning)
    program.save(args.output)
    _print_summary(program, args.output)
    return 0


def cmd_info(args):
    from ..runtime.program import load
    program = load(_existing_file(args.image, "image"))
    if args.json:
        print(json.dumps({"summary": program.summary(), "config": program.config.to_dict()}))
    else:
        _print_summary(program, args.image)
    return 0


def cmd_predict(args):
    from ..runtime.program import load
    program = load(_existing_file(args.image, "image"))
    frames = _load_frames(args.input, program)
    outputs = program.predict(frames)
    _note_saturation(program, [frames])
    np.save(args.output, outputs)
    print(f"wrote {outputs.shape[0]} frames of {outputs.shape[1]} outputs to {args.output}")
    return 0


def cmd_simulate(args):
    from ..runtime.program import load
    program = load(_existing_file(args.image, "image"))
    frames = (_load_frames(args.input, program) if args.input
              else _random_frames(program, args.frames, args.seed))
    _note_saturation(program, [frames])
    console = _console()
    with console.status("simulating") as status:
        result = program.simulate(frames, stall_probability=args.stalls,
                                  log=lambda text: status.update(text))
    if args.output:
        np.save(args.output, result.outputs)
    steady = result.cycles_per_frame[1:] or result.cycles_per_frame
    figures = {
        "frames": len(result.cycles_per_frame),
        "bitexact": result.bitexact,
        "mismatches": result.mismatches,
        "cycles_per_frame": result.cycles_per_frame,
        "median_cycles_per_frame": float(np.median(steady)),
        "load_cycles": result.load_cycles,
        "simulated_cycles_per_second": result.simulated_cycles_per_second,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        console.print(
            f"{figures['frames']} frames: "
            + ("bit-exact with the golden model" if result.bitexact
               else f"{result.mismatches} words differ from the golden model")
            + f"; median {figures['median_cycles_per_frame']:.0f} cycles per frame "
              f"({figures['median_cycles_per_frame'] / program.config.clock_mhz:.2f} us at "
              f"{program.config.clock_mhz:g} MHz); weights loaded in {result.load_cycles} cycles")
    return 0 if result.bitexact else 1


def cmd_bench(args):
    from dataclasses import asdict

    from .bench import (
        BenchSettings,
        model_benchmark,
        plot_sweep,
        run_benchmark,
        streaming_benchmark,
        sweep_pe_counts,
    )
    settings = BenchSettings(inputs=args.inputs, cells=args.cells, proj=args.proj, pes=args.pes,
                             channels=args.channels, density=args.density, frames=args.frames,
                             seed=args.seed, queue_depth=args.queue_depth,
                             row_spread=args.row_spread, stream_window=args.stream_window,
                             memory_bits=args.memory_bits)
    console = _console()
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
            report = {"sweep": results, "settings": asdict(settings)}
        else:
            report = run_benchmark(settings, log=log)
            if args.pruning == "both":
                other = BenchSettings(**{**asdict(settings), "pruning": "global"})
                report["global"] = run_benchmark(other, log=log, cpu=False)
                report["load_balance_speedup"] = (report["global"]["cycles_per_frame"]
                                                  / report["cycles_per_frame"])
    if args.json:
        print(json.dumps(report))
    elif "streamed" in report:
        for name in ("streamed", "resident"):
            r = report[name]
            console.print(f"{name:9s}: {r['entry_words_per_pe']} entry words per PE, "
                          f"{r['on_chip_entry_words_per_pe']} on chip; last step "
                          f"{r['step_cycles']} cycles, {r['busy_cycles_per_step']:.0f} busy "
                          f"per step; model {r['model_cycles_per_step']:.0f} "
                          f"({r['model_limited_by']}); bit-exact {r['bitexact']}")
    elif args.model_only:
        r = report
        console.print(f"model only ({r['pes']} PEs x {r['channels']} channels): "
                      f"{r['model_cycles_per_frame']:.0f} cycles per step, "
                      f"{r['latency_us']:.1f} us, {r['frames_per_second']:,.0f} frames/s, "
                      f"{r['gops']:.1f} GOPS (ESE: {r['ese_gops']} GOPS)")
    elif args.sweep:
        for r in results:
            console.print(f"{r['pes']:3d} PEs {r['pruning']:8s}: {r['cycles_per_frame']:9.0f} "
                          f"cycles/frame, bound {r['bound_cycles']:9.0f}, utilization "
                          f"{r['utilization']:.3f}, model {r['model_cycles_per_frame']:9.0f} "
                          f"({100 * r['model_error']:+.1f}%), bit-exact {r['bitexact']}")
        if args.plot:
            console.print(f"plot written to {args.plot}")
    else:
        _print_bench(report, console)
    if args.model_only:
        return 0
    failed = report.get("sweep", [report[k] for k in ("streamed", "resident") if k in report]
                        or [report])
    return 0 if all(r["bitexact"] for r in failed) else 1


def _print_bench(r, console):
    from rich.table import Table
    table = Table(title=f"ese bench: LSTMP {r['inputs']}-{r['cells']}-{r['proj']}, density "
                        f"{r['density']}, {r['pes']} PEs x {r['channels']} channels at "
                        f"{r['clock_mhz']:g} MHz",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("non-zeros / padding entries", f"{r['nonzeros']} / {r['padding_entries']}"),
        ("bound (non-zeros / PEs)", f"{r['bound_cycles']:.0f} cycles"),
        ("RTL cycles per frame", f"{r['cycles_per_frame']:.0f} (median, steady state)"),
        ("utilization", f"{r['utilization']:.3f}"),
        ("model cycles per frame", f"{r['model_cycles_per_frame']:.0f} "
                                   f"({100 * r['model_error']:+.2f}% vs RTL)"),
        ("latency", f"{r['latency_us']:.1f} us (ESE: {r['ese_latency_us']} us, "
                    f"{r['speedup_vs_ese']:.2f}x)"),
        ("one frame on an idle machine", f"{r['frame_latency_cycles']:.0f} cycles, "
                                         f"{r['frame_latency_us']:.1f} us (input to output)"),
        ("throughput", f"{r['frames_per_second']:,.0f} frames/s, {r['gops']:.1f} GOPS on the "
                       f"sparse layer ({r['channels']} channel{'s' * (r['channels'] > 1)}; "
                       f"ESE: {r['ese_gops']} GOPS on 32)"),
        ("PyTorch CPU, batch 1", f"dense {r['cpu_dense_us']:.0f} us, sparse "
                                 f"{r['cpu_sparse_us']:.0f} us per frame"),
        ("bit-exact with predict", str(r["bitexact"])),
        ("Verilator build", f"{r['verilator_build_seconds']:.0f} s"
         + (" (cached from an earlier run)" if r["verilator_build_cached"] else "")),
        ("simulation", f"{r['simulated_cycles']} cycles in {r['simulation_seconds']:.1f} s "
                       f"({r['simulated_cycles_per_second']:.0f} cycles/s)"),
    ]
    if "global" in r:
        g = r["global"]
        rows.append(("global pruning", f"{g['cycles_per_frame']:.0f} cycles per frame, "
                                       f"utilization {g['utilization']:.3f}"))
        rows.append(("load balance buys", f"{r['load_balance_speedup']:.3f}x"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _load_channel_frames(path):
    """A .npy (one sequence, channel 0) or .npz (``channel<c>`` or ``channel<c>_<s>`` arrays)."""
    path = _existing_file(path, "input file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{path} is not a .npy or .npz array file ({error})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    per_channel = {}
    for name in loaded.files:
        head, _, sequence = name.partition("_")
        if (not head.startswith("channel") or not head[7:].isdigit()
                or not (sequence == "" or sequence.isdigit())):
            raise UsageError(f"{path}: array {name!r} is not named channel<c> or "
                             f"channel<c>_<s>")
        per_channel.setdefault(int(head[7:]), []).append((int(sequence or 0), loaded[name]))
    channels = max(per_channel) + 1 if per_channel else 0
    return [[array for _, array in sorted(per_channel[c])] if c in per_channel else None
            for c in range(channels)]


def _sequences(frames, single):
    """Every sequence of a :func:`_load_channel_frames` result."""
    if single:
        return [frames]
    return [sequence for channel in frames for sequence in (channel or [])]


def _save_channel_outputs(path, outputs, single):
    if single:
        np.save(path, outputs)
    else:
        np.savez(path, **{f"channel{c}_{s}": array for c, sequences in enumerate(outputs)
                          for s, array in enumerate(sequences)})


def cmd_run(args):
    from ..runtime.program import load
    frames = _load_channel_frames(args.input)
    single = isinstance(frames, np.ndarray)
    console = _console()
    if args.transport == "sim":
        from ...sim.runner import run_system
        program = load(_existing_file(args.image, "image"))
        _note_saturation(program, _sequences(frames, single))
        with console.status("simulating the card") as status:
            outputs, counters = run_system(program, [frames] if single else frames,
                                           stall_probability=args.stalls,
                                           log=lambda text: status.update(text))
        if single:
            outputs = outputs[0][0]
    else:
        import asyncio

        from ..runtime.driver import Accelerator, XdmaTransport

        async def on_card():
            transport = XdmaTransport(args.device)
            try:
                accelerator = Accelerator(transport)
                program = await accelerator.load(_existing_file(args.image, "image"))
                _note_saturation(program, _sequences(frames, single))
                result = await accelerator.run(frames)
                return result, await accelerator.counters()
            finally:
                transport.close()
        outputs, counters = asyncio.run(on_card())
    _save_channel_outputs(args.output, outputs, single)
    print(f"ran {counters['steps_out']} frame steps ({counters['cycles']} cycles, last step "
          f"{counters['step_cycles']} cycles); outputs written to {args.output}")
    return 0


def _streaming(window):
    """Config settings that stream the weights through rings of ``window`` entry words (over
    the card's memory port), or none for resident weights."""
    if not window:
        return {}
    from ...boards import DEFAULT_BOARD, board
    return {"stream_window": window, "memory_data_bits": board(DEFAULT_BOARD).memory_data_bits}


STREAM_HELP = ("stream the sparse weights from the card's DDR every frame step, through two "
               "rings of N entry words per PE (a power of two; 0: all weights on chip)")


def _window(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 or a power of two, not {text!r}") from None
    if value < 0 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"expected 0 or a power of two, not {value}")
    return value


def _hardware_for(args):
    """The hardware config of a build or estimate: an image's, or ESE's layer's for options."""
    from ..runtime.program import load
    from .bench import BenchSettings, build_program
    if args.image:
        config = load(_existing_file(args.image, "image")).config
        return config.replace(channels=args.channels) if args.channels else config
    program = build_program(BenchSettings(pes=args.pes, stream_window=args.stream_window))
    return program.config.replace(channels=args.channels or 1)


def cmd_build(args):
    from ...boards import board
    from ...boards.vivado import run_vivado, write_build_tree
    card = board(args.board)
    config = _hardware_for(args)
    directory = write_build_tree(card, config, args.out)
    print(f"wrote the Vivado build tree for the {card.title} ({config.pes} PEs, "
          f"{config.channels} channels) to {directory}")
    bitstream = None if args.no_vivado else run_vivado(directory)
    if bitstream is None:
        print("Vivado is not on PATH (or --no-vivado was given): no bitstream was made. "
              f"Run 'vivado -mode batch -source build.tcl' in {directory} to make one.")
    else:
        print(f"bitstream: {bitstream}")
    return 0


def cmd_soak(args):
    from .soak import SoakSettings, run_soak
    settings = SoakSettings(frames=args.frames, channels=args.channels, pes=args.pes,
                            stall_probability=args.stalls, seed=args.seed)
    console = _console()
    with console.status("soak") as status:
        report = run_soak(settings, log=lambda text: status.update(text))
    if args.json:
        print(json.dumps(report))
    else:
        console.print(
            f"{report['frames']} frames ({report['frame_steps']} steps x {report['channels']} "
            f"channels, {report['sequences']} sequences) through the system RTL with "
            f"{report['stall_probability']:g} stalls on every bus: "
            f"{report['mismatched_frames']} mismatched frames; {report['simulated_cycles']} "
            f"simulated cycles in {report['wall_seconds']:.0f} s")
    return 0 if report["mismatched_frames"] == 0 else 1


def cmd_corpus(args):
    from ..speech.corpus import build_corpus
    console = _console()
    with console.status("synthesising") as status:
        counts = build_corpus(args.directory, args.utterances, seed=args.seed,
                              log=lambda text: status.update(text))
    print(f"wrote {sum(counts.values())} utterances to {args.directory} "
          f"(train {counts['train']}, dev {counts['dev']}, test {counts['test']})")
    return 0


def _retrain_epochs(args):
    from ..speech import EvaluationSettings
    if args.retrain_epochs is None:
        default = EvaluationSettings()
        return default.retrain_epochs if tuple(args.densities) == default.densities else 2
    return args.retrain_epochs[0] if len(args.retrain_epochs) == 1 else tuple(args.retrain_epochs)


def cmd_speech_eval(args):
    from ...sim.build import cache_root
    from ..speech import EvaluationSettings, TrainingSettings, evaluate, plot_report, write_report
    corpus = args.corpus or str(cache_root() / f"corpus-{args.utterances}-{args.seed}")
    training = TrainingSettings(cells=args.cells, proj=args.proj, layers=args.layers,
                                epochs=args.epochs, batch=args.batch, seed=args.seed)
    settings = EvaluationSettings(
        corpus=corpus, utterances=args.utterances, training=training,
        densities=tuple(args.densities), target_density=args.target_density,
        prune_steps=args.prune_steps,
        retrain_epochs=_retrain_epochs(args),
        pes=args.pes,
        rtl_utterances=args.rtl_utterances, work=args.work or "", export=args.export or "",
        export_pes=args.export_pes)
    console = _console()
    with console.status("speech evaluation") as status:
        report = evaluate(settings, log=lambda text: status.update(text))
    write_report(report, args.output)
    plot_report(report, args.plot)
    console.print(f"dense float PER {report['dense_float_per']:.2f}%")
    for row in report["densities"]:
        console.print(f"density {row['density']:<6}: balanced float "
                      f"{row['balanced']['float_per']:.2f}% / golden "
                      f"{row['balanced']['golden_per']:.2f}%; global float "
                      f"{row['global']['float_per']:.2f}% / golden "
                      f"{row['global']['golden_per']:.2f}%")
    rtl = report.get("rtl")
    if rtl:
        console.print(f"RTL on {rtl['utterances']} test utterances: bit-exact {rtl['bitexact']}, "
                      f"decodes equal predict {rtl['decodes_equal_predict']}")
    console.print(f"report written to {args.output}, plot to {args.plot}")
    return 0 if not rtl or (rtl["bitexact"] and rtl["decodes_equal_predict"]) else 1


def cmd_estimate(args):
    from ...boards import board
    from ...boards.estimate import ESE_REPORTED, RESOURCES, estimate
    card = board(args.board)
    config = card.hardware(_hardware_for(args))
    console = _console()
    with console.status("estimate") as status:
        report = estimate(config, card, log=lambda text: status.update(text))
    if args.json:
        print(json.dumps(report))
        return 0
    from rich.table import Table
    table = Table(title=f"ese estimate: {config.pes} PEs x {config.channels} channels on the "
                        f"{card.part} (Yosys synth_xilinx)")
    for heading in ("resource", "used", "of device", "ESE (FPGA 2017)"):
        table.add_column(heading, justify="right")
    names = {"lut": "LUT", "ff": "FF", "dsp": "DSP48E2", "bram36": "BRAM36"}
    for name in RESOURCES:
        table.add_row(names[name], f"{report[name]:,.0f}", f"{report[name + '_percent']:.1f}%",
                      f"{ESE_REPORTED[name]:,} ({report['ese_reported_percent'][name]:.1f}%)")
    console.print(table)
    console.print(f"deepest logic path: {report['lut_levels']} LUT levels")
    console.print(f"method: {report['method']}")
    for check in report.get("checks", []):
        errors = ", ".join(f"{names[k]} {100 * v:+.1f}%"
                           for k, v in check["relative_error"].items())
        console.print(f"fit checked against a synthesis at {check['pes']} PEs x "
                      f"{check['channels']} channels: {errors}")
    console.print(f"not included: {report['excludes']}")
    console.print("fits the device" if report["fits"] else "[bold red]does not fit the device")
    return 0


def cmd_verilog(args):
    from ...sim.build import TOPLEVEL, generate_verilog
    from ..runtime.program import load
    program = load(_existing_file(args.image, "image"))
    Path(args.output).write_text(generate_verilog(program.config))
    print(f"wrote the Verilog of module {TOPLEVEL} ({program.config.pes} PEs) to {args.output}")
    return 0


def _print_summary(program, path):
    s = program.summary()
    layers = "; ".join(f"{layer['inputs']}->{layer['cells']} cells"
                       + (f"->{layer['proj']} proj" if layer["proj"] else "")
                       + (" (peepholes)" if layer["peepholes"] else "")
                       for layer in s["layers"])
    print(f"{path}: {s['source']}, {layers}")
    print(f"  {s['pes']} PEs, {s['nonzeros']} of {s['weights']} weights non-zero "
          f"(density {s['density']:.4f}), {s['padding_entries']} padding entries, "
          f"{s['entries_per_pe_min']}..{s['entries_per_pe_max']} entries per PE, "
          f"{s['saturated']} values saturated")


def build_parser():
    from ..speech import EvaluationSettings
    parser = _Parser(
        prog="ese", description="FPGA accelerators for sparse, quantized LSTMs (ESE-style).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command",
                                     parser_class=_Parser)

    demo = commands.add_parser("demo", help="compile a small LSTMP, simulate it, report")
    demo.add_argument("--pes", type=_positive_int, default=4, help="processing elements")
    demo.add_argument("--density", type=_density, default=0.3, help="weights kept")
    demo.add_argument("--frames", type=_positive_int, default=12, help="frames to simulate")
    demo.add_argument("--stalls", type=_probability, default=0.0,
                      help="probability of an idle or back-pressure cycle on each stream")
    demo.add_argument("--seed", type=_seed, default=0)
    demo.add_argument("--no-speech", action="store_true",
                      help="skip the phone recognizer on a synthesised sentence")
    demo.add_argument("--sentence", help="what the recognizer hears (default: a sentence it "
                                         "was not trained on)")
    demo.add_argument("--json", action="store_true", help="also print the report as JSON")
    demo.set_defaults(run=cmd_demo)

    comp = commands.add_parser("compile", help="compile a saved PyTorch module to an image")
    comp.add_argument("model", help="file written by torch.save(module) (trusted files only)")
    comp.add_argument("-o", "--output", required=True, help="weight image to write")
    comp.add_argument("--pes", type=_positive_int, default=32)
    comp.add_argument("--density", type=_density, default=None,
                      help="prune to this density (default: keep the module's zeros)")
    comp.add_argument("--pruning", choices=["balanced", "global"], default="balanced")
    comp.add_argument("--weight-bits", type=_positive_int, default=12)
    comp.add_argument("--activation-bits", type=_positive_int, default=16)
    comp.add_argument("--stream-window", type=_window, default=0, metavar="N",
                      help=STREAM_HELP)
    comp.set_defaults(run=cmd_compile)

    info = commands.add_parser("info", help="describe a weight image")
    info.add_argument("image")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=cmd_info)

    pred = commands.add_parser("predict", help="run the golden model on frames")
    pred.add_argument("image")
    pred.add_argument("-i", "--input", required=True, help=".npy array (frames, inputs)")
    pred.add_argument("-o", "--output", required=True, help=".npy file for the outputs")
    pred.set_defaults(run=cmd_predict)

    sim = commands.add_parser("simulate", help="run frames on the RTL in Verilator")
    sim.add_argument("image")
    sim.add_argument("-i", "--input", help=".npy array (frames, inputs); random if absent")
    sim.add_argument("-o", "--output", help=".npy file for the outputs")
    sim.add_argument("--frames", type=_positive_int, default=8, help="random frames to run")
    sim.add_argument("--stalls", type=_probability, default=0.0)
    sim.add_argument("--seed", type=_seed, default=0)
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(run=cmd_simulate)

    bench = commands.add_parser(
        "bench", help="ESE's benchmark layer in RTL simulation: cycles, bound, model, CPU")
    bench.add_argument("--pes", type=_positive_int, default=32)
    bench.add_argument("--channels", type=_positive_int, default=1,
                       help="utterances run in lock step on the same weights")
    bench.add_argument("--density", type=_density, default=0.112)
    bench.add_argument("--inputs", type=_positive_int, default=153)
    bench.add_argument("--cells", type=_positive_int, default=1024)
    bench.add_argument("--proj", type=_positive_int, default=512)
    bench.add_argument("--frames", type=_positive_int, default=12,
                       help="frames to simulate (the first 2 are warm-up)")
    bench.add_argument("--queue-depth", type=_positive_int, default=16,
                       help="activation queue depth per PE")
    bench.add_argument("--row-spread", type=_number_in(0.0, 4.0, "a spread in [0, 4)", True),
                       default=0.0,
                       help="scale each weight row by exp(N(0, spread)), like trained networks")
    bench.add_argument("--pruning", choices=["balanced", "both"], default="both",
                       help="also run global pruning at the same density (default)")
    bench.add_argument("--sweep", type=_positive_int, nargs="+", metavar="PES",
                       help="run both pruning kinds for each of these PE counts")
    bench.add_argument("--plot", help="with --sweep: write a PNG of utilization vs PE count")
    bench.add_argument("--model-only", action="store_true",
                       help="the analytical model alone, no RTL (for machines too big to "
                            "simulate here)")
    bench.add_argument("--stream-window", type=_window, default=0, metavar="N",
                       help=STREAM_HELP + "; without --model-only, runs the whole system "
                            "(driver, AXI models, DDR) streamed and resident")
    bench.add_argument("--memory-bits", type=_positive_int, default=512,
                       help="with --stream-window: the memory port's width (the card's: 512)")
    bench.add_argument("--seed", type=_seed, default=0)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=cmd_bench)

    run = commands.add_parser("run", help="run frames on the card, or on its RTL model")
    run.add_argument("image")
    run.add_argument("-i", "--input", required=True,
                     help=".npy (one sequence) or .npz (arrays channel<c>[_<s>])")
    run.add_argument("-o", "--output", required=True, help=".npy or .npz for the outputs")
    run.add_argument("--transport", choices=["xdma", "sim"], default="xdma",
                     help="xdma: the ADM-PCIE-KU3 card; sim: the system RTL in Verilator")
    run.add_argument("--device", default="/dev/xdma0", help="XDMA device prefix")
    run.add_argument("--stalls", type=_probability, default=0.0,
                     help="sim: random idle and back-pressure cycles on every bus")
    run.set_defaults(run=cmd_run)

    from ...boards import BOARDS, DEFAULT_BOARD
    build = commands.add_parser("build", help="write the board's Vivado build tree")
    build.add_argument("--board", choices=sorted(BOARDS), required=True)
    build.add_argument("--out", required=True, help="directory for the build tree")
    build.add_argument("--image", help="size the hardware for this weight image")
    build.add_argument("--pes", type=_positive_int, default=32,
                       help="without --image: PEs, memories sized for ESE's layer")
    build.add_argument("--channels", type=_positive_int, default=None,
                       help="channels (default: the image's, or 1)")
    build.add_argument("--stream-window", type=_window, default=0, metavar="N",
                       help="without --image: " + STREAM_HELP)
    build.add_argument("--no-vivado", action="store_true", help="write the tree only")
    build.set_defaults(run=cmd_build)

    est = commands.add_parser(
        "estimate", help="resource use on the board's FPGA from Yosys (LUT, FF, DSP, BRAM)")
    est.add_argument("--board", choices=sorted(BOARDS), default=DEFAULT_BOARD,
                     help=f"the card (default {DEFAULT_BOARD})")
    est.add_argument("--image", help="the hardware of this weight image")
    est.add_argument("--pes", type=_positive_int, default=32,
                     help="without --image: PEs, memories sized for ESE's layer")
    est.add_argument("--channels", type=_positive_int, default=None,
                     help="channels (default: the image's, or 1)")
    est.add_argument("--stream-window", type=_window, default=0, metavar="N",
                     help="without --image: " + STREAM_HELP)
    est.add_argument("--json", action="store_true")
    est.set_defaults(run=cmd_estimate)

    corp = commands.add_parser(
        "corpus", help="synthesise a phone-labelled speech corpus with espeak-ng",
        description="Synthesise DIR/{train,dev,test}/NAME.wav with NAME.phn phone "
                    "transcripts (espeak-ng voices, speeds, pitches, noise). Your own corpus "
                    "in the same layout works with `ese speech-eval --corpus DIR`.")
    corp.add_argument("directory")
    corp.add_argument("--utterances", type=_positive_int, default=2000)
    corp.add_argument("--seed", type=_seed, default=0)
    corp.set_defaults(run=cmd_corpus)

    speech = commands.add_parser(
        "speech-eval", help="train an LSTMP phone recognizer, prune, quantize, report PER")
    speech.add_argument("--corpus", help="corpus directory (default: one synthesised in the "
                                         "cache, of --utterances utterances)")
    speech.add_argument("--utterances", type=_positive_int, default=2000)
    speech.add_argument("--cells", type=_positive_int, default=512)
    speech.add_argument("--proj", type=_positive_int, default=256)
    speech.add_argument("--layers", type=_positive_int, default=2)
    speech.add_argument("--epochs", type=_positive_int, default=20)
    speech.add_argument("--batch", type=_positive_int, default=16)
    speech.add_argument("--densities", type=_density, nargs="+",
                        default=list(EvaluationSettings.densities))
    speech.add_argument("--target-density", type=_density, default=0.112,
                        help="the density checked on the RTL")
    speech.add_argument("--prune-steps", type=_positive_int, default=1,
                        help="pruning steps from one density to the next")
    speech.add_argument("--retrain-epochs", type=_count, nargs="+", default=None,
                        help="retraining epochs after pruning to each density (one count for "
                             "all, or one per density; default: "
                             f"{' '.join(map(str, EvaluationSettings.retrain_epochs))} for the "
                             "default densities, else 2)")
    speech.add_argument("--pes", type=_positive_int, default=32)
    speech.add_argument("--rtl-utterances", type=_count, default=3)
    speech.add_argument("--work", help="checkpoints and models (default: CORPUS/work)")
    speech.add_argument("--export", metavar="PREFIX",
                        help="write the load-balanced recognizer at the target density as "
                             "PREFIX.ese (the accelerator's image) and PREFIX.npz (the host's "
                             "output layer, phones, feature scaling)")
    speech.add_argument("--export-pes", type=_positive_int, default=8,
                        help="PEs the exported recognizer is compiled for")
    speech.add_argument("--seed", type=_seed, default=0)
    speech.add_argument("-o", "--output", default="reports/speech.json")
    speech.add_argument("--plot", default="reports/speech.png")
    speech.set_defaults(run=cmd_speech_eval)

    soak = commands.add_parser(
        "soak", help="stream many frames through the simulated machine, checking every one")
    soak.add_argument("--frames", type=_positive_int, default=10_000,
                      help="frame steps (each one frame per channel)")
    soak.add_argument("--channels", type=_positive_int, default=2)
    soak.add_argument("--pes", type=_positive_int, default=4)
    soak.add_argument("--stalls", type=_probability, default=0.2,
                      help="probability of an idle or back-pressure cycle on every bus")
    soak.add_argument("--seed", type=_seed, default=0)
    soak.add_argument("--json", action="store_true")
    soak.set_defaults(run=cmd_soak)

    ver = commands.add_parser("verilog", help="write the Verilog of an image's hardware")
    ver.add_argument("image")
    ver.add_argument("-o", "--output", required=True)
    ver.set_defaults(run=cmd_verilog)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except EseError as error:
        print(f"ese {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"ese {args.command}: error: {error.strerror or error}: "
              f"{error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ese {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # A bug in ese, not in the input: one line here, the traceback on request.
        if os.environ.get("ESE_TRACEBACK"):
            raise
        print(f"ese {args.command}: internal error: {type(error).__name__}: {error} (a bug in "
              f"ese; rerun with ESE_TRACEBACK=1 for the traceback and report it)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
