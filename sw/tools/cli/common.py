"""What every command of the command line shares: one-line errors, argument types, frames
from files, and the hardware of a build or an estimate."""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from ...contract.config import Config
from ...contract.errors import EseError


class UsageError(EseError):
    """A problem with the command line itself (a missing file, a bad option value)."""


def make_console():
    from rich.console import Console
    return Console(stderr=False, highlight=False)


def int_from(low, what):
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


positive_int = int_from(1, "a positive integer")
non_negative_int = int_from(0, "a non-negative integer")
seed_value = int_from(0, "a non-negative integer seed")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong, and where to read the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def number_in(low, high, what, include_low):
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


density_value = number_in(0.0, 1.0, "a density in (0, 1]", include_low=False)
probability_value = number_in(0.0, 1.0, "a probability in [0, 1)", include_low=True)
#: A delta layer's threshold in real units (docs/arithmetic.md, "Delta layers").
threshold_value = number_in(0.0, 16.0, "a threshold in [0, 16)", include_low=True)


def existing_file(path, what):
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist")
    if not path.is_file():
        raise UsageError(f"{what} {path} is not a file")
    return path


def load_frames(path, program):
    path = existing_file(path, "input file")
    try:
        frames = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{path} is not a .npy array of frames ({error})") from None
    if not isinstance(frames, np.ndarray):
        raise UsageError(f"{path} is a .npz archive; this command takes one .npy array of "
                         f"frames")
    return frames


def load_calibration(path):
    """Calibration frames: a .npy array (one sequence (frames, inputs) or a batch (sequences,
    frames, inputs)) or a .npz archive of sequences, one array each."""
    path = existing_file(path, "calibration file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{path} is not a .npy array or .npz archive of frames "
                         f"({error})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        sequences = [loaded[name] for name in loaded.files]
    if not sequences:
        raise UsageError(f"{path} holds no arrays")
    return sequences


def note_saturation(program, sequences):
    """Say how many input values lay beyond the fixed-point range and saturated."""
    saturated = total = 0
    for frames in sequences:
        if frames is not None:
            saturated += program.encode_inputs(frames)[1]
            total += np.size(frames)
    if saturated:
        fmt = program.input_format
        print(f"note: {saturated} of {total} input values lay beyond the input format "
              f"{fmt} (+-{fmt.max_value:g}) and saturated; compile with --calibration "
              f"frames like these to choose a format that holds them", file=sys.stderr)


def random_frames(program, count, seed):
    return np.random.default_rng(seed).normal(size=(count, program.inputs))


def streaming_settings(window):
    """Config settings that stream the weights through rings of ``window`` entry words (over
    the card's memory port), or none for resident weights."""
    if not window:
        return {}
    from ....boards import DEFAULT_BOARD, board
    return {"stream_window": window, "memory_data_bits": board(DEFAULT_BOARD).memory_data_bits}


STREAM_HELP = ("stream the sparse weights from the card's DDR every frame step, through two "
               "rings of N entry words per PE (a power of two; 0: all weights on chip)")


def window_value(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 or a power of two, not {text!r}") from None
    if value < 0 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"expected 0 or a power of two, not {value}")
    return value


#: The parameters that make a machine, which a board's preset sets and the options override,
#: with Config's defaults (ESE's PEs, one channel, one column per entry, one cell a cycle).
MACHINE_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Config)
                    if field.name in ("pes", "channels", "block_columns", "cell_lanes",
                                      "entries_per_read")}


def model_source_options(parser):
    """The options that pick what of a model file to compile."""
    parser.add_argument("--submodule", nargs="+", metavar="NAME",
                        help="PyTorch: the recurrent submodule, or chain of them, of a larger "
                             "model (its name in named_modules() or the state_dict, e.g. "
                             "encoder.rnn); --list-parts names them")
    parser.add_argument("--node", nargs="+", metavar="NAME",
                        help="ONNX: the LSTM, GRU or RNN node, or chain of nodes, to compile (by "
                             "name, or by path through If/Loop subgraphs); default: the "
                             "graph's chain")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="read a file of torch.save(module), which runs code from the "
                             "file (torch.load(weights_only=False)); trusted files only")


def model_source(args):
    """``ese.compile``'s keywords from :func:`model_source_options`."""
    one = lambda names: None if not names else names[0] if len(names) == 1 else names  # noqa: E731
    return {"submodule": one(args.submodule), "node": one(args.node),
            "trust_pickle": args.trust_pickle}


