"""The card's shell: the accelerator system between a PCIe DMA engine and a memory controller.

On the card, three clocks meet (each from the vendor IP that owns it):

* ``pcie``: the DMA engine's user clock (XDMA ``axi_aclk``, 250 MHz at Gen3 x8, PG195), with
  its active-low reset ``axi_aresetn``. The registers (AXI4-Lite) and the host streams
  (AXI4-Stream, ``host_stream_bits`` wide, with ``tkeep``) are in it.
* ``memory``: the memory controller's user-interface clock (``c0_ddr3_ui_clk``, PG150) and its
  active-high ``c0_ddr3_ui_clk_sync_rst``. The controller's AXI4 slave is in it.
* ``sync``: the accelerator's own clock (``clk``), at ``Config.clock_mhz``.

:class:`CardShell` puts the :class:`~ese.hw.system.AcceleratorSystem` in the ``sync`` domain and
owns everything between it and the vendor IP:

* one reset for all three domains, asserted while any side is in reset (the PCIe link down,
  the memory controller resetting or not yet calibrated) and released in each domain through
  a reset synchroniser (Amaranth's :class:`~amaranth.lib.cdc.ResetSynchronizer`);
* clock-domain crossings, each an :class:`~amaranth.lib.fifo.AsyncFIFO` per AXI channel: the
  registers (``pcie`` -> ``sync``), the host streams, and the memory bus (``sync`` ->
  ``memory``);
* width conversion between the DMA engine's beats and the accelerator's words
  (:mod:`.gearbox`): a packet's last beat may be partial, and ``tkeep`` says which bytes count,
  in both directions;
* the memory port at the controller's width and ID width, and the controller's resets: its
  asynchronous ``sys_rst`` (active high) from the PCIe reset PERST# (active low), and its AXI
  reset ``c0_ddr3_aresetn`` (active low, in the ``memory`` domain).
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.fifo import AsyncFIFO
from amaranth.lib.wiring import In, Out

from .axi import Axi4Signature, AxiLiteSignature, AxiStreamSignature
from .gearbox import BeatsToWords, WordsToBeats
from .layouts import ChannelValues
from .registers import ADDRESS_BITS
from .system import AcceleratorSystem

__all__ = ["CardShell", "SynchronizerAttributes", "AXI_LITE_CHANNELS", "AXI4_CHANNELS"]

#: AXI4-Lite channels: (name, payload signals, whether it flows from master to slave).
AXI_LITE_CHANNELS = (
    ("aw", ("awaddr",), True),
    ("w", ("wdata", "wstrb"), True),
    ("b", ("bresp",), False),
    ("ar", ("araddr",), True),
    ("r", ("rdata", "rresp"), False),
)
#: AXI4 channels, the same way (IDs are constant on the accelerator's side).
AXI4_CHANNELS = (
    ("aw", ("awaddr", "awlen", "awsize", "awburst"), True),
    ("w", ("wdata", "wstrb", "wlast"), True),
    ("b", ("bresp",), False),
    ("ar", ("araddr", "arlen", "arsize", "arburst"), True),
    ("r", ("rdata", "rresp", "rlast"), False),
)
#: Entries of every crossing FIFO (a power of two; the memory's read data needs the most, to
#: keep the streamer's bursts flowing across the crossing's latency).
CROSSING_DEPTH = 16
#: Stages of each reset synchroniser.
RESET_STAGES = 3


class CardShell(wiring.Component):
    """The accelerator system with the card's clocks, resets and vendor-IP interfaces.

    Parameters
    ----------
    config : Config
        The hardware, sized, with the card's memory bus (``memory_data_bits``,
        ``memory_address_bits``).
    host_stream_bits : int
        Width of the DMA engine's AXI4-Stream ports.
    memory_id_bits : int
        Width of the memory controller's AXI4 IDs.

    Members
    -------
    pcie_clk, pcie_rst_n : In(1)
        The DMA engine's user clock and its active-low reset (XDMA ``axi_aclk``,
        ``axi_aresetn``).
    clk : In(1)
        The accelerator's clock.
    memory_clk, memory_rst : In(1)
        The memory controller's user clock and its active-high reset.
    memory_calibrated : In(1)
        The memory controller has calibrated (``c0_init_calib_complete``).
    perst_n : In(1)
        The PCIe reset PERST# from the edge connector (active low).
    memory_sys_rst : Out(1)
        The memory controller's asynchronous reset (``sys_rst``, active high).
    memory_aresetn : Out(1)
        The memory controller's AXI reset (``c0_ddr3_aresetn``, active low, ``memory`` domain).
    s_axil : In(AxiLiteSignature(12)), ``pcie`` domain
        Control and status registers (the DMA engine's AXI4-Lite master).
    frames, weights : In(AxiStreamSignature(host_stream_bits, keep=True)), ``pcie`` domain
        Frame steps and the weight image (the DMA engine's H2C streams).
    results : Out(AxiStreamSignature(host_stream_bits, keep=True)), ``pcie`` domain
        Results (the DMA engine's C2H stream).
    m_axi : Out(Axi4Signature(memory_address_bits, memory_data_bits, id_width)), ``memory``
        The memory controller's AXI4 slave.
    """

    def __init__(self, config, *, host_stream_bits=256, memory_id_bits=4):
        config.require_sized()
        if host_stream_bits % 8:
            raise ValueError("the host streams must be whole bytes wide")
        self.config = config
        self.host_stream_bits = host_stream_bits
        self.memory_id_bits = memory_id_bits
        stream = AxiStreamSignature(host_stream_bits, keep=True)
        super().__init__({
            "pcie_clk": In(1), "pcie_rst_n": In(1),
            "clk": In(1),
            "memory_clk": In(1), "memory_rst": In(1), "memory_calibrated": In(1),
            "perst_n": In(1),
            "memory_sys_rst": Out(1), "memory_aresetn": Out(1),
            "s_axil": In(AxiLiteSignature(ADDRESS_BITS)),
            "frames": In(stream),
            "weights": In(stream),
            "results": Out(stream),
            "m_axi": Out(Axi4Signature(config.memory_address_bits, config.memory_data_bits,
                                       id_width=memory_id_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        self._clocks_and_resets(m)
        m.submodules.system = system = AcceleratorSystem(self.config)
        self._registers(m, system)
        self._host_streams(m, system)
        self._memory(m, system)
        return m

    def _clocks_and_resets(self, m):
        """Three clock domains, reset together and released each through its synchroniser."""
        for name, clock in (("pcie", self.pcie_clk), ("sync", self.clk),
                            ("memory", self.memory_clk)):
            m.domains += ClockDomain(name, local=True)
            m.d.comb += ClockSignal(name).eq(clock)
        any_reset = Signal()
        m.d.comb += any_reset.eq(~self.pcie_rst_n | self.memory_rst | ~self.memory_calibrated)
        for name in ("pcie", "sync", "memory"):
            m.submodules[f"{name}_reset"] = ResetSynchronizer(any_reset, domain=name,
                                                              stages=RESET_STAGES)
        aresetn = Signal(init=0)
        m.d.memory += aresetn.eq(1)       # low while the memory domain is in reset
        m.d.comb += [self.memory_aresetn.eq(aresetn), self.memory_sys_rst.eq(~self.perst_n)]

    def _cross(self, m, name, width, w_domain, r_domain):
        fifo = AsyncFIFO(width=width, depth=CROSSING_DEPTH, w_domain=w_domain,
                         r_domain=r_domain)
        m.submodules[name] = fifo
        return fifo

    def _bridge(self, m, name, channels, master, slave, master_domain, slave_domain):
        """Cross an AXI interface, channel by channel: ``master`` (in ``master_domain``)
        drives ``slave`` (in ``slave_domain``)."""
        for channel, fields, forward in channels:
            source, sink = (master, slave) if forward else (slave, master)
            domains = (master_domain, slave_domain) if forward else (slave_domain,
                                                                      master_domain)
            payload = [getattr(source, field) for field in fields]
            width = sum(len(signal) for signal in payload)
            fifo = self._cross(m, f"{name}_{channel}", width, *domains)
            m.d.comb += [
                fifo.w_data.eq(Cat(*payload)),
                fifo.w_en.eq(getattr(source, f"{channel}valid")),
                getattr(source, f"{channel}ready").eq(fifo.w_rdy),
                Cat(*(getattr(sink, field) for field in fields)).eq(fifo.r_data),
                getattr(sink, f"{channel}valid").eq(fifo.r_rdy),
                fifo.r_en.eq(getattr(sink, f"{channel}ready")),
            ]

    def _registers(self, m, system):
        self._bridge(m, "registers", AXI_LITE_CHANNELS, self.s_axil, system.s_axil,
                     "pcie", "sync")

    def _memory(self, m, system):
        self._bridge(m, "memory", AXI4_CHANNELS, system.m_axi, self.m_axi, "sync", "memory")
        m.d.comb += [self.m_axi.awid.eq(0), self.m_axi.arid.eq(0)]

    def _host_streams(self, m, system):
        """H2C beats -> (crossing) -> words, and words -> beats -> (crossing) -> C2H."""
        beat_bytes = self.host_stream_bits // 8
        word_bytes = ChannelValues(self.config).size // 8
        beat_width = self.host_stream_bits + beat_bytes + 1       # tdata, tkeep, tlast
        dropped = []
        for name, sink, bytes_per_word in (("frames", system.host_frames, word_bytes),
                                           ("weights", system.weights, 4)):
            host = getattr(self, name)
            fifo = self._cross(m, f"{name}_crossing", beat_width, "pcie", "sync")
            m.submodules[f"{name}_words"] = words = BeatsToWords(beat_bytes, bytes_per_word)
            m.d.comb += [
                fifo.w_data.eq(Cat(host.tdata, host.tkeep, host.tlast)),
                fifo.w_en.eq(host.tvalid), host.tready.eq(fifo.w_rdy),
                Cat(words.beats.tdata, words.beats.tkeep, words.beats.tlast).eq(fifo.r_data),
                words.beats.tvalid.eq(fifo.r_rdy), fifo.r_en.eq(words.beats.tready),
                sink.tdata.eq(words.words.tdata), sink.tvalid.eq(words.words.tvalid),
                words.words.tready.eq(sink.tready),
            ]
            if hasattr(sink, "tlast"):
                m.d.comb += sink.tlast.eq(words.words.tlast)
            dropped.append(words.dropped)
        m.d.comb += system.stream_error.eq(dropped[0] | dropped[1])
        m.submodules.results_beats = beats = WordsToBeats(word_bytes, beat_bytes)
        fifo = self._cross(m, "results_crossing", beat_width, "sync", "pcie")
        source = system.host_results
        m.d.comb += [
            beats.words.tdata.eq(source.tdata), beats.words.tlast.eq(source.tlast),
            beats.words.tvalid.eq(source.tvalid), source.tready.eq(beats.words.tready),
            fifo.w_data.eq(Cat(beats.beats.tdata, beats.beats.tkeep, beats.beats.tlast)),
            fifo.w_en.eq(beats.beats.tvalid), beats.beats.tready.eq(fifo.w_rdy),
            Cat(self.results.tdata, self.results.tkeep, self.results.tlast).eq(fifo.r_data),
            self.results.tvalid.eq(fifo.r_rdy), fifo.r_en.eq(self.results.tready),
        ]


class SynchronizerAttributes:
    """What :func:`amaranth.back.verilog.convert` takes as the platform of the card's RTL: it
    lowers Amaranth's synchronisers to plain flip-flops (so the same Verilog runs in Verilator
    and in Vivado) marked the way Amaranth's own Vivado flow marks them: ``ASYNC_REG`` on
    every stage, and ``amaranth.vivado.false_path`` (``..._pre`` for a reset synchroniser's
    asynchronous input) on the first, which the build script turns into constraints."""

    def get_ff_sync(self, ff_sync):
        m = Module()
        flops = [Signal(ff_sync.i.shape(), name=f"stage{index}", init=ff_sync._init,
                        reset_less=ff_sync._reset_less, attrs={"ASYNC_REG": "TRUE"})
                 for index in range(ff_sync._stages)]
        flops[0].attrs["amaranth.vivado.false_path"] = "TRUE"
        for source, flop in zip((ff_sync.i, *flops), flops):
            m.d[ff_sync._o_domain] += flop.eq(source)
        m.d.comb += ff_sync.o.eq(flops[-1])
        return m

    def get_async_ff_sync(self, async_ff_sync):
        m = Module()
        m.domains += ClockDomain("async_ff", async_reset=True, local=True)
        flops = [Signal(1, name=f"stage{index}", init=1, attrs={"ASYNC_REG": "TRUE"})
                 for index in range(async_ff_sync._stages)]
        for flop in flops:
            flop.attrs["amaranth.vivado.false_path_pre"] = "TRUE"
        for source, flop in zip((0, *flops), flops):
            m.d.async_ff += flop.eq(source)
        edge = async_ff_sync.i if async_ff_sync._edge == "pos" else ~async_ff_sync.i
        m.d.comb += [ClockSignal("async_ff").eq(ClockSignal(async_ff_sync._o_domain)),
                     ResetSignal("async_ff").eq(edge),
                     async_ff_sync.o.eq(flops[-1])]
        return m
