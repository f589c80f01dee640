"""Verilog generation and cached Verilator builds.

The accelerator's Verilog depends only on the hardware parameters (weights are loaded at run
time), so one build serves every model that fits the same :class:`~ese.Config`. Builds are
cached under ``$ESE_CACHE_DIR`` (default ``~/.cache/ese``), keyed by the parameters, the
source of the hardware generator, the tool versions and the environment's cocotb libraries
(a model links to them by path), so a cached build costs neither
Verilog generation nor compilation; a file lock keeps concurrent runs from building the same
design twice. A model that records waveforms (Verilator's FST tracing) is a separate cached
build, so that runs without waves keep the untraced model's speed.
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
from ..sw.contract.errors import ToolchainError
from .toolchain import build_make_flags, verilator_environment

__all__ = ["TOPLEVEL", "DESIGNS", "generate_verilog", "build_simulator", "build_tree_simulator",
           "SimulatorBuild", "cache_root", "cached_verilog"]

TOPLEVEL = "ese_accelerator"
#: The two designs the simulator builds: the accelerator core, and the whole system.
DESIGNS = {"accelerator": "ese_accelerator", "system": "ese_system"}


def _lean_verilator_runner():
    """cocotb's Verilator runner, building with only the top level's signals public.

    cocotb's runner passes ``--public-flat-rw``, which makes every signal of the design
    visible to VPI and keeps Verilator from optimizing them away; our testbenches touch only
    the top-level ports, and ``--public-depth 1`` makes the model about four times faster.
    """
    from cocotb_tools.runner import Verilator

    class LeanVerilator(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            verilate = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            position = verilate.index("--vpi") + 1
            commands[0] = verilate[:position] + ["--public-depth", "1"] + verilate[position:]
            return commands

    return LeanVerilator()


def cache_root():
    return Path(os.environ.get("ESE_CACHE_DIR", Path.home() / ".cache" / "ese"))


def generate_verilog(config, design="accelerator"):
    """The Verilog of the accelerator core (or the whole system) for a sized ``config``."""
    if design == "system":
        from ..hw.system import AcceleratorSystem
        top = AcceleratorSystem(config)
    else:
        top = LSTMAccelerator(config)
    return verilog.convert(top, name=DESIGNS[design], emit_src=False)


def cached_verilog(design, generate):
    """The Verilog ``generate()`` returns for ``design`` (JSON: what is converted and its
    parameters), kept under the cache and keyed by ``design``, Amaranth's version and the
    generator's sources: a design converted before is read back, not converted again (a board
    build tree's shell takes seconds to convert)."""
    import amaranth
    digest = hashlib.sha256(json.dumps(design, sort_keys=True).encode())
    digest.update(amaranth.__version__.encode())
    _add_generator_sources(digest)
    path = cache_root() / "verilog" / f"{digest.hexdigest()[:20]}.v"
    if path.exists():
        return path.read_text()
    text = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    written = path.with_name(f"{path.name}.{os.getpid()}")
    written.write_text(text)
    written.replace(path)       # whole or not at all, if two runs convert it at once
    return text


@dataclass
class SimulatorBuild:
    """A built Verilator model, ready for cocotb's runner."""

    directory: Path
    verilog: Path
    seconds: float       # time spent generating Verilog and compiling now (0 when cached)
    cached: bool
    recorded_seconds: float = 0.0   # how long this model took to build, when it was built


def _generator_sources():
    """The files whose contents decide the generated Verilog: every module of the hardware
    and of the contract, the only package it may import (tests/test_layering.py keeps it so),
    whatever the hardware takes from it today."""
    from .. import hw
    from ..sw import contract
    return [path for package in (hw, contract)
            for path in sorted(Path(package.__file__).parent.rglob("*.py"))]


def _add_generator_sources(digest):
    """Hash the generator's sources into ``digest`` (every cache key of generated Verilog)."""
    for path in _generator_sources():
        digest.update(path.read_bytes())


