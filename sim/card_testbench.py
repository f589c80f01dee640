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

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer, with_timeout

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


@cocotb.test()
async def run_through_driver(dut):
    """Load the image through the driver and run every channel's frames; save the results."""
    job, settings = open_job()
    bench = CardBench(dut, settings["clocks_mhz"], settings["stall_probability"],
                      settings["seed"])
    await bench.start()
    limit = bench.cycles(settings["timeout_cycles"])
    for _ in range(settings["loads"]):
        await with_timeout(bench.driver.load(settings["image"]), *limit)
    outputs = await with_timeout(bench.driver.run(job_frames(job, settings)), *limit)
    await save(bench, outputs)
