"""The ``ese`` command line.

::

    ese demo                                 small LSTMP: compile, simulate, report
    ese compile model.pt -o model.ese        a saved PyTorch module -> weight image
    ese info model.ese                       what an image holds
    ese predict model.ese -i x.npy -o y.npy  golden model on frames from a .npy file
    ese simulate model.ese [-i x.npy]        the RTL in Verilator, checked against predict
    ese verilog model.ese -o top.v           the Verilog of the image's hardware

Errors a user can cause (a missing file, an unsupported model, a bad image) end with a
one-line message and exit status 2, never a traceback.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .errors import EseError

__all__ = ["main"]


class UsageError(EseError):
    """A problem with the command line itself (a missing file, a bad option value)."""


def _console():
    from rich.console import Console
    return Console(stderr=False, highlight=False)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


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
    except (ValueError, OSError) as error:
        raise UsageError(f"{path} is not a .npy array of frames ({error})") from None
    return frames


def _random_frames(program, count, seed):
    return np.random.default_rng(seed).normal(size=(count, program.inputs))


# Subcommands.

def cmd_demo(args):
    from .demo import DemoSettings, run_demo
    settings = DemoSettings(pes=args.pes, density=args.density, frames=args.frames,
                            stall_probability=args.stalls, seed=args.seed)
    report = run_demo(settings, _console())
    if args.json:
        print(json.dumps(report))
    return 0 if report["bitexact"] else 1


def cmd_compile(args):
    import torch

    from .config import Config
    from .program import compile
    path = _existing_file(args.model, "model file")
    try:
        # A full module pickle: only load files you trust.
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:   # torch.load raises many types for a file it cannot read
        raise UsageError(f"{path} is not a PyTorch module saved with torch.save(module) "
                         f"({type(error).__name__}: {error})") from None
    config = Config(pes=args.pes, weight_bits=args.weight_bits,
                    activation_bits=args.activation_bits)
    program = compile(module, config, density=args.density, pruning=args.pruning)
    program.save(args.output)
    _print_summary(program, args.output)
    return 0


def cmd_info(args):
    from .program import load
    program = load(_existing_file(args.image, "image"))
    if args.json:
        print(json.dumps({"summary": program.summary(), "config": program.config.to_dict()}))
    else:
        _print_summary(program, args.image)
    return 0


def cmd_predict(args):
    from .program import load
    program = load(_existing_file(args.image, "image"))
    outputs = program.predict(_load_frames(args.input, program))
    np.save(args.output, outputs)
    print(f"wrote {outputs.shape[0]} frames of {outputs.shape[1]} outputs to {args.output}")
    return 0


def cmd_simulate(args):
    from .program import load
    program = load(_existing_file(args.image, "image"))
    frames = (_load_frames(args.input, program) if args.input
              else _random_frames(program, args.frames, args.seed))
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


def cmd_verilog(args):
    from ..sim.build import TOPLEVEL, generate_verilog
    from .program import load
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
    parser = argparse.ArgumentParser(
        prog="ese", description="FPGA accelerators for sparse, quantized LSTMs (ESE-style).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    demo = commands.add_parser("demo", help="compile a small LSTMP, simulate it, report")
    demo.add_argument("--pes", type=_positive_int, default=4, help="processing elements")
    demo.add_argument("--density", type=_density, default=0.3, help="weights kept")
    demo.add_argument("--frames", type=_positive_int, default=12, help="frames to simulate")
    demo.add_argument("--stalls", type=_probability, default=0.0,
                      help="probability of an idle or back-pressure cycle on each stream")
    demo.add_argument("--seed", type=int, default=0)
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
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(run=cmd_simulate)

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


if __name__ == "__main__":
    sys.exit(main())
