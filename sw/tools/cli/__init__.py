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
    ese explore [--latency-us X]             latency against resources over the design space
    ese corpus DIR [--utterances N]          a phone-labelled speech corpus (espeak-ng)
    ese speech-eval [--corpus DIR]           train, prune, quantize, phone error rates

Errors a user can cause (a missing file, an unsupported model, a bad image) end with a
one-line message and exit status 2, never a traceback.
"""

import os
import shlex
import sys

from ...contract.errors import EseError
from . import benchmarks, card, model, speech
from .common import OneLineParser

__all__ = ["main", "build_parser"]


def build_parser():
    parser = OneLineParser(
        prog="ese", description="FPGA accelerators for sparse, quantized LSTMs (ESE-style).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command",
                                     parser_class=OneLineParser)
    for group in (benchmarks, model, card, speech):
        group.register(commands)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # The command line as given, for the reports that name the command which made them.
    args.command_line = " ".join(
        ["ese", *map(shlex.quote, map(str, sys.argv[1:] if argv is None else argv))])
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
