"""The state dump: every layer's state, read out through the output stream on request.

A request (a strobe) is served the next time the core is idle between frame steps: for each
layer in turn, its recurrent vector y (one word per element, every channel's value) and then
its cell states c, each cell state sign-extended to the activation width, go into the output
queue as one packet, its last word flagged. The host (``Program.simulate(...,
return_state=True)``, the driver's ``run(..., return_state=True)``) reads it back as each
layer's (y, c) codes, so the state a run ends in is the hardware's own. It is built only where
a cell state fits an activation word (``cell_bits <= activation_bits``).
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import address_bits
from ..sw.contract.memory_map import state_dump_supported as dump_supported
from .layouts import ChannelValues, DescriptorLayout
from .pipeline import credited_issue, delay, output_queue_members

__all__ = ["StateDump", "LATENCY", "dump_supported"]

#: Cycles from reading a word to offering it to the output queue: the read, then a register.
LATENCY = 2


class StateDump(wiring.Component):
    """Read the state of every layer into the output queue (see the module's documentation).

    Members
    -------
    request : In(1)
        Strobe: dump the state when next allowed.
    enable : In(1)
        The core is idle between frame steps (nothing waits or runs, nothing loads).
    busy : Out(1)
        A dump is pending or under way.
    running : Out(1)
        A dump is under way: no frame step or load may begin. (A pending one waits for a
        moment with no frame waiting, so frames are never held up by it.)
    layer : Out, descriptor : In
        The layer whose descriptor to read, and that descriptor (a cycle later).
    reading : Out(1)
        The vector and cell state read ports are this unit's in this cycle.
    vector_address, state_address : Out; vector_data, state_data : In
        Read ports of the vector memory and the cell state memory (data a cycle later).
    output_space, output_valid, output_value, output_last
        The output queue, under credit.
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        states = data.ArrayLayout(signed(config.cell_bits), config.channels)
        super().__init__({
            "request": In(1),
            "enable": In(1),
            "busy": Out(1),
            "running": Out(1),
            "layer": Out(range(config.max_layers)),
            "descriptor": In(DescriptorLayout(config)),
            "reading": Out(1),
            "vector_address": Out(address_bits(config.vector_depth)),
            "vector_data": In(ChannelValues(config)),
            "state_address": Out(address_bits(config.cell_depth)),
            "state_data": In(states),
            **output_queue_members(config),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        desc = self.descriptor
        pending = Signal()
        with m.If(self.request):
            m.d.sync += pending.eq(1)

        length = Signal(range(max(config.vector_depth, config.cell_depth) + 1))
        start = Signal()
        counter = credited_issue(m, start=start, length=length, emit=1,
                                 output_space=self.output_space, latency=LATENCY,
                                 name="dump")
        base = Signal(range(max(config.vector_depth, config.cell_depth)))
        cells = Signal()                     # the segment being issued is the cell states
        final = Signal()                     # ... of the last layer
        running = self.running
        with m.FSM():
            with m.State("IDLE"):
                with m.If(pending & self.enable):
                    m.d.sync += [self.layer.eq(0), running.eq(1)]
                    m.next = "DESCRIBE"
            with m.State("DESCRIBE"):
                # The descriptor port shows the layer a cycle after it is named.
                m.next = "VECTORS"
            with m.State("VECTORS"):
                m.d.comb += [start.eq(1), length.eq(desc.recurrent)]
                m.d.sync += [base.eq(desc.recurrent_base), cells.eq(0),
                             final.eq(desc.last | (self.layer == config.max_layers - 1))]
                m.next = "VECTORS_RUN"
            with m.State("VECTORS_RUN"):
                with m.If(counter.index == counter.length):
                    m.next = "CELLS"
            with m.State("CELLS"):
                m.d.comb += [start.eq(1), length.eq(desc.cells)]
                m.d.sync += [base.eq(desc.cell_base), cells.eq(1)]
                m.next = "CELLS_RUN"
            with m.State("CELLS_RUN"):
                with m.If(counter.index == counter.length):
                    with m.If(final):
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += self.layer.eq(self.layer + 1)
                        m.next = "DESCRIBE"
            with m.State("DRAIN"):
                with m.If(~counter.busy):
                    m.d.sync += [pending.eq(self.request), running.eq(0)]
                    m.next = "IDLE"

        address = base + counter.index
        m.d.comb += [
            self.busy.eq(pending | running),
            self.reading.eq(running),
            self.vector_address.eq(address),
            self.state_address.eq(address),
        ]
        # The word read in cycle t arrives in t + 1 and is offered, registered, in t + 2.
        from_cells = delay(m, cells, 1, "dump_from_cells")
        last = delay(m, counter.issue & final & cells
                     & (counter.index + 1 == counter.length), LATENCY, "dump_last")
        value = Signal(ChannelValues(config))
        for channel in range(config.channels):
            with m.If(from_cells):
                m.d.sync += value[channel].eq(self.state_data[channel])
            with m.Else():
                m.d.sync += value[channel].eq(self.vector_data[channel])
        m.d.comb += [
            self.output_valid.eq(counter.finish),
            self.output_value[0].eq(value),
            self.output_count.eq(1),
            self.output_last.eq(last),
        ]
        return m
