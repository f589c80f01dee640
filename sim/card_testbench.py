"""cocotb bench of the card: a board build tree's own RTL, every clock at its frequency.

This module runs inside the simulator process, on the top level of a build tree written by
``ese build`` (the block-design wrapper of :class:`ese.hw.shell.CardShell`, Verilog read from
the tree's ``rtl/``). It starts the three clocks of the tree's ``config.json`` (the XDMA's
PCIe user clock, the accelerator's clock and the memory controller's user clock, each at its
own period and phase), brings the card out of reset as its vendor IP does (PERST#, then the
PCIe reset; the memory controller's reset, then its calibration), and drives it with
:class:`~ese.sim.transport.CardModels` through the real host driver. Its test
:func:`run_through_driver` is what ``ese run --transport sim --build-tree`` and
``ese soak --build-tree`` run.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer, with_timeout

from ..sw.contract.registers import Register
from ..sw.runtime.driver import Accelerator
from .harness import clock_period_ps
from .system_testbench import job_frames, open_job, save
from .transport import CardModels, SimulatedTransport

__all__ = ["CardBench", "run_through_driver"]

#: Clock cycles each reset is held (in the slowest of the clocks it spans).
RESET_CYCLES = 8
#: Memory-clock cycles from the end of the controller's reset to its calibration.
CALIBRATION_CYCLES = 50


class CardBench:
    """The card's clocks, resets and vendor-IP bus models, and a driver on them."""

    def __init__(self, dut, clocks_mhz, stall_probability=0.0, seed=0):
        self.dut = dut
        self.periods = {name: clock_period_ps(mhz) for name, mhz in clocks_mhz.items()}
        self.period_ps = self.periods["pcie"]
        self.models = CardModels(dut, self.period_ps, stall_probability=stall_probability,
                                 seed=seed)
        self.transport = SimulatedTransport(self.models)
        self.driver = Accelerator(self.transport, poll_seconds=1e-6, timeout_seconds=0.05,
                                  memory_bytes=self.models.memory_bytes)

    async def start(self):
        """Start the clocks (the accelerator's and the memory's a fraction of a period apart,
        so no two clocks keep their edges together) and reset the card."""
        dut = self.dut
        dut.perst_n.value = 0
        dut.pcie_rst_n.value = 0
        dut.memory_rst.value = 1
        dut.memory_calibrated.value = 0
        for signal, name, offset in ((dut.pcie_clk, "pcie", 0), (dut.clk, "accelerator", 3),
                                     (dut.memory_clk, "memory", 7)):
            period = self.periods[name]
            cocotb.start_soon(self._clock(signal, period, period * offset // 10))
        await ClockCycles(dut.pcie_clk, RESET_CYCLES)
        assert int(dut.memory_sys_rst.value) == 1, "PERST# holds the memory controller in reset"
        dut.perst_n.value = 1
        await RisingEdge(dut.pcie_clk)
        assert int(dut.memory_sys_rst.value) == 0, "the memory controller's sys_rst follows PERST#"
        await ClockCycles(dut.memory_clk, RESET_CYCLES)
        dut.memory_rst.value = 0
        await ClockCycles(dut.pcie_clk, RESET_CYCLES)
        dut.pcie_rst_n.value = 1
        await ClockCycles(dut.memory_clk, CALIBRATION_CYCLES)
        dut.memory_calibrated.value = 1
        await ClockCycles(dut.memory_clk, 10)
        assert int(dut.memory_aresetn.value) == 1, "the memory's AXI reset is released"
        await RisingEdge(dut.pcie_clk)

    @staticmethod
    async def _clock(signal, period, offset):
        if offset:
            await Timer(offset, "ps")
        Clock(signal, period, unit="ps").start(start_high=False)

    def cycles(self, count):
        """``count`` PCIe-clock cycles as a (time, unit) pair for cocotb's timeouts."""
        return int(count) * self.period_ps, "ps"


def _groups(per_channel, count):
    """Each channel's sequences in ``count`` consecutive groups: a list of per-channel frames."""
    groups = [[] for _ in range(count)]
    for sequences in per_channel:
        sequences = sequences or []
        bounds = [len(sequences) * index // count for index in range(count + 1)]
        for index in range(count):
            groups[index].append(sequences[bounds[index]:bounds[index + 1]] or None)
    return groups


async def _cut_short(bench, frames, rng, limit):
    """Start a run of ``frames``, reset the card somewhere inside it, and wait for the reset."""
    driver = bench.driver
    steps_before = await bench.transport.read_register(Register.STEPS_IN)
    run = cocotb.start_soon(driver.run(frames))
    while await bench.transport.read_register(Register.STEPS_IN) == steps_before:
        if run.done():
            break
        await ClockCycles(bench.dut.pcie_clk, 10)
    await ClockCycles(bench.dut.pcie_clk, rng.randrange(1, 2000))
    if not run.done():
        run.cancel()
    await with_timeout(driver.reset(), *limit)


@cocotb.test()
async def run_through_driver(dut):
    """Load the image through the driver and run every channel's frames; save the results.

    With ``resets`` in the job's settings, the frames run in ``resets + 1`` parts, and before
    each part after the first a run of that part is cut short by a reset at a random point
    (the driver's :meth:`~ese.sw.runtime.driver.Accelerator.reset`); the outputs are those of
    the parts' full runs, which must show nothing of the runs cut short."""
    job, settings = open_job()
    bench = CardBench(dut, settings["clocks_mhz"], settings["stall_probability"],
                      settings["seed"])
    await bench.start()
    limit = bench.cycles(settings["timeout_cycles"])
    for _ in range(settings["loads"]):
        await with_timeout(bench.driver.load(settings["image"]), *limit)
    rng = random.Random(settings["seed"])
    parts = _groups(job_frames(job, settings), settings.get("resets", 0) + 1)
    outputs = [[] for _ in range(settings["channels"])]
    for index, part in enumerate(parts):
        if all(entry is None for entry in part):
            continue
        if index:
            await _cut_short(bench, part, rng, limit)
        results = await with_timeout(bench.driver.run(part), *limit)
        for channel, sequences in enumerate(results):
            if part[channel] is not None:       # (an idle channel's outputs are empty)
                outputs[channel] += sequences
    await save(bench, outputs)
