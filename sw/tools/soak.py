"""The soak test: many frames through the whole simulated machine, every one checked.

``ese soak`` compiles a small two-layer peephole LSTMP (or, with ``--cell gru``, GRU), loads it
through the host driver into the system RTL (Verilator, cocotbext-axi bus models with random
idle cycles and back-pressure on every bus) and streams sequences of random lengths on every
channel, one after another, then compares every output frame with the golden model. It
reports the frames, the mismatches (the command fails if there is one), the simulated cycles
and the wall time.
"""

import time
from dataclasses import dataclass

import numpy as np

from .reports import SoakReport
from .workloads import random_program

__all__ = ["SoakSettings", "run_soak"]


@dataclass
class SoakSettings:
    cell: str = "lstmp"             # or "gru" (workloads.CELLS): ``cells`` units, no proj
    frames: int = 10_000            # frame steps; each carries one frame per channel
    channels: int = 2
    pes: int = 4
    inputs: int = 13
    cells: int = 22
    proj: int = 9
    layers: int = 2
    density: float = 0.3
    stall_probability: float = 0.2
    longest_sequence: int = 200
    seed: int = 0
    config: object = None           # hardware parameters (default: sized for the model)
    build_tree: object = None       # simulate the card from this build tree (written if absent)
    board: str = "adm-pcie-ku3"     # the card of a build tree the soak writes
    resets: int = 0                 # runs cut short by a reset (with a build tree)
    #: Delta layers' thresholds ``(theta_x, theta_h)`` (docs/arithmetic.md, "Delta layers"):
    #: the hardware gets delta units and the model these thresholds; None for neither.
    delta: tuple = None


def _sequences(total, longest, inputs, rng, smooth=False):
    """Sequences of random lengths (1 to ``longest``) adding up to ``total`` frames: normal
    frames, or (``smooth``, for delta layers) random walks that change little from frame to
    frame, as speech features do."""
    sequences, left = [], total
    while left:
        length = min(left, int(rng.integers(1, longest + 1)))
        if smooth:
            sequences.append(np.cumsum(rng.normal(scale=0.25, size=(length, inputs)), axis=0))
        else:
            sequences.append(rng.normal(scale=1.5, size=(length, inputs)))
        left -= length
    return sequences


def run_soak(settings, log=None):
    """Run the soak; returns the :class:`~ese.sw.tools.reports.SoakReport`."""
    import json
    from pathlib import Path

    import ese

    from ...sim.runner import run_system
    tree = None if settings.build_tree is None else Path(settings.build_tree)
    config = settings.config or ese.Config(pes=settings.pes, channels=settings.channels)
    if settings.delta is not None:
        config = config.replace(delta=1)
    if tree is not None and (tree / "config.json").exists():
        config = ese.Config.from_dict(json.loads((tree / "config.json").read_text())["config"])
    program = random_program(settings.cell, settings.inputs, settings.cells, settings.proj,
                             config, layers=settings.layers, density=settings.density,
                             seed=settings.seed)
    if settings.delta is not None:
        program = program.with_delta(tuple(settings.delta))
    if tree is not None and not (tree / "config.json").exists():
        from ...boards import board
        from ...boards.vivado import write_build_tree
        if log is not None:
            log(f"writing the build tree {tree}")
        write_build_tree(board(settings.board), program.config, tree)
    rng = np.random.default_rng(settings.seed)
    per_channel = [_sequences(settings.frames, settings.longest_sequence, settings.inputs, rng,
                              smooth=settings.delta is not None)
                   for _ in range(settings.channels)]
    started = time.monotonic()
    outputs, counters = run_system(program, per_channel,
                                   stall_probability=settings.stall_probability,
                                   seed=settings.seed, log=log, tree=tree,
                                   options={"resets": settings.resets},
                                   timeout_cycles=2_000 * settings.frames + 5_000_000)
    wall = time.monotonic() - started
    frames = mismatched = 0
    for sequences, results in zip(per_channel, outputs):
        for sequence, result in zip(sequences, results):
            expected = program.predict(sequence)
            mismatched += int(np.sum(np.any(result != expected, axis=1)))
            frames += len(sequence)
    return SoakReport(**{
        "cell": settings.cell,
        "frame_steps": settings.frames,
        "channels": program.config.channels,
        "frames": frames,
        "sequences": sum(len(s) for s in per_channel),
        "mismatched_frames": mismatched,
        "stall_probability": settings.stall_probability,
        "pes": program.config.pes,
        "build_tree": None if tree is None else str(tree),
        "resets": settings.resets,
        "delta": None if settings.delta is None else [float(v) for v in settings.delta],
        "simulated_cycles": counters["cycles"],
        "steps_out": counters["steps_out"],
        "wall_seconds": wall,
    })
