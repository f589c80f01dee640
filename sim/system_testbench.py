"""cocotb testbench of the whole system: the host driver against the RTL, over AXI models.

This module runs inside the simulator process. Its tests drive ``ese_system`` exactly as a
host drives the card: the :class:`ese.sw.driver.Accelerator` talks through a
:class:`~ese.sim.transport.SimulatedTransport` (AXI4-Lite registers, the DDR as an ``AxiRam``,
AXI-Stream sources and sink), with random idle cycles and back-pressure on every bus. The job
(written by :func:`ese.sim.runner.run_system`) names the weight image and the frames.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from ..sw.driver import Accelerator, DeviceError
from ..sw.errors import ImageError
from ..sw.registers import Register
from .transport import CLOCK_NS, SimulatedTransport, SystemModels

__all__ = ["SystemBench"]


class SystemBench:
    """Clock, reset and bus models around ``ese_system``, and a driver on them."""

    def __init__(self, dut, stall_probability=0.0, seed=0):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.models = SystemModels(dut, stall_probability=stall_probability, seed=seed)
        self.transport = SimulatedTransport(self.models)
        self.driver = Accelerator(self.transport, poll_seconds=1e-6, timeout_seconds=0.05)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)


def _job():
    job = np.load(os.environ["ESE_SIM_JOB"], allow_pickle=False)
    return job, json.loads(str(job["settings"]))


def _frames(job, settings):
    """The job's frames in the forms Accelerator.run takes."""
    per_channel = []
    for channel in range(settings["channels"]):
        names = sorted((n for n in job.files if n.startswith(f"frames_{channel}_")),
                       key=lambda n: int(n.rsplit("_", 1)[1]))
        per_channel.append([job[name] for name in names] or None)
    return per_channel


@cocotb.test()
async def run_through_driver(dut):
    """Load the image through the driver and run every channel's frames; save the results."""
    job, settings = _job()
    bench = SystemBench(dut, settings["stall_probability"], settings["seed"])
    await bench.reset()
    limit = settings["timeout_cycles"] * CLOCK_NS
    for _ in range(settings["loads"]):
        await with_timeout(bench.driver.load(settings["image"]), limit, "ns")
    outputs = await with_timeout(bench.driver.run(_frames(job, settings)), limit, "ns")
    counters = await bench.driver.counters()
    arrays = {f"outputs_{c}_{s}": values for c, sequences in enumerate(outputs)
              for s, values in enumerate(sequences)}
    np.savez(os.environ["ESE_SIM_RESULT"], counters=json.dumps(counters), **arrays)


@cocotb.test()
async def image_for_other_hardware_is_refused_before_any_write(dut):
    """The driver reads the card's parameters and refuses a mismatched image untouched."""
    job, settings = _job()
    bench = SystemBench(dut, settings["stall_probability"], settings["seed"])
    await bench.reset()
    try:
        await bench.driver.load(settings["other_image"])
    except ImageError as error:
        assert "built for other hardware" in str(error), str(error)
    else:
        raise AssertionError("an image built for other hardware was accepted")
    assert bench.transport.writes == [], f"the driver wrote {bench.transport.writes}"
    assert await bench.transport.read_register(Register.IMAGE_STORED) == 0


@cocotb.test()
async def error_flags_surface_as_named_exceptions(dut):
    """A malformed load record sets load_error; the driver raises it by name."""
    job, settings = _job()
    bench = SystemBench(dut, settings["stall_probability"], settings["seed"])
    await bench.reset()
    await bench.driver.load(settings["image"])
    # Store and load a stream whose first record names no memory.
    transport = bench.transport
    words = np.array([0x7F, 0, 2, 1, 2], dtype="<u4")
    await transport.write_register(Register.IMAGE_WORDS, len(words))
    from ..sw.registers import Control
    await transport.write_register(Register.CONTROL, Control.STORE_IMAGE)
    await transport.send("weights", words.tobytes())
    await ClockCycles(dut.clk, 200)
    await transport.write_register(Register.CONTROL, Control.LOAD_IMAGE)
    await ClockCycles(dut.clk, 200)
    try:
        await bench.driver.check_errors()
    except DeviceError as error:
        assert error.flags == ("load_error",), error.flags
        assert "load_error" in str(error)
    else:
        raise AssertionError("the malformed record raised no error")
    await bench.driver.reset()
    await ClockCycles(dut.clk, 20)
    await bench.driver.check_errors()       # cleared