def machine_options(parser, board_option=False):
    """The options that choose a machine: a board's preset (the default board's names, or
    ``--board``'s), and the parameters that override it."""
    from ....boards import BOARDS, DEFAULT_BOARD
    names = sorted({name for card in BOARDS.values() for name in card.presets})
    described = "; ".join(
        f"{name}: " + ", ".join(f"{key} {value}" for key, value in values.items())
        for name, values in sorted(BOARDS[DEFAULT_BOARD].presets.items()))
    parser.add_argument("--preset", choices=names,
                        help=f"a named machine of the card{' (--board)' * board_option} "
                             f"({described}); the options below override its parameters")
    parser.add_argument("--pes", type=positive_int, default=None,
                        help=f"processing elements (default {MACHINE_DEFAULTS['pes']})")
    parser.add_argument("--channels", type=positive_int, default=None,
                        help="utterances run in lock step on the same weights (default 1)")
    parser.add_argument("--block-columns", type=positive_int, default=None, metavar="K",
                        help="columns per sparse entry: a PE multiplies K weights a cycle and "
                             "the broadcast sends K columns a beat (default 1, as ESE)")
    parser.add_argument("--cell-lanes", type=positive_int, default=None, metavar="C",
                        help="cells updated a cycle, and projection rows written (default 1)")
    parser.add_argument("--entries-per-read", type=positive_int, default=None, metavar="N",
                        help="sparse entries a PE reads a cycle (default 4)")


def machine(args, defaults=MACHINE_DEFAULTS):
    """The machine the options name: their preset's parameters (on ``args.board``, or the
    default board), overridden by the options given, ``defaults`` for the rest."""
    from ....boards import DEFAULT_BOARD, board
    values = dict(defaults)
    if getattr(args, "preset", None):
        values.update(board(getattr(args, "board", None) or DEFAULT_BOARD).preset(args.preset))
    for name in defaults:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    return values


def hardware_for(args):
    """The hardware config of a build or estimate: an image's, or ESE's layer's sized for the
    machine the options name."""
    from ...runtime.program import load
    from ..bench import BenchSettings, build_program
    delta = {"delta": 1} if getattr(args, "delta", False) else {}
    if args.image:
        named = [f"--{name.replace('_', '-')}" for name in ("preset", "pes", "block_columns",
                                                            "cell_lanes", "entries_per_read")
                 if getattr(args, name, None) is not None]
        if named:
            raise UsageError(f"the image fixes the machine; {', '.join(named)} name one for "
                             f"ESE's layer, without --image")
        config = load(existing_file(args.image, "image")).config
        return config.replace(**({"channels": args.channels} if args.channels else {}), **delta)
    chosen = machine(args)
    program = build_program(BenchSettings(**chosen, preset=args.preset or "",
                                          stream_window=args.stream_window))
    return program.config.replace(**delta)


def print_summary(program, path):
    s = program.summary()
    layers = "; ".join(("backward " if layer["direction"] == "backward" else "")
                       + f"{layer['inputs']}->{layer['cells']} "
                       + (f"{layer['kind'].upper()} units" if layer["kind"] != "lstm"
                          else "cells")
                       + (f"->{layer['proj']} proj" if layer["proj"] else "")
                       + (" (peepholes)" if layer["peepholes"] else "")
                       + (" (delta: thresholds " + ", ".join(
                           f"{name} {value} LSB" for name, value in layer["delta"].items()
                           if name != "m" or layer["proj"]) + ")" if layer["delta"] else "")
                       for layer in s["layers"])
    print(f"{path}: {s['source']}, {layers}")
    if program.model.bidirectional:
        passes = program.model.passes()
        print(f"  bidirectional: runs whole sequences in {len(passes)} passes ("
              + ", ".join(f"layer{'s' if run.last > run.first else ''} "
                          f"{run.first}{f'-{run.last}' if run.last > run.first else ''}"
                          f"{' backward' if run.backward else ''}" for run in passes) + ")")
    print(f"  {s['pes']} PEs, {s['nonzeros']} of {s['weights']} weights non-zero "
          f"(density {s['density']:.4f}), {s['padding_entries']} padding entries, "
          f"{s['entries_per_pe_min']}..{s['entries_per_pe_max']} entries per PE, "
          f"{s['saturated']} values saturated")
    for index, formats in enumerate(s["formats"]):
        print(f"  layer {index} formats: " + ", ".join(
            f"{name} {text.split(' ')[0]}" for name, text in formats.items()))
    if s["requantized"]:
        exact = [name for name, value in s["requantized"].items() if value == 0]
        moved = {name: value for name, value in s["requantized"].items() if value}
        print(f"  trained quantized weights: {len(exact)} matrices on their grid"
              + "".join(f"; {name} requantized by up to {value:.2e}"
                        for name, value in moved.items()))
    calibration = s["calibration"]
    if calibration:
        saturated = ", ".join(f"{k} {v}" for k, v in calibration["saturated"].items())
        print(f"  calibration: {calibration['frames']} frames, saturated: {saturated or 'none'}, "
              f"largest output error against float {calibration['max_error']:.2e}")
