"""The design-space explorer behind ``ese explore``: for a model and a board, every machine of
the given parameters with the performance model's cycles per frame and the resource model's
LUT, FF, DSP and BRAM36, the Pareto front of latency against LUTs, and the smallest machine that
meets a latency.

Each machine compiles the model for itself (load-balanced pruning in its own blocks of
columns, for a float model), runs the golden model's trace of random frames through the
performance model (:mod:`ese.sw.compiler.performance`, which follows the hardware's own
latencies) and asks the generator's resource model (:mod:`ese.boards.resource_model`, a fit to
syntheses of small machines) for its resources. Machines that do not fit the board's device
(every resource at most ``margin`` of it) are listed but never chosen.
"""

import itertools
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ...boards.estimate import ESE_REPORTED
from .bench import ESE_LATENCY_US

__all__ = ["ExploreSettings", "explore", "plot_front", "ESE_POINT"]

#: ESE's published point (FPGA 2017): its latency per frame on ESE's layer and its LUTs on the
#: XCKU060 (32 channels x 32 PEs).
ESE_POINT = {"latency_us": ESE_LATENCY_US, "lut": ESE_REPORTED["lut"]}


@dataclass
class ExploreSettings:
    model: str = ""                  # a model file (any front end's) or .ese; "" for ESE's
    source: dict = field(default_factory=dict)   # submodule, node, trust_pickle for it
    cell: str = "lstmp"              # ESE's layer or a GRU of its size (without a model)
    density: float = 0.112
    board: str = "adm-pcie-ku3"
    pes: tuple = (16, 32, 64, 128, 256)
    block_columns: tuple = (1, 2, 4, 8, 16)
    cell_lanes: tuple = (1, 2, 4, 8)
    channels: tuple = (1,)
    entries_per_read: tuple = ()     # empty: 4 for single columns, 2 for blocks
    frames: int = 8
    seed: int = 0
    margin: float = 0.1              # the share of each resource kept free
    latency_us: float = 0.0          # name the smallest machine meeting it (0: none)
    machines: list = field(default_factory=list)


def _machines(settings):
    """The valid machines of the settings' parameters (as :class:`~ese.Config` fields)."""
    from ..contract.config import Config
    from ..contract.errors import ConfigError
    for pes, block, lanes, channels in itertools.product(
            settings.pes, settings.block_columns, settings.cell_lanes, settings.channels):
        reads = settings.entries_per_read or ((4,) if block == 1 else (2,))
        for entries_per_read in reads:
            fields = dict(pes=pes, block_columns=block, cell_lanes=lanes, channels=channels,
                          entries_per_read=entries_per_read)
            try:
                Config(**fields)
            except ConfigError:
                continue
            yield fields


def _compile(settings, fields):
    """The model compiled for the machine ``fields``."""
    import ese

    from .workloads import random_program
    config = ese.Config(**fields)
    if not settings.model:
        return random_program(settings.cell, 153, 1024, 512, config, density=settings.density)
    if settings.model.endswith(".ese"):
        # An image's weights as they are, laid out again for the machine.
        from ..runtime.encoding import encode_model
        from ..runtime.program import Program, load
        program = load(settings.model)
        model = program.model
        image = encode_model(model, config)
        model.config = image.config
        return Program(model, image, program.report, program.metadata)
    return ese.compile(settings.model, config, density=settings.density, **settings.source)


def explore(settings, log=None):
    """Every machine's figures, the Pareto front and the choice; a JSON-ready dict."""
    from ...boards import board
    from ...boards.resource_model import load_model
    from ...hw.timing import hardware_timing
    from ..compiler.performance import predict_performance
    card = board(settings.board)
    resources = load_model()
    started = time.monotonic()
    rows = []
    rng = np.random.default_rng(settings.seed)
    for fields in _machines(settings):
        if log is not None:
            log("machine " + ", ".join(f"{key} {value}" for key, value in fields.items()))
        program = _compile(settings, fields)
        config = card.hardware(program.config)
        traces = []
        for _ in range(config.channels):
            codes, _ = program.encode_inputs(rng.normal(size=(settings.frames, program.inputs)))
            traces.append([])
            program.predict_codes(codes, trace=traces[-1])
        prediction = predict_performance(program.image, hardware_timing(config), trace=traces)
        cycles = prediction.cycles_per_frame
        used = resources.predict(config)
        percent = {name: card.percent(name, value) for name, value in used.items()}
        rows.append({
            **fields,
            "cycles_per_frame": cycles,
            "latency_us": cycles / config.clock_mhz,
            "frames_per_second": config.channels * config.clock_mhz * 1e6 / cycles,
            "limited_by": prediction.limited_by,
            **{name: round(value, 1) for name, value in used.items()},
            **{f"{name}_percent": round(value, 1) for name, value in percent.items()},
            "fits": all(value <= 100 * (1 - settings.margin) for value in percent.values()),
        })
    front = _pareto([row for row in rows if row["fits"]])
    chosen = None
    if settings.latency_us:
        meeting = [row for row in front if row["latency_us"] <= settings.latency_us]
        chosen = min(meeting, key=lambda row: row["lut"]) if meeting else None
    return {
        "settings": {key: value for key, value in asdict(settings).items()
                     if key != "machines"},
        "board": card.name, "device": card.part,
        "resource_model": "the generator's resource model (ese.boards.resource_model): LUT, "
                          "FF and DSP fitted to syntheses of small machines, BRAM36 from the "
                          "memories' shapes",
        "ese": ESE_POINT,
        "machines": rows,
        "pareto_front": front,
        "chosen": chosen,
        "seconds": round(time.monotonic() - started, 1),
    }


def _pareto(rows):
    """The machines no other is both faster than and smaller (in LUTs) than, by latency."""
    front = []
    for row in sorted(rows, key=lambda r: (r["latency_us"], r["lut"])):
        if not front or row["lut"] < front[-1]["lut"]:
            front.append(row)
    return front


def plot_front(report, path):
    """Latency against LUTs: every machine, the Pareto front and ESE's published point."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    figure, axes = pyplot.subplots(figsize=(6.4, 4.4), dpi=120)
    rows = report["machines"]
    fits = [row for row in rows if row["fits"]]
    others = [row for row in rows if not row["fits"]]
    axes.scatter([r["lut"] for r in fits], [r["latency_us"] for r in fits], s=12,
                 color="tab:blue", alpha=0.5, label="machines that fit")
    if others:
        axes.scatter([r["lut"] for r in others], [r["latency_us"] for r in others], s=12,
                     color="lightgrey", label="machines that do not fit")
    front = report["pareto_front"]
    axes.plot([r["lut"] for r in front], [r["latency_us"] for r in front], "o-",
              color="tab:red", label="Pareto front")
    ese = report["ese"]
    axes.scatter([ese["lut"]], [ese["latency_us"]], marker="*", s=120, color="black",
                 label="ESE (FPGA 2017, reported)")
    if report["chosen"]:
        chosen = report["chosen"]
        axes.scatter([chosen["lut"]], [chosen["latency_us"]], marker="s", s=60,
                     facecolors="none", edgecolors="tab:green", linewidths=2,
                     label=f"smallest meeting {report['settings']['latency_us']:g} us")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("LUTs (resource model)")
    axes.set_ylabel("latency per frame, us (performance model)")
    axes.set_title(f"{report['settings']['model'] or 'ESE layer'} on the {report['device']}",
                   fontsize=10)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
