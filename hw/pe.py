"""The processing element: sparse matrix times broadcast activations, accumulated per row.

A PE owns one interleaved slice of every matrix (see :mod:`ese.sw.encoding`): column pointers,
sparse entries (weight, relative row index) and the accumulators of its rows. The controller
broadcasts (column, activation) pairs; each PE queues them (EIE's activation queue, so that a
PE with more work on one column catches up on the next), looks up the column's entries and
multiplies each with the activation into the accumulator of its row.

Pipeline, one entry per cycle::

    queue -> column pointers (two read ports: start and end in one cycle)
          -> entry read -> row walk and multiply -> accumulator read -> add and write back

A column costs max(entries, 1) cycles; its pointer read overlaps the previous column's last
entry. The accumulators are four banks (row ``r`` in bank ``r mod 4``), so the cell unit reads
a cell's four gates in one cycle. Back-to-back updates of one row are exact: the accumulator
read port is transparent for its write port, so a read in the cycle of a write to the same
address returns the new sum.

A readout port lets the cell unit and the projection writeback read accumulator rows; each
read can clear the banks it read one cycle later, leaving them zero for the next frame.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sw.memory_map import MemoryMap, address_bits

__all__ = ["ProcessingElement", "BroadcastLayout", "WritePortSignature", "BANKS",
           "readout_request_members"]

BANKS = 4


def BroadcastLayout(config):
    """Payload of a broadcast activation: which column, its value, and the first row."""
    return data.StructLayout({
        "column": unsigned(address_bits(config.pointer_depth)),
        "value": signed(config.activation_bits),
        "row_base": unsigned(address_bits(config.accumulator_depth)),
    })


class WritePortSignature(wiring.Signature):
    """A memory write request, seen from the writer: address, data and enable."""

    def __init__(self, address_width, data_width):
        super().__init__({
            "address": Out(address_width),
            "data": Out(data_width),
            "enable": Out(1),
        })


def readout_request_members(config):
    """Ports of a unit that reads PE accumulators: which PE, which address, and the data.

    The data (all four banks of the address) arrive one cycle after the read.
    """
    return {
        "accumulator_pe": Out(max(1, (config.pes - 1).bit_length())),
        "accumulator_address": Out(address_bits(config.accumulator_depth // BANKS)),
        "accumulator_read": Out(1),
        "accumulator_data": In(data.ArrayLayout(signed(config.accumulator_bits), BANKS)),
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
        Broadcast (column, activation, row base) pairs, queued on entry.
    idle : Out(1)
        Nothing queued and nothing in flight: every accepted activation is accumulated.
    pointer_write, entry_write : In(WritePortSignature)
        Load ports of the column-pointer and entry memories.
    readout_enable : In(1)
        Read all four accumulator banks at ``readout_address``; the data appear on
        ``readout_data`` in the next cycle. Only while the PE is idle.
    readout_address : In(bank address)
    readout_clear : In(4)
        Banks to zero at ``readout_address`` one cycle after the read.
    readout_data : Out(ArrayLayout(signed(accumulator_bits), 4))
    clear_enable, clear_address : In
        Zero all four banks at ``clear_address`` (used to clear state between sequences).
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        mm = MemoryMap(config)
        self.bank_depth = config.accumulator_depth // BANKS
        bank_address = address_bits(self.bank_depth)
        super().__init__({
            "activations": In(stream.Signature(BroadcastLayout(config))),
            "idle": Out(1),
            "pointer_write": In(WritePortSignature(address_bits(config.pointer_depth),
                                                   mm.pointer_bits)),
            "entry_write": In(WritePortSignature(address_bits(config.entry_depth),
                                                 mm.entry_bits)),
            "readout_enable": In(1),
            "readout_address": In(bank_address),
            "readout_clear": In(BANKS),
            "readout_data": Out(data.ArrayLayout(signed(config.accumulator_bits), BANKS)),
            "clear_enable": In(1),
            "clear_address": In(bank_address),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        mm = MemoryMap(config)
        layout = BroadcastLayout(config)

        # Activation queue.
        m.submodules.queue = queue = SyncFIFOBuffered(width=layout.size,
                                                      depth=config.activation_queue_depth)
        m.d.comb += [
            queue.w_data.eq(self.activations.payload),
            queue.w_en.eq(self.activations.valid),
            self.activations.ready.eq(queue.w_rdy),
        ]
        head = data.View(layout, queue.r_data)

        # Memories.
        m.submodules.pointers = pointers = Memory(shape=unsigned(mm.pointer_bits),
                                                  depth=config.pointer_depth, init=[])
        m.submodules.entries = entries = Memory(shape=unsigned(mm.entry_bits),
                                                depth=config.entry_depth, init=[])
        for memory, port in ((pointers, self.pointer_write), (entries, self.entry_write)):
            write = memory.write_port()
            m.d.comb += [write.addr.eq(port.address), write.data.eq(port.data),
                         write.en.eq(port.enable)]
        start_port = pointers.read_port()
        end_port = pointers.read_port()
        entry_port = entries.read_port()

        banks = []
        for bank in range(BANKS):
            memory = Memory(shape=signed(config.accumulator_bits), depth=self.bank_depth, init=[])
            m.submodules[f"accumulator{bank}"] = memory
            write = memory.write_port()
            read = memory.read_port(transparent_for=(write,))
            banks.append((read, write))

        # Column stage: pops the queue, reads the column's pointers, walks its entries.
        column_active = Signal()      # pointers or a cursor describe a column being walked
        pointers_fresh = Signal()     # the pointer ports show this column's start and end
        cursor = Signal(unsigned(mm.pointer_bits))
        end = Signal(unsigned(mm.pointer_bits))
        value = Signal(signed(config.activation_bits))
        row_base = Signal(layout["row_base"].shape)

        current = Mux(pointers_fresh, start_port.data, cursor)
        limit = Mux(pointers_fresh, end_port.data, end)
        has_entry = column_active & (current != limit)
        column_done = ~column_active | ~has_entry | (current + 1 == limit)
        pop = column_done & queue.r_rdy

        m.d.comb += [
            start_port.addr.eq(head.column),
            end_port.addr.eq(head.column + 1),
            start_port.en.eq(pop),
            end_port.en.eq(pop),
            queue.r_en.eq(pop),
            entry_port.addr.eq(current),
            entry_port.en.eq(has_entry),
        ]
        m.d.sync += [
            pointers_fresh.eq(pop),
            cursor.eq(current + 1),
            end.eq(limit),
        ]
        with m.If(pop):
            m.d.sync += [column_active.eq(1), value.eq(head.value), row_base.eq(head.row_base)]
        with m.Elif(column_done):
            m.d.sync += column_active.eq(0)

        # Entry stage: the entry arrives; walk the rows of the column and multiply.
        entry_valid = Signal()
        entry_first = Signal()
        entry_value = Signal(signed(config.activation_bits))
        entry_base = Signal.like(row_base)
        m.d.sync += [
            entry_valid.eq(has_entry),
            entry_first.eq(pointers_fresh),
            entry_value.eq(value),
            entry_base.eq(row_base),
        ]
        weight = entry_port.data[:config.weight_bits].as_signed()
        run = entry_port.data[config.weight_bits:]
        next_row = Signal(unsigned(address_bits(config.accumulator_depth) + 1))
        row = Signal.like(next_row)
        m.d.comb += row.eq(Mux(entry_first, 0, next_row) + run)
        with m.If(entry_valid):
            m.d.sync += next_row.eq(row + 1)

        product_valid = Signal()
        product = Signal(signed(config.product_bits))
        target = Signal(unsigned(address_bits(config.accumulator_depth)))
        m.d.sync += [
            product_valid.eq(entry_valid),
            product.eq(weight * entry_value),
            target.eq(entry_base + row),
        ]

        # Accumulate stage: read the row's accumulator, add in the next cycle.
        add_valid = Signal()
        add_bank = Signal(range(BANKS))
        add_address = Signal(address_bits(self.bank_depth))
        add_product = Signal.like(product)
        m.d.sync += [
            add_valid.eq(product_valid),
            add_bank.eq(target[:2]),
            add_address.eq(target[2:]),
            add_product.eq(product),
        ]

        # Readout: read now, clear the requested banks one cycle later.
        clear_pending = Signal(BANKS)
        clear_pending_address = Signal.like(self.readout_address)
        m.d.sync += [
            clear_pending.eq(Mux(self.readout_enable, self.readout_clear, 0)),
            clear_pending_address.eq(self.readout_address),
        ]
        for index, (read, write) in enumerate(banks):
            m.d.comb += [
                read.addr.eq(Mux(self.readout_enable, self.readout_address, target[2:])),
                read.en.eq(1),
                self.readout_data[index].eq(read.data),
            ]
            with m.If(self.clear_enable):
                m.d.comb += [write.addr.eq(self.clear_address), write.data.eq(0), write.en.eq(1)]
            with m.Elif(clear_pending[index]):
                m.d.comb += [write.addr.eq(clear_pending_address), write.data.eq(0),
                             write.en.eq(1)]
            with m.Else():
                m.d.comb += [
                    write.addr.eq(add_address),
                    write.data.eq(read.data + add_product),
                    write.en.eq(add_valid & (add_bank == index)),
                ]

        m.d.comb += self.idle.eq((queue.level == 0) & ~column_active & ~entry_valid
                                 & ~product_valid & ~add_valid)
        return m
