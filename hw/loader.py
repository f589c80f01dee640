"""The weight loader: turns the load stream of a weight image into memory writes.

The stream format is defined in :mod:`ese.sw.contract.memory_map`: records of a three-word header
(target and PE, first address, element count) followed by the elements, each in as many
32-bit words as its memory is wide, least significant first. A record that names an unknown
memory or PE, or runs past the end of its memory, sets the sticky ``error`` flag and is
consumed without writing anything.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import (
    LOAD_WORD_BITS,
    LoadTarget,
    MemoryMap,
    address_bits,
    words_per_element,
)
from .layouts import WritePortSignature

__all__ = ["WeightLoader"]


class WeightLoader(wiring.Component):
    """Write load records into the accelerator's memories.

    Members
    -------
    words : In(stream.Signature(32))
        The load stream.
    enable : In(1)
        Whether a new record may begin (the controller allows loading only between frames).
    busy : Out(1)
        A record is partly received.
    error : Out(1)
        Sticky: a record was malformed (cleared by reset).
    pe : Out
        The PE a per-PE write goes to.
    pointer_write, entry_write : Out(WritePortSignature)
        Per-PE memories (enable qualified by ``pe`` outside).
    cell_parameter_write, descriptor_write : Out(WritePortSignature)
        Shared memories.
    vector_write, state_write : Out(WritePortSignature)
        The activation vectors and the cell states, every channel's in a word: an initial
        state (VECTORS and CELL_STATES records).
    stream_write : Out(WritePortSignature)
        Streamed configurations: each PE's entry sections (address: the PE). ENTRIES records
        are then checked but written nowhere: the streamer reads them from the stored image.

    PADDING records are checked and their words discarded.
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        mm = self.memory_map = MemoryMap(config)
        super().__init__({
            "words": In(stream.Signature(LOAD_WORD_BITS)),
            "enable": In(1),
            "busy": Out(1),
            "error": Out(1),
            "pe": Out(max(1, (config.pes - 1).bit_length())),
            "pointer_write": Out(WritePortSignature(address_bits(config.pointer_depth),
                                                    mm.pointer_bits)),
            "entry_write": Out(WritePortSignature(address_bits(mm.entry_words),
                                                  mm.entry_word_bits)),
            "cell_parameter_write": Out(WritePortSignature(address_bits(config.cell_depth),
                                                           mm.cell_parameter_bits)),
            "descriptor_write": Out(WritePortSignature(address_bits(config.max_layers),
                                                       mm.descriptor_bits)),
            "vector_write": Out(WritePortSignature(
                address_bits(config.vector_depth), mm.element_bits(LoadTarget.VECTORS))),
            "state_write": Out(WritePortSignature(
                address_bits(config.cell_depth), mm.element_bits(LoadTarget.CELL_STATES))),
            **({"stream_write": Out(WritePortSignature(address_bits(config.pes),
                                                       mm.stream_bits))}
               if config.streamed else {}),
        })

    def elaborate(self, platform):
        m = Module()
        config, mm = self.config, self.memory_map
        ports = {
            LoadTarget.POINTERS: self.pointer_write,
            LoadTarget.ENTRIES: self.entry_write,
            LoadTarget.CELL_PARAMETERS: self.cell_parameter_write,
            LoadTarget.LAYER_DESCRIPTORS: self.descriptor_write,
            LoadTarget.VECTORS: self.vector_write,
            LoadTarget.CELL_STATES: self.state_write,
        }
        if config.streamed:
            ports[LoadTarget.STREAMS] = self.stream_write
        targets = mm.targets()
        widest = max(words_per_element(mm.element_bits(t)) for t in targets)

        word = self.words.payload
        accept = Signal()
        target = Signal(8)
        pe = Signal(16)
        address = Signal(32)
        count = Signal(32)
        word_index = Signal(range(widest))
        element = Signal(unsigned(LOAD_WORD_BITS * widest))
        discard = Signal()
        error = Signal()
        m.d.comb += [self.error.eq(error), self.pe.eq(pe)]

        last_word = Signal()
        known = Signal()
        for t in targets:
            words = words_per_element(mm.element_bits(t))
            if t in ports:
                m.d.comb += [
                    ports[t].addr.eq(address),
                    ports[t].data.eq(Cat(element[:LOAD_WORD_BITS * (words - 1)], word)),
                ]
            with m.If(target == t):
                m.d.comb += [known.eq(1), last_word.eq(word_index == words - 1)]

        end = Signal(33)                 # address + count, registered with count
        empty = Signal()                 # the record has no elements
        ok = Signal(len(targets))        # the header is well-formed for each target

        def check(t, w_pe, w_end):
            """Whether a record header is well-formed for target ``t``."""
            in_range = w_end <= mm.depth(t)
            pe_ok = (w_pe < config.pes) if t.per_pe else (w_pe == 0)
            return in_range & pe_ok

        with m.FSM():
            with m.State("TARGET"):
                m.d.comb += self.words.ready.eq(self.enable)
                with m.If(self.words.valid & self.enable):
                    m.d.sync += [target.eq(word[:8]), pe.eq(word[8:24])]
                    m.next = "ADDRESS"
            with m.State("ADDRESS"):
                m.d.comb += [self.words.ready.eq(1), self.busy.eq(1)]
                with m.If(self.words.valid):
                    m.d.sync += address.eq(word)
                    m.next = "COUNT"
            with m.State("COUNT"):
                m.d.comb += [self.words.ready.eq(1), self.busy.eq(1)]
                with m.If(self.words.valid):
                    m.d.sync += [count.eq(word), end.eq(address + word), word_index.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                # The header is checked from registers, a cycle after it is complete, so that
                # the range check stays off the stream's path: every target's check at once,
                # registered, and the record's target picks its verdict a cycle later.
                m.d.comb += self.busy.eq(1)
                m.d.sync += [ok.eq(Cat(check(t, pe, end) for t in targets)),
                             empty.eq(count == 0)]
                m.next = "VERDICT"
            with m.State("VERDICT"):
                m.d.comb += self.busy.eq(1)
                good = Cat((target == t) & ok[index] for index, t in enumerate(targets)).any()
                m.d.sync += discard.eq(~good)
                with m.If(~good):
                    m.d.sync += error.eq(1)
                with m.If(~empty):
                    m.next = "DATA"
                with m.Else():
                    m.next = "TARGET"
            with m.State("DATA"):
                m.d.comb += [self.words.ready.eq(1), self.busy.eq(1)]
                with m.If(self.words.valid):
                    m.d.comb += accept.eq(1)
                    m.d.sync += element.word_select(word_index, LOAD_WORD_BITS).eq(word)
                    # An unknown target has no element width: its words are discarded singly.
                    with m.If(last_word | ~known):
                        m.d.sync += [word_index.eq(0), address.eq(address + 1),
                                     count.eq(count - 1)]
                        with m.If(count == 1):
                            m.next = "TARGET"
                    with m.Else():
                        m.d.sync += word_index.eq(word_index + 1)

        write = accept & last_word & ~discard
        stored = [t for t in ports if not (config.streamed and t == LoadTarget.ENTRIES)]
        for t in stored:
            m.d.comb += ports[t].en.eq(write & (target == t))
        return m
