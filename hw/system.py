"""The accelerator system: what the card's shell (:mod:`ese.hw.shell`) wraps and cocotb drives.

Around the accelerator core (:mod:`ese.hw.accelerator`) it adds what a host needs:

* control and status registers on an AXI4-Lite port (:mod:`ese.sw.contract.registers`);
* the weight image in off-chip memory: the host uploads its load stream as words, the
  :class:`~ese.hw.dma.ImageWriter` stores it in the DDR through the AXI4 master, and the
  :class:`~ese.hw.dma.ImageReader` reads it back into the core's memories on command;
* frame steps and results as byte streams, the way a PCIe DMA engine moves them;
* in a streamed configuration, the :class:`~ese.hw.streamer.WeightStreamer`, which reads the
  PEs' sparse entries from the stored image every frame step (it shares the memory's read
  channels with the image reader: the streamer stops and drains before a load begins).

LOAD_IMAGE resets the accelerator (and the streamer) before it reads the image. A reset in
the middle of a host step drops the rest of that step (its beats up to tlast), and a result
cut short by a reset is ended by one zero word with tlast, so both streams stay aligned on
steps and nothing of the aborted work reaches the next run (Status.RESULT_OPEN says a cut
result is still to be read; the driver discards it).

Host stream formats (every word ``channels`` 16-bit values, channel 0 in the low bits, so a
word is ``2 * channels`` bytes)::

    host_frames   per step: a header word (bit c: channel c begins a new sequence), then one
                  word per input; tlast on the step's last word
    host_results  per step: one word per output; tlast on the step's last word
    weights       the image's load stream, 32-bit words

Ports carry AXI names: ``s_axil__*``, ``m_axi__*``, ``host_frames__tdata``, ...
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import FORMAT_VERSION
from ..sw.contract.registers import MAGIC, Control, Status, build_id
from .accelerator import LSTMAccelerator
from .axi import Axi4Signature, AxiLiteSignature, AxiStreamSignature, forward
from .dma import ImageReader, ImageWriter
from .layouts import ChannelValues
from .registers import ADDRESS_BITS, ControlRegisters
from .streamer import WeightStreamer

__all__ = ["AcceleratorSystem"]

#: Cycles a RESET command holds the core in reset.
RESET_CYCLES = 4


class AcceleratorSystem(wiring.Component):
    """The accelerator with its host and memory interfaces.

    Members
    -------
    s_axil : In(AxiLiteSignature(12))
        Control and status registers.
    m_axi : Out(Axi4Signature(memory_address_bits, memory_data_bits))
        The off-chip memory holding the weight image.
    weights : In(AxiStreamSignature(32))
        The weight image's load stream, to be stored in memory (after STORE_IMAGE).
    host_frames : In(AxiStreamSignature(16 * channels))
        Frame steps, each led by a header word of sequence starts.
    host_results : Out(AxiStreamSignature(16 * channels))
        The last layer's outputs of each step.
    stream_error : In(1)
        Strobe from whatever delivers the host streams (the card's shell): a packet was not a
        whole number of words, and its tail was dropped (error flag ``stream_error``).
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        width = ChannelValues(config).size
        super().__init__({
            "s_axil": In(AxiLiteSignature(ADDRESS_BITS)),
            "m_axi": Out(Axi4Signature(config.memory_address_bits, config.memory_data_bits)),
            "weights": In(AxiStreamSignature(32, last=False)),
            "host_frames": In(AxiStreamSignature(width)),
            "host_results": Out(AxiStreamSignature(width)),
            "stream_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        channels = config.channels

        m.submodules.registers = registers = ControlRegisters(config)
        m.submodules.writer = writer = ImageWriter(config)
        m.submodules.reader = reader = ImageReader(config)
        streamer = None
        if config.streamed:
            m.submodules.streamer = streamer = WeightStreamer(config)
        core_reset = Signal()
        core = LSTMAccelerator(config)
        m.submodules.core = ResetInserter(core_reset)(core)
        wiring.connect(m, wiring.flipped(self.s_axil), registers.bus)

        u = SimpleNamespace(channels=channels, core=core, core_reset=core_reset, reader=reader,
                            registers=registers, streamer=streamer, writer=writer)
        self._memory_bus(m, u)
        self._host_frames(m, u)
        self._host_results(m, u)
        self._commands(m, u)
        self._status(m, u)
        return m

    def _memory_bus(self, m, u):
        """The DDR: writes from the image writer; reads by the image reader or, when it is idle,
        the weight streamer."""
        for name in ("awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb",
                     "wlast", "wvalid", "bready"):
            m.d.comb += getattr(self.m_axi, name).eq(getattr(u.writer.bus, name))
        for name in ("awready", "wready", "bresp", "bvalid"):
            m.d.comb += getattr(u.writer.bus, name).eq(getattr(self.m_axi, name))
        # The image reader and the streamer never run at once: the reader owns the read
        # channels while it is busy.
        readers = [(u.reader.bus, u.reader.busy)]
        if u.streamer is not None:
            readers.append((u.streamer.bus, ~u.reader.busy))
        for bus, owns in readers:
            with m.If(owns):
                for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
                    m.d.comb += getattr(self.m_axi, name).eq(getattr(bus, name))
                for name in ("arready", "rdata", "rresp", "rlast", "rvalid"):
                    m.d.comb += getattr(bus, name).eq(getattr(self.m_axi, name))
        forward(m, self.weights, u.writer.words_in)
        forward(m, u.reader.words_out, u.core.weights)

    def _host_frames(self, m, u):
        """Frame steps from the host: the header word becomes tuser on the step's first input
        word, and the rest of a step a reset cut short is dropped."""
        expecting_header = Signal(init=1)
        starts = Signal(u.channels)
        first_word = Signal()
        host = self.host_frames
        step_open = Signal()        # a beat of a host step was taken, its last one not yet
        discarding = Signal()       # dropping the rest of a step a reset cut short
        with m.If(discarding):
            m.d.comb += host.tready.eq(1)
            with m.If(host.tvalid & host.tlast):
                m.d.sync += discarding.eq(0)
        with m.Elif(u.core_reset):
            pass                    # nothing is taken while the core is held in reset
        with m.Elif(expecting_header):
            m.d.comb += host.tready.eq(1)
            with m.If(host.tvalid):
                m.d.sync += [starts.eq(host.tdata[:u.channels]), expecting_header.eq(0),
                             first_word.eq(1)]
        with m.Else():
            m.d.comb += [u.core.frames_in.tdata.eq(host.tdata),
                         u.core.frames_in.tuser.eq(starts & first_word.replicate(u.channels)),
                         u.core.frames_in.tlast.eq(host.tlast),
                         u.core.frames_in.tvalid.eq(host.tvalid),
                         host.tready.eq(u.core.frames_in.tready)]
            with m.If(host.tvalid & u.core.frames_in.tready):
                m.d.sync += first_word.eq(0)
                with m.If(host.tlast):
                    m.d.sync += expecting_header.eq(1)
        step_open_next = Signal()
        m.d.comb += step_open_next.eq(Mux(host.tvalid & host.tready, ~host.tlast, step_open))
        m.d.sync += step_open.eq(step_open_next)
        u.discarding, u.expecting_header = discarding, expecting_header
        u.step_open_next = step_open_next

    def _host_results(self, m, u):
        """Results to the host, passed through; a result a reset cuts short is ended."""
        results = self.host_results
        result_open = Signal()      # a result's first word was sent, its last one not yet
        closing = Signal()          # ending a cut result with a zero word and tlast
        with m.If(closing):
            m.d.comb += [results.tvalid.eq(1), results.tlast.eq(1)]
            with m.If(results.tready):
                m.d.sync += closing.eq(0)
        with m.Elif(~u.core_reset):
            m.d.comb += [results.tdata.eq(u.core.frames_out.tdata),
                         results.tlast.eq(u.core.frames_out.tlast),
                         results.tvalid.eq(u.core.frames_out.tvalid),
                         u.core.frames_out.tready.eq(results.tready)]
        result_open_next = Signal()
        m.d.comb += result_open_next.eq(Mux(results.tvalid & results.tready, ~results.tlast,
                                            result_open))
        m.d.sync += result_open.eq(result_open_next)
        u.closing, u.result_open, u.result_open_next = closing, result_open, result_open_next
        u.results = results

    def _commands(self, m, u):
        """The commands of the control register: reset, store and load the image."""
        command = u.registers.command
        aligned = u.registers.image_address[:12] == 0
        command_error = Signal()
        reset_count = Signal(range(RESET_CYCLES + 1))
        # A reset lasts RESET_CYCLES, and until the streamer has drained its reads.
        draining = Signal()
        streaming = Signal() if u.streamer is None else u.streamer.busy
        # The core's reset, registered (it reaches every flop of the core): this cycle's
        # value of (reset_count != 0) | draining, from last cycle's state. draining is set
        # with reset_count and cleared only once it is zero.
        m.d.sync += u.core_reset.eq((command & Control.RESET).any()
                                    | (draining & ((reset_count != 0) | streaming)))
        with m.If(reset_count != 0):
            m.d.sync += reset_count.eq(reset_count - 1)
        with m.Elif(~streaming):
            m.d.sync += draining.eq(0)

        def reset_core():
            m.d.sync += [reset_count.eq(RESET_CYCLES), draining.eq(1), u.expecting_header.eq(1),
                         u.discarding.eq(u.step_open_next), u.closing.eq(u.result_open_next)]

        with m.If(command & Control.RESET):
            reset_core()
        # The core sends its state once no step waits or runs (ese.hw.dump).
        m.d.comb += u.core.dump_state.eq((command & Control.DUMP_STATE).any())
        with m.If(command & Control.STORE_IMAGE):
            with m.If(aligned & ~u.writer.busy & ~u.reader.busy):
                m.d.comb += [u.writer.start.eq(1), u.writer.address.eq(u.registers.image_address),
                             u.writer.words.eq(u.registers.image_words)]
            with m.Else():
                m.d.comb += command_error.eq(1)
        load_pending = Signal()             # LOAD_IMAGE waits for the reset it began
        with m.If(command & Control.LOAD_IMAGE):
            with m.If(aligned & ~u.writer.busy & ~u.reader.busy & ~load_pending & ~u.core.busy):
                m.d.sync += load_pending.eq(1)
                reset_core()
            with m.Else():
                m.d.comb += command_error.eq(1)
        with m.If(load_pending & ~u.core_reset & (reset_count == 0)):
            m.d.comb += [u.reader.start.eq(1), u.reader.address.eq(u.registers.image_address),
                         u.reader.words.eq(u.registers.image_words)]
            m.d.sync += load_pending.eq(0)
        u.command, u.command_error, u.load_pending = command, command_error, load_pending

    def _status(self, m, u):
        """Status, error flags and counters for the registers."""
        config = self.config
        loaded = Signal()
        loading = Signal()
        with m.If(u.reader.start):
            m.d.sync += [loading.eq(1), loaded.eq(0)]
        with m.Elif(loading & ~u.reader.busy):
            m.d.sync += [loading.eq(0), loaded.eq(1)]
        with m.If(u.writer.start | u.load_pending):
            m.d.sync += loaded.eq(0)
        if u.streamer is not None:
            stream_base = Signal.like(u.registers.image_address)
            with m.If(u.reader.start):
                m.d.sync += stream_base.eq(u.registers.image_address)
            m.d.comb += [u.streamer.run.eq(loaded & ~u.core_reset & ~u.load_pending),
                         u.streamer.base.eq(stream_base)]
            wiring.connect(m, u.core.stream_table, u.streamer.table_write)
            wiring.connect(m, u.streamer.beat, u.core.entry_beats)
            m.d.comb += u.streamer.freed.eq(u.core.freed)

        errors = Signal(32)
        previous_flags = Signal(2)
        flags = Cat(u.core.load_error, u.core.frame_error)
        m.d.sync += previous_flags.eq(flags)
        memory_error = u.writer.error | u.reader.error
        if u.streamer is not None:
            memory_error |= u.streamer.error
        raised = (flags & ~previous_flags) | (memory_error << 2) \
            | (u.command_error << 3) | (self.stream_error << 4)
        with m.If(u.command & Control.CLEAR_ERRORS):
            m.d.sync += errors.eq(raised)
        with m.Else():
            m.d.sync += errors.eq(errors | raised)

        cycles = Signal(64)
        busy_cycles = Signal(64)
        steps_in = Signal(32)
        steps_out = Signal(32)
        step_cycles = Signal(32)
        last_step = Signal(64)
        m.d.sync += cycles.eq(cycles + 1)
        # The core's busy reaches the counter and the status from a register: every busy
        # cycle is counted, a cycle later.
        core_busy = Signal()
        m.d.sync += core_busy.eq(u.core.busy)
        with m.If(core_busy):
            m.d.sync += busy_cycles.eq(busy_cycles + 1)
        with m.If(u.core.frames_in.tvalid & u.core.frames_in.tready & u.core.frames_in.tlast):
            m.d.sync += steps_in.eq(steps_in + 1)
        with m.If(u.results.tvalid & u.results.tready & u.results.tlast):
            m.d.sync += [steps_out.eq(steps_out + 1), last_step.eq(cycles),
                         step_cycles.eq(cycles - last_step)]

        # Bits in the order of ese.sw.contract.registers.Status.
        status = Signal(32)
        m.d.comb += status.eq(Cat(core_busy | u.core_reset, u.writer.busy,
                                  u.load_pending | loading | u.reader.busy, loaded, errors != 0,
                                  u.result_open | u.closing))
        assert [Status.BUSY, Status.STORING, Status.LOADING, Status.LOADED, Status.ERROR,
                Status.RESULT_OPEN] == [1 << bit for bit in range(6)]
        m.d.comb += [
            u.registers.magic.eq(MAGIC),
            u.registers.format_version.eq(FORMAT_VERSION),
            u.registers.build_id.eq(build_id(config)),
            u.registers.status.eq(status),
            u.registers.errors.eq(errors),
            u.registers.steps_in.eq(steps_in),
            u.registers.steps_out.eq(steps_out),
            u.registers.step_cycles.eq(step_cycles),
            u.registers.image_stored.eq(u.writer.written),
            u.registers.cycles.eq(cycles),
            u.registers.busy_cycles.eq(busy_cycles),
        ]
