"""AXI4-Stream ports, and adapters between them and Amaranth streams.

Inside the accelerator, blocks talk through ``amaranth.lib.stream`` streams. At the edge of the
design, where a testbench (cocotbext-axi) or the board's DMA engine attaches, the same
handshake is exposed under AXI4-Stream names: ``tdata``, ``tvalid``, ``tready`` and, where the
stream needs them, ``tlast`` (end of a frame) and ``tuser`` (side information).
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiStreamSignature"]


class AxiStreamSignature(wiring.Signature):
    """An AXI4-Stream interface, seen from its source.

    Parameters
    ----------
    data_width : int
        Width of ``tdata``.
    user_width : int
        Width of ``tuser``; 0 for no ``tuser``.
    last : bool
        Whether the stream has ``tlast``.
    """

    def __init__(self, data_width, *, user_width=0, last=True):
        self.data_width = data_width
        self.user_width = user_width
        self.has_last = last
        members = {"tdata": Out(data_width), "tvalid": Out(1), "tready": In(1)}
        if last:
            members["tlast"] = Out(1)
        if user_width:
            members["tuser"] = Out(user_width)
        super().__init__(members)

    def __eq__(self, other):
        return (isinstance(other, AxiStreamSignature) and self.data_width == other.data_width
                and self.user_width == other.user_width and self.has_last == other.has_last)

    def __repr__(self):
        return (f"AxiStreamSignature({self.data_width}, user_width={self.user_width}, "
                f"last={self.has_last})")
