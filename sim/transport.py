"""The simulated machine as a driver transport: cocotbext-axi bus models around the RTL.

:class:`SimulatedTransport` gives :class:`ese.sw.runtime.driver.Accelerator` the same five
coroutines the board's XDMA transport does, implemented with an ``AxiLiteMaster`` on the registers,
AXI-Stream sources for the weight image and the frame steps and a sink for the results, so
the driver code that runs on the card runs unchanged against Verilator. Every bus can be
given random idle cycles and back-pressure.
"""

import random

from cocotb.triggers import ClockCycles, SimTimeoutError, Timer, with_timeout
from cocotbext.axi import (
    AxiBus,
    AxiLiteBus,
    AxiLiteMaster,
    AxiRam,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from .harness import stall_pattern

__all__ = ["SimulatedTransport", "SystemModels", "CardModels"]


def _quiet_and_stalled(models, probability, seed):
    """Quiet the bus models' logs and, with ``probability`` > 0, pause every channel of every
    bus (all 13: five per AXI interface, three streams) at random."""
    for model in (models.registers.write_if, models.registers.read_if, models.memory.write_if,
                  models.memory.read_if, models.weights, models.frames, models.results):
        model.log.setLevel("WARNING")
    if probability > 0:
        rng = random.Random(seed)
        channels = [models.registers.write_if.aw_channel, models.registers.write_if.w_channel,
                    models.registers.write_if.b_channel, models.registers.read_if.ar_channel,
                    models.registers.read_if.r_channel, models.memory.write_if.aw_channel,
                    models.memory.write_if.w_channel, models.memory.write_if.b_channel,
                    models.memory.read_if.ar_channel, models.memory.read_if.r_channel,
                    models.weights, models.frames, models.results]
        for channel in channels:
            channel.set_pause_generator(stall_pattern(probability, rng))


class SystemModels:
    """The bus models around an ``ese_system`` top level.

    Parameters
    ----------
    dut
        The cocotb handle of the system top level.
    period_ps : int
        The clock period, for the transport's timeouts.
    memory_bytes : int
        Size of the DDR model.
    stall_probability : float
        Probability, per cycle and per channel of every bus, of an idle or back-pressure cycle.
    """

    def __init__(self, dut, period_ps, memory_bytes=1 << 24, stall_probability=0.0, seed=0):
        clock, reset = dut.clk, dut.rst
        dut.stream_error.value = 0        # the bare system has no shell to report packets
        self.clock = clock
        self.period_ps = period_ps
        self.memory_bytes = memory_bytes
        self.registers = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), clock, reset)
        self.memory = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), clock, reset,
                             size=memory_bytes)
        self.weights = AxiStreamSource(AxiStreamBus.from_prefix(dut, "weights_"), clock, reset)
        self.frames = AxiStreamSource(AxiStreamBus.from_prefix(dut, "host_frames_"), clock,
                                      reset)
        self.results = AxiStreamSink(AxiStreamBus.from_prefix(dut, "host_results_"), clock,
                                     reset)
        _quiet_and_stalled(self, stall_probability, seed)


class SimulatedTransport:
    """Driver transport over :class:`SystemModels`."""

    def __init__(self, models):
        self.models = models
        self.writes = []          # (kind, offset or stream) of everything sent, for tests

    async def read_register(self, offset):
        return await self.models.registers.read_dword(int(offset))

    async def write_register(self, offset, value):
        self.writes.append(("register", int(offset)))
        await self.models.registers.write_dword(int(offset), int(value))

    def _source(self, stream):
        return {"weights": self.models.weights, "frames": self.models.frames}[stream]

    async def send(self, stream, data, timeout=None):
        # The source queues the packet; the bus takes it as the card accepts it.
        self.writes.append(("stream", stream))
        await self._source(stream).send(AxiStreamFrame(bytes(data)))

    async def receive(self, stream, size, timeout=None):
        """The next whole packet (up to tlast)."""
        waiting = self.models.results.recv()
        try:
            frame = await (waiting if timeout is None else
                           with_timeout(waiting, self._picoseconds(timeout), "ps"))
        except SimTimeoutError:
            raise TimeoutError from None
        return bytes(frame.tdata)

    async def abandon(self, stream):
        """Drop the packets queued and not yet begun (one under way goes on)."""
        self._source(stream).clear()

    async def drain(self, stream, timeout=None):
        source = self._source(stream)
        cycles = None if timeout is None else self._picoseconds(timeout) // self.models.period_ps
        clock = self.models.clock
        while not source.idle():
            if cycles is not None:
                if cycles <= 0:
                    raise TimeoutError
                cycles -= 1
            await ClockCycles(clock, 1)

    async def sleep(self, seconds):
        await Timer(self._picoseconds(seconds), "ps")

    def _picoseconds(self, seconds):
        """Simulated picoseconds, whole clock periods, at least one."""
        period = self.models.period_ps
        return max(period, round(seconds * 1e12) // period * period)


class CardModels:
    """The bus models around a board build tree's shell (``ese_card_bd``), each in its clock
    domain, as the card's vendor IP drives it: the XDMA's AXI4-Lite master and its
    ``host_stream_bits``-wide H2C and C2H streams (bytes in, ``tkeep`` on a packet's last beat,
    as PG195 describes them) in the PCIe clock domain, and the memory controller's AXI4 slave at
    its width and ID width in the memory clock domain.

    Parameters
    ----------
    dut
        The cocotb handle of the wrapper.
    period_ps : int
        The PCIe clock's period (the transport's timeouts count it).
    """

    def __init__(self, dut, period_ps, memory_bytes=1 << 24, stall_probability=0.0, seed=0):
        self.clock = dut.pcie_clk
        self.period_ps = period_ps
        self.memory_bytes = memory_bytes
        host = dict(clock=dut.pcie_clk, reset=dut.pcie_rst_n, reset_active_level=False)
        self.registers = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), **host)
        self.weights = AxiStreamSource(AxiStreamBus.from_prefix(dut, "weights"), **host)
        self.frames = AxiStreamSource(AxiStreamBus.from_prefix(dut, "frames"), **host)
        self.results = AxiStreamSink(AxiStreamBus.from_prefix(dut, "results"), **host)
        self.memory = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.memory_clk, dut.memory_rst,
                             size=memory_bytes)
        _quiet_and_stalled(self, stall_probability, seed)
