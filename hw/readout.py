"""Reading the PEs' accumulators for the cell unit and the projection writeback.

Each PE keeps every channel's accumulators in one memory with one read port, which its
multiply-accumulate pipeline shares with readouts (see :mod:`ese.hw.pe`). Where each row sits
is the machine's :class:`~ese.sw.contract.placement.Placement`: gate j of cell n is
interleaved row g = 4n + j, held by PE g mod pes at local row g // pes, in the gate bank the
cell unit names (a frame step's parity; see :data:`~ese.hw.layouts.ACCUMULATOR_BANKS`). With
four PEs or more, a cell's four gates sit in four neighbouring PEs at one local row and are
read in one cycle, and gate j always comes from a PE whose index is j mod 4, so each gate's
*return path* chooses among pes / 4 PEs. With fewer PEs, a PE holds several of a cell's
gates: gate j is read in cycle j // pes after the request, and the cell unit asks less often
(:func:`cell_issue_gap`). Projection row r is held by PE r mod pes at local row r // pes and
comes back on the return path of gate r mod 4. A GRU layer's cells rotate their slots among
their four rows (:meth:`~ese.sw.contract.placement.Placement.rotation`): slot j of cell n is
row 4n + (j + rotation) mod 4, read like any other, and the four values are turned back into
slot order as they leave (a four-way choice per gate, after the return registers).

The PEs see each read a cycle after it is asked for (``REQUEST_CYCLES``): the requests reach
every PE from registers, so a PE's issue stage, which a readout stalls, starts from flops.
Each gate's choice among its PEs is registered too (``RETURN_CYCLES``), so the cell unit and
the writeback start from flops.
The cell unit's gates arrive :func:`gate_latency` cycles after it asks, the writeback's row
``ROW_LATENCY`` cycles after; the two never read at once. Rows that a readout (or a reset)
cleared and nothing wrote since read as zero.
"""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import address_bits
from ..sw.contract.placement import Placement
from .layouts import GATES, ChannelAccumulators, Target, accumulator_row, accumulator_row_bits
from .pipeline import delay

__all__ = ["AccumulatorReadout", "REQUEST_CYCLES", "RETURN_CYCLES", "ROW_LATENCY", "GateReadout",
           "GateRequestSignature", "RowRequestSignature", "cell_issue_gap", "gate_latency"]

#: Cycles from a request to the PEs' read: the request registers.
REQUEST_CYCLES = 1
#: Cycles from the read's data to the units: the registers after each gate's choice of PE.
RETURN_CYCLES = 1
#: Cycles from a projection row's request to its value: the request registers, the read and
#: the return registers.
ROW_LATENCY = REQUEST_CYCLES + 1 + RETURN_CYCLES


def _paths(config):
    """Return paths of a cell's gates: the PEs that hold one cell's gates, read at once."""
    return min(config.pes, GATES)


def cell_issue_gap(config):
    """Fewest cycles between two cell requests, so that no PE is read twice in a cycle: the
    cycles a cell's gates take to read (1 with four PEs or more)."""
    return GATES // _paths(config)


def gate_latency(config):
    """Cycles from a cell's request to its four gates: the request registers, one read per
    cycle of the cell's gates, and the return registers."""
    return REQUEST_CYCLES + cell_issue_gap(config) + RETURN_CYCLES


def GateReadout(config):
    """A cell's four gate accumulators (i, f, g, o) for every channel: [channel][gate]."""
    return data.ArrayLayout(data.ArrayLayout(ChannelAccumulators(config).elem_shape, GATES),
                            config.channels)


class GateRequestSignature(wiring.Signature):
    """The cell unit's gate requests, seen from the cell unit: which cell of the layer, in
    which bank of gate accumulators, and whether the layer's cells rotate their gate slots (a
    GRU layer); the cell's gates come back in slot order :func:`gate_latency` cycles later."""

    def __init__(self, config):
        super().__init__({
            "cell": Out(address_bits(config.cells_per_pe * config.pes)),
            "bank": Out(1),
            "rotated": Out(1),
            "read": Out(1),
            "data": In(GateReadout(config)),
        })


