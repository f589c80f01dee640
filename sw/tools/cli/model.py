"""Commands on a model and its image: compile, info, predict, simulate, verilog."""

import json
from pathlib import Path

import numpy as np

from .common import (
    STREAM_HELP,
    UsageError,
    density_value,
    existing_file,
    load_calibration,
    load_frames,
    machine,
    machine_options,
    make_console,
    model_source,
    model_source_options,
    note_saturation,
    positive_int,
    print_summary,
    probability_value,
    random_frames,
    seed_value,
    streaming_settings,
    threshold_value,
    window_value,
)


def cmd_compile(args):
    from ...compiler.pipeline import compile
    from ...contract.config import Config
    path = existing_file(args.model, "model file")
    if args.list_parts:
        from ...compiler.frontends import recurrent_parts
        parts = recurrent_parts(path, trust_pickle=args.trust_pickle)
        print("\n".join(repr(part) for part in parts) if parts
              else f"{path} holds no recurrent layer ese compiles")
        return 0
    if not args.output:
        raise UsageError("compile needs -o/--output, the weight image to write")
    if args.delta and len(args.delta) not in (2, 3):
        raise UsageError("--delta takes 2 or 3 thresholds: THETA_X THETA_H [THETA_M]")
    config = Config(**machine(args), weight_bits=args.weight_bits,
                    activation_bits=args.activation_bits, delta=int(bool(args.delta)),
                    **streaming_settings(args.stream_window))
    calibration = load_calibration(args.calibration) if args.calibration else None
    program = compile(path, config, density=args.density, pruning=args.pruning,
                      calibration=calibration, formats=args.formats, **model_source(args),
                      delta=tuple(args.delta) if args.delta else None)
    program.save(args.output)
    print_summary(program, args.output)
    return 0


def cmd_info(args):
    from ...runtime.program import load
    program = load(existing_file(args.image, "image"))
    if args.json:
        print(json.dumps({"summary": program.summary(), "config": program.config.to_dict()}))
    else:
        print_summary(program, args.image)
    return 0


def cmd_predict(args):
    from ...runtime.program import load
    program = load(existing_file(args.image, "image"))
    frames = load_frames(args.input, program)
    outputs = program.predict(frames)
    note_saturation(program, [frames])
    np.save(args.output, outputs)
    print(f"wrote {outputs.shape[0]} frames of {outputs.shape[1]} outputs to {args.output}")
    return 0


def cmd_simulate(args):
    from ...runtime.program import load
    program = load(existing_file(args.image, "image"))
    frames = (load_frames(args.input, program) if args.input
              else random_frames(program, args.frames, args.seed))
    note_saturation(program, [frames])
    console = make_console()
    with console.status("simulating") as status:
        result = program.simulate(frames, stall_probability=args.stalls, waves=args.waves,
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
        if args.waves:
            console.print(f"waveform written to {args.waves} (open it with gtkwave or surfer)")
    return 0 if result.bitexact else 1


def cmd_verilog(args):
    from ....sim.build import TOPLEVEL, generate_verilog
    from ...runtime.program import load
    program = load(existing_file(args.image, "image"))
    Path(args.output).write_text(generate_verilog(program.config))
    print(f"wrote the Verilog of module {TOPLEVEL} ({program.config.pes} PEs) to {args.output}")
    return 0


def register(commands):
    """Add the model commands to the parser's subcommands."""
    comp = commands.add_parser("compile", help="compile a saved model (PyTorch, TorchScript, "
                                               "torch.export, ONNX) to an image")
    comp.add_argument("model", help="a model file, told apart by its content: a state_dict "
                                    "(torch.save(module.state_dict())), a TorchScript archive "
                                    "(torch.jit.save), a torch.export program (.pt2), an ONNX "
                                    "model with LSTM, GRU or RNN nodes, or torch.save(module) "
                                    "with --trust-pickle")
    model_source_options(comp)
    comp.add_argument("--list-parts", action="store_true",
                      help="list the recurrent submodules or nodes the model holds, and exit")
    comp.add_argument("-o", "--output", help="weight image to write")
    machine_options(comp)
    comp.add_argument("--density", type=density_value, default=None,
                      help="prune to this density (default: keep the module's zeros)")
    comp.add_argument("--pruning", choices=["balanced", "global"], default="balanced")
    comp.add_argument("--weight-bits", type=positive_int, default=12)
    comp.add_argument("--activation-bits", type=positive_int, default=16)
    comp.add_argument("--stream-window", type=window_value, default=0, metavar="N",
                      help=STREAM_HELP)
    comp.add_argument("--calibration", metavar="FILE",
                      help="representative input frames (.npy: (frames, inputs) or (sequences, "
                           "frames, inputs); .npz: one sequence per array) that choose the "
                           "input and projection-output formats")
    comp.add_argument("--formats", choices=["auto", "configured"], default="auto",
                      help="auto: each matrix's format from its values (default); configured: "
                           "ESE's fixed formats everywhere")
    comp.add_argument("--delta", nargs="+", type=threshold_value,
                      metavar="THETA",
                      help="delta layers with thresholds THETA_X THETA_H [THETA_M] (real "
                           "units; docs/arithmetic.md), on hardware with delta units")
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
    sim.add_argument("--frames", type=positive_int, default=8, help="random frames to run")
    sim.add_argument("--stalls", type=probability_value, default=0.0)
    sim.add_argument("--seed", type=seed_value, default=0)
    sim.add_argument("--waves", metavar="FILE",
                     help="write an FST trace of the run (open it in GTKWave or Surfer)")
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(run=cmd_simulate)

    ver = commands.add_parser("verilog", help="write the Verilog of an image's hardware")
    ver.add_argument("image")
    ver.add_argument("-o", "--output", required=True)
    ver.set_defaults(run=cmd_verilog)
