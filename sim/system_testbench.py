"""cocotb bench of the whole system: the host driver against the RTL, over AXI models.

This module runs inside the simulator process. Its test :func:`run_through_driver` drives
``ese_system`` exactly as a host drives the card: the :class:`ese.sw.runtime.driver.Accelerator`
talks through a :class:`~ese.sim.transport.SimulatedTransport` (AXI4-Lite registers, the DDR as
an ``AxiRam``, AXI-Stream sources and sink), with random idle cycles and back-pressure on
every bus; it is what ``ese run --transport sim``, ``ese bench`` and ``ese soak`` run. The job
(written by :func:`ese.sim.runner.run_system`) names the weight image and the frames. Tests
of faults (tests/system/test_system.py) build their scenarios on :class:`SystemBench`.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import with_timeout

from ..sw.runtime.driver import Accelerator
from .harness import ClockedBench
from .transport import SimulatedTransport, SystemModels

__all__ = ["SystemBench", "run_through_driver", "open_job", "job_frames", "bench_for", "loaded",
           "save"]


class SystemBench(ClockedBench):
    """Clock, reset and bus models around ``ese_system``, and a driver on them."""

    def __init__(self, dut, clock_mhz, stall_probability=0.0, seed=0):
        super().__init__(dut, clock_mhz)
        self.models = SystemModels(dut, self.period_ps, stall_probability=stall_probability,
                                   seed=seed)
        self.transport = SimulatedTransport(self.models)
        self.driver = Accelerator(self.transport, poll_seconds=1e-6, timeout_seconds=0.05,
                                  memory_bytes=self.models.memory_bytes)


def open_job():
    """The job named by $ESE_SIM_JOB and its settings."""
    job = np.load(os.environ["ESE_SIM_JOB"], allow_pickle=False)
    return job, json.loads(str(job["settings"]))


def job_frames(job, settings):
    """The job's frames in the forms Accelerator.run takes."""
    per_channel = []
    for channel in range(settings["channels"]):
        names = sorted((n for n in job.files if n.startswith(f"frames_{channel}_")),
                       key=lambda n: int(n.rsplit("_", 1)[1]))
        per_channel.append([job[name] for name in names] or None)
    return per_channel


def bench_for(dut, settings):
    """A bench with the job's clock and stalls."""
    return SystemBench(dut, settings["clock_mhz"], settings["stall_probability"],
                       settings["seed"])


async def loaded(dut):
    """The job's settings, a reset bench with the image loaded through the driver, the
    frames, and the time limit of one driver call (a cocotb timeout)."""
    job, settings = open_job()
    bench = bench_for(dut, settings)
    await bench.reset()
    limit = bench.cycles(settings["timeout_cycles"])
    await with_timeout(bench.driver.load(settings["image"]), *limit)
    return settings, bench, job_frames(job, settings), limit


async def save(bench, outputs):
    """Write the outputs and the card's counters for ese.sim.runner.run_system."""
    counters = await bench.driver.counters()
    arrays = {f"outputs_{c}_{s}": values for c, sequences in enumerate(outputs)
              for s, values in enumerate(sequences)}
    np.savez(os.environ["ESE_SIM_RESULT"], counters=json.dumps(counters), **arrays)


@cocotb.test()
async def run_through_driver(dut):
    """Load the image through the driver and run every channel's frames; save the results."""
    settings, bench, frames, limit = await loaded(dut)
    for _ in range(settings["loads"] - 1):
        await with_timeout(bench.driver.load(settings["image"]), *limit)
    outputs = await with_timeout(bench.driver.run(frames), *limit)
    await save(bench, outputs)
