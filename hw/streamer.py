"""The weight streamer: every PE's sparse entries, from the off-chip memory, every frame step.

In a streamed configuration (``Config.stream_window``) the entries never sit on chip as a whole.
The weight image stays in the DDR as it was stored, and each PE's entries lie in it as two
sections, aligned to memory beats (see :mod:`ese.sw.contract.memory_map`): the first layer's
input columns (read by the filler, one frame step ahead) and every other column (the critical
path). Each PE has a ring of ``stream_window`` entry words per section (:mod:`ese.hw.pe`), and
the streamer keeps every ring full: it reads the section over and over, lap after lap, one lap
per frame step, in bursts, as the PE frees room. That is double buffering at the grain of a
burst: while a PE works on one part of its ring, the next bursts arrive in the rest, and a PE
that is ahead simply waits for its word.

The rings are served round robin among those with room for a whole burst. A burst is at most
``MemoryMap.burst_beats`` beats, never crosses a 4 KB boundary (the image starts on one) and
never runs past its section's lap; up to ``OUTSTANDING`` bursts are in flight, each with its
room reserved, so the read data never waits. A read answered with anything but OKAY sets
``error``.

While ``run`` is low nothing new is requested, data still arriving is dropped, and once the
last burst is in the streamer starts over from lap zero of every section (the PEs are reset
with it).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import MemoryMap, address_bits
from .axi import Axi4Signature
from .dma import _size_code
from .layouts import SEQUENCE_BITS, EntryBeatSignature, StreamSectionsLayout, WritePortSignature

__all__ = ["WeightStreamer", "StreamBeatSignature", "OUTSTANDING", "BURST_ISSUE_CYCLES"]

#: Bursts in flight at once.
OUTSTANDING = 8
#: Cycles to issue one burst: one in each state of the issue machine (PICK the rings that want
#: one, CHOOSE among them, READ the ring's sections, PLAN the position, SIZE the burst,
#: ADDRESS it), when the address is taken at once.
BURST_ISSUE_CYCLES = 6
#: Bytes in which no burst may cross a boundary (AXI4).
_BOUNDARY = 4096


class StreamBeatSignature(wiring.Signature):
    """A beat of entry words for one ring (:class:`~ese.hw.pe.EntryBeatSignature`) of one
    PE."""

    def __init__(self, config):
        super().__init__({"pe": Out(address_bits(config.pes)),
                          **dict(EntryBeatSignature(config).members)})


class WeightStreamer(wiring.Component):
    """Keep every PE's two entry rings filled from the weight image in memory.

    Members
    -------
    run : In(1)
        Stream (an image is loaded and the accelerator is not being reset).
    base : In(memory_address_bits)
        Byte address of the stored image (4 KB aligned).
    table_write : In(WritePortSignature)
        The STREAMS table from the loader: each PE's sections (address: the PE).
    freed : In(ArrayLayout(SEQUENCE_BITS, 2 * pes))
        For ring ``2 * pe + section``: the oldest word the PE still needs.
    beat : Out(StreamBeatSignature)
        Beats for the PEs, in each ring's order.
    busy : Out(1)
        A burst is being chosen or requested, or is in flight: the counters are back at lap
        zero only once ``run`` is low and ``busy`` is not.
    error : Out(1)
        Strobe: a read response was not OKAY.
    bus : Out(Axi4Signature) (read channels only; the write channels are idle)
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        mm = self.memory_map = MemoryMap(config)
        rings = 2 * config.pes
        super().__init__({
            "run": In(1),
            "base": In(config.memory_address_bits),
            "table_write": In(WritePortSignature(address_bits(config.pes), mm.stream_bits)),
            "freed": In(data.ArrayLayout(unsigned(SEQUENCE_BITS), rings)),
            "beat": Out(StreamBeatSignature(config)),
            "busy": Out(1),
            "error": Out(1),
            "bus": Out(Axi4Signature(config.memory_address_bits, config.memory_data_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        config, mm = self.config, self.memory_map
        pes = config.pes
        rings = 2 * pes
        ring_bits = address_bits(rings)
        per_beat = mm.words_per_beat
        burst = mm.burst_beats
        beat_bytes = config.memory_data_bits // 8
        boundary_beats = _BOUNDARY // beat_bytes
        bus = self.bus
        size = _size_code(config.memory_data_bits)
        m.d.comb += [bus.arsize.eq(size), bus.arburst.eq(1), bus.awsize.eq(size),
                     bus.awburst.eq(1)]

        # ---- The sections table ------------------------------------------------------------
        section_layout = StreamSectionsLayout(config)
        m.submodules.table = table = Memory(shape=section_layout, depth=pes, init=[])
        table_write = table.write_port()
        m.d.comb += [table_write.addr.eq(self.table_write.addr),
                     table_write.data.eq(self.table_write.data),
                     table_write.en.eq(self.table_write.en)]
        # Which rings have a section at all (a PE may have no entries in one).
        present = Signal(rings)
        written_section = data.View(section_layout, self.table_write.data)
        for pe in range(pes):
            with m.If(self.table_write.en & (self.table_write.addr == pe)):
                m.d.sync += [present[2 * pe].eq(written_section.filler_beats != 0),
                             present[2 * pe + 1].eq(written_section.critical_beats != 0)]
        table_read = table.read_port()

        # ---- Per ring: words requested, and where in its lap -----------------------------
        requested = [Signal(SEQUENCE_BITS, name=f"requested_{r}") for r in range(rings)]
        lap_beat = [Signal(32, name=f"lap_beat_{r}") for r in range(rings)]
        window = config.stream_window
        wants = Signal(rings)
        for r in range(rings):
            room = Signal(SEQUENCE_BITS, name=f"room_{r}")
            m.d.comb += room.eq(self.freed[r] + window - requested[r])
            m.d.sync += wants[r].eq(present[r] & (room >= burst * per_beat))

        # Round robin: the first ring wanting a burst after the last one served (``after``: a
        # thermometer mask of the rings past it), else the first. The choice is made over two
        # cycles from registers, so that its depth does not grow with the rings: PICK registers
        # which rings want a burst, CHOOSE takes the lowest of them (v & -v, then an OR per
        # index bit).
        chosen = Signal(ring_bits)
        after = Signal(rings)
        # ``wants`` is a cycle old: right after a burst it does not know that burst yet.
        just_issued = Signal()
        fresh = wants & ~Mux(just_issued, Const(1, rings) << chosen, 0)
        later = fresh & after
        fresh_r = Signal(rings)
        later_r = Signal(rings)
        any_later_r = Signal()
        candidates = Mux(any_later_r, later_r, fresh_r)
        lowest = Signal(rings)
        m.d.comb += lowest.eq(candidates & (~candidates + 1))
        pick = Signal(ring_bits)
        m.d.comb += pick.eq(Cat(*(Cat(*(lowest[r] for r in range(rings) if r >> bit & 1)).any()
                                  for bit in range(ring_bits))))

        section = data.View(section_layout, table_read.data)

        m.submodules.bursts = bursts = SyncFIFO(width=ring_bits, depth=OUTSTANDING)
        # The burst is planned over three cycles, from registers, to keep the logic shallow.
        chosen_lap_beat = Signal(32)
        position = Signal(32)              # beats from the image's start
        left = Signal(32)                  # beats left in the section's lap
        address = Signal(config.memory_address_bits)
        beats = Signal(range(burst + 1))
        lap_end = Signal()                 # the burst ends the section's lap
        boundary_bits = (boundary_beats - 1).bit_length()
        to_boundary = Signal(range(boundary_beats + 1))    # beats to the next 4 KB boundary
        m.d.sync += just_issued.eq(0)
        m.d.comb += table_read.addr.eq(chosen >> 1)
        with m.FSM():
            with m.State("PICK"):
                m.d.sync += [fresh_r.eq(fresh), later_r.eq(later), any_later_r.eq(later != 0)]
                with m.If(~self.run):
                    m.d.sync += [requested[r].eq(0) for r in range(rings)]
                    m.d.sync += [lap_beat[r].eq(0) for r in range(rings)]
                with m.Elif((fresh != 0) & bursts.w_rdy):
                    m.next = "CHOOSE"
            with m.State("CHOOSE"):
                # The table's read port shows the chosen PE's sections next cycle.
                m.d.comb += [self.busy.eq(1), table_read.addr.eq(pick >> 1)]
                m.d.sync += chosen.eq(pick)
                m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(chosen):
                    for r in range(rings):
                        with m.Case(r):
                            m.d.sync += chosen_lap_beat.eq(lap_beat[r])
                m.next = "PLAN"
            with m.State("PLAN"):
                m.d.comb += self.busy.eq(1)
                odd = chosen[0]
                offset = Mux(odd, section.critical_offset, section.filler_offset)
                total = Mux(odd, section.critical_beats, section.filler_beats)
                start = offset + chosen_lap_beat
                m.d.sync += [position.eq(start), left.eq(total - chosen_lap_beat),
                             to_boundary.eq(boundary_beats - start[:boundary_bits])]
                m.next = "SIZE"
            with m.State("SIZE"):
                # The burst is min(left, burst, to_boundary), and ends the lap when that is
                # ``left``; the comparisons run side by side on narrow values (``left`` is
                # compared only when its high bits are zero), to keep the logic shallow.
                m.d.comb += self.busy.eq(1)
                low_bits = max(boundary_beats, burst).bit_length()
                left_low = left[:low_bits]
                left_is_low = (left >> low_bits) == 0
                left_first = left_is_low & (left_low <= burst) & (left_low <= to_boundary)
                size = Mux(left_first, left_low, Mux(to_boundary < burst, to_boundary, burst))
                m.d.sync += [address.eq(self.base + position * beat_bytes),
                             beats.eq(size), lap_end.eq(left_first)]
                m.next = "ADDRESS"
            with m.State("ADDRESS"):
                m.d.comb += [self.busy.eq(1), bus.araddr.eq(address), bus.arlen.eq(beats - 1),
                             bus.arvalid.eq(1)]
                with m.If(bus.arready):
                    m.d.comb += [bursts.w_data.eq(chosen), bursts.w_en.eq(1)]
                    with m.Switch(chosen):
                        for r in range(rings):
                            with m.Case(r):
                                m.d.sync += [
                                    requested[r].eq(requested[r] + beats * per_beat),
                                    lap_beat[r].eq(Mux(lap_end, 0, chosen_lap_beat + beats)),
                                ]
                    m.d.sync += [after.eq(~((Const(2, rings + 1) << chosen) - 1)),
                                 just_issued.eq(1)]
                    m.next = "PICK"

        # ---- Read data: every beat goes to the ring of the oldest burst in flight --------
        m.d.comb += [bus.rready.eq(1),
                     self.beat.pe.eq(bursts.r_data >> 1), self.beat.ring.eq(bursts.r_data[0]),
                     self.beat.data.eq(bus.rdata),
                     self.beat.valid.eq(bus.rvalid & bursts.r_rdy & self.run)]
        with m.If(bus.rvalid):
            m.d.comb += [self.error.eq(bus.rresp != 0), bursts.r_en.eq(bus.rlast)]
        with m.If(bursts.r_rdy):
            m.d.comb += self.busy.eq(1)
        return m
