"""The accelerator core: PEs, shared memories, cell unit and the frame sequencer.

It runs LSTM layers (with peepholes and projections) and GRU layers, one build for both: a
layer descriptor says which (see :mod:`ese.hw.cell`), and a GRU layer's step is an LSTM
layer's without projection.

Channels (independent utterances on the same weights) run in lock-step: every memory word
of an activation vector, cell state or input holds one value per channel, every weight a PE
fetches is multiplied with every channel's activation, and a frame step processes one frame
of every channel. Dataflow of step t (layer l's y is layer l+1's x)::

    frames_in ─> receiver ─> input memory (two slots: x_t, x_{t+1})
    for each layer l:
        gates:       broadcast x and y_{t-1} ─> PEs: G += [W_x | W_r] [x; y_{t-1}]
                     (G: the gate accumulators' bank t mod 2)
        fence        (every product above is in the accumulators)
        cell unit:   G, c_{t-1} ─> c_t, m_t  (m_t written to the vector memory)
        projection:  broadcast m_t, following the cell unit ─> PEs: P += W_ym m_t
        fence, then writeback: P ─> y_t in the vector memory (and frames_out, last layer)
        (without a projection, y_t = m_t)

What keeps the PEs busy through the serial chain of a step:

* the products of the first layer's input, W_x x_{t+1}, do not depend on step t: the filler
  reader broadcasts them into the other bank of gate accumulators whenever the critical path
  has nothing to send, as soon as step t-1's cell unit has finished reading that bank;
* the projection's broadcast follows the cell unit word by word, and the next step's
  recurrent broadcast follows the writeback (or, without a projection, the cell unit, into
  the other bank), so no phase waits for the previous one to end;
* fences travel behind the work in every PE's queue, so a PE that is done goes on with
  filler while slower ones finish.

The weights arrive through the load stream (:mod:`ese.hw.loader`) before the first frame; in
a streamed configuration the PEs' sparse entries instead arrive every frame step, from the
:class:`~ese.hw.streamer.WeightStreamer` outside the core (``entry_beats``).
The first input word of a step carries, in ``tuser``, the channels that begin a new sequence
with it: for them y_{t-1} is read as zero and the cell state starts at zero. After a reset
the sequencer zeroes every accumulator, state and vector once before the first step.

Ports use AXI4-Stream names (``*__tdata``, ``*__tvalid``, ...) so that bus models and DMA
engines attach directly.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sw.contract.memory_map import LOAD_WORD_BITS, MemoryMap, address_bits
from .axi import AxiStreamSignature, forward
from .broadcast import BroadcastArbiter, VectorReader
from .cell import MAX_LATENCY as CELL_LATENCY
from .cell import CellUnit
from .dump import StateDump, dump_supported
from .layouts import (
    SEQUENCE_BITS,
    BlockValues,
    ChannelAccumulators,
    ChannelValues,
    DescriptorLayout,
    WritePortSignature,
    drive_write,
    write_element,
)
from .loader import WeightLoader
from .pe import ProcessingElement, fence_latency
from .pipeline import delay
from .readout import AccumulatorReadout, GateReadout
from .receiver import SLOTS, FrameReceiver
from .sequencer import FillerControl, FrameSequencer
from .streamer import StreamBeatSignature
from .writeback import ProjectionWriteback

__all__ = ["LSTMAccelerator", "FENCED_CYCLES", "fence_trip_cycles"]

#: From the last PE counting a fence to the sequencer seeing every PE past it: ``fenced`` is
#: registered (and the sequencer starts the next unit in that cycle).
FENCED_CYCLES = 1


def fence_trip_cycles(config):
    """Cycles from a fence's broadcast to the sequencer's start of the unit waiting on it
    (the cell unit or the writeback), through PEs with nothing else to do: the fence through
    every PE's pipeline (:func:`ese.hw.pe.fence_latency`), then ``fenced``."""
    return fence_latency(config) + FENCED_CYCLES


