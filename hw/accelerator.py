"""The LSTM accelerator: PEs, shared memories, cell unit and the frame sequencer.

Dataflow of one frame (one channel)::

    frames_in ──> vector memory [x]
    for each layer:
        broadcaster: x, then y_{t-1}  ──> PEs: gates += [W_x | W_r] [x; y_{t-1}]
        cell unit: gates, c_{t-1}     ──> c_t, m_t            (m_t to the vector memory)
        with a projection:
            broadcaster: m_t          ──> PEs: y += W_ym m_t
            writeback: y_t            ──> vector memory [y], and frames_out for the last layer
        without: y_t = m_t            ──> vector memory [y], and frames_out for the last layer

The sequencer runs these phases one after another. The weights arrive through the load
stream (:mod:`ese.hw.loader`) before the first frame; the first input word of a sequence
carries ``tuser = 1``, which zeroes the cell states, recurrent outputs and accumulators before
the frame runs.

Ports use AXI4-Stream names (``*__tdata``, ``*__tvalid``, ...) so that bus models and DMA
engines attach directly.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sw.errors import ConfigError
from ..sw.memory_map import LOAD_WORD_BITS, MemoryMap
from .axi_stream import AxiStreamSignature
from .broadcast import ActivationBroadcaster
from .cell import LATENCY as CELL_LATENCY
from .cell import CellUnit
from .loader import WeightLoader
from .pe import BANKS, ProcessingElement
from .writeback import ProjectionWriteback

__all__ = ["LSTMAccelerator"]


class LSTMAccelerator(wiring.Component):
    """One channel of the ESE-style sparse LSTM accelerator.

    Parameters
    ----------
    config : ese.Config
        A sized configuration (every capacity set).

    Members
    -------
    weights : In(AxiStreamSignature(32))
        The load stream of a weight image.
    frames_in : In(AxiStreamSignature(activation_bits, user_width=1))
        Input frames, ``tlast`` on each frame's last word, ``tuser`` on the first word of a
        sequence (state is zeroed first).
    frames_out : Out(AxiStreamSignature(activation_bits))
        The last layer's y for each frame, ``tlast`` on each frame's last word.
    busy : Out(1)
        A frame is in progress.
    load_error : Out(1)
        Sticky: a malformed load record was seen.
    frame_error : Out(1)
        Sticky: an input frame's ``tlast`` did not match the model's input size.
    """

    OUTPUT_QUEUE_DEPTH = 2 * CELL_LATENCY

    @staticmethod
    def clear_cycles(config):
        """Cycles the state clear at the start of a sequence takes (one per memory word)."""
        return max(config.vector_depth, config.cell_depth, config.accumulator_depth // BANKS)

    def __init__(self, config):
        config.require_sized()
        if config.channels != 1:
            raise ConfigError(
                f"this accelerator runs one channel; Config.channels={config.channels} needs "
                f"the multi-channel system top level")
        self.config = config
        act = config.activation_bits
        super().__init__({
            "weights": In(AxiStreamSignature(LOAD_WORD_BITS, last=False)),
            "frames_in": In(AxiStreamSignature(act, user_width=1)),
            "frames_out": Out(AxiStreamSignature(act)),
            "busy": Out(1),
            "load_error": Out(1),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        mm = MemoryMap(config)
        pes = config.pes
        bank_depth = config.accumulator_depth // BANKS

        # Units.
        m.submodules.loader = loader = WeightLoader(config)
        m.submodules.broadcaster = broadcaster = ActivationBroadcaster(config)
        m.submodules.cells = cells = CellUnit(config)
        m.submodules.writeback = writeback = ProjectionWriteback(config)
        engines = []
        for index in range(pes):
            pe = ProcessingElement(config)
            m.submodules[f"pe{index}"] = pe
            engines.append(pe)

        # Shared memories.
        m.submodules.vector = vector = Memory(shape=signed(config.activation_bits),
                                              depth=config.vector_depth, init=[])
        m.submodules.cell_state = cell_state = Memory(shape=signed(config.cell_bits),
                                                      depth=config.cell_depth, init=[])
        m.submodules.cell_parameters = cell_parameters = Memory(
            shape=unsigned(mm.cell_parameter_bits), depth=config.cell_depth, init=[])
        m.submodules.descriptors = descriptors = Memory(
            shape=unsigned(mm.descriptor_bits), depth=config.max_layers, init=[])

        # Loading.
        m.d.comb += [
            loader.words.payload.eq(self.weights.tdata),
            loader.words.valid.eq(self.weights.tvalid),
            self.weights.tready.eq(loader.words.ready),
            self.load_error.eq(loader.error),
        ]
        for index, pe in enumerate(engines):
            selected = loader.pe == index
            for source, sink in ((loader.pointer_write, pe.pointer_write),
                                 (loader.entry_write, pe.entry_write)):
                m.d.comb += [sink.address.eq(source.address), sink.data.eq(source.data),
                             sink.enable.eq(source.enable & selected)]
        for memory, source in ((cell_parameters, loader.cell_parameter_write),
                               (descriptors, loader.descriptor_write)):
            port = memory.write_port()
            m.d.comb += [port.addr.eq(source.address), port.data.eq(source.data),
                         port.en.eq(source.enable)]

        # Broadcast to every PE's queue: a word enters all queues in the same cycle.
        all_ready = Signal()
        m.d.comb += all_ready.eq(Cat(pe.activations.ready for pe in engines).all())
        for pe in engines:
            m.d.comb += [pe.activations.payload.eq(broadcaster.activations.payload),
                         pe.activations.valid.eq(broadcaster.activations.valid & all_ready)]
        m.d.comb += broadcaster.activations.ready.eq(all_ready)
        all_idle = Signal()
        m.d.comb += all_idle.eq(Cat(pe.idle for pe in engines).all())

        vector_read = vector.read_port()
        m.d.comb += [vector_read.addr.eq(broadcaster.read_address),
                     vector_read.en.eq(broadcaster.read_enable),
                     broadcaster.read_data.eq(vector_read.data)]

        # Accumulator readout by the cell unit or the writeback (never both at once).
        read_pe = Signal.like(cells.accumulator_pe)
        with m.If(cells.accumulator_read):
            m.d.sync += read_pe.eq(cells.accumulator_pe)
        with m.Elif(writeback.accumulator_read):
            m.d.sync += read_pe.eq(writeback.accumulator_pe)
        readout = Signal.like(engines[0].readout_data)
        with m.Switch(read_pe):
            for index, pe in enumerate(engines):
                with m.Case(index):
                    m.d.comb += readout.eq(pe.readout_data)
        m.d.comb += [cells.accumulator_data.eq(readout), writeback.accumulator_data.eq(readout)]

        clear_enable = Signal()
        clear_address = Signal(32)
        for index, pe in enumerate(engines):
            by_cells = cells.accumulator_read & (cells.accumulator_pe == index)
            by_writeback = writeback.accumulator_read & (writeback.accumulator_pe == index)
            m.d.comb += [
                pe.readout_enable.eq(by_cells | by_writeback),
                pe.readout_address.eq(Mux(cells.accumulator_read, cells.accumulator_address,
                                          writeback.accumulator_address)),
                pe.readout_clear.eq(Mux(by_cells, (1 << BANKS) - 1,
                                        writeback.accumulator_clear)),
                pe.clear_enable.eq(clear_enable & (clear_address < bank_depth)),
                pe.clear_address.eq(clear_address),
            ]

        # Cell parameters and state for the cell unit.
        parameter_read = cell_parameters.read_port()
        state_read = cell_state.read_port()
        state_write = cell_state.write_port()
        m.d.comb += [
            parameter_read.addr.eq(cells.parameter_address),
            cells.parameter_data.eq(parameter_read.data),
            state_read.addr.eq(cells.state_address),
            cells.state_data.eq(state_read.data),
        ]

        # The output queue, filled by the cell unit or the writeback.
        output_layout = data.StructLayout({"value": signed(config.activation_bits),
                                           "last": unsigned(1)})
        m.submodules.output_queue = output_queue = SyncFIFOBuffered(
            width=output_layout.size, depth=self.OUTPUT_QUEUE_DEPTH)
        space = Signal(range(self.OUTPUT_QUEUE_DEPTH + 1))
        m.d.comb += [
            space.eq(self.OUTPUT_QUEUE_DEPTH - output_queue.level),
            cells.output_space.eq(space),
            writeback.output_space.eq(space),
            output_queue.w_en.eq(cells.output_valid | writeback.output_valid),
            output_queue.w_data.eq(Mux(cells.output_valid,
                                       Cat(cells.output_value, cells.output_last),
                                       Cat(writeback.output_value, writeback.output_last))),
        ]
        queued = data.View(output_layout, output_queue.r_data)
        m.d.comb += [
            self.frames_out.tdata.eq(queued.value),
            self.frames_out.tlast.eq(queued.last),
            self.frames_out.tvalid.eq(output_queue.r_rdy),
            output_queue.r_en.eq(self.frames_out.tready),
        ]

        # The sequencer.
        descriptor_read = descriptors.read_port()
        layer = Signal(range(config.max_layers))
        m.d.comb += descriptor_read.addr.eq(layer)
        layout = data.StructLayout({name: unsigned(width)
                                    for name, width, _ in mm.descriptor_fields})
        desc = data.View(layout, descriptor_read.data)

        vector_write = vector.write_port()
        receive_write = Signal()
        receive_address = Signal.like(vector_write.addr)
        counter = Signal(32)
        cleared = Signal()
        frame_error = Signal()
        m.d.comb += self.frame_error.eq(frame_error)
        clear_span = self.clear_cycles(config)

        with m.If(clear_enable):
            m.d.comb += [
                vector_write.addr.eq(clear_address), vector_write.data.eq(0),
                vector_write.en.eq(clear_address < config.vector_depth),
                state_write.addr.eq(clear_address), state_write.data.eq(0),
                state_write.en.eq(clear_address < config.cell_depth),
            ]
        with m.Else():
            m.d.comb += [
                state_write.addr.eq(cells.state_write.address),
                state_write.data.eq(cells.state_write.data),
                state_write.en.eq(cells.state_write.enable),
            ]
            with m.If(receive_write):
                m.d.comb += [vector_write.addr.eq(receive_address),
                             vector_write.data.eq(self.frames_in.tdata), vector_write.en.eq(1)]
            with m.Elif(cells.vector_write.enable):
                m.d.comb += [vector_write.addr.eq(cells.vector_write.address),
                             vector_write.data.eq(cells.vector_write.data), vector_write.en.eq(1)]
            with m.Elif(writeback.vector_write.enable):
                m.d.comb += [vector_write.addr.eq(writeback.vector_write.address),
                             vector_write.data.eq(writeback.vector_write.data),
                             vector_write.en.eq(1)]

        def start_broadcast(vector_base, length, column_base, row_base):
            m.d.comb += [broadcaster.start.eq(1), broadcaster.vector_base.eq(vector_base),
                         broadcaster.length.eq(length), broadcaster.column_base.eq(column_base),
                         broadcaster.row_base.eq(row_base)]

        with m.FSM():
            with m.State("IDLE"):
                # A new load record may start only while no frame is waiting.
                m.d.comb += loader.enable.eq(~self.frames_in.tvalid)
                with m.If(self.frames_in.tvalid & ~loader.busy):
                    with m.If(self.frames_in.tuser[0] & ~cleared):
                        m.d.sync += counter.eq(0)
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "RECEIVE_DESCRIBE"
            with m.State("CLEAR"):
                m.d.comb += [clear_enable.eq(1), clear_address.eq(counter), self.busy.eq(1)]
                m.d.sync += counter.eq(counter + 1)
                with m.If(counter == clear_span - 1):
                    m.d.sync += cleared.eq(1)
                    m.next = "IDLE"
            with m.State("RECEIVE_DESCRIBE"):
                # The descriptor port needs a cycle to show layer 0 after a load.
                m.d.comb += self.busy.eq(1)
                m.d.sync += counter.eq(0)
                m.next = "RECEIVE"
            with m.State("RECEIVE"):
                final = counter + 1 == desc.inputs
                m.d.comb += [
                    self.busy.eq(1),
                    self.frames_in.tready.eq(1),
                    receive_write.eq(self.frames_in.tvalid),
                    receive_address.eq(desc.input_base + counter),
                ]
                with m.If(self.frames_in.tvalid):
                    m.d.sync += counter.eq(counter + 1)
                    with m.If(self.frames_in.tlast != final):
                        m.d.sync += frame_error.eq(1)
                    with m.If(final):
                        m.next = "GATES_INPUT"
            with m.State("LAYER_DESCRIBE"):
                m.d.comb += self.busy.eq(1)
                m.next = "GATES_INPUT"
            with m.State("GATES_INPUT"):
                m.d.comb += self.busy.eq(1)
                start_broadcast(desc.input_base, desc.inputs, desc.column_base, 0)
                m.next = "GATES_RECURRENT"
            with m.State("GATES_RECURRENT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~broadcaster.busy):
                    start_broadcast(desc.recurrent_base, desc.recurrent,
                                    desc.column_base + desc.inputs, 0)
                    m.next = "GATES_DRAIN"
            with m.State("GATES_DRAIN"):
                m.d.comb += self.busy.eq(1)
                with m.If(~broadcaster.busy & all_idle):
                    m.d.comb += [cells.start.eq(1), cells.cells.eq(desc.cells),
                                 cells.cell_base.eq(desc.cell_base),
                                 cells.output_base.eq(desc.cell_output_base),
                                 cells.emit.eq(desc.last & (desc.proj == 0))]
                    m.next = "CELLS"
            with m.State("CELLS"):
                m.d.comb += self.busy.eq(1)
                with m.If(~cells.busy):
                    with m.If(desc.proj != 0):
                        start_broadcast(desc.cell_output_base, desc.cells,
                                        desc.column_base + desc.inputs + desc.recurrent,
                                        desc.projection_row_base)
                        m.next = "PROJECTION_DRAIN"
                    with m.Else():
                        m.next = "NEXT_LAYER"
            with m.State("PROJECTION_DRAIN"):
                m.d.comb += self.busy.eq(1)
                with m.If(~broadcaster.busy & all_idle):
                    m.d.comb += [writeback.start.eq(1), writeback.rows.eq(desc.proj),
                                 writeback.row_base.eq(desc.projection_row_base),
                                 writeback.output_base.eq(desc.recurrent_base),
                                 writeback.emit.eq(desc.last)]
                    m.next = "WRITEBACK"
            with m.State("WRITEBACK"):
                m.d.comb += self.busy.eq(1)
                with m.If(~writeback.busy):
                    m.next = "NEXT_LAYER"
            with m.State("NEXT_LAYER"):
                m.d.comb += self.busy.eq(1)
                with m.If(desc.last | (layer == config.max_layers - 1)):
                    m.d.sync += [layer.eq(0), cleared.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "LAYER_DESCRIBE"
        return m