class RowRequestSignature(wiring.Signature):
    """The writeback's projection row requests, seen from the writeback: which PE, which of
    its rows; the row comes back ``ROW_LATENCY`` cycles later."""

    def __init__(self, config):
        super().__init__({
            "pe": Out(max(1, Placement.of(config).pe_bits)),
            "address": Out(address_bits(config.projections_per_pe)),
            "read": Out(1),
            "data": In(ChannelAccumulators(config)),
        })


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
        placement = Placement.of(config)
        pe_bits = placement.pe_bits
        paths = _paths(config)
        reads_per_cell = cell_issue_gap(config)
        projection_base = accumulator_row(config, Target.PROJECTION, 0)
        bank_base = accumulator_row(config, Target.GATES, 0, 1)

        # Gate j of the cell asked for in cycle t is row 4n + j, read in cycle t + j // paths.
        reads = []
        for gate in range(GATES):
            step = gate // paths
            valid = delay(m, gates.read, step, f"gate{gate}_read")
            cell = delay(m, gates.cell, step, f"gate{gate}_cell")
            bank = delay(m, gates.bank, step, f"gate{gate}_bank")
            interleaved = Signal(len(cell) + 2, name=f"gate{gate}_row")
            m.d.comb += interleaved.eq(placement.gate_row(cell, gate))
            pe = interleaved[:pe_bits] if pe_bits else 0
            row = placement.local_row(interleaved) + Mux(bank, bank_base, 0)
            reads.append((valid, pe, row, step))

        def candidates(gate):
            """The PEs that can hold gate ``gate`` of a cell: those on its return path."""
            return [index for index in range(config.pes) if index % paths == gate % paths]

        pe_read = Signal.like(self.pe_read)
        pe_row = Signal(self.pe_row.shape())
        for index in range(config.pes):
            with m.If(rows.read & (rows.pe == index)):
                m.d.comb += [pe_read[index].eq(1),
                             pe_row[index].eq(projection_base + rows.address)]
            for gate, (valid, pe, row, _) in enumerate(reads):
                if index in candidates(gate):
                    with m.Elif(valid & (pe == index)):
                        m.d.comb += [pe_read[index].eq(1), pe_row[index].eq(row)]
        m.d.comb += [self.pe_read.eq(delay(m, pe_read, REQUEST_CYCLES, "pe_read")),
                     self.pe_row.eq(delay(m, pe_row, REQUEST_CYCLES, "pe_row"))]

        # Route each read's data back on its gate's return path, zero where the row was
        # cleared: a path chooses among the PEs that can hold its gate. A projection row from
        # PE p comes back on path p mod paths.
        row_path = rows.pe[:(paths - 1).bit_length()] if paths > 1 else 0
        values = []
        for gate, (valid, pe, _, step) in enumerate(reads):
            asked = Signal(max(1, pe_bits), name=f"gate{gate}_asked")
            if gate < paths:
                m.d.comb += asked.eq(Mux(rows.read & (row_path == gate), rows.pe, pe))
            else:
                m.d.comb += asked.eq(pe)
            source = delay(m, asked, REQUEST_CYCLES + 1, f"gate{gate}_source")
            value = Signal(ChannelAccumulators(config), name=f"gate{gate}_value")
            with m.Switch(source):
                for index in candidates(gate):
                    with m.Case(index):
                        with m.If(~self.pe_fresh[index]):
                            m.d.comb += value.eq(self.pe_data[index])
            values.append(delay(m, value, RETURN_CYCLES, f"gate{gate}_returned"))
        returned_path = delay(m, row_path, REQUEST_CYCLES + 1 + RETURN_CYCLES, "row_path")
        with m.Switch(returned_path):
            for path in range(paths):
                with m.Case(path):
                    m.d.comb += rows.data.eq(values[path])
        # Gates read in later cycles arrive later: hold the earlier ones until the last is in.
        aligned = [delay(m, value, reads_per_cell - 1 - step, f"gate{gate}_aligned")
                   for gate, (value, (_, _, _, step)) in enumerate(zip(values, reads))]
        # A rotated cell's slot j arrives from row 4n + (j + rotation) mod 4 (only GRU layers
        # rotate: hardware without them, Config.gru=0, has no choice to make).
        if config.gru:
            rotation = delay(m, Mux(gates.rotated, placement.rotation(gates.cell)[:2], 0),
                             gate_latency(config), "rotation")
        else:
            rotation = Const(0, 2)
        for gate in range(GATES):
            slot = Signal(ChannelAccumulators(config), name=f"slot{gate}")
            with m.Switch(rotation):
                for turn in range(GATES):
                    with m.Case(turn):
                        m.d.comb += slot.eq(aligned[(gate + turn) % GATES])
            for channel in range(config.channels):
                m.d.comb += gates.data[channel][gate].eq(slot[channel])
        return m
