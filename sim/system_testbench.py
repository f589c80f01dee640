"""cocotb testbench of the whole system: the host driver against the RTL, over AXI models.

This module runs inside the simulator process. Its tests drive ``ese_system`` exactly as a
host drives the card: the :class:`ese.sw.runtime.driver.Accelerator` talks through a
:class:`~ese.sim.transport.SimulatedTransport` (AXI4-Lite registers, the DDR as an ``AxiRam``,
AXI-Stream sources and sink), with random idle cycles and back-pressure on every bus. The job
(written by :func:`ese.sim.runner.run_system`) names the weight image and the frames.
"""

import itertools
import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from ..sw.contract.errors import CapacityError, ImageError
from ..sw.contract.registers import Control, Register
from ..sw.runtime.driver import Accelerator, DeviceError
from .testbench import stall_pattern
from .transport import CLOCK_NS, SimulatedTransport, SystemModels

__all__ = ["SystemBench"]


class SystemBench:
    """Clock, reset and bus models around ``ese_system``, and a driver on them."""

    def __init__(self, dut, stall_probability=0.0, seed=0):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.models = SystemModels(dut, stall_probability=stall_probability, seed=seed)
        self.transport = SimulatedTransport(self.models)
        self.driver = Accelerator(self.transport, poll_seconds=1e-6, timeout_seconds=0.05,
                                  memory_bytes=self.models.memory_bytes)

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
    settings, bench, frames, limit = await _loaded(dut)
    for _ in range(settings["loads"] - 1):
        await with_timeout(bench.driver.load(settings["image"]), limit, "ns")
    outputs = await with_timeout(bench.driver.run(frames), limit, "ns")
    await _save(bench, outputs)


async def _loaded(dut):
    """The job's settings, a bench with the image loaded through the driver, the frames, and
    the time limit of one driver call (ns)."""
    job, settings = _job()
    bench = SystemBench(dut, settings["stall_probability"], settings["seed"])
    await bench.reset()
    limit = settings["timeout_cycles"] * CLOCK_NS
    await with_timeout(bench.driver.load(settings["image"]), limit, "ns")
    return settings, bench, _frames(job, settings), limit


async def _save(bench, outputs):
    """Write the outputs and the card's counters for ese.sim.runner.run_system."""
    counters = await bench.driver.counters()
    arrays = {f"outputs_{c}_{s}": values for c, sequences in enumerate(outputs)
              for s, values in enumerate(sequences)}
    np.savez(os.environ["ESE_SIM_RESULT"], counters=json.dumps(counters), **arrays)


@cocotb.test()
async def reset_in_the_middle_of_runs_then_rerun_clean(dut):
    """Runs are cut short by a reset at random points (while steps and results are in
    flight, under back-pressure), then the frames run again: the outputs must equal the
    golden model's, with nothing of the aborted runs left in the card or the transport."""
    settings, bench, frames, limit = await _loaded(dut)
    driver = bench.driver
    rng = random.Random(settings["seed"])
    aborted = 0
    for _ in range(settings["aborts"]):
        run = cocotb.start_soon(driver.run(frames))
        # Somewhere inside the run: after the first step has gone in, before the last result.
        while await bench.transport.read_register(Register.STEPS_IN) < 1 + aborted:
            await ClockCycles(dut.clk, 10)
        await ClockCycles(dut.clk, rng.randrange(1, settings["abort_cycles"]))
        if run.done():
            raise AssertionError("the run finished before it could be cut short")
        run.cancel()
        await with_timeout(driver.reset(), limit, "ns")
        aborted = await bench.transport.read_register(Register.STEPS_IN)
    outputs = await with_timeout(driver.run(frames), limit, "ns")
    await _save(bench, outputs)


@cocotb.test()
async def unanswered_run_times_out_and_reset_recovers(dut):
    """A card that never delivers its results (the results stream held off) makes the run
    time out with a clear error, refuses to run again until reset, and after a reset runs
    the frames exactly."""
    settings, bench, frames, limit = await _loaded(dut)
    driver = bench.driver
    results = bench.models.results
    results.set_pause_generator(itertools.repeat(True))
    driver.timeout_seconds = settings["driver_timeout_seconds"]
    for expected in ("produced no result for frame step 1", "call reset() before running"):
        try:
            await with_timeout(driver.run(frames), limit, "ns")
        except DeviceError as error:
            assert expected in str(error), str(error)
        else:
            raise AssertionError("a run without results did not time out")
    assert await bench.transport.read_register(Register.STEPS_OUT) == 0, \
        "no result should have left the card while the results were held off"
    # The fault clears; the driver resets the card and runs again.
    results.set_pause_generator(stall_pattern(settings["stall_probability"],
                                              random.Random(settings["seed"])))
    await with_timeout(driver.reset(), limit, "ns")
    outputs = await with_timeout(driver.run(frames), limit, "ns")
    await _save(bench, outputs)


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
    # An image that would run past the card's memory is refused before any write, too.
    top = Accelerator(bench.transport, image_address=bench.models.memory_bytes - 4096,
                      memory_bytes=bench.models.memory_bytes)
    try:
        await top.load(settings["image"])
    except CapacityError as error:
        assert "past the card's" in str(error), str(error)
    else:
        raise AssertionError("an image past the end of the memory was accepted")
    assert bench.transport.writes == [], f"the driver wrote {bench.transport.writes}"
    assert await bench.transport.read_register(Register.IMAGE_STORED) == 0


@cocotb.test()
async def error_flags_surface_as_named_exceptions(dut):
    """A frame step of the wrong length sets frame_error, a malformed load record
    load_error, a command while busy command_error; the driver raises each by name, and a
    reset clears them."""
    job, settings = _job()
    bench = SystemBench(dut, settings["stall_probability"], settings["seed"])
    await bench.reset()
    await bench.driver.load(settings["image"])
    transport = bench.transport
    # A step shorter than the model's input (its tlast too early).
    inputs = bench.driver.program.inputs
    word = 2 * settings["channels"]
    await transport.send("frames", (1).to_bytes(word, "little") + bytes(word * (inputs - 2)))
    await ClockCycles(dut.clk, 500)
    await _expect_flag(bench, "frame_error")
    await bench.driver.reset()
    # Store and load a stream whose first record names no memory.
    words = np.array([0x7F, 0, 2, 1, 2], dtype="<u4")
    await transport.write_register(Register.IMAGE_WORDS, len(words))
    await transport.write_register(Register.CONTROL, Control.STORE_IMAGE)
    await transport.send("weights", words.tobytes())
    await ClockCycles(dut.clk, 500)
    await transport.write_register(Register.CONTROL, Control.LOAD_IMAGE)
    await ClockCycles(dut.clk, 500)
    await _expect_flag(bench, "load_error")
    await bench.driver.reset()
    await bench.driver.check_errors()       # cleared
    # A second STORE_IMAGE while the first is still storing is ignored and flagged.
    await transport.write_register(Register.IMAGE_WORDS, 64)
    await transport.write_register(Register.CONTROL, Control.STORE_IMAGE)
    await transport.write_register(Register.CONTROL, Control.STORE_IMAGE)
    await _expect_flag(bench, "command_error")


async def _expect_flag(bench, flag):
    """check_errors must raise DeviceError naming exactly ``flag``."""
    try:
        await bench.driver.check_errors()
    except DeviceError as error:
        assert error.flags == (flag,), error.flags
        assert flag in str(error)
    else:
        raise AssertionError(f"{flag} was not raised")