def _cocotb_libraries():
    """Where this environment's cocotb keeps the VPI libraries a model links to: a built model
    finds them by this path (its RUNPATH), so a model built in another virtual environment
    fails to start once that environment is gone, and each environment needs its own."""
    from cocotb_tools import config
    return str(Path(config.libs_dir).resolve())


def build_key(config, design="accelerator", waves=False):
    """Cache key of the simulator for ``config`` (with FST tracing if ``waves``)."""
    import amaranth
    import cocotb
    version, _ = verilator_environment()
    parameters = {k: v for k, v in config.to_dict().items() if k != "clock_mhz"}
    digest = hashlib.sha256()
    digest.update(json.dumps([design, parameters] + (["fst"] if waves else []),
                             sort_keys=True).encode())
    for text in (version, cocotb.__version__, _cocotb_libraries(), amaranth.__version__,
                 Path(__file__).read_text()):
        digest.update(text.encode())
    _add_generator_sources(digest)
    return digest.hexdigest()[:20]


def build_simulator(config, log=None, design="accelerator", waves=False):
    """Generate, compile and cache the simulator for ``config`` (``design``: see DESIGNS);
    with ``waves``, the model that can write an FST trace of every signal.

    ``log`` is called with a one-line message before a long build starts.
    """
    toplevel = DESIGNS[design]
    directory = cache_root() / "verilator" / build_key(config, design, waves)

    def write_sources():
        verilog_path = directory / f"{toplevel}.v"
        verilog_path.write_text(generate_verilog(config, design))
        return [verilog_path]

    traced = " with FST tracing" if waves else ""
    return _build(directory, toplevel, write_sources, log,
                  f"building the Verilator model of {config.pes} PEs{traced} (once per "
                  f"configuration)", waves=waves)


def build_tree_simulator(tree, log=None):
    """Compile and cache the simulator of a board build tree (``ese build``): its own RTL
    files and top level, as its ``config.json`` names them, so what is simulated is what
    Vivado synthesizes."""
    import cocotb
    tree = Path(tree)
    described = json.loads((tree / "config.json").read_text())
    sources = [tree / name for name in described["rtl"]]
    version, _ = verilator_environment()
    digest = hashlib.sha256()
    for text in (version, cocotb.__version__, _cocotb_libraries(), Path(__file__).read_text(),
                 described["top"]):
        digest.update(text.encode())
    for path in sources:
        digest.update(path.read_bytes())
    directory = cache_root() / "verilator" / f"tree-{digest.hexdigest()[:20]}"

    def copy_sources():
        copies = []
        for path in sources:
            copy = directory / path.name
            copy.write_bytes(path.read_bytes())
            copies.append(copy)
        return copies

    return _build(directory, described["top"], copy_sources, log,
                  f"building the Verilator model of the build tree {tree} (once per tree)")


def _build(directory, toplevel, write_sources, log, message, waves=False):
    """Build (or reuse) the Verilator model of ``toplevel`` in ``directory``; the sources are
    written by ``write_sources()``, which returns their paths. ``waves`` builds it with FST
    tracing (every signal, structures as their fields)."""
    version, _ = verilator_environment()
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "build.json"
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        verilog_path = directory / f"{toplevel}.v"
        if marker.exists() and (directory / toplevel).exists():
            try:
                recorded = float(json.loads(marker.read_text())["seconds"])
            except (ValueError, KeyError, OSError):
                recorded = 0.0
            return SimulatorBuild(directory, verilog_path, 0.0, True, recorded)
        if log is not None:
            log(message)
        started = time.monotonic()
        sources = write_sources()
        runner = _lean_verilator_runner()
        # Flags inherited from an outer make (a jobserver it owns) do not apply to this build.
        saved_flags = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = build_make_flags()
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                build_dir=directory,
                build_args=["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"]
                + (["--trace-fst", "--trace-structs"] if waves else []),
                waves=waves,
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
        return SimulatorBuild(directory, verilog_path, seconds, False, seconds)


def _tail(path, lines=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
