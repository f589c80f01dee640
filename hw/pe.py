"""The processing element: sparse matrix times broadcast activations, accumulated per row.

A PE owns one interleaved slice of every matrix (see :mod:`ese.sw.runtime.encoding`): column
pointers, sparse entries (weight, relative row index) and, for every channel, the accumulators
of its rows. Channels run in lock-step: the broadcaster sends (column, one activation per
channel, target) to every PE; each PE queues them (EIE's activation queue, so that a PE with
more work on one column catches up on the next), reads the column's entries once and multiplies
each with every channel's activation. A weight is fetched once for all channels.

Pipeline::

    activation queue
      -> column stage   pointers from two banks (even and odd columns), start and end in one
                        cycle, registered, then turned into the column's first word, how many
                        follow and its edge slots; empty columns stop here
      -> column queue   its head a register
      -> fetch stage    one entry word (``entries_per_read`` entries) per cycle
      -> load           the word in the read's output register
      -> decode stage   sums the word's relative indices (a tree of adders)
      -> row stage      adds them to the walk's position: accumulator rows
      -> word queue     the real entries of each word, in order (padding entries dropped);
                        its head a register
      -> pick           the lowest real entry not yet issued, into the issue register
      -> issue          one real entry per cycle, with its column's activations; the
                        accumulator memory is read for the entry's row
      -> product        one MultiplyAccumulate per channel multiplies
      -> add            ... adds the row's previous value and writes the sum back

Every stage starts from registers and none holds more than a few LUTs between them (the
32 x 32 machine's deepest paths are measured by ``ese estimate --direct``).

Because the fetch stage reads several entries per cycle and the column stage runs ahead, a
column costs exactly its non-zeros in multiply cycles: padding entries and empty columns cost
none while the front of the pipeline keeps ahead.

The accumulators of every channel sit side by side in one memory per PE, a word per row (its
gate rows in two banks, a frame step's products going to the bank of its parity, then its
projection rows): channels in lock-step read and write the
same row at once, so the memory is as wide as the channels and as deep as the rows, which
suits block RAM, and the control (the row, forwarding between back-to-back entries, clearing)
is the PE's, not the channels'. A readout port lets the cell unit and the projection
writeback read a row of every channel; it borrows the memory's read port for a cycle. A
readout clears the row by flagging it: a flagged row reads as zero until it is next written.

Fences: a broadcast fence travels down the whole pipeline behind the work queued before it;
``fences`` counts those that have left it, so the sequencer knows when every product queued
before a fence is in the accumulators.
"""

import enum
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import MemoryMap, address_bits
from .axi import forward
from .layouts import (
    FENCE_BITS,
    SEQUENCE_BITS,
    BroadcastLayout,
    BroadcastValues,
    ChannelAccumulators,
    EntryBeatSignature,
    StreamSectionsLayout,
    Target,
    WritePortSignature,
    accumulator_row,
    accumulator_row_bits,
    accumulator_rows,
)
from .pipeline import delay

__all__ = ["ProcessingElement", "MultiplyAccumulate", "Previous", "COLUMN_QUEUE_DEPTH",
           "QUEUE_CYCLES", "COLUMN_STAGE_CYCLES", "FETCH_CYCLES", "DECODE_CYCLES",
           "PICK_CYCLES", "FENCE_EXIT_CYCLES", "ADDER_LEVELS_PER_STAGE", "tree_stages",
           "forwarded", "issue_latency", "fence_latency"]

#: Columns the column stage may run ahead of the multiplier: the column queue's depth.
COLUMN_QUEUE_DEPTH = 4

# The pipeline's latencies, stage by stage, in a PE with nothing else to do.
#: From a write into one of the PE's queues to the entry at its head: Amaranth's
#: SyncFIFOBuffered reads its memory, then loads its output register. The activation queue,
#: the column queue and the word queue are such queues.
QUEUE_CYCLES = 2
#: The column stage: from the activation queue's pop to the column queue's write (the
#: pointers on the banks' read ports, then registered).
COLUMN_STAGE_CYCLES = 2
#: The fetch stage: from a word's fetch to the decode (the entry memory's read, then its
#: output register).
FETCH_CYCLES = 2
#: The decode stage; the row stage after it writes the word queue in the same cycle.
DECODE_CYCLES = 1
#: From the word queue's head to the issue register: the pick.
PICK_CYCLES = 1
#: From a fence in the issue register to ``fences`` counting it, with entries of one column:
#: the product and add stages, which it follows behind the entries issued before it, then the
#: count's register. The sum of a block entry's products adds :func:`tree_stages`.
FENCE_EXIT_CYCLES = 3
#: Levels of pairwise adders in one stage of the sum of a block entry's products.
ADDER_LEVELS_PER_STAGE = 2
#: Columns between the pointer read and the fetch stage besides the queue: the pointers on
#: the banks' outputs, registered, and the queue's output register.
_COLUMN_STAGES = 2
#: Depths of the word queue (the three stages between the fetch and the queue, and two
#: cycles from its input to its output register, plus one) and the queue of columns in
#: flight.
_WORD_QUEUE = 7
_VALUES_IN_FLIGHT = 8


