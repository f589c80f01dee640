"""The control and status registers, on an AXI4-Lite port.

The register map is :mod:`ese.sw.contract.registers`; this block decodes AXI4-Lite reads and writes
against it. Writable registers are plain 32-bit registers; ``CONTROL`` writes become one-cycle
command strobes; everything else reads values the system presents. 64-bit counters are read
low word first: reading the low word latches the high word, so the pair is consistent.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.registers import CONFIG_BASE, Register, config_register_values
from .axi import AxiLiteSignature

__all__ = ["ControlRegisters", "ADDRESS_BITS"]

ADDRESS_BITS = 12


class ControlRegisters(wiring.Component):
    """AXI4-Lite register file of the accelerator system.

    Members
    -------
    bus : In(AxiLiteSignature(12))
    command : Out(32)
        The value written to CONTROL, for one cycle (zero otherwise).
    image_address, image_words : Out(32)
        The writable registers.
    magic, format_version, build_id, status, errors, steps_in, steps_out, step_cycles,
    image_stored : In(32)
    cycles, busy_cycles : In(64)
        Values to read.
    """

    def __init__(self, config):
        self.config = config
        members = {
            "bus": In(AxiLiteSignature(ADDRESS_BITS)),
            "command": Out(32),
            "image_address": Out(32),
            "image_words": Out(32),
            "cycles": In(64),
            "busy_cycles": In(64),
        }
        for name in ("magic", "format_version", "build_id", "status", "errors", "steps_in",
                     "steps_out", "step_cycles", "image_stored"):
            members[name] = In(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        image_address = Signal(32)
        image_words = Signal(32)
        m.d.comb += [self.image_address.eq(image_address), self.image_words.eq(image_words)]

        # Writes: take the address and the data (in either order), then answer OKAY.
        write_address = Signal(ADDRESS_BITS)
        write_data = Signal(32)
        have_address = Signal()
        have_data = Signal()
        responding = Signal()
        m.d.comb += [bus.awready.eq(~have_address & ~responding),
                     bus.wready.eq(~have_data & ~responding),
                     bus.bvalid.eq(responding), bus.bresp.eq(0)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [write_address.eq(bus.awaddr), have_address.eq(1)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [write_data.eq(bus.wdata), have_data.eq(1)]
        # A command is a strobe, registered: it acts in the cycle the write is answered.
        command = Signal(32)
        m.d.sync += command.eq(0)
        m.d.comb += self.command.eq(command)
        with m.If(have_address & have_data & ~responding):
            m.d.sync += [responding.eq(1), have_address.eq(0), have_data.eq(0)]
            with m.Switch(write_address[2:]):
                with m.Case(Register.CONTROL >> 2):
                    m.d.sync += command.eq(write_data)
                with m.Case(Register.IMAGE_ADDRESS >> 2):
                    m.d.sync += image_address.eq(write_data)
                with m.Case(Register.IMAGE_WORDS >> 2):
                    m.d.sync += image_words.eq(write_data)
        with m.If(responding & bus.bready):
            m.d.sync += responding.eq(0)

        # Reads: one register per address; unknown addresses read zero. The address is
        # registered (looking), then the register it names (reading).
        read_data = Signal(32)
        read_address = Signal(ADDRESS_BITS)
        looking = Signal()
        reading = Signal()
        cycles_high = Signal(32)
        busy_high = Signal(32)
        m.d.comb += [bus.arready.eq(~looking & ~reading), bus.rvalid.eq(reading),
                     bus.rdata.eq(read_data), bus.rresp.eq(0)]
        values = {
            Register.MAGIC: self.magic, Register.FORMAT_VERSION: self.format_version,
            Register.BUILD_ID: self.build_id, Register.STATUS: self.status,
            Register.ERRORS: self.errors, Register.IMAGE_ADDRESS: image_address,
            Register.IMAGE_WORDS: image_words, Register.STEPS_IN: self.steps_in,
            Register.STEPS_OUT: self.steps_out, Register.CYCLES_LOW: self.cycles[:32],
            Register.CYCLES_HIGH: cycles_high, Register.BUSY_LOW: self.busy_cycles[:32],
            Register.BUSY_HIGH: busy_high, Register.STEP_CYCLES: self.step_cycles,
            Register.IMAGE_STORED: self.image_stored,
        }
        parameters = config_register_values(self.config)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [read_address.eq(bus.araddr), looking.eq(1)]
        with m.If(looking):
            m.d.sync += [looking.eq(0), reading.eq(1)]
            with m.Switch(read_address[2:]):
                for register, value in values.items():
                    with m.Case(register >> 2):
                        m.d.sync += read_data.eq(value)
                for index, value in enumerate(parameters):
                    with m.Case((CONFIG_BASE >> 2) + index):
                        m.d.sync += read_data.eq(value & 0xFFFFFFFF)
                with m.Default():
                    m.d.sync += read_data.eq(0)
            with m.If(read_address[2:] == Register.CYCLES_LOW >> 2):
                m.d.sync += cycles_high.eq(self.cycles[32:])
            with m.If(read_address[2:] == Register.BUSY_LOW >> 2):
                m.d.sync += busy_high.eq(self.busy_cycles[32:])
        with m.If(reading & bus.rready):
            m.d.sync += reading.eq(0)
        return m
