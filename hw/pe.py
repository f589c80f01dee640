"""The processing element: sparse matrix times broadcast activations, accumulated per row.

A PE owns one interleaved slice of every matrix (see :mod:`ese.sw.encoding`): column pointers,
sparse entries (weight, relative row index) and the accumulators of its rows. The broadcaster
sends (column, activation, target) to every PE; each PE queues them (EIE's activation queue,
so that a PE with more work on one column catches up on the next) and multiplies the column's
entries with the activation into the accumulators of their rows.

Pipeline::

    activation queue
      -> column stage   pointers from two banks (even and odd columns), start and end in one
                        cycle; empty columns stop here
      -> fetch stage    one entry word (``entries_per_read`` entries) per cycle; walks the
                        relative indices to absolute rows and drops padding entries
      -> entry lanes    one small queue per lane of the word
      -> multiply-accumulate, one real entry per cycle: product, accumulator read, add and
                        write back (the read port is transparent for the write port: a
                        bypass, so back-to-back updates of one row are exact)

Because the fetch stage reads several entries per cycle and the column stage runs ahead, a
column costs exactly its non-zeros in multiply cycles: padding entries and empty columns cost
none while the front of the pipeline keeps ahead.

Accumulators: two sets of gate accumulators (frames alternate between them, so the cell unit
reads one while the next frame's products accumulate in the other), each four banks so that a
cell's four gates sit at one address, and one set for the projection. A readout port lets the
cell unit and the projection writeback read rows, clearing them behind the read.

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

__all__ = ["ProcessingElement", "BroadcastLayout", "WritePortSignature", "Target", "GATES",
           "FENCE_BITS", "readout_request_members"]

#: Gate accumulators per cell (i, f, g, o), one bank each.
GATES = 4
#: Width of the fence counters.
FENCE_BITS = 3
#: Depth of the column queue and of each entry lane queue.
_COLUMN_QUEUE = 4
_LANE_QUEUE = 4


class Target(enum.IntEnum):
    """Which accumulators a broadcast activation's products go to."""
    GATES_EVEN = 0      # gate accumulators of even frames
    GATES_ODD = 1       # gate accumulators of odd frames
    PROJECTION = 2      # projection accumulators


def BroadcastLayout(config):
    """Payload of a broadcast: a column and its activation, or a fence."""
    return data.StructLayout({
        "column": unsigned(address_bits(config.pointer_depth)),
        "value": signed(config.activation_bits),
        "target": unsigned(2),
        "fence": unsigned(1),
    })


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


def readout_request_members(config):
    """Ports of a unit that reads PE accumulators: which PE, which accumulators and address.

    The data (all four banks of the address) arrive one cycle after the read.
    """
    return {
        "accumulator_pe": Out(max(1, (config.pes - 1).bit_length())),
        "accumulator_target": Out(2),
        "accumulator_address": Out(readout_address_bits(config)),
        "accumulator_read": Out(1),
        "accumulator_data": In(data.ArrayLayout(signed(config.accumulator_bits), GATES)),
    }


