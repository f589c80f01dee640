"""Commands for the card: run frames on it (or on its RTL model), build its bitstream tree, estimate
its resources."""

import json

import numpy as np

from .common import (
    STREAM_HELP,
    UsageError,
    existing_file,
    hardware_for,
    machine_options,
    make_console,
    note_saturation,
    probability_value,
    window_value,
)


def _load_channel_frames(path):
    """A .npy (one sequence, channel 0) or .npz (``channel<c>`` or ``channel<c>_<s>`` arrays)."""
    path = existing_file(path, "input file")
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
    from ...runtime.program import load
    frames = _load_channel_frames(args.input)
    single = isinstance(frames, np.ndarray)
    console = make_console()
    if args.build_tree and args.transport != "sim":
        raise UsageError("--build-tree simulates the card: it needs --transport sim")
    if args.transport == "sim":
        from ....sim.runner import run_system
        program = load(existing_file(args.image, "image"))
        note_saturation(program, _sequences(frames, single))
        with console.status("simulating the card") as status:
            outputs, counters = run_system(program, [frames] if single else frames,
                                           stall_probability=args.stalls,
                                           tree=args.build_tree and existing_tree(args.build_tree),
                                           log=lambda text: status.update(text))
        if single:
            outputs = outputs[0][0]
    else:
        import asyncio

        from ...runtime.driver import Accelerator, XdmaTransport

        async def on_card():
            transport = XdmaTransport(args.device)
            try:
                accelerator = Accelerator(transport)
                program = await accelerator.load(existing_file(args.image, "image"))
                note_saturation(program, _sequences(frames, single))
                result = await accelerator.run(frames)
                return result, await accelerator.counters()
            finally:
                transport.close()
        outputs, counters = asyncio.run(on_card())
    _save_channel_outputs(args.output, outputs, single)
    print(f"ran {counters['steps_out']} frame steps ({counters['cycles']} cycles, last step "
          f"{counters['step_cycles']} cycles); outputs written to {args.output}")
    return 0


def existing_tree(path):
    """A build tree written by ``ese build``, or a UsageError saying what is missing."""
    from pathlib import Path
    if not (Path(path) / "config.json").is_file():
        raise UsageError(f"{path} is not a build tree: it has no config.json (write one with "
                         f"'ese build --board BOARD --image IMAGE --out {path} --no-vivado')")
    return path


def cmd_build(args):
    from ....boards import board
    from ....boards.vivado import run_vivado, write_build_tree
    card = board(args.board)
    config = hardware_for(args)
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


def cmd_estimate(args):
    from ....boards import board
    from ....boards.estimate import ESE_REPORTED, RESOURCES, estimate
    card = board(args.board)
    config = card.hardware(hardware_for(args))
    console = make_console()
    with console.status("estimate") as status:
        report = estimate(config, card, log=lambda text: status.update(text),
                          direct=True if args.direct else None)
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
    console.print(f"deepest logic path: {report['lut_levels']} LUT levels; with carry "
                  f"chains, DSP and block-RAM outputs counted: {report['delay_levels']} levels "
                  f"({' -> '.join(report['delay_path'][:4])})")
    console.print(f"method: {report['method']}")
    for check in report.get("checks", []):
        errors = ", ".join(f"{names[k]} {100 * v:+.1f}%"
                           for k, v in check["relative_error"].items())
        console.print(f"fit checked against a synthesis at {check['pes']} PEs x "
                      f"{check['channels']} channels: {errors}")
    console.print(f"not included: {report['excludes']}")
    console.print("fits the device" if report["fits"] else "[bold red]does not fit the device")
    return 0


def _hardware_options(parser, image_help):
    """The options that choose the hardware of a build or an estimate (see hardware_for)."""
    parser.add_argument("--image", help=image_help)
    machine_options(parser, board_option=True)
    parser.add_argument("--stream-window", type=window_value, default=0, metavar="N",
                        help="without --image: " + STREAM_HELP)
    parser.add_argument("--delta", action="store_true",
                        help="with delta units (Config.delta=1), which run delta layers "
                             "(docs/arithmetic.md)")


def register(commands):
    """Add the card commands to the parser's subcommands."""
    run = commands.add_parser("run", help="run frames on the card, or on its RTL model")
    run.add_argument("image")
    run.add_argument("-i", "--input", required=True,
                     help=".npy (one sequence) or .npz (arrays channel<c>[_<s>])")
    run.add_argument("-o", "--output", required=True, help=".npy or .npz for the outputs")
    run.add_argument("--transport", choices=["xdma", "sim"], default="xdma",
                     help="xdma: the ADM-PCIE-KU3 card; sim: the system RTL in Verilator")
    run.add_argument("--device", default="/dev/xdma0", help="XDMA device prefix")
    run.add_argument("--stalls", type=probability_value, default=0.0,
                     help="sim: random idle and back-pressure cycles on every bus")
    run.add_argument("--build-tree", metavar="DIR",
                     help="sim: simulate the card from this build tree (ese build): its RTL, "
                          "clocks and vendor-IP interfaces, instead of the bare system")
    run.set_defaults(run=cmd_run)

    from ....boards import BOARDS, DEFAULT_BOARD

    build = commands.add_parser("build", help="write the board's Vivado build tree")
    build.add_argument("--board", choices=sorted(BOARDS), required=True)
    build.add_argument("--out", required=True, help="directory for the build tree")
    _hardware_options(build, "size the hardware for this weight image")
    build.add_argument("--no-vivado", action="store_true", help="write the tree only")
    build.set_defaults(run=cmd_build)

    est = commands.add_parser(
        "estimate", help="resource use on the board's FPGA from Yosys (LUT, FF, DSP, BRAM)")
    est.add_argument("--board", choices=sorted(BOARDS), default=DEFAULT_BOARD,
                     help=f"the card (default {DEFAULT_BOARD})")
    _hardware_options(est, "the hardware of this weight image")
    est.add_argument("--direct", action="store_true",
                     help="synthesise the machine itself instead of fitting smaller ones "
                          "(measures its deepest paths; tens of minutes at 32 x 32)")
    est.add_argument("--json", action="store_true")
    est.set_defaults(run=cmd_estimate)