def tree_stages(config):
    """Stages the sum of a block entry's products takes beyond the one register that holds a
    single product (``ADDER_LEVELS_PER_STAGE`` levels of pairs each)."""
    levels = (config.block_columns - 1).bit_length()
    return max(0, -(-levels // ADDER_LEVELS_PER_STAGE) - 1)


def issue_latency(config):
    """Cycles from a column's broadcast to its first entry in the issue register (or a
    fence's), in a PE with nothing else to do: the activation queue, the column stage, the
    column queue, the fetch and decode stages, the word queue and the pick."""
    return (QUEUE_CYCLES + COLUMN_STAGE_CYCLES + QUEUE_CYCLES + FETCH_CYCLES + DECODE_CYCLES
            + QUEUE_CYCLES + PICK_CYCLES)


def fence_latency(config):
    """Cycles from a fence's broadcast to ``fences`` counting it, in a PE with nothing else
    to do; each entry queued before it delays it a cycle more."""
    return issue_latency(config) + FENCE_EXIT_CYCLES + tree_stages(config)


def _tree_sum(values):
    """The sum of ``values`` as a balanced tree of adders."""
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class Previous(enum.IntEnum):
    """Where the add stage finds a row's previous value (see :class:`MultiplyAccumulate`);
    ``FORWARDED + d`` is the sum written ``d + 1`` cycles before."""
    ZERO = 0            # the row was cleared by a readout (or a reset) and not written since
    MEMORY = 1          # the accumulator memory, read when the entry was issued
    FORWARDED = 2       # the sum written in the previous cycle (the same row, back to back)


def shifts_sums(config):
    """Whether the alignment shift of a block's products is applied to each channel's sum of
    them (one shifter a channel) rather than to the entry's weights (one a column, shared by
    the channels): where the blocks are wider than the channels are many. The sum is exact
    either way: the shift of a sum is the sum of the shifts."""
    return config.block_columns > config.channels


def forwarded(config):
    """Sums the add stage may take from its own last results instead of the accumulator
    memory: those of the entries issued in the cycles between an entry's read of the memory
    and its add."""
    return 2 + tree_stages(config)


class MultiplyAccumulate(wiring.Component):
    """One channel's multiply-add in a PE: the products of an entry's weights with its block's
    activations, their sum, the row's previous value, and the new sum.

    An entry issued in cycle u is multiplied in cycle u (registered), its products summed
    over ``tree_stages + 1`` cycles (a stage adds at most two levels of pairs; with one
    column per entry the sum is the product, held a cycle), and added in cycle u + 2 +
    tree_stages to the row's previous value, which ``previous`` selects (the same for every
    channel, so the PE decides it once): the memory's value read in cycle u misses the sums
    of the :func:`forwarded` entries issued just before; those come from ``total``'s last
    values instead.

    Members
    -------
    weights : In(ArrayLayout(signed(weight_bits [+ max_align]), block_columns))
        The entry issued this cycle; shifted by its block's alignment unless the sum of its
        products is (:func:`shifts_sums`).
    values : In(ArrayLayout(signed(activation_bits + delta), block_columns))
        This channel's activations for the entry's block (with delta units, their changes: a
        bit wider).
    align : In(align_bits)
        Where :func:`shifts_sums`: the block's alignment, to shift the sum of its products by
        on the sum's last stage.
    stored : In(signed(accumulator_bits))
        At the add stage: the row's value from the accumulator memory.
    previous : In(range(Previous.FORWARDED + forwarded(config)))
        At the add stage: where the row's previous value is (:class:`Previous`).
    total : Out(signed(accumulator_bits))
        The row's new value (written back by the PE when the add stage holds an entry).
    """

    def __init__(self, config):
        self.config = config
        weight_bits = config.weight_bits + (0 if shifts_sums(config) else config.max_align)
        super().__init__({
            "weights": In(data.ArrayLayout(signed(weight_bits), config.block_columns)),
            "values": In(data.ArrayLayout(signed(config.activation_bits + config.delta),
                                          config.block_columns)),
            "align": In(config.align_bits),
            "stored": In(signed(config.accumulator_bits)),
            "previous": In(range(Previous.FORWARDED + forwarded(config))),
            "total": Out(signed(config.accumulator_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        # The compiler bounds every row's sum, so a product, and a sum of an entry's products
        # (each a term of the row's sum), fit the accumulator's width whatever the alignment.
        width = min(config.product_bits + config.delta + config.max_align
                    + (config.block_columns - 1).bit_length(), config.accumulator_bits)
        product_bits = min(len(self.weights[0]) + len(self.values[0]), width)
        terms = []
        for column in range(config.block_columns):
            product = Signal(signed(product_bits), name=f"product{column}")
            m.d.sync += product.eq(self.weights[column] * self.values[column])
            terms.append(product)
        # The products' sum, two levels of pairs per stage, each stage registered; where the
        # sum takes the alignment, the last stage shifts it.
        stages = tree_stages(config) + 1
        align = delay(m, self.align, stages, "align") if shifts_sums(config) else 0
        for stage in range(stages):
            for _ in range(ADDER_LEVELS_PER_STAGE):
                terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                         for i in range(0, len(terms), 2)]
            if stage == stages - 1 and shifts_sums(config):
                terms = [term << align for term in terms]
            summed = [Signal(signed(width), name=f"sum{stage}_{i}") for i in range(len(terms))]
            m.d.sync += [register.eq(term) for register, term in zip(summed, terms)]
            terms = summed
        added, = terms
        recent = [Signal.like(self.total, name=f"forwarded{d}")
                  for d in range(forwarded(config))]
        m.d.sync += [recent[0].eq(self.total)]
        m.d.sync += [later.eq(earlier) for earlier, later in zip(recent, recent[1:])]
        previous = Signal.like(self.total)
        with m.Switch(self.previous):
            with m.Case(Previous.MEMORY):
                m.d.comb += previous.eq(self.stored)
            for d, value in enumerate(recent):
                with m.Case(Previous.FORWARDED + d):
                    m.d.comb += previous.eq(value)
        m.d.comb += self.total.eq(previous + added)
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
        Broadcast (column, activations, target and gate bank) and fences, queued on entry.
    accepting : Out(1)
        From a register: the queue takes a column in this cycle whatever the last one
        brought, so a broadcast to every PE can wait on registers alone.
    fences : Out(FENCE_BITS)
        Fences that have left the pipeline, modulo 2**FENCE_BITS.
    idle : Out(1)
        Nothing queued and nothing in flight.
    pointer_write, entry_write : In(WritePortSignature)
        Load ports: column pointers (one per address) and entry words.
    readout_enable, readout_row : In
        Read every channel's accumulator of a row (see :func:`accumulator_row`) and clear it;
        the data appear on ``readout_data`` in the next cycle. The read takes the accumulator
        memory's read port, so no entry issues in that cycle. Only for rows that no queued
        work targets.
    readout_data : Out(ChannelAccumulators)
    readout_fresh : Out(1)
        The row read had been cleared and not written since: its value is zero, whatever
        ``readout_data`` shows.
    clear_enable : In(1)
        Clear every accumulator (after a reset).
    beat : In(EntryBeatSignature), sections_write : In(1), sections : In, freed : Out
        Streamed configurations (instead of ``entry_write``): the entry words arrive as memory
        beats into two rings, and ``freed`` tells the streamer, per ring, the sequence number
        of the oldest word still needed (see :mod:`ese.hw.streamer`). ``sections`` (written
        with ``sections_write``) is the PE's element of the STREAMS table.
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        mm = MemoryMap(config)
        if config.streamed:
            entry_members = {
                "beat": In(EntryBeatSignature(config)),
                "sections_write": In(1),
                "sections": In(mm.stream_bits),
                "freed": Out(data.ArrayLayout(unsigned(SEQUENCE_BITS), 2)),
            }
        else:
            entry_members = {"entry_write": In(WritePortSignature(address_bits(mm.entry_words),
                                                                  mm.entry_word_bits))}
        super().__init__({
            "activations": In(stream.Signature(BroadcastLayout(config))),
            "accepting": Out(1),
            "fences": Out(FENCE_BITS),
            "idle": Out(1),
            "pointer_write": In(WritePortSignature(address_bits(config.pointer_depth),
                                                   mm.pointer_bits)),
            **entry_members,
            "readout_enable": In(1),
            "readout_row": In(accumulator_row_bits(config)),
            "readout_data": Out(ChannelAccumulators(config)),
            "readout_fresh": Out(1),
            "clear_enable": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        mm = MemoryMap(config)
        layout = BroadcastLayout(config)
        # A column's activations travel through the PE with the alignment of its weights'
        # products (the layer's shift for that kind of column).
        values_layout = data.StructLayout({"values": BroadcastValues(config),
                                           "align": unsigned(config.align_bits)})
        slots = config.entries_per_read          # entries of one entry word
        slot_bits = (slots - 1).bit_length()
        pointer_bits = mm.pointer_bits

        # A word of the word queue: its entries' weights and accumulator rows, which slots
        # hold a real entry, and the column's flags.
        entry_weights = data.ArrayLayout(signed(config.weight_bits), config.block_columns)
        word_layout = data.StructLayout({
            "weights": data.ArrayLayout(entry_weights, slots),
            "rows": data.ArrayLayout(unsigned(accumulator_row_bits(config)), slots),
            "real": unsigned(slots),
            "target": unsigned(1),
            "fence": unsigned(1),
            "last": unsigned(1),              # the column's last word: its values may go
        })
        u = SimpleNamespace(slot_bits=slot_bits, slots=slots, layout=layout, mm=mm,
                            pointer_bits=pointer_bits, values_layout=values_layout,
                            word_layout=word_layout, entry_weights=entry_weights)
        self._activation_queue(m, u)
        self._column_stage(m, u)
        self._fetch_stage(m, u)
        self._decode_stage(m, u)
        self._row_stage(m, u)
        self._issue_stage(m, u)
        self._accumulate_stage(m, u)
        return m

    def _activation_queue(self, m, u):
        """The activation queue: broadcast columns, queued on entry."""
        config = self.config
        # One entry more than the configured depth: ``accepting`` is a cycle late.
        m.submodules.queue = queue = SyncFIFOBuffered(width=u.layout.size,
                                                      depth=config.activation_queue_depth + 1)
        forward(m, self.activations, queue.w_stream)
        m.d.sync += self.accepting.eq(queue.level < config.activation_queue_depth)
        head = data.View(u.layout, queue.r_data)
        u.head, u.queue = head, queue

    def _column_stage(self, m, u):
        """The column stage: a column's pointers from the even and odd banks in one cycle; empty
        columns end here."""
        config = self.config
        bank_depth = config.pointer_depth // 2
        pointer_banks = []
        for parity in (0, 1):
            memory = Memory(shape=unsigned(u.pointer_bits), depth=bank_depth, init=[])
            m.submodules[f"pointers_{'odd' if parity else 'even'}"] = memory
            write = memory.write_port()
            m.d.comb += [
                write.addr.eq(self.pointer_write.addr[1:]),
                write.data.eq(self.pointer_write.data),
                write.en.eq(self.pointer_write.en & (self.pointer_write.addr[0] == parity)),
            ]
            pointer_banks.append(memory.read_port())
        even, odd = pointer_banks
        column = u.head.beat.column
        m.d.comb += [even.addr.eq((column + 1) >> 1), odd.addr.eq(column >> 1)]

        # The column's words: its first as a sequence number in its ring (streamed) or as an
        # entry-memory address, how many follow, and the first and last real slots of the
        # column's first and last words. The fetch stage walks from the first word on and
        # counts the rest down, so it compares nothing wide.
        streamed = config.streamed
        word_bits = SEQUENCE_BITS if streamed else address_bits(u.mm.entry_words)
        column_fields = {
            "first": unsigned(word_bits),
            "more": unsigned(u.pointer_bits),       # words after the first
            "single": unsigned(1),                  # more == 0
            "first_slot": unsigned(max(u.slot_bits, 1)),
            "last_slot": unsigned(max(u.slot_bits, 1)),
            "values": u.values_layout, "target": unsigned(1), "bank": unsigned(1),
            "fence": unsigned(1),
        }
        if streamed:
            column_fields["ring"] = unsigned(1)     # the ring the column's words are in
        column_layout = data.StructLayout(column_fields)
        # The queue's head is a register (SyncFIFOBuffered), so the fetch stage's decisions
        # start from flops.
        columns_depth = COLUMN_QUEUE_DEPTH + _COLUMN_STAGES
        m.submodules.columns = columns = SyncFIFOBuffered(width=column_layout.size,
                                                          depth=columns_depth)
        # Three cycles: the pointers are read (pop), come out of the banks (looked_up) and,
        # registered, are turned into the column's words (pointed).
        looked_up = Signal()                 # a column's pointers are on the read ports
        looked_up_parity = Signal()
        looked_up_head = Signal(u.layout)
        pointed = Signal()                   # ... and registered
        pointed_head = Signal(u.layout)
        pointed_start = Signal(unsigned(u.pointer_bits))
        pointed_last = Signal(unsigned(u.pointer_bits))     # the column's last entry
        pointed_empty = Signal()
        pop = u.queue.r_rdy & (columns.level + looked_up + pointed < columns_depth)
        m.d.comb += [u.queue.r_en.eq(pop), even.en.eq(pop), odd.en.eq(pop)]
        m.d.sync += [looked_up.eq(pop), pointed.eq(looked_up)]
        with m.If(pop):
            m.d.sync += [looked_up_parity.eq(column[0]), looked_up_head.eq(u.head)]
        start = Mux(looked_up_parity, odd.data, even.data)
        end = Mux(looked_up_parity, even.data, odd.data)
        with m.If(looked_up):
            m.d.sync += [pointed_head.eq(looked_up_head), pointed_start.eq(start),
                         pointed_last.eq(end - 1), pointed_empty.eq(start == end)]

        described = data.View(column_layout, columns.w_data)
        m.d.comb += [
            described.first_slot.eq(pointed_start[:u.slot_bits]),
            described.last_slot.eq(pointed_last[:u.slot_bits]),
            described.values.values.eq(pointed_head.beat.values),
            described.values.align.eq(pointed_head.beat.align),
            described.target.eq(pointed_head.beat.target),
            described.bank.eq(pointed_head.beat.bank),
            described.fence.eq(pointed_head.fence),
            # Empty columns end here; fences go on.
            columns.w_en.eq(pointed & (pointed_head.fence | ~pointed_empty)),
        ]
        first_word, last_word = pointed_start >> u.slot_bits, pointed_last >> u.slot_bits
        m.d.comb += [described.more.eq(last_word - first_word),
                     described.single.eq(last_word == first_word)]
        if streamed:
            lap_offset = self._track_laps(m, described, columns.w_en & ~pointed_head.fence,
                                     ~pointed_head.filler, pointed_start)
            m.d.comb += described.first.eq(lap_offset + first_word)
        else:
            m.d.comb += described.first.eq(first_word)
        u.column_layout, u.columns, u.streamed = column_layout, columns, streamed
        u.looked_up, u.pointed = looked_up, pointed

    def _fetch_stage(self, m, u):
        """The fetch stage: one entry word of the column at the column queue's head per cycle,
        into the read's output register, with which of its slots belong to the column."""
        m.submodules.words = words = SyncFIFOBuffered(width=u.word_layout.size,
                                                      depth=_WORD_QUEUE)
        m.submodules.in_flight = in_flight = SyncFIFO(width=u.values_layout.size,
                                                      depth=_VALUES_IN_FLIGHT)

        current = data.View(u.column_layout, u.columns.r_data)
        cursor = Signal.like(current.first)     # the next word of the column at the head
        started = Signal()                   # cursor belongs to the column at the queue head
        left = Signal.like(current.more)     # words of the column after the cursor's
        final = Signal()                     # left == 0
        word = Signal.like(current.first)
        at_last = Signal()
        following = Signal.like(current.more)
        m.d.comb += [word.eq(Mux(started, cursor, current.first)),
                     following.eq(Mux(started, left, current.more)),
                     at_last.eq(Mux(started, final, current.single))]
        fetched = Signal()                   # an entry word (or a fence) is being read
        loaded = Signal()                    # ... is in the read's output register
        decoded = Signal()                   # ... its runs are being added to the walk
        # The word queue is written two cycles after the fetch; the values in flight at once.
        room = (words.level + fetched + loaded + decoded < _WORD_QUEUE) & in_flight.w_rdy
        fetch = Signal()
        # The fetched word, two cycles after the fetch: the memory's read, then its output
        # register (a block RAM's own), so the decode's adders start from a flop.
        entry_data = Signal(u.mm.entry_word_bits)
        if u.streamed:
            present = self._stream_entries(m, current, word, u.columns.r_rdy, fetch, entry_data)
            m.d.comb += fetch.eq(u.columns.r_rdy & room & (current.fence | present))
        else:
            m.submodules.entries = entries = Memory(shape=unsigned(u.mm.entry_word_bits),
                                                    depth=u.mm.entry_words, init=[])
            entry_write = entries.write_port()
            m.d.comb += [entry_write.addr.eq(self.entry_write.addr),
                         entry_write.data.eq(self.entry_write.data),
                         entry_write.en.eq(self.entry_write.en)]
            entry_read = entries.read_port()
            m.d.comb += [fetch.eq(u.columns.r_rdy & room),
                         entry_read.addr.eq(word), entry_read.en.eq(fetch)]
            m.d.sync += entry_data.eq(entry_read.data)
        column_done = current.fence | at_last
        m.d.comb += [
            u.columns.r_en.eq(fetch & column_done),
            # A column's activations wait in flight from its first word to its last.
            in_flight.w_data.eq(current.values),
            in_flight.w_en.eq(fetch & ~started & ~current.fence),
        ]
        with m.If(fetch):
            m.d.sync += [cursor.eq(word + 1), started.eq(~column_done),
                         left.eq(following - 1), final.eq(following == 1)]

        flags = Signal(data.StructLayout({
            "valid": unsigned(u.slots),      # slots of the column
            "first": unsigned(1), "target": unsigned(1), "bank": unsigned(1),
            "fence": unsigned(1), "last": unsigned(1),
        }))
        m.d.sync += [fetched.eq(fetch), loaded.eq(fetched)]
        with m.If(fetch):
            m.d.sync += [
                # The column's first word starts at its first slot, its last ends at its
                # last slot; words between are whole.
                flags.valid.eq(Cat(
                    (started | (current.first_slot <= slot) if slot < u.slots - 1
                     else Const(1))
                    & (~at_last | (current.last_slot >= slot) if slot > 0 else Const(1))
                    for slot in range(u.slots))),
                flags.first.eq(~started),
                flags.target.eq(current.target),
                flags.bank.eq(current.bank),
                flags.fence.eq(current.fence),
                flags.last.eq(column_done),
            ]
        u.fetched, u.loaded, u.decoded = fetched, loaded, decoded
        u.in_flight, u.words = in_flight, words
        # The word's slots and flags, a cycle later, beside its data.
        u.entry_data = entry_data
        u.entry_flags = data.View(flags.shape(), delay(m, flags, 1, "loaded_flags"))

    def _decode_stage(self, m, u):
        """The decode stage: the relative indices of the loaded word, summed slot by slot.

        Walking the relative indices gives accumulator rows: an entry's row is the row after
        the previous entry plus its run of skipped rows. Two stages do it: this one adds up the
        runs within the word (from the entry memory's output), the row stage adds them to where
        the walk stands, so the walk's loop is one adder deep."""
        config = self.config
        offset_bits = (u.slots << config.index_bits).bit_length()    # up to slots * 2**index
        decoded_word = Signal(data.StructLayout({
            "weights": data.ArrayLayout(u.entry_weights, u.slots),
            "offsets": data.ArrayLayout(unsigned(offset_bits), u.slots),
            "rows": unsigned(offset_bits),                          # rows the word walks over
            "real": unsigned(u.slots), "first": unsigned(1), "target": unsigned(1),
            "bank": unsigned(1), "fence": unsigned(1), "last": unsigned(1),
        }))
        flags = u.entry_flags
        real = []
        m.d.sync += u.decoded.eq(u.loaded)
        with m.If(u.loaded):
            # Slot k's offset is its run plus every earlier valid slot's run and entry: the
            # earlier slots' sums are a tree of pairwise sums, so the decode stays shallow.
            # An entry is its weights, the first column's lowest, then its run; an entry of
            # zero weights is padding.
            runs, steps = [], []
            weight_bits = config.block_columns * config.weight_bits
            for slot in range(u.slots):
                raw = u.entry_data.word_select(slot, config.entry_bits)
                runs.append(raw[weight_bits:])
                steps.append(Mux(flags.valid[slot], raw[weight_bits:] + 1, 0))
                m.d.sync += decoded_word.weights[slot].eq(raw[:weight_bits])
                real.append(flags.valid[slot] & (raw[:weight_bits] != 0))
            for slot in range(u.slots):
                m.d.sync += decoded_word.offsets[slot].eq(_tree_sum(steps[:slot] + [runs[slot]]))
            m.d.sync += [
                decoded_word.rows.eq(_tree_sum(steps)), decoded_word.real.eq(Cat(real)),
                decoded_word.first.eq(flags.first), decoded_word.target.eq(flags.target),
                decoded_word.bank.eq(flags.bank),
                decoded_word.fence.eq(flags.fence), decoded_word.last.eq(flags.last),
            ]
        u.decoded_word = decoded_word

    def _row_stage(self, m, u):
        """The row stage: the decoded word's offsets added to where the walk stands give its
        entries' accumulator rows; words of real entries (and fences, and a column's last
        word) go into the word queue, words of padding alone are dropped."""
        config = self.config
        decoded_word = u.decoded_word
        # A gate column's walk starts at its bank's gate rows, a projection column's at the
        # projection rows, after them.
        next_row = Signal(unsigned(accumulator_row_bits(config) + 1))   # after the last entry
        first_row = Mux(decoded_word.target == Target.PROJECTION,
                        accumulator_row(config, Target.PROJECTION, 0),
                        Mux(decoded_word.bank, accumulator_row(config, Target.GATES, 0, 1), 0))
        start_row = Signal.like(next_row)
        m.d.comb += start_row.eq(Mux(decoded_word.first, first_row, next_row))
        with m.If(u.decoded):
            m.d.sync += next_row.eq(start_row + decoded_word.rows)
        word = data.View(u.word_layout, u.words.w_data)
        for slot in range(u.slots):
            m.d.comb += [word.weights[slot].eq(decoded_word.weights[slot]),
                         word.rows[slot].eq(start_row + decoded_word.offsets[slot])]
        m.d.comb += [
            word.real.eq(decoded_word.real), word.target.eq(decoded_word.target),
            word.fence.eq(decoded_word.fence), word.last.eq(decoded_word.last),
            # Words of only padding carry nothing but, on a column's last word, its release.
            u.words.w_en.eq(u.decoded & (decoded_word.fence | (decoded_word.real != 0)
                                         | decoded_word.last)),
        ]

    def _issue_stage(self, m, u):
        """The issue stage: one real entry per cycle, in order, picked from the head word into
        the issue register; a readout takes the cycle."""
        config = self.config
        head_word = data.View(u.word_layout, u.words.r_data)
        issued = Signal(u.slots)               # slots of the head word already picked
        pending = Signal(u.slots)
        lowest = Signal(u.slots)               # the lowest pending slot, one-hot
        m.d.comb += [pending.eq(head_word.real & ~issued), lowest.eq(pending & -pending)]
        # A readout takes the accumulator memory's read port: the issue register holds its
        # entry (or fence) and nothing is picked in that cycle.
        advance = ~self.readout_enable
        pick = u.words.r_rdy & ~head_word.fence & (pending != 0) & advance
        word_finished = u.words.r_rdy & advance & (head_word.fence | (pending == lowest))
        m.d.comb += [
            u.words.r_en.eq(word_finished),
            u.in_flight.r_en.eq(word_finished & head_word.last & ~head_word.fence),
        ]
        with m.If(word_finished):
            m.d.sync += issued.eq(0)
        with m.Elif(pick):
            m.d.sync += issued.eq(issued | lowest)

        # The issue register: the entry picked (its weights, its row and its block's
        # activations) or a fence, presented to the accumulator memory and the multipliers.
        entry_valid = Signal()
        entry_fence = Signal()
        entry_weights = Signal(u.entry_weights)
        entry_row = Signal(accumulator_row_bits(config))
        entry_values = Signal(u.values_layout)
        chosen_weights, chosen_row = 0, 0
        for slot in range(u.slots):
            chosen_weights |= Mux(lowest[slot], head_word.weights[slot].as_value(), 0)
            chosen_row |= Mux(lowest[slot], head_word.rows[slot], 0)
        with m.If(advance):
            m.d.sync += [entry_valid.eq(pick),
                         entry_fence.eq(u.words.r_rdy & head_word.fence)]
            with m.If(pick):
                m.d.sync += [entry_weights.eq(chosen_weights), entry_row.eq(chosen_row),
                             entry_values.eq(u.in_flight.r_data)]
        u.issue = entry_valid & advance
        u.issue_fence = entry_fence & advance
        u.entry_valid, u.entry_fence = entry_valid, entry_fence
        u.issue_row, u.stall = entry_row, self.readout_enable
        u.entry_weights, u.values = entry_weights, data.View(u.values_layout, entry_values)

    def _accumulate_stage(self, m, u):
        """The multiply-add: product and add stages with forwarding, the cleared flags, the
        fences leaving, and whether the PE is idle."""
        config = self.config
        accumulators = Memory(shape=ChannelAccumulators(config), depth=accumulator_rows(config),
                              init=[])
        m.submodules.accumulators = accumulators
        read = accumulators.read_port()
        write = accumulators.write_port()
        m.d.comb += [read.addr.eq(Mux(u.stall, self.readout_row, u.issue_row)), read.en.eq(1),
                     self.readout_data.eq(read.data)]
        # Rows cleared by a readout (or a reset) and not written since read as zero: clearing
        # is a flag per row, shared by the channels, instead of a write of zeros.
        cleared = Signal(accumulator_rows(config))

        # An entry issued in cycle u: its products in cycle u + 1, their sum through the tree's
        # stages, its add in cycle u + 2 + tree_stages (MultiplyAccumulate); its row beside it.
        stages = 1 + tree_stages(config)                 # from the products to the add
        valid = [u.issue] + [Signal(name=f"valid_s{j}") for j in range(1, stages + 2)]
        row = [u.issue_row] + [Signal.like(u.issue_row, name=f"row_s{j}")
                               for j in range(1, stages + 2)]
        for j in range(1, stages + 2):
            m.d.sync += [valid[j].eq(valid[j - 1]), row[j].eq(row[j - 1])]
        add_valid, add_row = valid[stages + 1], row[stages + 1]
        # The rows the add stage wrote in the cycles before (1, 2, ...: as many as the sums
        # it forwards, less the one it adds now).
        written = [(add_valid, add_row)] + [
            (delay(m, add_valid, d, f"written_valid{d}"), delay(m, add_row, d, f"written_row{d}"))
            for d in range(1, forwarded(config))]
        # The row's cleared flag is looked up in the issue cycle, from the issue register: a
        # write after that which clears it is forwarded anyway, and a readout in that cycle
        # cannot be (it stalls the issue).
        was_cleared = delay(m, cleared.bit_select(u.issue_row, 1), stages, "was_cleared")
        # The memory is read in cycle u, its value on the port in cycle u + 1, and it waits
        # for the add.
        stored = delay(m, read.data, stages, "stored")
        # Where the row's previous value is, decided the cycle before the add: the latest sum
        # written to the row that the memory's read missed, else the memory or zero.
        previous = Signal(range(Previous.FORWARDED + forwarded(config)))
        deciding = row[stages]
        choices = [(was_written & (written_row == deciding), Previous.FORWARDED + d)
                   for d, (was_written, written_row) in enumerate(written)]
        choices.append((was_cleared, Previous.ZERO))
        for index, (condition, source) in enumerate(choices):
            with (m.If if index == 0 else m.Elif)(condition):
                m.d.sync += previous.eq(source)
        with m.Else():
            m.d.sync += previous.eq(Previous.MEMORY)

        # The entry's weights shifted onto the accumulator grid once for every channel, into
        # the multipliers (a product's alignment is its weight's), or each channel's sum of
        # the products (shifts_sums).
        if shifts_sums(config):
            aligned = u.entry_weights
        else:
            aligned = Signal(data.ArrayLayout(signed(config.weight_bits + config.max_align),
                                              config.block_columns))
            for column in range(config.block_columns):
                m.d.comb += aligned[column].eq(u.entry_weights[column] << u.values.align)
        totals = Signal(ChannelAccumulators(config))
        for channel in range(config.channels):
            arithmetic = MultiplyAccumulate(config)
            m.submodules[f"channel{channel}"] = arithmetic
            m.d.comb += [
                arithmetic.weights.eq(aligned),
                arithmetic.align.eq(u.values.align),
                arithmetic.stored.eq(data.View(ChannelAccumulators(config), stored)[channel]),
                arithmetic.previous.eq(previous),
                totals[channel].eq(arithmetic.total),
            ]
            for column in range(config.block_columns):
                m.d.comb += arithmetic.values[column].eq(u.values.values[column][channel])
        m.d.comb += [write.addr.eq(add_row), write.data.eq(totals), write.en.eq(add_valid)]

        readout_cleared = Signal()
        m.d.sync += readout_cleared.eq(cleared.bit_select(self.readout_row, 1))
        m.d.comb += self.readout_fresh.eq(readout_cleared)
        with m.If(self.clear_enable):
            m.d.sync += cleared.eq(-1)
        with m.Else():
            # Decoded row by row (a comparison each), not shifted (a barrel shifter).
            written_mask = Cat(add_valid & (add_row == row) for row in range(len(cleared)))
            read_mask = Cat(u.stall & (self.readout_row == row) for row in range(len(cleared)))
            m.d.sync += cleared.eq((cleared & ~written_mask) | read_mask)

        # A fence leaves when the products issued before it are written: as they reach the
        # add stage.
        fence = [u.issue_fence] + [Signal(name=f"fence_s{j}") for j in range(1, stages + 2)]
        m.d.sync += [fence[j].eq(fence[j - 1]) for j in range(1, stages + 2)]
        fences = Signal(FENCE_BITS)
        with m.If(fence[stages + 1]):
            m.d.sync += fences.eq(fences + 1)
        m.d.comb += self.fences.eq(fences)

        m.d.comb += self.idle.eq(
            (u.queue.level == 0) & ~u.looked_up & ~u.pointed & (u.columns.level == 0)
            & ~u.fetched & ~u.loaded & ~u.decoded & (u.words.level == 0) & ~u.entry_valid
            & ~u.entry_fence & ~Cat(valid[1:]).any() & ~Cat(fence[1:]).any())

    # ---- Streamed entries -------------------------------------------------------------------
    #
    # Each ring holds a window of an endless stream: the PE's section of entry words (the
    # filler's, or the critical path's), repeated every frame step, lap after lap, each lap
    # padded to whole beats. Word k of the stream has the sequence number k and sits in ring
    # place k mod stream_window. The streamer writes words in sequence order; ``written``
    # counts them. A column's words are at sequence ``lap_offset + word`` (``lap_offset`` is
    # the lap's first sequence number less the section's first entry word), and the fetch
    # stage reads a word only once it is written. Columns of a ring arrive in column order
    # within a step, so a column that starts no later than the previous one of its ring begins
    # the next lap. ``freed`` is the word the fetch stage stands at (or waits for): every
    # earlier word may be overwritten, so the streamer never runs more than a window ahead of
    # it.

    def _track_laps(self, m, described, accepted, ring, start):
        """Column stage: give each column its ring; returns its lap's ``lap_offset``."""
        mm = MemoryMap(self.config)
        per_beat_bits = (mm.words_per_beat - 1).bit_length()
        section = data.View(StreamSectionsLayout(self.config), self.sections)
        # The section sizes survive a reset of the accelerator, like the other weights.
        lap_words = [Signal(SEQUENCE_BITS, reset_less=True, name=f"lap_words_{r}")
                     for r in range(2)]
        critical_first = Signal(SEQUENCE_BITS, reset_less=True)
        with m.If(self.sections_write):
            m.d.sync += [lap_words[0].eq(section.filler_beats << per_beat_bits),
                         lap_words[1].eq(section.critical_beats << per_beat_bits),
                         critical_first.eq(section.critical_first)]
        first_words = [0, critical_first]
        lap_offset = Signal(SEQUENCE_BITS)
        m.d.comb += described.ring.eq(ring)
        for r in range(2):
            lap_base = Signal(SEQUENCE_BITS, name=f"lap_base_{r}")
            last_start = Signal.like(start, name=f"last_start_{r}")
            seen = Signal(name=f"seen_{r}")
            wraps = seen & (start <= last_start)
            with m.If(ring == r):
                m.d.comb += lap_offset.eq(Mux(wraps, lap_base + lap_words[r], lap_base)
                                     - first_words[r])
                with m.If(accepted):
                    m.d.sync += [seen.eq(1), last_start.eq(start)]
                    with m.If(wraps):
                        m.d.sync += lap_base.eq(lap_base + lap_words[r])
        return lap_offset

    def _stream_entries(self, m, current, sequence, head_valid, fetch, entry_data):
        """Fetch stage: read column words (``sequence``, the word's sequence number in the
        column's ring) from the rings; returns whether the word at the head is present."""
        config, mm = self.config, MemoryMap(self.config)
        per_beat = mm.words_per_beat
        per_beat_bits = (per_beat - 1).bit_length()
        slot_bits = (mm.ring_beats - 1).bit_length()
        m.submodules.rings = rings = Memory(shape=unsigned(config.memory_data_bits),
                                            depth=2 * mm.ring_beats, init=[])
        written = [Signal(SEQUENCE_BITS, name=f"written_{r}") for r in range(2)]
        beat = self.beat
        ring_write = rings.write_port()
        incoming = Mux(beat.ring, written[1], written[0])
        m.d.comb += [ring_write.addr.eq(Cat(incoming[per_beat_bits:per_beat_bits + slot_bits],
                                            beat.ring)),
                     ring_write.data.eq(beat.data), ring_write.en.eq(beat.valid)]
        for r in range(2):
            with m.If(beat.valid & (beat.ring == r)):
                m.d.sync += written[r].eq(written[r] + per_beat)

        # The word is present if written - sequence > 0, that is written + ~sequence (written
        # - sequence - 1) >= 0: one carry chain's sign, no comparison with zero. (The
        # difference is not small: the words of columns the broadcast skipped are streamed
        # but never fetched, so the fetch may wait a whole lap ahead of the streamer.)
        beyond = Signal(SEQUENCE_BITS)
        m.d.comb += beyond.eq(Mux(current.ring, written[1], written[0]) + ~sequence)
        present = ~beyond[-1]

        ring_read = rings.read_port()
        m.d.comb += [ring_read.addr.eq(Cat(sequence[per_beat_bits:per_beat_bits + slot_bits],
                                           current.ring)),
                     ring_read.en.eq(fetch)]
        stored = mm.stored_entry_word_bits
        if per_beat > 1:
            word_in_beat = Signal(per_beat_bits)
            with m.If(fetch):
                m.d.sync += word_in_beat.eq(sequence[:per_beat_bits])
            m.d.sync += entry_data.eq(ring_read.data.word_select(word_in_beat, stored))
        else:
            m.d.sync += entry_data.eq(ring_read.data)
        with m.If(head_valid & ~current.fence):
            m.d.sync += self.freed[current.ring].eq(sequence)
        return present
