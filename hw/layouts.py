"""Layouts and signatures the hardware's units share: one definition each.

The broadcast's beat and payload (:func:`BeatLayout`, :func:`BroadcastLayout`), one activation
or accumulator per channel
(:func:`ChannelValues`, :func:`ChannelAccumulators`), the rows of a PE's accumulator memory
and which matrix they belong to (:class:`Target`, :func:`accumulator_row`), the streamed
entry beats and section table (:class:`EntryBeatSignature`, :func:`StreamSectionsLayout`),
and a memory write request (:class:`WritePortSignature`).
"""

import enum

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import Out

from ..sw.contract.memory_map import GATES, MemoryMap, address_bits

__all__ = ["GATES", "FENCE_BITS", "SEQUENCE_BITS", "Target", "ChannelValues", "BlockValues",
           "BroadcastValues", "BeatLayout", "BroadcastLayout", "ChannelAccumulators",
           "DescriptorLayout", "EntryBeatSignature", "StreamSectionsLayout",
           "WritePortSignature", "drive_write", "write_columns", "write_element",
           "ACCUMULATOR_BANKS", "gate_rows", "accumulator_rows", "accumulator_row_bits",
           "accumulator_row"]

#: Width of the fence counters.
FENCE_BITS = 3


class Target(enum.IntEnum):
    """Which accumulators a broadcast activation's products go to."""
    GATES = 0           # gate accumulators
    PROJECTION = 1      # projection accumulators


def ChannelValues(config):
    """One activation per channel."""
    return data.ArrayLayout(signed(config.activation_bits), config.channels)


def BlockValues(config):
    """A block of columns' activations, one per channel each: a word of the input and vector
    memories, ``[column of the block][channel]`` (see
    :class:`~ese.sw.contract.placement.Placement`)."""
    return data.ArrayLayout(ChannelValues(config), config.block_columns)


def BroadcastValues(config):
    """What a beat carries, ``[column of the block][channel]``: activations, or with delta
    units (``Config.delta``) the columns' changes, differences of two activations, a bit
    wider."""
    return data.ArrayLayout(
        data.ArrayLayout(signed(config.activation_bits + config.delta), config.channels),
        config.block_columns)


def BeatLayout(config):
    """A beat of activations, as a reader sends it and every PE takes it: a block of columns
    of the column space, each channel's activations for them (or changes), which
    accumulators their products go to (the target matrix's, in which gate bank), and the
    alignment shift of the products of their weights (the layer's, for that kind of
    column)."""
    return data.StructLayout({
        "column": unsigned(address_bits(config.pointer_depth)),     # the block's index
        "values": BroadcastValues(config),
        "target": unsigned(1),
        "bank": unsigned(1),         # the gate accumulators' bank (ACCUMULATOR_BANKS)
        "align": unsigned(config.align_bits),
    })


def BroadcastLayout(config):
    """Payload of the broadcast: a beat, or a fence."""
    return data.StructLayout({
        "beat": BeatLayout(config),
        "fence": unsigned(1),
        "filler": unsigned(1),       # a first-layer input column, sent by the filler
    })


def ChannelAccumulators(config):
    """One accumulator per channel: a word of a PE's accumulator memory."""
    return data.ArrayLayout(signed(config.accumulator_bits), config.channels)


#: Width of the sequence counters of the entry rings (words, wrapping).
SEQUENCE_BITS = 32


class EntryBeatSignature(wiring.Signature):
    """A memory beat of entry words for one of a PE's two rings, from the streamer."""

    def __init__(self, config):
        super().__init__({
            "valid": Out(1),
            "ring": Out(1),          # 0: the filler's section, 1: the critical path's
            "data": Out(config.memory_data_bits),
        })


def DescriptorLayout(config):
    """A layer descriptor (see :attr:`MemoryMap.descriptor_fields`)."""
    return data.StructLayout({name: unsigned(width)
                              for name, width, _ in MemoryMap(config).descriptor_fields})


def StreamSectionsLayout(config):
    """A PE's element of the STREAMS table (see :attr:`MemoryMap.stream_fields`)."""
    return data.StructLayout({name: unsigned(width)
                              for name, width, _ in MemoryMap(config).stream_fields})


def WritePortSignature(address_width, shape, granularity=None):
    """A memory write request, seen from its writer: Amaranth's own memory write port
    signature (``addr``, ``data``, ``en``; with ``granularity``, an enable per that many
    elements of an array ``shape``), flipped, so that a unit that writes declares it ``Out``
    and one whose memory takes the writes ``In``, and either joins a memory's own write port
    with ``wiring.connect``."""
    return WritePort.Signature(addr_width=address_width, shape=shape,
                               granularity=granularity).flip()


def drive_write(m, request, port):
    """Drive a memory's write ``port`` from a write ``request`` of the same data shape, its
    address truncated to the port's (a memory of one word has an address of no bits; the
    requests' addresses, :func:`~ese.sw.contract.memory_map.address_bits`, have one)."""
    m.d.comb += [port.addr.eq(request.addr), port.data.eq(request.data),
                 port.en.eq(request.en)]


def write_columns(m, port, address, values, enable, block_columns):
    """Drive ``port`` (a write port of a memory of blocks of ``block_columns`` columns: an
    enable per column) to write ``len(values)`` consecutive columns from column ``address``
    (a multiple of ``len(values)``, which divides ``block_columns``), those of ``enable``'s
    bits that are set: into the block's word at the address, from its column in the word."""
    lanes = len(values)
    bits = (block_columns - 1).bit_length()
    m.d.comb += [port.addr.eq(address >> bits),
                 port.en.eq(enable << (address[:bits] if bits else 0))]
    for column in range(block_columns):
        m.d.comb += port.data[column].eq(values[column % lanes])


def write_element(m, element, port, block_columns):
    """Drive ``port`` (as :func:`write_columns`) from ``element``, a write request of one
    column's word at a column address."""
    write_columns(m, port, element.addr, [element.data], element.en, block_columns)


#: Banks of gate accumulators: a frame step's gate products go to the bank of its parity (its
#: input slot), so the next step's products (the filler's inputs, and a recurrent broadcast
#: following the cell unit) accumulate while the cell unit still reads this step's.
ACCUMULATOR_BANKS = 2


def gate_rows(config):
    """A PE's gate rows in one bank: at most four per cell of a layer."""
    return GATES * config.cells_per_pe


def accumulator_rows(config):
    """Rows of a PE's accumulator memory: its gate rows in each bank, then its projection
    rows."""
    return ACCUMULATOR_BANKS * gate_rows(config) + config.projections_per_pe


def accumulator_row_bits(config):
    return address_bits(accumulator_rows(config))


def accumulator_row(config, target, row, bank=0):
    """The accumulator memory row of a local ``row`` of ``target``'s matrix (see
    :mod:`ese.sw.runtime.encoding` for which rows a PE holds), in gate bank ``bank``."""
    if target == Target.GATES:
        return bank * gate_rows(config) + row
    return ACCUMULATOR_BANKS * gate_rows(config) + row