class LSTMAccelerator(wiring.Component):
    """The ESE-style sparse LSTM (and GRU) accelerator core, for every channel.

    Parameters
    ----------
    config : ese.Config
        A sized configuration (every capacity set).

    Members
    -------
    weights : In(AxiStreamSignature(32))
        The load stream of a weight image.
    frames_in : In(AxiStreamSignature(channels * activation_bits, user_width=channels))
        Input frame steps: each word one activation per channel (channel 0 in the low bits),
        ``tlast`` on each step's last word, ``tuser`` (on a step's first word) the channels
        that begin a new sequence with it.
    frames_out : Out(AxiStreamSignature(channels * activation_bits))
        The last layer's y for each step, one value per channel per word, ``tlast`` on each
        step's last word; and the packet of a state dump.
    dump_state : In(1)
        Strobe: send every layer's state (y, then c) out of ``frames_out`` as one packet once
        no step waits or runs (:mod:`ese.hw.dump`; ignored where a cell state does not fit an
        activation word).
    busy : Out(1)
        A frame step is in progress.
    load_error : Out(1)
        Sticky: a malformed load record was seen.
    frame_error : Out(1)
        Sticky: an input frame's ``tlast`` did not match the model's input size.
    entry_beats : In(StreamBeatSignature), freed : Out, stream_table : Out(WritePortSignature)
        Streamed configurations only: the PEs' entry rings, fed by a
        :class:`~ese.hw.streamer.WeightStreamer` outside, which learns each PE's sections from
        ``stream_table`` (the loader's STREAMS records) and how far each ring may be filled
        from ``freed`` (ring ``2 * pe + section``).
    """

    OUTPUT_QUEUE_DEPTH = 2 * CELL_LATENCY

    def __init__(self, config):
        config.require_sized()
        self.config = config
        width = ChannelValues(config).size
        members = {
            "weights": In(AxiStreamSignature(LOAD_WORD_BITS, last=False)),
            "frames_in": In(AxiStreamSignature(width, user_width=config.channels)),
            "frames_out": Out(AxiStreamSignature(width)),
            "dump_state": In(1),
            "busy": Out(1),
            "load_error": Out(1),
            "frame_error": Out(1),
        }
        if config.streamed:
            mm = MemoryMap(config)
            members.update({
                "entry_beats": In(StreamBeatSignature(config)),
                "freed": Out(data.ArrayLayout(unsigned(SEQUENCE_BITS), 2 * config.pes)),
                "stream_table": Out(WritePortSignature(address_bits(config.pes),
                                                       mm.stream_bits)),
            })
        super().__init__(members)

    @staticmethod
    def clear_cycles(config):
        """Cycles the clear after a reset takes: one per vector or cell state word (the PEs
        flag all their accumulators as cleared at once), and with delta units one per word of
        the last transmitted values (a column each) and of the carried sums."""
        depths = [config.vector_depth, config.cell_depth]
        if config.delta:
            depths += [config.pointer_depth, config.input_depth]
        return max(depths)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        mm = MemoryMap(config)
        pes = config.pes

        # ---- Units --------------------------------------------------------------------------
        m.submodules.loader = loader = WeightLoader(config)
        m.submodules.receiver = receiver = FrameReceiver(config)
        # The input and vector memories hold a block of columns per word.
        block = config.block_columns
        m.submodules.critical = critical = VectorReader(config, config.vector_depth // block,
                                                        hat_depth=config.pointer_depth)
        m.submodules.filler = filler = VectorReader(config, SLOTS * config.input_depth // block,
                                                    hat_depth=config.input_depth // block)
        m.submodules.arbiter = arbiter = BroadcastArbiter(config)
        m.submodules.cells = cells = CellUnit(config)
        m.submodules.writeback = writeback = ProjectionWriteback(config)
        m.submodules.sequencer = sequencer = FrameSequencer(config, self.clear_cycles(config))
        m.submodules.filler_control = filler_control = FillerControl(config)
        dump = None
        if dump_supported(config):
            m.submodules.dump = dump = StateDump(config)
        engines = []
        for index in range(pes):
            pe = ProcessingElement(config)
            m.submodules[f"pe{index}"] = pe
            engines.append(pe)

        # ---- Memories -----------------------------------------------------------------------
        words = ChannelValues(config)
        states = data.ArrayLayout(signed(config.cell_bits), config.channels)
        m.submodules.inputs = inputs = Memory(shape=BlockValues(config),
                                              depth=SLOTS * config.input_depth // block, init=[])
        m.submodules.vector = vector = Memory(shape=BlockValues(config),
                                              depth=config.vector_depth // block, init=[])
        # The cell memories hold a word of cell_lanes cells each.
        lanes = config.cell_lanes
        m.submodules.cell_state = cell_state = Memory(shape=data.ArrayLayout(states, lanes),
                                                      depth=config.cell_depth // lanes,
                                                      init=[])
        m.submodules.cell_parameters = cell_parameters = Memory(
            shape=data.ArrayLayout(unsigned(mm.cell_parameter_bits), lanes),
            depth=config.cell_depth // lanes, init=[])
        m.submodules.descriptors = descriptors = Memory(
            shape=unsigned(mm.descriptor_bits), depth=config.max_layers, init=[])

        u = SimpleNamespace(
            loader=loader, receiver=receiver, critical=critical, filler=filler,
            arbiter=arbiter, cells=cells, writeback=writeback, sequencer=sequencer,
            filler_control=filler_control, engines=engines, words=words, dump=dump,
            inputs=inputs, vector=vector, cell_state=cell_state,
            cell_parameters=cell_parameters, descriptors=descriptors)
        self._connect_loader(m, u)
        self._connect_receiver(m, u)
        self._connect_broadcast(m, u)
        self._connect_readout(m, u)
        self._connect_cell_memories(m, u)
        self._output_queue(m, u)
        self._vector_writes(m, u)
        self._connect_control(m, u)
        if config.delta:
            self._connect_delta(m, u)
        return m

    def _connect_delta(self, m, u):
        """Delta units: each reader's last transmitted values, the cell unit's and the
        writeback's carried sums (all cleared after a reset), and the flag that a state was
        loaded, which renews every channel in the next step."""
        config = self.config
        seq = u.sequencer
        words = BlockValues(config)
        memories = {
            "critical_hats": (Memory(shape=words, depth=config.pointer_depth, init=[]),
                              u.critical),
            "filler_hats": (Memory(shape=words, depth=config.input_depth // config.block_columns,
                                   init=[]), u.filler),
            "carried_gates": (Memory(shape=GateReadout(config), depth=config.cell_depth,
                                     init=[]), u.cells),
            "carried_rows": (Memory(shape=ChannelAccumulators(config),
                                    depth=config.vector_depth, init=[]), u.writeback),
        }
        for name, (memory, user) in memories.items():
            m.submodules[name] = memory
            write = memory.write_port()
            read = memory.read_port(transparent_for=(write,))
            hats = name.endswith("hats")
            source = user.hat_write if hats else user.carried_write
            with m.If(seq.clear_enable):
                m.d.comb += [write.addr.eq(seq.clear_address), write.data.eq(0),
                             write.en.eq(seq.clear_address < memory.depth)]
            with m.Else():
                m.d.comb += [write.addr.eq(source.addr), write.data.eq(source.data),
                             write.en.eq(source.en)]
            if hats:
                m.d.comb += [read.addr.eq(user.hat_address), read.en.eq(user.hat_enable),
                             user.hat_data.eq(read.data)]
            else:
                m.d.comb += [read.addr.eq(user.carried_address),
                             user.carried_data.eq(read.data)]
        state_loaded = Signal()
        with m.If(u.loader.vector_write.en | u.loader.state_write.en):
            m.d.sync += state_loaded.eq(1)
        with m.Elif(seq.frame_running):
            m.d.sync += state_loaded.eq(0)
        control = u.filler_control
        m.d.comb += [
            seq.state_loaded.eq(state_loaded),
            u.cells.delta.eq(seq.cells_delta), u.cells.renew.eq(seq.renew),
            u.writeback.delta.eq(seq.writeback_delta), u.writeback.renew.eq(seq.renew),
            control.delta.eq(u.first.delta), control.theta.eq(u.first.theta_x),
            control.starts.eq(u.receiver.starts), control.state_loaded.eq(state_loaded),
            control.renew.eq(seq.renew),
        ]

    def _connect_loader(self, m, u):
        """The load stream into the loader, and the loader into the PEs and the shared
        memories; the descriptors of the current layer and of the first."""
        config = self.config
        forward(m, self.weights, u.loader.words)
        m.d.comb += self.load_error.eq(u.loader.error)
        for index, pe in enumerate(u.engines):
            selected = u.loader.pe == index
            ports = [(u.loader.pointer_write, pe.pointer_write)]
            if not config.streamed:
                ports.append((u.loader.entry_write, pe.entry_write))
            for source, sink in ports:
                m.d.comb += [sink.addr.eq(source.addr), sink.data.eq(source.data),
                             sink.en.eq(source.en & selected)]
        if config.streamed:
            # Each PE keeps its own sections; the streamer outside gets the whole table.
            wiring.connect(m, u.loader.stream_write, wiring.flipped(self.stream_table))
            sections = u.loader.stream_write
            for index, pe in enumerate(u.engines):
                m.d.comb += [
                    pe.sections.eq(sections.data),
                    pe.sections_write.eq(sections.en & (sections.addr == index)),
                    pe.beat.valid.eq(self.entry_beats.valid & (self.entry_beats.pe == index)),
                    pe.beat.ring.eq(self.entry_beats.ring),
                    pe.beat.data.eq(self.entry_beats.data),
                    self.freed[2 * index].eq(pe.freed[0]),
                    self.freed[2 * index + 1].eq(pe.freed[1]),
                ]
        # A cell's parameters go into its word's column of the cell parameter memory.
        write_element(m, u.loader.cell_parameter_write,
                      u.cell_parameters.write_port(granularity=1), config.cell_lanes)
        drive_write(m, u.loader.descriptor_write, u.descriptors.write_port())

        layout = DescriptorLayout(config)
        descriptor_read = u.descriptors.read_port()
        first_read = u.descriptors.read_port()          # layer 0, for the receiver and filler
        m.d.comb += [descriptor_read.addr.eq(u.sequencer.layer), first_read.addr.eq(0)]
        desc = data.View(layout, descriptor_read.data)
        first = data.View(layout, first_read.data)
        u.desc, u.first = desc, first
        if u.dump is not None:
            dump_read = u.descriptors.read_port()
            m.d.comb += [dump_read.addr.eq(u.dump.layer),
                         u.dump.descriptor.eq(dump_read.data)]

    def _connect_receiver(self, m, u):
        """Input frame steps into the receiver and the input memory, which the filler reads."""
        m.d.comb += [
            u.receiver.words.payload.values.eq(self.frames_in.tdata),
            u.receiver.words.payload.starts.eq(self.frames_in.tuser),
            u.receiver.words.payload.last.eq(self.frames_in.tlast),
            u.receiver.words.valid.eq(self.frames_in.tvalid),
            self.frames_in.tready.eq(u.receiver.words.ready),
            u.receiver.length.eq(u.first.inputs),
            self.frame_error.eq(u.receiver.error),
        ]
        # The receiver writes one column of a step per word; a word holds a block of them.
        input_write = u.inputs.write_port(granularity=1)
        write_element(m, u.receiver.write, input_write, self.config.block_columns)
        input_read = u.inputs.read_port()
        m.d.comb += [
            input_read.addr.eq(u.filler.read_address),
            input_read.en.eq(u.filler.read_enable),
            u.filler.read_data.eq(input_read.data),
        ]

    def _connect_broadcast(self, m, u):
        """The critical and filler readers through the arbiter to every PE at once."""
        vector_read = u.vector.read_port()
        m.d.comb += [
            vector_read.addr.eq(u.critical.read_address),
            vector_read.en.eq(u.critical.read_enable),
            u.critical.read_data.eq(vector_read.data),
        ]
        if u.dump is not None:
            # A state dump runs only while the critical reader is idle; it reads a column a
            # cycle, from its block's word.
            bits = (self.config.block_columns - 1).bit_length()
            with m.If(u.dump.reading):
                m.d.comb += [vector_read.addr.eq(u.dump.vector_address >> bits),
                             vector_read.en.eq(1)]
            column = delay(m, u.dump.vector_address[:bits] if bits else 0, 1, "dump_column")
            m.d.comb += u.dump.vector_data.eq(vector_read.data[column])
        for reader in (u.critical, u.filler):
            m.d.comb += [reader.produced[0].eq(u.cells.produced),
                         reader.produced[1].eq(u.writeback.produced)]
        wiring.connect(m, u.critical.activations, u.arbiter.critical)
        wiring.connect(m, u.filler.activations, u.arbiter.filler)
        # Every PE takes the column at once: when each says, from a register, that it can.
        all_ready = Signal()
        m.d.comb += all_ready.eq(Cat(pe.accepting for pe in u.engines).all())
        for pe in u.engines:
            m.d.comb += [pe.activations.payload.eq(u.arbiter.broadcast.payload),
                         pe.activations.valid.eq(u.arbiter.broadcast.valid & all_ready)]
        m.d.comb += u.arbiter.broadcast.ready.eq(all_ready)
        # Every PE has passed every fence sent: registered, so it is a cycle late, and
        # cleared in the cycle a fence is asked for, when the count it compares with is a
        # fence behind (no fence crosses the PEs in fewer than two cycles).
        fenced = Signal()
        m.d.sync += fenced.eq(Cat(pe.fences == u.arbiter.fences_requested
                                  for pe in u.engines).all() & ~u.arbiter.fence_request)
        # Every PE idle, registered: a cycle late, and never set in the cycle after a column
        # (or a fence) entered the PEs, when their idle does not know it yet.
        all_idle = Signal()
        m.d.sync += all_idle.eq(Cat(pe.idle for pe in u.engines).all()
                                & ~(u.arbiter.broadcast.valid & all_ready))
        u.fenced, u.all_idle = fenced, all_idle

    def _connect_readout(self, m, u):
        """The accumulator readout by the cell unit or the writeback."""
        config = self.config
        m.submodules.readout = readout = AccumulatorReadout(config)
        wiring.connect(m, u.cells.accumulator, readout.gates)
        wiring.connect(m, u.writeback.accumulator, readout.rows)
        for index, pe in enumerate(u.engines):
            m.d.comb += [
                pe.readout_enable.eq(readout.pe_read[index]),
                pe.readout_row.eq(readout.pe_row[index]),
                readout.pe_data[index].eq(pe.readout_data),
                readout.pe_fresh[index].eq(pe.readout_fresh),
                pe.clear_enable.eq(u.sequencer.clear_enable),
            ]

    def _connect_cell_memories(self, m, u):
        """The cell unit's parameters and state."""
        parameter_read = u.cell_parameters.read_port()
        state_read = u.cell_state.read_port()
        state_write = u.cell_state.write_port(granularity=1)
        m.d.comb += [
            parameter_read.addr.eq(u.cells.parameter_address),
            u.cells.parameter_data.eq(parameter_read.data),
            state_read.addr.eq(u.cells.state_address),
            u.cells.state_data.eq(state_read.data),
        ]
        if u.dump is not None:
            # A state dump runs only while the cell unit is idle; it reads a cell a cycle,
            # from its word.
            bits = (self.config.cell_lanes - 1).bit_length()
            with m.If(u.dump.reading):
                m.d.comb += state_read.addr.eq(u.dump.state_address >> bits)
            lane = delay(m, u.dump.state_address[:bits] if bits else 0, 1, "dump_lane")
            m.d.comb += u.dump.state_data.eq(state_read.data[lane])
        u.state_write = state_write

    def _output_queue(self, m, u):
        """The output queue, filled by the cell unit, the writeback or the state dump with
        entries of up to ``cell_lanes`` words, which leave one word a cycle."""
        config = self.config
        lanes = config.cell_lanes
        output_layout = data.StructLayout({
            "values": data.ArrayLayout(u.words, lanes),
            "count": range(1, lanes + 1),
            "last": unsigned(1),
        })
        m.submodules.output_queue = output_queue = SyncFIFOBuffered(
            width=output_layout.size, depth=self.OUTPUT_QUEUE_DEPTH)
        # The free entries, registered: counted as if this cycle wrote one more (at most one
        # write a cycle), so the registered figure never exceeds the true one.
        space = Signal(range(self.OUTPUT_QUEUE_DEPTH + 1))
        full_soon = output_queue.level >= self.OUTPUT_QUEUE_DEPTH - 1
        m.d.sync += space.eq(Mux(full_soon, 0,
                                 self.OUTPUT_QUEUE_DEPTH - 1 - output_queue.level))
        writers = [u.cells, u.writeback] + ([u.dump] if u.dump is not None else [])

        def entry(writer):
            return Cat(writer.output_value, writer.output_count, writer.output_last)

        chosen = entry(writers[-1])
        for writer in reversed(writers[:-1]):
            chosen = Mux(writer.output_valid, entry(writer), chosen)
        m.d.comb += [
            *(writer.output_space.eq(space) for writer in writers),
            output_queue.w_en.eq(Cat(writer.output_valid for writer in writers).any()),
            output_queue.w_data.eq(chosen),
        ]
        # The head entry's words leave in turn; the entry goes with its last.
        queued = data.View(output_layout, output_queue.r_data)
        # With one lane the head entry has a single word (a zero-width counter would not lint).
        word = Signal(range(lanes)) if lanes > 1 else 0
        final = word == queued.count - 1
        m.d.comb += [
            self.frames_out.tdata.eq(queued.values[word]),
            self.frames_out.tlast.eq(queued.last & final),
            self.frames_out.tvalid.eq(output_queue.r_rdy),
            output_queue.r_en.eq(self.frames_out.tready & final),
        ]
        if lanes > 1:
            with m.If(output_queue.r_rdy & self.frames_out.tready):
                m.d.sync += word.eq(Mux(final, 0, word + 1))

    def _vector_writes(self, m, u):
        """Writes of the vector memory and the cell state: the clear after a reset, else an
        initial state from the loader, else the cell unit or the writeback. A word of the
        vector memory holds a block of columns, one of the cell state ``cell_lanes`` cells: the
        loader writes one of them at a time, the units a cycle's."""
        config = self.config
        clear = u.sequencer
        vector_write = u.vector.write_port(granularity=1)
        loaded_vector, loaded_state = u.loader.vector_write, u.loader.state_write
        with m.If(clear.clear_enable):
            address = clear.clear_address
            m.d.comb += [
                vector_write.addr.eq(address), vector_write.data.eq(0),
                vector_write.en.eq(Mux(address < config.vector_depth // config.block_columns,
                                       -1, 0)),
                u.state_write.addr.eq(address), u.state_write.data.eq(0),
                u.state_write.en.eq(Mux(address < config.cell_depth // config.cell_lanes,
                                        -1, 0)),
            ]
        with m.Elif(loaded_vector.en | loaded_state.en):
            # An initial state from the load stream (loads happen only between frame steps,
            # when neither the cell unit nor the writeback writes).
            write_element(m, loaded_vector, vector_write, config.block_columns)
            write_element(m, loaded_state, u.state_write, config.cell_lanes)
        with m.Else():
            drive_write(m, u.cells.state_write, u.state_write)
            with m.If(u.cells.vector_write.en.any()):
                drive_write(m, u.cells.vector_write, vector_write)
            with m.Elif(u.writeback.vector_write.en.any()):
                drive_write(m, u.writeback.vector_write, vector_write)

    def _connect_control(self, m, u):
        """The frame sequencer and the filler control, between the units they drive."""
        seq, control = u.sequencer, u.filler_control
        dump_busy = u.dump.busy if u.dump is not None else 0
        dumping = u.dump.running if u.dump is not None else 0
        if u.dump is not None:
            m.d.comb += [u.dump.request.eq(self.dump_state),
                         u.dump.enable.eq(seq.load_enable & ~u.loader.busy)]
        m.d.comb += [
            # The sequencer's view of the machine.
            seq.desc.eq(u.desc),
            seq.full.eq(u.receiver.full), seq.starts.eq(u.receiver.starts),
            seq.idle.eq(u.all_idle & ~u.cells.busy & ~u.writeback.busy & ~u.critical.busy
                        & ~u.filler.busy & ~control.pending),
            seq.loader_busy.eq(u.loader.busy | dumping),
            seq.frames_waiting.eq(self.frames_in.tvalid),
            seq.critical_busy.eq(u.critical.busy), seq.fenced.eq(u.fenced),
            seq.filled.eq(control.filled),
            seq.cells_busy.eq(u.cells.busy), seq.writeback_busy.eq(u.writeback.busy),
            # What it drives.
            u.loader.enable.eq(seq.load_enable & ~dumping),
            u.receiver.release.eq(seq.release),
            u.arbiter.fence_request.eq(seq.fence_request),
            u.cells.start.eq(seq.cells_start), u.cells.cells.eq(seq.cells_count),
            u.cells.cell_base.eq(seq.cells_base), u.cells.output_base.eq(seq.cells_output_base),
            u.cells.bias_align.eq(seq.cells_bias_align),
            u.cells.peephole_align.eq(seq.cells_peephole_align),
            u.cells.gru.eq(seq.cells_gru), u.cells.rnn.eq(seq.cells_rnn),
            u.cells.bank.eq(seq.cells_bank),
            u.cells.emit.eq(seq.cells_emit),
            u.writeback.start.eq(seq.writeback_start), u.writeback.rows.eq(seq.writeback_rows),
            u.writeback.output_base.eq(seq.writeback_output_base),
            u.writeback.output_align.eq(seq.writeback_output_align),
            u.writeback.emit.eq(seq.writeback_emit),
            u.filler.fresh.eq(0),
            u.critical.fresh.eq(seq.fresh),
            u.cells.fresh.eq(seq.fresh),
            # The filler control's view.
            control.slot.eq(seq.slot), control.frame_running.eq(seq.frame_running),
            control.released.eq(seq.released),
            control.clearing.eq(seq.clearing),
            control.full.eq(u.receiver.full), control.release.eq(seq.release),
            control.cells_busy.eq(u.cells.busy),
            control.cells_bank.eq(u.cells.reading_bank),
            control.inputs.eq(u.first.inputs), control.column_base.eq(u.first.column_base),
            control.align.eq(u.first.input_align),
            control.reader_busy.eq(u.filler.busy),
        ]
        wiring.connect(m, seq.critical_jobs, u.critical.jobs)
        wiring.connect(m, control.jobs, u.filler.jobs)
        m.d.comb += self.busy.eq(seq.frame_running | ~u.all_idle | u.cells.busy
                                 | u.writeback.busy | u.critical.busy | u.filler.busy
                                 | dump_busy)
