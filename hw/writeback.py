"""The projection writeback: accumulated y = W_ym m becomes the layer's output vector.

After the projection's sparse products, each output row sits in one accumulator of the PE
that owns it (:class:`~ese.sw.contract.placement.Placement`: row ``p`` in PE ``p mod pes``),
for every channel. The writeback reads the rows in order (clearing each one behind the read),
divides them by the layer's output alignment (a floor shift,
:func:`~ese.sw.contract.arithmetic.project_output`), rounds and saturates them to the
activation width, and writes them to the layer's recurrent vector (y_t, read by the next
frame and by the next layer) and, for the network's output, into the output queue; every
channel at once.

A delta layer's projection rows (docs/arithmetic.md, "Delta layers") hold this step's sums of
changes of m: the writeback adds each row's carried sum (zero for the channels renewed: a
sequence start, or a state just loaded), keeps the new one in its carried sums memory and
writes y from it.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import address_bits, count_bits
from ..sw.contract.placement import Placement
from .fixed import requantize
from .layouts import (
    BlockValues,
    ChannelAccumulators,
    ChannelValues,
    WritePortSignature,
    write_columns,
)
from .pipeline import credited_issue, delay, output_queue_members, produced_words
from .readout import ROW_LATENCY, RowRequestSignature

__all__ = ["ProjectionWriteback", "latency"]


def latency(config):
    """Cycles from reading a row to writing it: the read, with delta units (``Config.delta``)
    the carried sums' add, the output alignment's shift, then the requantization."""
    return ROW_LATENCY + config.delta + 2


class ProjectionWriteback(wiring.Component):
    """Move projection accumulators to the activation vector memory.

    Members
    -------
    start : In(1)
        Begin: ``rows`` projection rows, in the output format ``output_align`` bits coarser
        than the activation format; outputs go to the vector memory from ``output_base`` and,
        if ``emit``, to the output queue.
    busy : Out(1)
    produced : Out
        Words of the vector memory written whole so far (a reader may follow it;
        :func:`~ese.hw.pipeline.produced_words`).
    accumulator : Out(RowRequestSignature)
        Readout request of ``cell_lanes`` projection rows in neighbouring PEs (cleared after
        the read); the rows arrive ``ROW_LATENCY`` cycles after the request.
    vector_write : Out(WritePortSignature)
        Write port of the activation vector memory (a word a block of columns; an enable per
        column).
    output_space : In
    output_valid, output_value, output_count, output_last : Out
        An entry for the output queue: the cycle's rows, ``output_count`` of them.
    delta, renew : In; carried_address : Out, carried_data : In, carried_write : Out
        With delta units: the layer is a delta layer, the channels whose carried sums count
        as zero, and the carried sums memory (one sum per channel per word, a word per row of
        every layer's projection, at the row's output address).
    """

    def __init__(self, config):
        config.require_sized()
        self.config = config
        vector = address_bits(config.vector_depth)
        vector_words = address_bits(config.vector_depth // config.block_columns)
        carried = {}
        if config.delta:
            carried = {"delta": In(1), "renew": In(config.channels),
                       "carried_address": Out(vector),
                       "carried_data": In(ChannelAccumulators(config)),
                       "carried_write": Out(WritePortSignature(vector,
                                                               ChannelAccumulators(config)))}
        super().__init__({
            "start": In(1),
            "rows": In(count_bits(config.vector_depth)),
            "output_base": In(vector),
            "output_align": In(config.align_bits),
            "emit": In(1),
            "busy": Out(1),
            "produced": Out(count_bits(config.vector_depth)),
            "accumulator": Out(RowRequestSignature(config)),
            "vector_write": Out(WritePortSignature(vector_words, BlockValues(config),
                                                   granularity=1)),
            **output_queue_members(config),
            **carried,
        })

    def elaborate(self, platform):
        """The writeback writes ``cell_lanes`` rows a cycle (rows index, index + 1, ... in
        neighbouring PEs at one local row); the lanes past the layer's last row write
        nothing."""
        m = Module()
        config = self.config
        placement = Placement.of(config)
        lanes = config.cell_lanes

        output_base = Signal.like(self.output_base)
        output_align = Signal.like(self.output_align)
        with m.If(self.start):
            m.d.sync += [output_base.eq(self.output_base), output_align.eq(self.output_align)]
        total = latency(config)
        counter = credited_issue(m, start=self.start, length=self.rows, emit=self.emit,
                                 output_space=self.output_space, latency=total,
                                 name="row", per_issue=lanes)
        index, issue, rows = counter.index, counter.issue, counter.length
        m.d.comb += [
            self.busy.eq(counter.busy),
            self.accumulator.pe.eq(placement.pe(index)),
            self.accumulator.address.eq(placement.local_row(index)),
            self.accumulator.read.eq(issue),
        ]
        # Delta units come with one lane (Config refuses more).
        sums = ([self._carry(m, output_base + index)] if config.delta
                else self.accumulator.data)
        values = Signal(data.ArrayLayout(ChannelValues(config), lanes))
        for lane in range(lanes):
            for channel in range(config.channels):
                # A floor shift by the output's alignment, registered, then the
                # requantization.
                name = f"aligned{channel}" if lanes == 1 else f"aligned{lane}_{channel}"
                aligned = Signal(signed(config.accumulator_bits), name=name)
                m.d.sync += [
                    aligned.eq(sums[lane][channel] >> output_align),
                    values[lane][channel].eq(requantize(aligned, config.product_frac_bits,
                                                        config.activation_format)),
                ]
        valid2 = counter.finish
        written = delay(m, counter.present, total, "row_lanes")
        count = delay(m, counter.count, total, "row_count")
        write_columns(m, self.vector_write, delay(m, output_base + index, total, "address2"),
                      [values[lane] for lane in range(lanes)], Mux(valid2, written, 0),
                      config.block_columns)
        m.d.comb += [
            self.produced.eq(produced_words(m, start=self.start, finished=valid2, length=rows,
                                            block_columns=config.block_columns, name="row",
                                            count=count)),
            self.output_valid.eq(valid2 & counter.emit),
            self.output_value.eq(values),
            self.output_count.eq(count),
            self.output_last.eq(delay(m, counter.final, total, "last2")),
        ]
        return m

    def _carry(self, m, address):
        """Delta units: each channel's row plus its carried sum (a delta layer's; zero for
        renewed channels), registered, and written back."""
        config = self.config
        delta = Signal()
        renew = Signal.like(self.renew)
        with m.If(self.start):
            m.d.sync += [delta.eq(self.delta), renew.eq(self.renew)]
        arriving = delay(m, self.accumulator.read, ROW_LATENCY, "carry_valid")
        m.d.comb += self.carried_address.eq(delay(m, address, ROW_LATENCY - 1,
                                                  "carried_address"))
        sums = Signal(ChannelAccumulators(config))
        for channel in range(config.channels):
            m.d.sync += sums[channel].eq(
                self.accumulator.data[0][channel]
                + Mux(delta & ~renew[channel], self.carried_data[channel], 0))
        m.d.comb += [
            self.carried_write.addr.eq(delay(m, address, ROW_LATENCY + 1,
                                             "carried_write_address")),
            self.carried_write.data.eq(sums),
            self.carried_write.en.eq(delay(m, arriving & delta, 1, "carried_write")),
        ]
        return sums
