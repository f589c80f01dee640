"""Reading the PEs' accumulators for the cell unit and the projection writeback.

Each PE keeps every channel's accumulators in one memory with one read port, which its
multiply-accumulate pipeline shares with readouts (see :mod:`ese.hw.pe`). A cell's four gates
are four rows of the PE that owns it, so they take four reads. The cell unit asks for one
cell per cycle, going round the PEs (cell ``k`` lives in PE ``k mod pes``); the readout reads
gate ``j`` of the cell asked for in cycle ``t`` in cycle ``t + j``, so four PEs are read at
once, each for a different gate, and a cell's four gates reach the cell unit together
``GATE_LATENCY`` cycles after it asked. (With fewer than four PEs the cell unit asks less
often, so that no PE is read twice in a cycle.) The writeback reads one projection row at a
time, ``ROW_LATENCY`` cycles after it asks; it never reads while the cell unit does.

Rows that a readout (or a reset) cleared and nothing wrote since read as zero.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.memory_map import address_bits
from .pe import GATES, ChannelAccumulators, accumulator_row_bits
from .pipeline import delay

__all__ = ["AccumulatorReadout", "GATE_LATENCY", "ROW_LATENCY", "GateReadout",
           "GateRequestSignature", "RowRequestSignature", "cell_issue_gap"]

#: Cycles from a cell's request to its four gates.
GATE_LATENCY = GATES
#: Cycles from a projection row's request to its value.
ROW_LATENCY = 1


def GateReadout(config):
    """A cell's four gate accumulators (i, f, g, o) for every channel: [channel][gate]."""
    return data.ArrayLayout(data.ArrayLayout(ChannelAccumulators(config).elem_shape, GATES),
                            config.channels)


def _pe_bits(config):
    return max(1, (config.pes - 1).bit_length())


class GateRequestSignature(wiring.Signature):
    """The cell unit's gate requests, seen from the cell unit: which PE, which of its cells;
    the cell's gates come back ``GATE_LATENCY`` cycles later."""

    def __init__(self, config):
        super().__init__({
            "pe": Out(_pe_bits(config)),
            "address": Out(address_bits(config.cells_per_pe)),
            "read": Out(1),
            "data": In(GateReadout(config)),
        })


class RowRequestSignature(wiring.Signature):
    """The writeback's projection row requests, seen from the writeback: which PE, which of
    its rows; the row comes back ``ROW_LATENCY`` cycles later."""

    def __init__(self, config):
        super().__init__({
            "pe": Out(_pe_bits(config)),
            "address": Out(address_bits(config.projections_per_pe)),
            "read": Out(1),
            "data": In(ChannelAccumulators(config)),
        })


def cell_issue_gap(config):
    """Fewest cycles between two cell requests, so that no PE is read twice in a cycle."""
    return max(1, -(-GATES // config.pes))


class AccumulatorReadout(wiring.Component):
    """Gate reads for the cell unit and projection reads for the writeback.

    Members
    -------
    gates : In(GateRequestSignature)
        The cell unit's requests.
    rows : In(RowRequestSignature)
        The writeback's requests.
    pe_read : Out(pes)
        Per PE: read the row on ``pe_row`` this cycle.
    pe_row : Out(ArrayLayout(accumulator row, pes))
    pe_data : In(ArrayLayout(ChannelAccumulators, pes))
        Per PE: the data of its read, one cycle after it.
    pe_fresh : In(pes)
        Per PE: the row read was cleared (its data count as zero).
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        row = unsigned(accumulator_row_bits(config))
        super().__init__({
            "gates": In(GateRequestSignature(config)),
            "rows": In(RowRequestSignature(config)),
            "pe_read": Out(config.pes),
            "pe_row": Out(data.ArrayLayout(row, config.pes)),
            "pe_data": In(data.ArrayLayout(ChannelAccumulators(config), config.pes)),
            "pe_fresh": In(config.pes),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        gates, rows = self.gates, self.rows
        projection_base = GATES * config.cells_per_pe

        # Gate j of the cell asked for in cycle t is read in cycle t + j.
        reads = []
        for gate in range(GATES):
            valid = delay(m, gates.read, gate, f"gate{gate}_read")
            pe = delay(m, gates.pe, gate, f"gate{gate}_pe")
            address = delay(m, gates.address, gate, f"gate{gate}_address")
            reads.append((valid, pe, GATES * address + gate))
        for index in range(config.pes):
            with m.If(rows.read & (rows.pe == index)):
                m.d.comb += [self.pe_read[index].eq(1),
                             self.pe_row[index].eq(projection_base + rows.address)]
            for valid, pe, row in reads:
                with m.Elif(valid & (pe == index)):
                    m.d.comb += [self.pe_read[index].eq(1), self.pe_row[index].eq(row)]

        # Route each read's data back: gate j (or, in its place, a projection row) from the
        # PE it read, zero where the row was cleared.
        lanes = []
        for gate, (valid, pe, _) in enumerate(reads):
            source = Signal.like(pe, name=f"gate{gate}_source")
            if gate == 0:
                m.d.sync += source.eq(Mux(rows.read, rows.pe, pe))
            else:
                m.d.sync += source.eq(pe)
            value = Signal(ChannelAccumulators(config), name=f"gate{gate}_value")
            with m.Switch(source):
                for index in range(config.pes):
                    with m.Case(index):
                        with m.If(~self.pe_fresh[index]):
                            m.d.comb += value.eq(self.pe_data[index])
            lanes.append(value)
        m.d.comb += rows.data.eq(lanes[0])
        # Gate j arrives j cycles after gate 0: hold the earlier ones until the last is in.
        for gate, value in enumerate(lanes):
            aligned = delay(m, value, GATES - 1 - gate, f"gate{gate}_aligned")
            for channel in range(config.channels):
                m.d.comb += gates.data[channel][gate].eq(
                    aligned.word_select(channel, config.accumulator_bits).as_signed())
        return m
