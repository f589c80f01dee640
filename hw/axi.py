"""AXI4-Stream ports, and adapters between them and Amaranth streams.

Inside the accelerator, blocks talk through ``amaranth.lib.stream`` streams. At the edge of the
design, where a testbench (cocotbext-axi) or the board's DMA engine attaches, the same
handshake is exposed under AXI4-Stream names: ``tdata``, ``tvalid``, ``tready`` and, where the
stream needs them, ``tlast`` (end of a frame) and ``tuser`` (side information).
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiStreamSignature", "forward"]


def _handshake(interface):
    """(data, valid, ready) of an AXI4-Stream interface or an Amaranth stream."""
    if hasattr(interface, "tdata"):
        return interface.tdata, interface.tvalid, interface.tready
    return interface.payload, interface.valid, interface.ready


def forward(m, source, sink):
    """Pass ``source``'s transfers to ``sink`` (combinational): data and valid forward, ready
    back. Either side may be an AXI4-Stream interface or an Amaranth stream; ``tlast`` and
    ``tuser``, where a stream has them, are the caller's to connect."""
    data, valid, ready = _handshake(source)
    sink_data, sink_valid, sink_ready = _handshake(sink)
    m.d.comb += [sink_data.eq(data), sink_valid.eq(valid), ready.eq(sink_ready)]


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
    keep : bool
        Whether the stream has ``tkeep`` (one bit per byte of ``tdata``: the byte is part of
        the stream).
    """

    def __init__(self, data_width, *, user_width=0, last=True, keep=False):
        self.data_width = data_width
        self.user_width = user_width
        self.has_last = last
        self.has_keep = keep
        members = {"tdata": Out(data_width), "tvalid": Out(1), "tready": In(1)}
        if keep:
            assert data_width % 8 == 0, "tkeep needs whole bytes of tdata"
            members["tkeep"] = Out(data_width // 8)
        if last:
            members["tlast"] = Out(1)
        if user_width:
            members["tuser"] = Out(user_width)
        super().__init__(members)

    def __eq__(self, other):
        return (isinstance(other, AxiStreamSignature) and self.data_width == other.data_width
                and self.user_width == other.user_width and self.has_last == other.has_last
                and self.has_keep == other.has_keep)

    def __repr__(self):
        return (f"AxiStreamSignature({self.data_width}, user_width={self.user_width}, "
                f"last={self.has_last}, keep={self.has_keep})")


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite interface, seen from its master (32-bit data).

    Parameters
    ----------
    address_width : int
    """

    def __init__(self, address_width):
        self.address_width = address_width
        super().__init__({
            "awaddr": Out(address_width), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(address_width), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return isinstance(other, AxiLiteSignature) and self.address_width == other.address_width

    def __repr__(self):
        return f"AxiLiteSignature({self.address_width})"


class Axi4Signature(wiring.Signature):
    """An AXI4 memory-mapped interface, seen from its master.

    The accelerator's masters issue one transaction at a time, so their IDs are constant (the
    ports exist because AXI4 slaves and bus models expect them).

    Parameters
    ----------
    address_width, data_width : int
    id_width : int
        Width of the ID signals (a memory controller's slave port fixes it).
    """

    def __init__(self, address_width, data_width, *, id_width=1):
        self.address_width = address_width
        self.data_width = data_width
        self.id_width = id_width
        super().__init__({
            "awid": Out(id_width), "bid": In(id_width), "arid": Out(id_width),
            "rid": In(id_width),
            "awaddr": Out(address_width), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2),
            "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(address_width), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
            "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
            "rready": Out(1),
        })

    def __eq__(self, other):
        return (isinstance(other, Axi4Signature) and self.address_width == other.address_width
                and self.data_width == other.data_width and self.id_width == other.id_width)

    def __repr__(self):
        return (f"Axi4Signature({self.address_width}, {self.data_width}, "
                f"id_width={self.id_width})")
