"""Where a layer's weights sit in the machine: one rule, read by both sides of the wire.

Every matrix's rows are dealt to the PEs in turn, as ESE deals them: row ``r`` goes to PE
``r mod pes`` at local row ``r // pes``. The gate matrix's rows are first *interleaved* cell
by cell (row ``4 * cell + slot``: i, f, g, o of cell 0, then of cell 1, ...), so that a cell's
four gates sit in four neighbouring PEs at one local row and are read in one cycle; a GRU
layer's cells *rotate* their four slots among those rows (:meth:`Placement.rotation`), so that
every PE holds each slot's rows in turn and load-balanced pruning still gives every PE the
same work. Columns are taken ``block_columns`` at a time: a sparse entry holds one row's
weights in a block of neighbouring columns of one segment (a layer's inputs, its recurrent
inputs or its cell outputs), each segment padded to whole blocks, and the column space counts
blocks. The cell unit updates ``cell_lanes`` cells at a time, a word of its memories each:
every layer's cells start on a whole word.

The encoder (:mod:`ese.sw.runtime.encoding`), load-balanced pruning
(:mod:`ese.sw.compiler.pruning`), the performance model, the accumulator readout and the
projection writeback (:mod:`ese.hw.readout`, :mod:`ese.hw.writeback`) all ask a
:class:`Placement`; none deals rows on its own. Its row arithmetic is shifts, masks and
sums, so it works on ints, numpy integer arrays and Amaranth values alike.
"""

from dataclasses import dataclass

import numpy as np

from .memory_map import GATES

__all__ = ["Placement"]


def _log2(value):
    return (value - 1).bit_length()


@dataclass(frozen=True)
class Placement:
    """The placement rule of a machine with ``pes`` PEs whose entries hold ``block_columns``
    columns and whose cell unit updates ``cell_lanes`` cells at a time (all powers of
    two)."""

    pes: int
    block_columns: int = 1
    cell_lanes: int = 1

    @classmethod
    def of(cls, config):
        """The placement of a :class:`~ese.sw.contract.config.Config`'s machine."""
        return cls(config.pes, config.block_columns, config.cell_lanes)

    # ---- Rows ------------------------------------------------------------------------------

    @property
    def pe_bits(self):
        """Bits of a PE index (0 with one PE)."""
        return _log2(self.pes)

    def pe(self, row):
        """The PE that holds ``row`` of a matrix (an interleaved row of the gate matrix)."""
        return row & (self.pes - 1)

    def local_row(self, row):
        """Where in its PE ``row`` sits."""
        return row >> self.pe_bits

    def rows_held(self, rows, pe):
        """How many of a matrix's ``rows`` rows PE ``pe`` holds."""
        return len(range(pe, rows, self.pes))

    def projection_rows(self, rows, pe):
        """The rows of a ``rows``-row matrix that PE ``pe`` holds, in local-row order."""
        return np.arange(pe, rows, self.pes)

    # ---- The gate matrix: interleaved, and rotated in a GRU --------------------------------

    @property
    def rotation_shift(self):
        """log2 of the cells that share a local row of the gate matrix (``max(pes, 4) / 4``):
        a cell's rotation is its local row, ``cell >> rotation_shift``, modulo 4."""
        return _log2(max(self.pes, GATES) // GATES)

    def rotation(self, cell):
        """How far a GRU layer's cell ``cell`` rotates its gate slots among its four rows.

        An LSTM cell's four gates each carry one row of every column, so gate slot j may always
        sit in the PEs of index j mod 4. A GRU's slots carry unequal work (r and z read every
        column, n_x only the inputs, n_h only the recurrent columns), so a GRU cell's slot j
        sits at interleaved row ``4 * cell + (j + rotation) mod 4``: the rotation steps with
        the cell's local row, and every PE holds each slot's rows in turn (a quarter each
        where the layer has four or more local rows), which balances their work."""
        return (cell >> self.rotation_shift) & (GATES - 1)

    def gate_row(self, cell, slot, rotated=False):
        """The interleaved row of gate ``slot`` of cell ``cell`` (``rotated``: a GRU
        layer's)."""
        if rotated:
            slot = (slot + self.rotation(cell)) & (GATES - 1)
        return cell * GATES + slot

    def gate_rows(self, cells, pe, rotated=False):
        """Rows of the stacked gate matrix (i, f, g, o blocks of ``cells`` rows) that PE
        ``pe`` holds, in local-row order (``rotated``: a GRU layer's)."""
        interleaved = np.arange(pe, GATES * cells, self.pes)
        cell, slot = interleaved // GATES, interleaved % GATES
        if rotated:
            slot = (slot - self.rotation(cell)) % GATES
        return slot * cells + cell

    def owners(self, rows, rows_per_group, slots=None, rotated=False):
        """The PE that holds each of a matrix's ``rows`` rows (a numpy int array).

        The rows form ``rows // rows_per_group`` groups: the gates of a stacked gate matrix
        (``rows_per_group`` its cell count), or one group (a projection). The groups are
        interleaved index-major, group-minor (cell 0's i, f, g, o, then cell 1's, ...).
        ``slots`` names the gate slot of each group where a matrix holds only some of a cell's
        four (a GRU's W_ih: r, z, n_x; see :data:`~ese.sw.contract.memory_map.GRU_SLOTS`), and
        ``rotated`` rotates each cell's slots as a GRU layer's are.
        """
        r = np.arange(rows)
        groups = max(1, rows // rows_per_group)
        index, group = r % rows_per_group, r // rows_per_group
        if slots is None:
            stride, slot = groups, group
        else:
            stride, slot = GATES, np.asarray(slots)[group]
        if rotated:
            slot = (slot + self.rotation(index)) % GATES
        return self.pe(index * stride + slot)

    # ---- Columns ---------------------------------------------------------------------------

    @property
    def block_bits(self):
        """log2 of ``block_columns``."""
        return _log2(self.block_columns)

    def blocks(self, columns):
        """Column blocks of a segment of ``columns`` columns (the last one padded); works on
        Amaranth values too."""
        return (columns + self.block_columns - 1) >> self.block_bits

    def padded(self, columns):
        """``columns`` padded to whole column blocks."""
        return self.blocks(columns) * self.block_columns

    def blocked(self, matrix):
        """A (rows, columns) matrix as (rows, blocks, block_columns), its last block padded
        with zero columns."""
        rows, columns = matrix.shape
        padded = np.zeros((rows, self.padded(columns)), dtype=matrix.dtype)
        padded[:, :columns] = matrix
        return padded.reshape(rows, self.blocks(columns), self.block_columns)

    # ---- Cells -----------------------------------------------------------------------------

    @property
    def lane_bits(self):
        """log2 of ``cell_lanes``."""
        return _log2(self.cell_lanes)

    def cell_words(self, cells):
        """Words of the cell memories a layer of ``cells`` cells takes."""
        return -(-cells // self.cell_lanes)
