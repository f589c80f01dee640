"""What every cocotb bench of the project shares: the clock, the reset, stall patterns.

A bench runs inside the simulator process. :class:`ClockedBench` starts the design's clock
at the hardware's ``Config.clock_mhz`` (so simulated time reads as time on the card), counts
cycles and resets the design; the core's bench (:mod:`.testbench`) and the system's
(:mod:`.system_testbench`) build their bus models on it.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["ClockedBench", "stall_pattern", "clock_period_ps"]

#: Cycles the reset is held.
RESET_CYCLES = 4


def clock_period_ps(clock_mhz):
    """The clock period in whole picoseconds."""
    return round(1e6 / clock_mhz)


def stall_pattern(probability, rng):
    """A pause generator: True (stall this cycle) with the given probability."""
    while True:
        yield rng.random() < probability


class ClockedBench:
    """A design's clock (``dut.clk``) and reset (``dut.rst``, active high)."""

    def __init__(self, dut, clock_mhz):
        self.dut = dut
        self.period_ps = clock_period_ps(clock_mhz)
        cocotb.start_soon(Clock(dut.clk, self.period_ps, unit="ps").start())

    def cycle(self):
        """Clock cycles since the simulation began."""
        return int(get_sim_time(unit="ps")) // self.period_ps

    def cycles(self, count):
        """``count`` cycles as a (time, unit) pair for cocotb's timeouts."""
        return int(count) * self.period_ps, "ps"

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, RESET_CYCLES)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
