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

from types import SimpleNamespace

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
    """Return paths: the PEs read at once for a cycle's cells (every gate of every cell lane,
    with enough PEs), each path choosing among the PEs that can hold its gate."""
    return min(config.pes, GATES * config.cell_lanes)


def cell_issue_gap(config):
    """Fewest cycles between two requests of cells, so that no PE is read twice in a cycle:
    the cycles the cells' gates take to read (1 with four PEs per cell lane or more)."""
    return GATES * config.cell_lanes // _paths(config)


def gate_latency(config):
    """Cycles from a request to its cells' gates: the request registers, one read per cycle
    of the gates, and the return registers."""
    return REQUEST_CYCLES + cell_issue_gap(config) + RETURN_CYCLES


def GateReadout(config):
    """A cell's four gate accumulators (i, f, g, o) for every channel: [channel][gate]."""
    return data.ArrayLayout(data.ArrayLayout(ChannelAccumulators(config).elem_shape, GATES),
                            config.channels)


class GateRequestSignature(wiring.Signature):
    """The cell unit's gate requests, seen from the cell unit: the first of ``cell_lanes``
    cells of the layer (a multiple of ``cell_lanes``), in which bank of gate accumulators, and
    whether the layer's cells rotate their gate slots (a GRU layer); each cell's gates come
    back in slot order :func:`gate_latency` cycles later, ``[lane][channel][gate]``."""

    def __init__(self, config):
        super().__init__({
            "cell": Out(address_bits(config.cells_per_pe * config.pes)),
            "bank": Out(1),
            "rotated": Out(1),
            "read": Out(1),
            "data": In(data.ArrayLayout(GateReadout(config), config.cell_lanes)),
        })


class RowRequestSignature(wiring.Signature):
    """The writeback's projection row requests, seen from the writeback: the PE of the first
    of ``cell_lanes`` rows (the rest in the PEs after it), and which of their rows; the rows
    come back ``ROW_LATENCY`` cycles later, ``[lane][channel]``."""

    def __init__(self, config):
        super().__init__({
            "pe": Out(max(1, Placement.of(config).pe_bits)),
            "address": Out(address_bits(config.projections_per_pe)),
            "read": Out(1),
            "data": In(data.ArrayLayout(ChannelAccumulators(config), config.cell_lanes)),
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

        lanes = config.cell_lanes
        lane_bits = placement.lane_bits
        path_bits = (paths - 1).bit_length()
        # Gate j of lane c's cell (cell n + c of the request, in cycle t) is row 4(n + c) + j,
        # the request's read number 4c + j: on path (4c + j) mod paths, read in cycle
        # t + (4c + j) // paths.
        reads = []
        for lane in range(lanes):
            for gate in range(GATES):
                number = lane * GATES + gate
                name = f"gate{gate}" if lanes == 1 else f"lane{lane}_gate{gate}"
                step, path = number // paths, number % paths
                valid = delay(m, gates.read, step, f"{name}_read")
                cell = delay(m, gates.cell, step, f"{name}_cell")
                bank = delay(m, gates.bank, step, f"{name}_bank")
                interleaved = Signal(len(cell) + 2, name=f"{name}_row")
                m.d.comb += interleaved.eq(placement.gate_row(cell + lane, gate))
                pe = interleaved[:pe_bits] if pe_bits else 0
                row = placement.local_row(interleaved) + Mux(bank, bank_base, 0)
                reads.append(SimpleNamespace(lane=lane, gate=gate, name=name, valid=valid, pe=pe,
                                             row=row, step=step, path=path))

        def candidates(path):
            """The PEs on a return path: those that can hold its gates."""
            return [index for index in range(config.pes) if index % paths == path]

        # The writeback's rows are in PEs rows.pe + c (rows.pe a multiple of the lanes).
        pe_read = Signal.like(self.pe_read)
        pe_row = Signal(self.pe_row.shape())
        for index in range(config.pes):
            with m.If(rows.read & ((rows.pe >> lane_bits) == (index >> lane_bits))):
                m.d.comb += [pe_read[index].eq(1),
                             pe_row[index].eq(projection_base + rows.address)]
            for read in reads:
                if index in candidates(read.path):
                    with m.Elif(read.valid & (read.pe == index)):
                        m.d.comb += [pe_read[index].eq(1), pe_row[index].eq(read.row)]
        m.d.comb += [self.pe_read.eq(delay(m, pe_read, REQUEST_CYCLES, "pe_read")),
                     self.pe_row.eq(delay(m, pe_row, REQUEST_CYCLES, "pe_row"))]

        # Route each read's data back on its return path, zero where the row was cleared: a
        # path chooses among the PEs that can hold its gates. A projection row from PE p
        # comes back on path p mod paths (a request's first read cycle is the writeback's).
        row_paths = rows.pe[:path_bits] if paths > 1 else 0
        row_block = rows.pe >> path_bits
        values = []
        for read in reads:
            asked = Signal(max(1, pe_bits), name=f"{read.name}_asked")
            if read.step == 0:
                # The path serves a row where it lies among the rows' PEs.
                serves_row = rows.read & ((row_paths >> lane_bits)
                                          == (read.path >> lane_bits))
                m.d.comb += asked.eq(Mux(serves_row, (row_block << path_bits) | read.path,
                                         read.pe))
            else:
                m.d.comb += asked.eq(read.pe)
            source = delay(m, asked, REQUEST_CYCLES + 1, f"{read.name}_source")
            value = Signal(ChannelAccumulators(config), name=f"{read.name}_value")
            with m.Switch(source):
                for index in candidates(read.path):
                    with m.Case(index):
                        with m.If(~self.pe_fresh[index]):
                            m.d.comb += value.eq(self.pe_data[index])
            values.append(delay(m, value, RETURN_CYCLES, f"{read.name}_returned"))
        # A row of lane c came back on path (rows.pe + c) mod paths: a read of the first step.
        returned = delay(m, row_paths, REQUEST_CYCLES + 1 + RETURN_CYCLES, "row_paths")
        for lane in range(lanes):
            with m.Switch(returned + lane):
                for path in range(paths):
                    with m.Case(path):
                        m.d.comb += rows.data[lane].eq(values[path])
        # Gates read in later cycles arrive later: hold the earlier ones until the last is in.
        aligned = [delay(m, value, reads_per_cell - 1 - read.step, f"{read.name}_aligned")
                   for value, read in zip(values, reads)]
        # A rotated cell's slot j arrives from row 4n + (j + rotation) mod 4 (only GRU layers
        # rotate: hardware without them, Config.gru=0, has no choice to make). A request's
        # cells share a local row, and so their rotation.
        if config.gru:
            rotation = delay(m, Mux(gates.rotated, placement.rotation(gates.cell)[:2], 0),
                             gate_latency(config), "rotation")
        else:
            rotation = Const(0, 2)
        for lane in range(lanes):
            for gate in range(GATES):
                name = f"slot{gate}" if lanes == 1 else f"lane{lane}_slot{gate}"
                slot = Signal(ChannelAccumulators(config), name=name)
                with m.Switch(rotation):
                    for turn in range(GATES):
                        with m.Case(turn):
                            m.d.comb += slot.eq(aligned[lane * GATES + (gate + turn) % GATES])
                for channel in range(config.channels):
                    m.d.comb += gates.data[lane][channel][gate].eq(slot[channel])
        return m
