"""The processing element: sparse matrix times broadcast activations, accumulated per row.

A PE owns one interleaved slice of every matrix (see :mod:`ese.sw.encoding`): column pointers,
sparse entries (weight, relative row index) and, for every channel, the accumulators of its
rows. Channels run in lock-step: the broadcaster sends (column, one activation per channel,
target) to every PE; each PE queues them (EIE's activation queue, so that a PE with more work
on one column catches up on the next), reads the column's entries once and multiplies each
with every channel's activation. A weight is fetched once for all channels.

Pipeline::

    activation queue
      -> column stage   pointers from two banks (even and odd columns), start and end in one
                        cycle; empty columns stop here
      -> fetch stage    one entry word (``entries_per_read`` entries) per cycle; walks the
                        relative indices to absolute rows and drops padding entries
      -> word queue     the real entries of each word, in order
      -> issue          one real entry per cycle, with its column's activations
      -> one AccumulatorSlice per channel: product, accumulator read, add and write back

Because the fetch stage reads several entries per cycle and the column stage runs ahead, a
column costs exactly its non-zeros in multiply cycles: padding entries and empty columns cost
none while the front of the pipeline keeps ahead.

Each slice holds the gate accumulators of its channel (four banks, so a cell's four gates sit
at one address) and the projection accumulators. A readout port lets the cell unit and the
projection writeback read rows of every channel at once, clearing them behind the read.

Fences: a broadcast fence travels down the whole pipeline behind the work queued before it;
``fences`` counts those that have left it, so the sequencer knows when every product queued
before a fence is in the accumulators.
"""

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sw.memory_map import MemoryMap, address_bits

__all__ = ["ProcessingElement", "AccumulatorSlice", "BroadcastLayout", "WritePortSignature",
           "Target", "GATES", "FENCE_BITS", "readout_request_members", "ReadoutLayout"]

#: Gate accumulators per cell (i, f, g, o), one bank each.
GATES = 4
#: Width of the fence counters.
FENCE_BITS = 3
#: Depths of the column queue, the word queue and the queue of columns in flight.
_COLUMN_QUEUE = 4
_WORD_QUEUE = 4
_VALUES_IN_FLIGHT = 8


class Target(enum.IntEnum):
    """Which accumulators a broadcast activation's products go to."""
    GATES = 0           # gate accumulators
    PROJECTION = 1      # projection accumulators


def ChannelValues(config):
    """One activation per channel."""
    return data.ArrayLayout(signed(config.activation_bits), config.channels)


def BroadcastLayout(config):
    """Payload of a broadcast: a column and its activations, or a fence."""
    return data.StructLayout({
        "column": unsigned(address_bits(config.pointer_depth)),
        "values": ChannelValues(config),
        "target": unsigned(1),
        "fence": unsigned(1),
    })


def ReadoutLayout(config):
    """Readout data: per channel, the four gate banks (or the projection in lane 0)."""
    return data.ArrayLayout(data.ArrayLayout(signed(config.accumulator_bits), GATES),
                            config.channels)


class WritePortSignature(wiring.Signature):
    """A memory write request, seen from the writer: address, data and enable."""

    def __init__(self, address_width, data_width):
        super().__init__({
            "address": Out(address_width),
            "data": Out(data_width),
            "enable": Out(1),
        })


def readout_address_bits(config):
    return address_bits(max(config.cells_per_pe, config.projections_per_pe))


def row_bits(config):
    """Bits of a local row: gate rows are 4 * cell + gate, projection rows their index."""
    return readout_address_bits(config) + 2


def readout_request_members(config):
    """Ports of a unit that reads PE accumulators: which PE, which accumulators and address.

    The data (every channel's four gate banks at the address) arrive one cycle after the read.
    """
    return {
        "accumulator_pe": Out(max(1, (config.pes - 1).bit_length())),
        "accumulator_target": Out(1),
        "accumulator_address": Out(readout_address_bits(config)),
        "accumulator_read": Out(1),
        "accumulator_data": In(ReadoutLayout(config)),
    }


