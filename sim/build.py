"""Verilog generation and cached Verilator builds.

The accelerator's Verilog depends only on the hardware parameters (weights are loaded at run
time), so one build serves every model that fits the same :class:`~ese.Config`. Builds are
cached by a hash of the Verilog and the tool versions under ``$ESE_CACHE_DIR`` (default
``~/.cache/ese``); a file lock keeps concurrent runs from building the same design twice.
"""

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

from ..hw.accelerator import LSTMAccelerator
from ..sw.errors import ToolchainError
from .toolchain import build_make_flags, verilator_environment

__all__ = ["TOPLEVEL", "generate_verilog", "build_simulator", "SimulatorBuild", "cache_root"]

TOPLEVEL = "ese_accelerator"


def cache_root():
    return Path(os.environ.get("ESE_CACHE_DIR", Path.home() / ".cache" / "ese"))


def generate_verilog(config):
    """The Verilog of the accelerator for a sized ``config``."""
    top = LSTMAccelerator(config)
    return verilog.convert(top, name=TOPLEVEL, emit_src=False)


@dataclass
class SimulatorBuild:
    """A built Verilator model, ready for cocotb's runner."""

    directory: Path
    verilog: Path
    seconds: float       # time spent building now (0 when cached)
    cached: bool


def build_simulator(config, log=None):
    """Generate, compile and cache the simulator for ``config``.

    ``log`` is called with a one-line message before a long build starts.
    """
    version, _ = verilator_environment()
    import cocotb
    source = generate_verilog(config)
    key = hashlib.sha256("\n".join([source, version, cocotb.__version__]).encode()).hexdigest()
    directory = cache_root() / "verilator" / key[:20]
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "build.json"
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        verilog_path = directory / f"{TOPLEVEL}.v"
        if marker.exists() and (directory / TOPLEVEL).exists():
            return SimulatorBuild(directory, verilog_path, 0.0, True)
        if log is not None:
            log(f"building the Verilator model of {config.pes} PEs (once per configuration)")
        verilog_path.write_text(source)
        started = time.monotonic()
        from cocotb_tools.runner import get_runner
        runner = get_runner("verilator")
        saved_flags = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved_flags, build_make_flags()]))
        try:
            runner.build(
                sources=[verilog_path],
                hdl_toplevel=TOPLEVEL,
                build_dir=directory,
                build_args=["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"],
                timescale=("1ns", "1ps"),
                log_file=directory / "build.log",
                always=True,
            )
        except (RuntimeError, SystemExit) as error:
            tail = _tail(directory / "build.log")
            raise ToolchainError(f"the Verilator build failed ({error}); end of "
                                 f"{directory / 'build.log'}:\n{tail}") from None
        finally:
            if saved_flags is None:
                del os.environ["MAKEFLAGS"]
            else:
                os.environ["MAKEFLAGS"] = saved_flags
        seconds = time.monotonic() - started
        marker.write_text(json.dumps({"seconds": seconds, "verilator": version}))
        return SimulatorBuild(directory, verilog_path, seconds, False)


def _tail(path, lines=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