class ProcessingElement(wiring.Component):
    """One PE of the sparse matrix-vector unit.

    Parameters
    ----------
    config : ese.Config
        A sized configuration.

    Members
    -------
    activations : In(stream.Signature(BroadcastLayout))
        Broadcast (column, activation, target) pairs and fences, queued on entry.
    fences : Out(FENCE_BITS)
        Fences that have left the pipeline, modulo 2**FENCE_BITS.
    idle : Out(1)
        Nothing queued and nothing in flight.
    pointer_write, entry_write : In(WritePortSignature)
        Load ports: column pointers (one per address) and entry words.
    readout_enable : In(1)
        Read the accumulators ``readout_target`` at ``readout_address`` (all four gate banks,
        or the projection accumulator in lane 0); the data appear on ``readout_data`` in the
        next cycle. Only for accumulators that no queued work targets.
    readout_target, readout_address : In
    readout_clear : In(4)
        Lanes to zero at the address one cycle after the read.
    readout_data : Out(ArrayLayout(signed(accumulator_bits), 4))
    clear_enable, clear_address : In
        Zero every accumulator at ``clear_address`` (to clear state between sequences).
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
            "readout_target": In(2),
            "readout_address": In(address),
            "readout_clear": In(GATES),
            "readout_data": Out(data.ArrayLayout(signed(config.accumulator_bits), GATES)),
            "clear_enable": In(1),
            "clear_address": In(address),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        mm = MemoryMap(config)
        layout = BroadcastLayout(config)
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
            "value": signed(config.activation_bits), "target": unsigned(2),
            "fence": unsigned(1),
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
            described.value.eq(looked_up_head.value), described.target.eq(looked_up_head.target),
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

        lane_layout = data.StructLayout({
            "weight": signed(config.weight_bits),
            "row": unsigned(readout_address_bits(config) + 2),
            "value": signed(config.activation_bits),
            "target": unsigned(2),
            "fence": unsigned(1),
        })
        lane_queues = []
        for lane in range(lanes):
            fifo = SyncFIFO(width=lane_layout.size, depth=_LANE_QUEUE)
            m.submodules[f"lane{lane}"] = fifo
            lane_queues.append(fifo)

        current = data.View(column_layout, columns.r_data)
        cursor = Signal(unsigned(pointer_bits))
        started = Signal()                   # cursor belongs to the column at the queue head
        word_base = Signal(unsigned(pointer_bits))
        position = Mux(started, cursor, current.start)
        m.d.comb += word_base.eq(Cat(Const(0, lane_bits), position[lane_bits:]))
        next_word = word_base + lanes
        fetched = Signal()                   # an entry word (or a fence) is being read
        room = Cat(q.level + fetched < _LANE_QUEUE for q in lane_queues).all()
        fetch = columns.r_rdy & room
        column_done = current.fence | (next_word >= current.end)
        m.d.comb += [
            entry_read.addr.eq(word_base >> lane_bits),
            entry_read.en.eq(fetch),
            columns.r_en.eq(fetch & column_done),
        ]
        with m.If(fetch):
            m.d.sync += [cursor.eq(next_word), started.eq(~column_done)]

        # Registers for the word being read.
        word_valid = Signal(lanes)
        word_first = Signal()
        word_value = Signal(signed(config.activation_bits))
        word_target = Signal(2)
        word_fence = Signal()
        m.d.sync += fetched.eq(fetch)
        with m.If(fetch):
            m.d.sync += [
                word_valid.eq(Cat((word_base + lane >= position) & (word_base + lane < current.end)
                                  for lane in range(lanes))),
                word_first.eq(~started),
                word_value.eq(current.value),
                word_target.eq(current.target),
                word_fence.eq(current.fence),
            ]

        # Walk the relative indices: row = rows skipped so far + this entry's run.
        next_row = Signal(unsigned(readout_address_bits(config) + 3))   # row after the last
        running = Mux(word_first, 0, next_row)
        for lane in range(lanes):
            raw = entry_read.data.word_select(lane, config.entry_bits)
            weight = raw[:config.weight_bits].as_signed()
            run = raw[config.weight_bits:]
            row = running + run
            entry = data.View(lane_layout, lane_queues[lane].w_data)
            m.d.comb += [
                entry.weight.eq(weight), entry.row.eq(row), entry.value.eq(word_value),
                entry.target.eq(word_target), entry.fence.eq(word_fence),
                lane_queues[lane].w_en.eq(fetched & (word_fence
                                                     | (word_valid[lane] & (weight != 0)))),
            ]
            running = Mux(word_valid[lane], row + 1, running)
        with m.If(fetched):
            m.d.sync += next_row.eq(running)

        # ---- Multiply-accumulate: one real entry per cycle ---------------------------------
        heads = [data.View(lane_layout, q.r_data) for q in lane_queues]
        ready = [q.r_rdy & ~h.fence for q, h in zip(lane_queues, heads)]
        all_fenced = Cat(q.r_rdy & h.fence for q, h in zip(lane_queues, heads)).all()
        chosen = Signal(range(lanes))
        any_ready = Signal()
        for lane in reversed(range(lanes)):           # lowest ready lane first
            with m.If(ready[lane]):
                m.d.comb += [chosen.eq(lane), any_ready.eq(1)]
        for lane, fifo in enumerate(lane_queues):
            m.d.comb += fifo.r_en.eq((any_ready & (chosen == lane)) | (~any_ready & all_fenced))
        selected = data.View(lane_layout, Signal(lane_layout.size))
        with m.Switch(chosen):
            for lane in range(lanes):
                with m.Case(lane):
                    m.d.comb += selected.as_value().eq(lane_queues[lane].r_data)

        product_valid = Signal()
        product_fence = Signal()
        product = Signal(signed(config.product_bits))
        product_row = Signal.like(selected.row)
        product_target = Signal(2)
        m.d.sync += [
            product_valid.eq(any_ready),
            product_fence.eq(~any_ready & all_fenced),
            product.eq(selected.weight * selected.value),
            product_row.eq(selected.row),
            product_target.eq(selected.target),
        ]

        add_valid = Signal()
        add_fence = Signal()
        add_product = Signal.like(product)
        add_row = Signal.like(product_row)
        add_target = Signal(2)
        m.d.sync += [
            add_valid.eq(product_valid), add_fence.eq(product_fence),
            add_product.eq(product), add_row.eq(product_row), add_target.eq(product_target),
        ]
        fences = Signal(FENCE_BITS)
        with m.If(add_fence):
            m.d.sync += fences.eq(fences + 1)
        m.d.comb += self.fences.eq(fences)

        # ---- Accumulators -----------------------------------------------------------------
        pending_clear = Signal(GATES)
        pending_target = Signal(2)
        pending_address = Signal.like(self.readout_address)
        m.d.sync += [
            pending_clear.eq(Mux(self.readout_enable, self.readout_clear, 0)),
            pending_target.eq(self.readout_target),
            pending_address.eq(self.readout_address),
        ]
        readout_target = Signal(2)
        m.d.sync += readout_target.eq(self.readout_target)
        accumulators = []   # (target, lane, depth, read port)
        banks = [(Target.GATES_EVEN, lane, config.cells_per_pe) for lane in range(GATES)]
        banks += [(Target.GATES_ODD, lane, config.cells_per_pe) for lane in range(GATES)]
        banks += [(Target.PROJECTION, 0, config.projections_per_pe)]
        for target, lane, depth in banks:
            memory = Memory(shape=signed(config.accumulator_bits), depth=depth, init=[])
            m.submodules[f"accumulator_{target.name.lower()}_{lane}"] = memory
            write = memory.write_port()
            read = memory.read_port(transparent_for=(write,))
            is_gate = target != Target.PROJECTION
            # The MAC's address for this memory: gate rows are (cell << 2) | gate.
            mac_address = product_row[2:] if is_gate else product_row
            mac_hit = (add_valid & (add_target == target)
                       & ((add_row[:2] == lane) if is_gate else 1))
            reading = self.readout_enable & (self.readout_target == target)
            m.d.comb += [
                read.addr.eq(Mux(reading, self.readout_address, mac_address)),
                read.en.eq(1),
            ]
            with m.If(self.clear_enable):
                m.d.comb += [write.addr.eq(self.clear_address), write.data.eq(0),
                             write.en.eq(self.clear_address < depth)]
            with m.Elif(pending_clear[lane] & (pending_target == target)):
                m.d.comb += [write.addr.eq(pending_address), write.data.eq(0), write.en.eq(1)]
            with m.Else():
                m.d.comb += [
                    write.addr.eq(add_row[2:] if is_gate else add_row),
                    write.data.eq(read.data + add_product),
                    write.en.eq(mac_hit),
                ]
            accumulators.append((target, lane, read))
        for lane in range(GATES):
            with m.Switch(readout_target):
                for target, bank_lane, read in accumulators:
                    if bank_lane == lane:
                        with m.Case(target):
                            m.d.comb += self.readout_data[lane].eq(read.data)

        m.d.comb += self.idle.eq(
            (queue.level == 0) & ~looked_up & (columns.level == 0) & ~fetched
            & Cat(q.level == 0 for q in lane_queues).all()
            & ~product_valid & ~product_fence & ~add_valid & ~add_fence)
        return m