class AccumulatorSlice(wiring.Component):
    """One channel's multiply-accumulate and accumulators in a PE.

    Products reach the accumulators two cycles after an entry is issued: the product is
    registered, the accumulator read, then the sum written back. The read port is transparent
    for the write port (a bypass), so consecutive entries for one row add up exactly.

    Members
    -------
    issue_valid, issue_weight, issue_row, issue_target : In
        The entry issued this cycle (shared by every channel's slice).
    issue_value : In(signed(activation_bits))
        This channel's activation for the entry's column.
    readout_enable, readout_target, readout_address, readout_clear : In
        Read a row (all four gate banks, or the projection in lane 0); clear the requested
        lanes one cycle later.
    readout_data : Out(ArrayLayout(signed(accumulator_bits), 4))
    clear_enable, clear_address : In
        Zero every accumulator at ``clear_address``.
    """

    def __init__(self, config):
        self.config = config
        address = readout_address_bits(config)
        super().__init__({
            "issue_valid": In(1),
            "issue_weight": In(signed(config.weight_bits)),
            "issue_row": In(row_bits(config)),
            "issue_target": In(1),
            "issue_value": In(signed(config.activation_bits)),
            "readout_enable": In(1),
            "readout_target": In(1),
            "readout_address": In(address),
            "readout_clear": In(GATES),
            "readout_data": Out(data.ArrayLayout(signed(config.accumulator_bits), GATES)),
            "clear_enable": In(1),
            "clear_address": In(address),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        product_valid = Signal()
        product = Signal(signed(config.product_bits))
        product_row = Signal.like(self.issue_row)
        product_target = Signal()
        m.d.sync += [
            product_valid.eq(self.issue_valid),
            product.eq(self.issue_weight * self.issue_value),
            product_row.eq(self.issue_row),
            product_target.eq(self.issue_target),
        ]
        add_valid = Signal()
        add_product = Signal.like(product)
        add_row = Signal.like(product_row)
        add_target = Signal()
        m.d.sync += [add_valid.eq(product_valid), add_product.eq(product),
                     add_row.eq(product_row), add_target.eq(product_target)]

        pending_clear = Signal(GATES)
        pending_target = Signal()
        pending_address = Signal.like(self.readout_address)
        readout_target = Signal()
        m.d.sync += [
            pending_clear.eq(Mux(self.readout_enable, self.readout_clear, 0)),
            pending_target.eq(self.readout_target),
            pending_address.eq(self.readout_address),
            readout_target.eq(self.readout_target),
        ]

        banks = [(Target.GATES, lane, config.cells_per_pe) for lane in range(GATES)]
        banks += [(Target.PROJECTION, 0, config.projections_per_pe)]
        reads = []
        for target, lane, depth in banks:
            memory = Memory(shape=signed(config.accumulator_bits), depth=depth, init=[])
            m.submodules[f"{target.name.lower()}_{lane}"] = memory
            reads.append((target, lane, memory, memory.write_port()))
        ports = []
        for target, lane, memory, write in reads:
            ports.append((target, lane, memory.read_port(transparent_for=(write,)), write))

        # One adder serves every bank: the bank the entry two cycles back hit.
        hit_data = Signal(signed(config.accumulator_bits))
        for target, lane, read, write in ports:
            if target == Target.GATES:
                with m.If((add_target == target) & (add_row[:2] == lane)):
                    m.d.comb += hit_data.eq(read.data)
            else:
                with m.If(add_target == target):
                    m.d.comb += hit_data.eq(read.data)
        total = Signal(signed(config.accumulator_bits))
        m.d.comb += total.eq(hit_data + add_product)

        for target, lane, read, write in ports:
            is_gate = target == Target.GATES
            depth = config.cells_per_pe if is_gate else config.projections_per_pe
            mac_address = product_row[2:] if is_gate else product_row
            mac_hit = add_valid & (add_target == target) & ((add_row[:2] == lane) if is_gate
                                                            else 1)
            reading = self.readout_enable & (self.readout_target == target)
            m.d.comb += [read.addr.eq(Mux(reading, self.readout_address, mac_address)),
                         read.en.eq(1)]
            with m.If(self.clear_enable):
                m.d.comb += [write.addr.eq(self.clear_address), write.data.eq(0),
                             write.en.eq(self.clear_address < depth)]
            with m.Elif(pending_clear[lane] & (pending_target == target)):
                m.d.comb += [write.addr.eq(pending_address), write.data.eq(0), write.en.eq(1)]
            with m.Else():
                m.d.comb += [write.addr.eq(add_row[2:] if is_gate else add_row),
                             write.data.eq(total), write.en.eq(mac_hit)]
        for lane in range(GATES):
            with m.Switch(readout_target):
                for target, bank_lane, read, write in ports:
                    if bank_lane == lane:
                        with m.Case(target):
                            m.d.comb += self.readout_data[lane].eq(read.data)
        return m


class ProcessingElement(wiring.Component):
    """One PE of the sparse matrix-vector unit, for every channel.

    Parameters
    ----------
    config : ese.Config
        A sized configuration.

    Members
    -------
    activations : In(stream.Signature(BroadcastLayout))
        Broadcast (column, activations, target) and fences, queued on entry.
    fences : Out(FENCE_BITS)
        Fences that have left the pipeline, modulo 2**FENCE_BITS.
    idle : Out(1)
        Nothing queued and nothing in flight.
    pointer_write, entry_write : In(WritePortSignature)
        Load ports: column pointers (one per address) and entry words.
    readout_enable, readout_target, readout_address : In
        Read every channel's accumulators at an address; the data appear on ``readout_data``
        in the next cycle. Only for accumulators that no queued work targets.
    readout_clear : In(4)
        Lanes to zero at the address one cycle after the read.
    readout_data : Out(ReadoutLayout)
    clear_enable, clear_address : In
        Zero every accumulator at ``clear_address`` (to clear state after a reset).
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        mm = MemoryMap(config)
        address = readout_address_bits(config)
        super().__init__({
            "activations": In(stream.Signature(BroadcastLayout(config))),
            "fences": Out(FENCE_BITS),
            "idle": Out(1),
            "pointer_write": In(WritePortSignature(address_bits(config.pointer_depth),
                                                   mm.pointer_bits)),
            "entry_write": In(WritePortSignature(address_bits(mm.entry_words),
                                                 mm.entry_word_bits)),
            "readout_enable": In(1),
            "readout_target": In(1),
            "readout_address": In(address),
            "readout_clear": In(GATES),
            "readout_data": Out(ReadoutLayout(config)),
            "clear_enable": In(1),
            "clear_address": In(address),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        mm = MemoryMap(config)
        layout = BroadcastLayout(config)
        values_layout = ChannelValues(config)
        lanes = config.entries_per_read
        lane_bits = (lanes - 1).bit_length()
        pointer_bits = mm.pointer_bits

        # ---- Activation queue -------------------------------------------------------------
        m.submodules.queue = queue = SyncFIFOBuffered(width=layout.size,
                                                      depth=config.activation_queue_depth)
        m.d.comb += [
            queue.w_data.eq(self.activations.payload),
            queue.w_en.eq(self.activations.valid),
            self.activations.ready.eq(queue.w_rdy),
        ]
        head = data.View(layout, queue.r_data)

        # ---- Column stage: pointer banks for even and odd columns -------------------------
        bank_depth = config.pointer_depth // 2
        pointer_banks = []
        for parity in (0, 1):
            memory = Memory(shape=unsigned(pointer_bits), depth=bank_depth, init=[])
            m.submodules[f"pointers_{'odd' if parity else 'even'}"] = memory
            write = memory.write_port()
            m.d.comb += [
                write.addr.eq(self.pointer_write.address[1:]),
                write.data.eq(self.pointer_write.data),
                write.en.eq(self.pointer_write.enable & (self.pointer_write.address[0] == parity)),
            ]
            pointer_banks.append(memory.read_port())
        even, odd = pointer_banks
        column = head.column
        m.d.comb += [even.addr.eq((column + 1) >> 1), odd.addr.eq(column >> 1)]

        column_layout = data.StructLayout({
            "start": unsigned(pointer_bits), "end": unsigned(pointer_bits),
            "values": values_layout, "target": unsigned(1), "fence": unsigned(1),
        })
        m.submodules.columns = columns = SyncFIFO(width=column_layout.size, depth=_COLUMN_QUEUE)
        looked_up = Signal()                 # a column's pointers are on the read ports
        looked_up_parity = Signal()
        looked_up_head = Signal(layout)
        pop = queue.r_rdy & (columns.level + looked_up < _COLUMN_QUEUE)
        m.d.comb += [queue.r_en.eq(pop), even.en.eq(pop), odd.en.eq(pop)]
        m.d.sync += looked_up.eq(pop)
        with m.If(pop):
            m.d.sync += [looked_up_parity.eq(column[0]), looked_up_head.eq(head)]
        start = Mux(looked_up_parity, odd.data, even.data)
        end = Mux(looked_up_parity, even.data, odd.data)
        described = data.View(column_layout, columns.w_data)
        m.d.comb += [
            described.start.eq(start), described.end.eq(end),
            described.values.eq(looked_up_head.values),
            described.target.eq(looked_up_head.target),
            described.fence.eq(looked_up_head.fence),
            # Empty columns end here; fences go on.
            columns.w_en.eq(looked_up & (looked_up_head.fence | (start != end))),
        ]

        # ---- Fetch stage: entry words, rows, padding dropped ------------------------------
        m.submodules.entries = entries = Memory(shape=unsigned(mm.entry_word_bits),
                                                depth=mm.entry_words, init=[])
        entry_write = entries.write_port()
        m.d.comb += [entry_write.addr.eq(self.entry_write.address),
                     entry_write.data.eq(self.entry_write.data),
                     entry_write.en.eq(self.entry_write.enable)]
        entry_read = entries.read_port()

        word_layout = data.StructLayout({
            "weights": data.ArrayLayout(signed(config.weight_bits), lanes),
            "rows": data.ArrayLayout(unsigned(row_bits(config)), lanes),
            "real": unsigned(lanes),          # lanes holding a real entry
            "target": unsigned(1),
            "fence": unsigned(1),
            "last": unsigned(1),              # the column's last word: its values may go
        })
        m.submodules.words = words = SyncFIFO(width=word_layout.size, depth=_WORD_QUEUE)
        m.submodules.in_flight = in_flight = SyncFIFO(width=values_layout.size,
                                                      depth=_VALUES_IN_FLIGHT)

        current = data.View(column_layout, columns.r_data)
        cursor = Signal(unsigned(pointer_bits))
        started = Signal()                   # cursor belongs to the column at the queue head
        word_base = Signal(unsigned(pointer_bits))
        position = Mux(started, cursor, current.start)
        m.d.comb += word_base.eq(Cat(Const(0, lane_bits), position[lane_bits:]))
        next_word = word_base + lanes
        fetched = Signal()                   # an entry word (or a fence) is being read
        # The word queue is written a cycle after the fetch; the values in flight at once.
        room = (words.level + fetched < _WORD_QUEUE) & in_flight.w_rdy
        fetch = columns.r_rdy & room
        column_done = current.fence | (next_word >= current.end)
        m.d.comb += [
            entry_read.addr.eq(word_base >> lane_bits),
            entry_read.en.eq(fetch),
            columns.r_en.eq(fetch & column_done),
            # A column's activations wait in flight from its first word to its last.
            in_flight.w_data.eq(current.values),
            in_flight.w_en.eq(fetch & ~started & ~current.fence),
        ]
        with m.If(fetch):
            m.d.sync += [cursor.eq(next_word), started.eq(~column_done)]

        word_valid = Signal(lanes)
        word_first = Signal()
        word_target = Signal()
        word_fence = Signal()
        word_last = Signal()
        m.d.sync += fetched.eq(fetch)
        with m.If(fetch):
            m.d.sync += [
                word_valid.eq(Cat((word_base + lane >= position) & (word_base + lane < current.end)
                                  for lane in range(lanes))),
                word_first.eq(~started),
                word_target.eq(current.target),
                word_fence.eq(current.fence),
                word_last.eq(column_done),
            ]

        # Walk the relative indices: row = rows skipped so far + this entry's run.
        next_row = Signal(unsigned(row_bits(config) + 1))   # the row after the last entry
        running = Mux(word_first, 0, next_row)
        word = data.View(word_layout, words.w_data)
        real = []
        for lane in range(lanes):
            raw = entry_read.data.word_select(lane, config.entry_bits)
            weight = raw[:config.weight_bits].as_signed()
            row = running + raw[config.weight_bits:]
            m.d.comb += [word.weights[lane].eq(weight), word.rows[lane].eq(row)]
            real.append(word_valid[lane] & (weight != 0))
            running = Mux(word_valid[lane], row + 1, running)
        with m.If(fetched):
            m.d.sync += next_row.eq(running)
        has_real = Cat(real).any()
        m.d.comb += [
            word.real.eq(Cat(real)), word.target.eq(word_target), word.fence.eq(word_fence),
            word.last.eq(word_last),
            # Words of only padding carry nothing but, on a column's last word, its release.
            words.w_en.eq(fetched & (word_fence | has_real | word_last)),
        ]

        # ---- Issue: one real entry per cycle, in order ------------------------------------
        head_word = data.View(word_layout, words.r_data)
        remaining = Signal(lanes)            # real lanes of the head word not yet issued
        fresh_word = Signal(init=1)          # the head word has issued nothing yet
        pending = Mux(fresh_word, head_word.real, remaining)
        chosen = Signal(range(lanes))
        for lane in reversed(range(lanes)):
            with m.If(pending[lane]):
                m.d.comb += chosen.eq(lane)
        left = pending & ~(Const(1, lanes) << chosen)
        issue = words.r_rdy & ~head_word.fence & (pending != 0)
        word_finished = words.r_rdy & (head_word.fence | (pending == 0) | (left == 0))
        m.d.comb += [
            words.r_en.eq(word_finished),
            in_flight.r_en.eq(word_finished & head_word.last & ~head_word.fence),
        ]
        with m.If(word_finished):
            m.d.sync += fresh_word.eq(1)
        with m.Elif(issue):
            m.d.sync += [remaining.eq(left), fresh_word.eq(0)]
        issue_fence = words.r_rdy & head_word.fence
        values = data.View(values_layout, in_flight.r_data)

        # ---- Per-channel slices ------------------------------------------------------------
        slices = []
        for channel in range(config.channels):
            unit = AccumulatorSlice(config)
            m.submodules[f"channel{channel}"] = unit
            slices.append(unit)
            m.d.comb += [
                unit.issue_valid.eq(issue),
                unit.issue_weight.eq(head_word.weights[chosen]),
                unit.issue_row.eq(head_word.rows[chosen]),
                unit.issue_target.eq(head_word.target),
                unit.issue_value.eq(values[channel]),
                unit.readout_enable.eq(self.readout_enable),
                unit.readout_target.eq(self.readout_target),
                unit.readout_address.eq(self.readout_address),
                unit.readout_clear.eq(self.readout_clear),
                self.readout_data[channel].eq(unit.readout_data),
                unit.clear_enable.eq(self.clear_enable),
                unit.clear_address.eq(self.clear_address),
            ]
        # A fence leaves when the products issued before it are written: two cycles later.
        fence_product = Signal()
        fence_add = Signal()
        busy_product = Signal()
        busy_add = Signal()
        m.d.sync += [fence_product.eq(issue_fence), fence_add.eq(fence_product),
                     busy_product.eq(issue), busy_add.eq(busy_product)]
        fences = Signal(FENCE_BITS)
        with m.If(fence_add):
            m.d.sync += fences.eq(fences + 1)
        m.d.comb += self.fences.eq(fences)

        m.d.comb += self.idle.eq(
            (queue.level == 0) & ~looked_up & (columns.level == 0) & ~fetched
            & (words.level == 0) & ~fence_product & ~fence_add & ~busy_product & ~busy_add)
        return m
