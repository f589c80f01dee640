"""Sigmoid and tanh: lookup tables with linear interpolation.

The table contents come from :class:`ese.sw.contract.arithmetic.ActivationTable`, so the
hardware and the golden model evaluate the same function. Each copy of the table serves two
lookups per cycle (the two ports of a block RAM); more lookups get more copies.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .fixed import round_shift

__all__ = ["ActivationTable"]


class ActivationTable(wiring.Component):
    """Evaluate one tabulated function for ``lookups`` inputs per cycle.

    Latency is two cycles: a code presented in cycle ``t`` gives its value in cycle ``t + 2``.
    The unit is fully pipelined and has no handshake.

    Parameters
    ----------
    table : ese.sw.contract.arithmetic.ActivationTable
        Segment bases and slopes; the input format is the activation format.
    lookups : int
        Independent lookups per cycle.

    Members
    -------
    codes : In(ArrayLayout(signed(bits), lookups))
        Activation codes to evaluate.
    values : Out(ArrayLayout(signed(bits), lookups))
        The function's values, in the activation format.
    """

    def __init__(self, table, lookups=1):
        if lookups < 1:
            raise TypeError(f"an activation table needs at least one lookup, not {lookups}")
        self.table = table
        self.lookups = lookups
        bits = table.input_format.bits
        super().__init__({
            "codes": In(data.ArrayLayout(signed(bits), lookups)),
            "values": Out(data.ArrayLayout(signed(bits), lookups)),
        })

    def elaborate(self, platform):
        m = Module()
        table = self.table
        base_bits, slope_bits = table.base_bits, table.slope_bits
        word = data.StructLayout({"base": signed(base_bits), "slope": signed(slope_bits)})
        base_mask, slope_mask = (1 << base_bits) - 1, (1 << slope_bits) - 1
        init = [(int(b) & base_mask) | ((int(s) & slope_mask) << base_bits)
                for b, s in zip(table.base, table.slope)]
        copies = []
        for copy in range(-(-self.lookups // 2)):
            memory = Memory(shape=unsigned(word.size), depth=len(init), init=init)
            m.submodules[f"memory{copy}"] = memory
            copies.append(memory)
        fmt = table.input_format
        position_bits = table.position_bits
        for lane in range(self.lookups):
            port = copies[lane // 2].read_port()
            code = self.codes[lane]
            # The offset code + 2**(bits-1) is the code with its sign bit inverted.
            offset = Signal(unsigned(fmt.bits), name=f"offset{lane}")
            m.d.comb += [
                offset.eq(code.as_unsigned() ^ (1 << (fmt.bits - 1))),
                port.addr.eq(offset[position_bits:]),
            ]
            position = Signal(unsigned(position_bits), name=f"position{lane}")
            m.d.sync += position.eq(offset[:position_bits])
            entry = data.View(word, port.data)
            interpolated = entry.base + round_shift(entry.slope * position, position_bits)
            m.d.sync += self.values[lane].eq(interpolated)
        return m
