"""Moving the weight image between the host, the off-chip memory and the accelerator.

The host uploads a weight image's load stream (see :mod:`ese.sw.contract.memory_map`) as a stream of
32-bit words; the :class:`ImageWriter` writes it to the DDR through an AXI4 master. The
:class:`ImageReader` reads it back, in bursts, and feeds the accelerator's weight loader.
Both move whole AXI beats (``memory_data_bits`` wide, several words each) in bursts of up to
16 beats that never cross a 4 KB boundary (the image must start on one), and record an error
if the memory answers with anything but OKAY.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .axi import Axi4Signature

__all__ = ["ImageWriter", "ImageReader", "BURST_BEATS"]

#: Longest burst, in beats.
BURST_BEATS = 16
_WORD = 32


def _next_burst(left, per_beat):
    """Words and beats of the next burst: a whole burst (``BURST_BEATS`` beats of
    ``per_beat`` words, a power of two), or the ``left`` words when fewer remain, in the beats
    that carry them. Whether fewer remain is a test of ``left``'s high bits and the beats of
    the rest an adder on its low bits, side by side, so the choice is one mux deep."""
    full = BURST_BEATS * per_beat
    full_bits = full.bit_length() - 1            # log2(full)
    whole = left[full_bits:].any()
    rest = left[:full_bits]
    rest_beats = (rest + per_beat - 1) >> (per_beat.bit_length() - 1)
    return Mux(whole, full, rest), Mux(whole, BURST_BEATS, rest_beats)


def _job_members(config):
    """The members a DMA engine of either direction has: a job (start, address, words),
    its status, and the memory bus."""
    return {
        "start": In(1),
        "address": In(config.memory_address_bits),
        "words": In(32),
        "busy": Out(1),
        "error": Out(1),
        "bus": Out(Axi4Signature(config.memory_address_bits, config.memory_data_bits)),
    }


def _size_code(data_bits):
    return (data_bits // 8).bit_length() - 1


class ImageWriter(wiring.Component):
    """Write a stream of 32-bit words to memory, in bursts.

    Members
    -------
    start : In(1)
        Strobe: write the next ``words`` words of ``words_in`` from byte ``address`` on.
    address, words : In
    busy : Out(1)
    written : Out(32)
        Words written (and acknowledged) in the current job.
    error : Out(1)
        Strobe: a write response was not OKAY.
    words_in : In(stream.Signature(32))
    bus : Out(Axi4Signature) (write channels only; the read channels are idle)
    """

    def __init__(self, config):
        self.config = config
        self.data_bits = config.memory_data_bits
        super().__init__({
            **_job_members(config),
            "written": Out(32),
            "words_in": In(stream.Signature(_WORD)),
        })

    def elaborate(self, platform):
        m = Module()
        per_beat = self.data_bits // _WORD
        beat_bytes = self.data_bits // 8
        bus = self.bus
        address = Signal.like(self.address)
        remaining = Signal(32)           # words not yet sent
        written = Signal(32)
        burst_beats = Signal(range(BURST_BEATS + 1))
        burst_words = Signal(range(BURST_BEATS * per_beat + 1))
        beat = Signal(range(BURST_BEATS + 1))
        lane = Signal(range(per_beat))
        data = Signal(self.data_bits)
        strobe = Signal(self.data_bits // 8)
        size = _size_code(self.data_bits)
        m.d.comb += [self.written.eq(written), bus.awsize.eq(size), bus.awburst.eq(1),
                     bus.arburst.eq(1), bus.arsize.eq(size)]
        # The next burst is planned a cycle ahead (PLAN), so that the address channel is
        # driven from registers.
        words, beats_needed = _next_burst(remaining, per_beat)
        done = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [address.eq(self.address), remaining.eq(self.words),
                                 written.eq(0)]
                    m.next = "PLAN"
            with m.State("PLAN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [burst_words.eq(words), burst_beats.eq(beats_needed),
                             done.eq(remaining == 0)]
                m.next = "ADDRESS"
            with m.State("ADDRESS"):
                m.d.comb += self.busy.eq(1)
                with m.If(done):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [bus.awaddr.eq(address), bus.awlen.eq(burst_beats - 1),
                                 bus.awvalid.eq(1)]
                    with m.If(bus.awready):
                        m.d.sync += [beat.eq(0), lane.eq(0), strobe.eq(0)]
                        m.next = "GATHER"
            with m.State("GATHER"):
                # Collect a beat's words (fewer for the image's last beat).
                m.d.comb += [self.busy.eq(1), self.words_in.ready.eq(1)]
                words_done = beat * per_beat + lane + 1
                with m.If(self.words_in.valid):
                    m.d.sync += [data.word_select(lane, _WORD).eq(self.words_in.payload),
                                 strobe.eq(strobe | (Const(0xF, 4) << (lane * 4))),
                                 lane.eq(lane + 1)]
                    with m.If((lane == per_beat - 1) | (words_done == burst_words)):
                        m.next = "BEAT"
            with m.State("BEAT"):
                m.d.comb += [self.busy.eq(1), bus.wdata.eq(data), bus.wstrb.eq(strobe),
                             bus.wlast.eq(beat + 1 == burst_beats), bus.wvalid.eq(1)]
                with m.If(bus.wready):
                    m.d.sync += [beat.eq(beat + 1), lane.eq(0), strobe.eq(0)]
                    with m.If(beat + 1 == burst_beats):
                        m.next = "RESPONSE"
                    with m.Else():
                        m.next = "GATHER"
            with m.State("RESPONSE"):
                m.d.comb += [self.busy.eq(1), bus.bready.eq(1)]
                with m.If(bus.bvalid):
                    m.d.comb += self.error.eq(bus.bresp != 0)
                    m.d.sync += [address.eq(address + burst_beats * beat_bytes),
                                 remaining.eq(remaining - burst_words),
                                 written.eq(written + burst_words)]
                    m.next = "PLAN"
        return m


class ImageReader(wiring.Component):
    """Read words from memory in bursts and stream them out.

    Members
    -------
    start : In(1)
        Strobe: read ``words`` words from byte ``address`` on.
    address, words : In
    busy : Out(1)
    error : Out(1)
        Strobe: a read response was not OKAY.
    words_out : Out(stream.Signature(32))
    bus : Out(Axi4Signature) (read channels only; the write channels are idle)
    """

    def __init__(self, config):
        self.config = config
        self.data_bits = config.memory_data_bits
        super().__init__({
            **_job_members(config),
            "words_out": Out(stream.Signature(_WORD)),
        })

    def elaborate(self, platform):
        m = Module()
        per_beat = self.data_bits // _WORD
        beat_bytes = self.data_bits // 8
        bus = self.bus
        # Words land in a queue that holds a whole burst: a burst is requested only when the
        # queue has room for it, so the read data never waits.
        depth = BURST_BEATS * per_beat
        m.submodules.queue = queue = SyncFIFOBuffered(width=_WORD, depth=depth + per_beat)
        wiring.connect(m, queue.r_stream, wiring.flipped(self.words_out))

        address = Signal.like(self.address)
        left = Signal(32)                 # words not yet requested
        outstanding = Signal()            # a burst's data is on its way
        burst_words = Signal(range(depth + 1))
        beat_data = Signal(self.data_bits)
        beat_words = Signal(range(per_beat + 1))
        lane = Signal(range(per_beat))
        unpacking = Signal()
        m.d.comb += [bus.arsize.eq(_size_code(self.data_bits)), bus.arburst.eq(1),
                     bus.awsize.eq(_size_code(self.data_bits)), bus.awburst.eq(1)]

        # The next burst (a whole one, or what is left) is planned a cycle after ``left``
        # changes, so that the address channel is driven from registers.
        planned = Signal()
        more = Signal()
        next_words = Signal(range(depth + 1))
        next_beats = Signal(range(BURST_BEATS + 1))
        words, beats_needed = _next_burst(left, per_beat)
        m.d.sync += [next_words.eq(words), next_beats.eq(beats_needed),
                     more.eq(left != 0), planned.eq(1)]
        with m.If(self.start):
            m.d.sync += [address.eq(self.address), left.eq(self.words), planned.eq(0)]
        # Room for a whole burst, registered: a cycle late, and only once no burst is on its
        # way (then nothing more arrives, so the words counted a cycle ago are an upper
        # bound of those that will be in the queue).
        room = Signal()
        m.d.sync += room.eq((queue.level + Mux(unpacking, per_beat, 0) <= per_beat)
                            & ~outstanding)
        m.d.comb += [bus.araddr.eq(address), bus.arlen.eq(next_beats - 1),
                     bus.arvalid.eq(~self.start & ~outstanding & planned & more & room)]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [outstanding.eq(1), burst_words.eq(next_words),
                         left.eq(left - next_words), planned.eq(0),
                         address.eq(address + next_beats * beat_bytes)]

        # Unpack each beat into words; the burst's last beat may be partly used.
        m.d.comb += bus.rready.eq(~unpacking)
        with m.If(bus.rvalid & bus.rready):
            m.d.comb += self.error.eq(bus.rresp != 0)
            take = Mux(burst_words > per_beat, per_beat, burst_words)
            m.d.sync += [beat_data.eq(bus.rdata), beat_words.eq(take), lane.eq(0),
                         unpacking.eq(take != 0), burst_words.eq(burst_words - take)]
            with m.If(bus.rlast):
                m.d.sync += outstanding.eq(0)
        m.d.comb += [queue.w_data.eq(beat_data.word_select(lane, _WORD)),
                     queue.w_en.eq(unpacking)]
        with m.If(unpacking & queue.w_rdy):
            m.d.sync += lane.eq(lane + 1)
            with m.If(lane + 1 == beat_words):
                m.d.sync += unpacking.eq(0)
        # Busy from registers: ``more`` (left != 0 a cycle ago), or a job that started last
        # cycle, which ``more`` does not know yet.
        started = Signal()
        m.d.sync += started.eq(self.start)
        m.d.comb += self.busy.eq(more | started | outstanding | unpacking | queue.r_rdy)
        return m
