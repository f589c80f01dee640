"""The host driver: load a weight image onto the accelerator and run frames through it.

:class:`Accelerator` speaks to the system (:mod:`ese.hw.system`) through a *transport* with
five coroutines::

    await transport.read_register(offset) -> int
    await transport.write_register(offset, value)
    await transport.send(stream, data)          # stream: "weights" or "frames"; data: bytes
    await transport.receive(stream, size) -> bytes   # stream: "results"
    await transport.sleep(seconds)

Two transports exist: :class:`XdmaTransport` for the ADM-PCIE-KU3 card through the Xilinx
XDMA driver's character devices, and ``ese.sim.transport.SimulatedTransport`` for the RTL in
Verilator with cocotbext-axi bus models. The driver awaits nothing but its transport, so the
same code runs in asyncio and in cocotb. ``receive`` returns one whole packet (a step's
results end with tlast); ``send`` and ``receive`` take a timeout in seconds and raise
``TimeoutError`` when it passes. Two more coroutines serve :meth:`Accelerator.reset`::

    await transport.abandon(stream)             # drop what is queued and not yet under way
    await transport.drain(stream, timeout)      # wait until what is under way has left

Every wait has a deadline: a card that never answers raises :class:`DeviceError` saying what
it did not finish, and :meth:`Accelerator.reset` brings it back (the frames of the aborted run
and their results are dropped on both sides; the weights stay).

Loading checks the card before it writes anything: the build identifier and every hardware
parameter are read from registers, and an image built for other hardware is refused with
:class:`~ese.sw.contract.errors.ImageError`. Error flags read from the card raise
:class:`DeviceError` naming them.
"""

import asyncio
import os
from dataclasses import dataclass

import numpy as np

from ..contract.errors import CapacityError, ConfigError, EseError, ImageError, InputError
from ..contract.memory_map import FORMAT_VERSION
from ..contract.registers import (
    CONFIG_BASE,
    ERROR_FLAGS,
    MAGIC,
    Control,
    Register,
    Status,
    build_id,
    config_fields,
    config_from_registers,
)
from ..contract.wire import pack_steps, unpack_result, word_bytes
from .quantized import PassSchedule

__all__ = ["Accelerator", "DeviceError", "HardwareInfo", "XdmaTransport", "PosixDevices"]


class DeviceError(EseError, RuntimeError):
    """The accelerator reported an error, did not answer, or is not an ese accelerator."""

    def __init__(self, message, flags=()):
        super().__init__(message)
        self.flags = tuple(flags)


@dataclass
class HardwareInfo:
    """What a card says about itself."""

    config: object
    build_id: int
    format_version: int


class CardUtterance:
    """Pieces of one utterance per channel on the card (:meth:`Accelerator.utterance`)."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.lengths = None          # frames per channel of each piece (None: no piece yet)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exception):
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        return False

    async def run(self, frames, state=None, return_state=False):
        """The outputs of the next piece; ``state`` only with the first; ``return_state`` also
        reads back the state the piece ended in (see :meth:`Accelerator.run`)."""
        single = not isinstance(frames, (list, tuple))
        pieces = [frames] if single else list(frames)
        lengths = {}
        for channel, piece in enumerate(pieces):
            if isinstance(piece, (list, tuple)):
                raise InputError(f"channel {channel}: a piece of an utterance is one array of "
                                 f"frames, not a list of sequences")
            if piece is not None:
                lengths[channel] = len(np.asarray(piece))
        if len(set(lengths.values())) > 1:
            raise InputError(f"the channels run in lock step: every piece gives each channel "
                             f"of the utterance the same number of frames, not {lengths}")
        if self.lengths is not None:
            if set(lengths) != set(self.lengths):
                raise InputError(f"every piece continues the same channels "
                                 f"({sorted(self.lengths)}), not {sorted(lengths)}")
            if state is not None:
                raise InputError("only an utterance's first piece may give a state")
        first = self.lengths is None
        self.lengths = lengths
        return await self.accelerator.run(frames, state=state, carry=not first,
                                          return_state=return_state)


class Accelerator:
    """An ese accelerator behind a transport.

    Parameters
    ----------
    transport
        See the module documentation.
    image_address : int
        DDR byte address where the weight image is stored (4 KB aligned).
    poll_seconds : float
        Interval between status reads while waiting.
    timeout_seconds : float
        How long to wait for the card (a status change, a step's results) before giving up.
    memory_bytes : int, optional
        Size of the card's memory; an image that would not fit below it (or below the
        2 ** memory_address_bits bytes the hardware addresses) is refused before anything is
        written.
    """

    def __init__(self, transport, image_address=0, poll_seconds=1e-6, timeout_seconds=1.0,
                 memory_bytes=None):
        if (isinstance(image_address, bool) or not isinstance(image_address, int)
                or not 0 <= image_address < 1 << 32 or image_address % 4096):
            raise ConfigError(f"the image address must be a 4 KB aligned byte address below "
                              f"4 GiB, not {image_address!r}")
        if not timeout_seconds > 0 or not poll_seconds > 0:
            raise ConfigError("poll_seconds and timeout_seconds must be positive")
        self.transport = transport
        self.image_address = image_address
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self.info = None
        self.program = None
        self._image_words = 0        # words of the stored (padded) load stream
        self._results_read = 0       # result packets read, counted like Register.STEPS_OUT
        self._aborted = False        # a run did not finish: reset() before the next
        self._loaded_pass = 0        # the pass of a bidirectional model the card holds

    async def identify(self):
        """Read and check the card's identity and parameters; returns HardwareInfo."""
        read = self.transport.read_register
        magic = await read(Register.MAGIC)
        if magic != MAGIC:
            raise DeviceError(f"no ese accelerator answers (magic {magic:#010x}, expected "
                              f"{MAGIC:#010x})")
        # The register map after FORMAT_VERSION is that version's: check it first.
        version = await read(Register.FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise DeviceError(f"the card's bitstream is of image format {version} and this ese "
                              f"of format {FORMAT_VERSION}: build the bitstream again with this "
                              f"ese (ese build), or drive the card with the ese that built it")
        values = [await read(CONFIG_BASE + 4 * index) for index in range(len(config_fields()))]
        config = config_from_registers(values)
        identifier = await read(Register.BUILD_ID)
        if identifier != build_id(config):
            raise DeviceError(f"the card's build identifier {identifier:#010x} does not match "
                              f"its own parameters; the bitstream and this ese disagree")
        self.info = HardwareInfo(config, identifier, version)
        return self.info

    async def load(self, image):
        """Load a weight image (a path or a Program) onto the card; returns the Program.

        The image is checked against the card's parameters before anything is written.
        """
        from .program import Program, load
        info = self.info or await self.identify()
        if info.format_version != FORMAT_VERSION:
            raise ImageError(f"the card loads image format {info.format_version}, this ese "
                             f"writes {FORMAT_VERSION}")
        if isinstance(image, Program):
            program = image.retarget(info.config)
        else:
            program = load(image, config=info.config)
        # The stored stream ends on a 4 KB boundary (a PADDING record), so that an initial
        # state's records can be stored right behind it and loaded with it (run(state=...)).
        words = program.image.load_words(block_words=1024)
        self._check_memory_range(len(words), info.config)
        await self.transport.write_register(Register.CONTROL, Control.CLEAR_ERRORS)
        await self._store(self.image_address, words, "the weight image")
        await self._load(len(words), "the weight image")
        self.program = program
        self._image_words = len(words)
        self._loaded_pass = 0
        return program

    async def _store(self, address, words, what):
        """Write ``words`` of the load stream to the card's memory at ``address``."""
        write = self.transport.write_register
        await write(Register.IMAGE_ADDRESS, address)
        await write(Register.IMAGE_WORDS, len(words))
        await write(Register.CONTROL, Control.STORE_IMAGE)
        await self._send("weights", words.astype("<u4").tobytes(), what)
        await self._wait_until_clear(Status.STORING, f"storing {what}")
        stored = await self.transport.read_register(Register.IMAGE_STORED)
        if stored != len(words):
            raise DeviceError(f"the card stored {stored} of {len(words)} words of {what}")

    async def _load(self, words, what, address=None):
        """Load the first ``words`` words stored at the image address (or ``address``) into
        the memories (the card resets its core first: every state is cleared, then loaded if
        the words hold one)."""
        write = self.transport.write_register
        await write(Register.IMAGE_ADDRESS, self.image_address if address is None else address)
        await write(Register.IMAGE_WORDS, words)
        await write(Register.CONTROL, Control.LOAD_IMAGE)
        await self._wait_until_clear(Status.LOADING, f"loading {what}")
        status = await self.transport.read_register(Register.STATUS)
        if not status & Status.LOADED:
            raise DeviceError(f"the card did not report {what} loaded")
        self._results_read = await self.transport.read_register(Register.STEPS_OUT)
        self._aborted = False

    async def _load_state(self, plan):
        """Store the plan's initial states behind the image and load image and states: the
        card's state is then exactly them (every other channel's is zero)."""
        from .encoding import state_load_words
        words = state_load_words(self.program.image, plan.initial)
        self._check_memory_range(self._image_words + len(words), self.program.config)
        await self._store(self.image_address + 4 * self._image_words, words,
                          "the initial state")
        await self._load(self._image_words + len(words), "the weight image and initial state")

    def _check_memory_range(self, words, config):
        """Refuse an image that would not fit the card's memory at the image address."""
        end = self.image_address + 4 * words
        limits = [(1 << config.memory_address_bits, f"the {config.memory_address_bits}-bit "
                   f"addresses of the hardware")]
        if self.memory_bytes is not None:
            limits.append((self.memory_bytes, f"the card's {self.memory_bytes} bytes of memory"))
        for limit, what in limits:
            if end > limit:
                raise CapacityError(
                    f"the weight image ({4 * words} bytes at {self.image_address:#x}) would end "
                    f"at {end:#x}, past {what}; choose a lower image_address or a smaller "
                    f"model")

    async def _within_deadline(self, transfer, failure):
        """Await a transport transfer; past the deadline, raise the card's error flags if it
        has any, else DeviceError saying ``failure``."""
        try:
            return await transfer
        except TimeoutError:
            self._aborted = True
            await self.check_errors()
            raise DeviceError(f"{failure} within {self.timeout_seconds} s; reset it "
                              f"(Accelerator.reset)") from None

    async def _send(self, stream, data, what):
        await self._within_deadline(self.transport.send(stream, data, self.timeout_seconds),
                                    f"the card did not take {what}")

    async def _receive(self, size, what):
        data = await self._within_deadline(
            self.transport.receive("results", size, self.timeout_seconds),
            f"the card produced no {what}")
        self._results_read += 1
        return data

    async def run(self, frames, state=None, carry=False, return_state=False):
        """Run frames; the same forms as ``Program.simulate`` (one sequence, or per channel).

        ``state``: initial states as ``Program.simulate`` takes them; the card is loaded
        with them (and with the image again, which clears every other state) before the
        first frame. ``carry``: each channel's first sequence continues the state the card
        holds from the last run instead of starting from zero (see :meth:`utterance`).
        ``return_state``: afterwards, read the state the card ended in back from it (a state
        dump) and return it too.

        Returns the outputs decoded to real numbers: an array for one sequence, otherwise a
        list per channel of arrays per sequence; with ``return_state``, ``(outputs, state)``
        with the state as ``(h, c)`` (``Program.predict``'s shapes), per channel unless one
        sequence was given.
        """
        from .steps import plan_steps
        program = self.program
        if program is None:
            raise DeviceError("no weight image is loaded; call load() first")
        if self._aborted:
            raise DeviceError("the last run did not finish (timed out, failed or was "
                              "cancelled); call reset() before running again")
        if carry and state is not None:
            raise InputError("a run either carries the card's state on or starts from a "
                             "given state, not both")
        if program.model.bidirectional:
            if not isinstance(frames, np.ndarray) or carry or state is not None or return_state:
                raise InputError(
                    "a bidirectional model runs one whole sequence at a time, from zero "
                    "state: give run one (frames, inputs) array, without state=, carry or "
                    "return_state= (Program.predict takes a state)")
            return await self._run_passes(frames)
        plan = plan_steps(program, frames, golden=False, state=state, carry=carry)
        if plan.has_initial_state:
            await self._load_state(plan)
        # Until this run has read every result, an interruption leaves the card and the
        # transport holding its steps: the next run must reset first.
        self._aborted = True
        outputs = await self._run_steps(plan.codes, plan.starts, program.outputs)
        final = await self._dump_state(plan) if return_state else None
        await self.check_errors()
        self._aborted = False
        decoded = program.decode_outputs(outputs)
        decoded = (program.returned(decoded[:, 0]) if plan.single else
                   [[program.returned(sequence) for sequence in channel]
                    for channel in plan.channel_outputs(decoded)])
        return (decoded, final) if return_state else decoded

    async def _run_steps(self, codes, starts, outputs_count):
        """Send frame steps (codes (steps, channels, inputs), starts (steps, channels)) and
        read each step's result of ``outputs_count`` words; returns the output codes (steps,
        channels, outputs)."""
        config = self.program.config
        bits = config.activation_bits
        steps = pack_steps(codes, starts, bits)
        result_bytes = outputs_count * word_bytes(config.channels, bits)
        outputs = np.empty((len(steps), config.channels, outputs_count), dtype=np.int64)
        # Two steps in flight: the card buffers two, and reading each result before sending
        # the step after next never leaves it waiting for the host.
        ahead = min(2, len(steps))
        for index, step in enumerate(steps[:ahead]):
            await self._send("frames", step, f"frame step {index + 1}")
        for index in range(len(steps)):
            data = await self._receive(result_bytes, f"result for frame step {index + 1} of "
                                                     f"{len(steps)}")
            if len(data) != result_bytes:
                raise DeviceError(f"the result of frame step {index + 1} has {len(data)} bytes, "
                                  f"not {result_bytes}; reset the card (Accelerator.reset)")
            outputs[index] = unpack_result(data, config.channels, outputs_count, bits)
            if index + ahead < len(steps):
                await self._send("frames", steps[index + ahead],
                                 f"frame step {index + ahead + 1}")
        return outputs

    async def _load_pass(self, run):
        """Make ``run`` (a :class:`~.quantized.Pass`) the pass the card runs: its layers'
        descriptors, stored behind the image and loaded alone (the weights stay; the load
        clears every state, and each pass starts from zero)."""
        words = self.program.image.pass_load_words(run)
        address = self.image_address + 4 * self._image_words
        self._check_memory_range(self._image_words + len(words), self.program.config)
        # Unknown until the load is seen to finish: a failed one leaves either pass there.
        self._loaded_pass = None
        await self._store(address, words, f"the descriptors of pass {run}")
        await self._load(len(words), f"the descriptors of pass {run}", address=address)
        self._loaded_pass = self.program.model.passes().index(run)

    async def _run_passes(self, frames):
        """A bidirectional model's passes on the card, one after another: each pass's
        descriptors loaded (the first pass's are the image's own), its frames sent (a
        backward half's in reverse time order), each stage's input the card's own outputs of
        the stage before, concatenated."""
        program = self.program
        model = program.model
        codes, _ = program.encode_inputs(frames)
        schedule = PassSchedule(model, codes)
        self._aborted = True
        for number, run in enumerate(model.passes()):
            if number or self._loaded_pass != 0:
                await self._load_pass(run)
                self._aborted = True
            inputs = schedule.inputs(run)
            steps = np.zeros((len(inputs), program.config.channels, inputs.shape[1]),
                             dtype=np.int64)
            steps[:, 0] = inputs
            starts = np.zeros(steps.shape[:2], dtype=bool)
            starts[0] = True
            outputs = (await self._run_steps(steps, starts,
                                             model.layers[run.last].outputs))[:, 0]
            schedule.record(run, outputs)
        await self.check_errors()
        self._aborted = False
        return program.returned(program.decode_outputs(schedule.outputs()))

    async def _dump_state(self, plan):
        """The state the card holds, read back through the results stream."""
        from .encoding import state_dump_words
        program = self.program
        config = program.config
        program.check_state_readable("this card")
        words = state_dump_words(program.image)
        await self.transport.write_register(Register.CONTROL, Control.DUMP_STATE)
        size = words * word_bytes(config.channels, config.activation_bits)
        data = await self._receive(size, "state dump")
        if len(data) != size:
            raise DeviceError(f"the state dump has {len(data)} bytes, not {size}; reset the "
                              f"card (Accelerator.reset)")
        values = unpack_result(data, config.channels, words, config.activation_bits).T
        states = program.states_from_dump(values)
        return states[0] if plan.single else states

    def utterance(self):
        """A context for utterances that arrive in pieces: ``await u.run(piece)`` runs each
        piece from where the last one left the card's state, so the outputs equal one run on
        the pieces joined. The first piece may start from ``state=``. Pieces take the forms
        of :meth:`run` with one sequence per channel; since the channels run in lock step,
        every piece gives each channel of the utterance the same number of frames. Nothing
        else may run on the card in between (a run of its own starts every channel anew).
        Refused for a bidirectional model, which needs each utterance whole."""
        if self.program is not None:
            self.program.check_unidirectional("an utterance in pieces (Accelerator.utterance)")
        return CardUtterance(self)

    async def counters(self):
        """The card's counters, as a dict."""
        read = self.transport.read_register
        cycles_low = await read(Register.CYCLES_LOW)
        cycles = cycles_low | (await read(Register.CYCLES_HIGH) << 32)
        busy_low = await read(Register.BUSY_LOW)
        busy = busy_low | (await read(Register.BUSY_HIGH) << 32)
        return {"cycles": cycles, "busy_cycles": busy,
                "steps_in": await read(Register.STEPS_IN),
                "steps_out": await read(Register.STEPS_OUT),
                "step_cycles": await read(Register.STEP_CYCLES)}

    async def check_errors(self):
        """Raise DeviceError naming every error flag the card has set."""
        errors = await self.transport.read_register(Register.ERRORS)
        if errors:
            named = [ERROR_FLAGS[bit] for bit in sorted(ERROR_FLAGS) if errors >> bit & 1]
            unknown = errors & ~sum(1 << bit for bit in ERROR_FLAGS)
            text = "; ".join(f"{name} ({meaning})" for name, meaning in named)
            if unknown:
                text += f"; unknown flags {unknown:#x}"
            raise DeviceError(f"the accelerator reports {text}",
                              flags=[name for name, _ in named])

    async def reset(self):
        """Reset the accelerator and clear its errors: frames in flight and their results are
        dropped on the card and on the host, so the next run starts clean; weights stay.

        The host first stops sending; a reset makes the card drop the rest of a step it was
        taking and end a result it was sending; once what the host had under way has left, a
        second reset drops any step that began meanwhile; then every result the card
        produced and the host did not read is read and discarded.
        """
        transport = self.transport
        command = Control.RESET | Control.CLEAR_ERRORS
        await transport.abandon("frames")
        await transport.write_register(Register.CONTROL, command)
        try:
            await transport.drain("frames", self.timeout_seconds)
        except TimeoutError:
            raise DeviceError(f"the card did not take the frames under way within "
                              f"{self.timeout_seconds} s after a reset") from None
        await transport.write_register(Register.CONTROL, command)
        await self._wait_until_clear(Status.BUSY, "a reset")
        # The core is reset: no result is produced now but those already made, and the zero
        # word that ends a result the reset cut short.
        while True:
            status = await transport.read_register(Register.STATUS)
            produced = await transport.read_register(Register.STEPS_OUT)
            if not ((produced - self._results_read) & 0xFFFFFFFF or status & Status.RESULT_OPEN):
                break
            await self._receive(None, "result to discard after the reset")
        self._aborted = False

    async def _wait_until_clear(self, bits, what):
        waited = 0.0
        while True:
            status = await self.transport.read_register(Register.STATUS)
            if status & Status.ERROR:
                await self.check_errors()
            if not status & bits:
                return
            if waited >= self.timeout_seconds:
                raise DeviceError(f"the accelerator did not finish {what} within "
                                  f"{self.timeout_seconds} s")
            await self.transport.sleep(self.poll_seconds)
            waited += self.poll_seconds


class PosixDevices:
    """The XDMA driver's character devices through the operating system (what
    :class:`XdmaTransport` uses on a card; tests give it a stand-in with the same methods)."""

    exists = staticmethod(os.path.exists)
    open = staticmethod(os.open)
    close = staticmethod(os.close)
    pread = staticmethod(os.pread)
    pwrite = staticmethod(os.pwrite)

    @staticmethod
    def read_into(descriptor, buffer):
        return os.readv(descriptor, [buffer])

    @staticmethod
    def write_from(descriptor, buffer):
        return os.write(descriptor, buffer)


class XdmaTransport:
    """The ADM-PCIE-KU3 card through the Xilinx XDMA driver's character devices.

    Registers are the XDMA user BAR (``<prefix>_user``); frame steps go to ``<prefix>_h2c_0``,
    the weight image to ``<prefix>_h2c_1``, and results come from ``<prefix>_c2h_0``. The
    blocking device calls run in a worker thread.

    What the transfers rest on (Xilinx/dma_ip_drivers, XDMA/linux-kernel/xdma): every transfer
    uses a page-aligned buffer, so the driver's alignment check (``cdev_sgdma.c``: the buffer's
    offset within the engine's address alignment must equal the file position's, which reads
    and writes never move from 0) holds, and its descriptors are whole pages but the last. The
    C2H device is opened with ``O_TRUNC``, which sets the engine's end-of-packet flush
    (``char_sgdma_open``): a read then ends at the packet's tlast and returns its length, where
    without it a packet shorter than the read fails it. Reads ask for whole pages (a C2H
    descriptor is a multiple of 64 bytes), at least one result long. The card's last beat of a
    packet carries ``tkeep``, so a result of 1, 2 or 3 channels arrives at its exact length.
    """

    STREAMS = {"frames": "h2c_0", "weights": "h2c_1", "results": "c2h_0"}
    #: The largest packet a read after a reset waits for (a result is far smaller).
    LARGEST_PACKET = 1 << 20
    PAGE = 4096

    def __init__(self, prefix="/dev/xdma0", devices=None):
        self.prefix = prefix
        self.devices = devices = devices or PosixDevices()
        missing = [f"{prefix}_{name}" for name in ["user", *self.STREAMS.values()]
                   if not devices.exists(f"{prefix}_{name}")]
        if missing:
            from ..contract.errors import ToolchainError
            raise ToolchainError(
                f"no XDMA device: {', '.join(missing)} missing; load the Xilinx XDMA driver "
                f"(xdma.ko) and check the card is programmed with the ese bitstream")
        self._user = devices.open(f"{prefix}_user", os.O_RDWR)
        self._files = {}
        for name, device in self.STREAMS.items():
            flags = os.O_RDONLY | os.O_TRUNC if device.startswith("c2h") else os.O_WRONLY
            self._files[name] = devices.open(f"{prefix}_{device}", flags)
        self._under_way = {}

    async def read_register(self, offset):
        data = await asyncio.to_thread(self.devices.pread, self._user, 4, int(offset))
        return int.from_bytes(data, "little")

    async def write_register(self, offset, value):
        await asyncio.to_thread(self.devices.pwrite, self._user,
                                int(value).to_bytes(4, "little"), int(offset))

    @classmethod
    def _buffer(cls, size):
        """A page-aligned buffer of whole pages, at least ``size`` bytes."""
        import mmap
        return mmap.mmap(-1, max(cls.PAGE, -(-size // cls.PAGE) * cls.PAGE))

    # A transfer that times out goes on in its worker thread (a blocking device call cannot
    # be cancelled); it is kept, so the next receive returns its packet and drain waits for it.

    def _write_all(self, stream, data):
        buffer = self._buffer(len(data))
        try:
            buffer[:len(data)] = data
            view = memoryview(buffer)[:len(data)]
            while view:
                view = view[self.devices.write_from(self._files[stream], view):]
            view.release()
        finally:
            buffer.close()

    def _read_packet(self, stream, size):
        buffer = self._buffer(size)
        try:
            length = self.devices.read_into(self._files[stream], buffer)
            return bytes(buffer[:length])
        finally:
            buffer.close()

    async def _finish(self, transfer, timeout):
        try:
            return await asyncio.wait_for(asyncio.shield(transfer), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError from None

    async def send(self, stream, data, timeout=None):
        await self.drain(stream, timeout)
        transfer = asyncio.ensure_future(asyncio.to_thread(self._write_all, stream, bytes(data)))
        self._under_way[stream] = transfer
        await self._finish(transfer, timeout)
        self._under_way.pop(stream, None)

    async def receive(self, stream, size, timeout=None):
        """One packet: the card ends each with tlast, which ends the XDMA read (O_TRUNC)."""
        transfer = self._under_way.get(stream)
        if transfer is None:
            transfer = asyncio.ensure_future(asyncio.to_thread(
                self._read_packet, stream, size or self.LARGEST_PACKET))
            self._under_way[stream] = transfer
        try:
            data = await self._finish(transfer, timeout)
        except TimeoutError:
            raise                   # (an OSError too): the read stays under way
        except OSError as error:
            self._under_way.pop(stream, None)
            raise DeviceError(f"the XDMA driver failed the read of {stream} "
                              f"({error.strerror or error}); reset the card "
                              f"(Accelerator.reset)") from None
        self._under_way.pop(stream, None)
        if not data:
            raise DeviceError(f"the card's {stream} stream ended")
        return data

    async def abandon(self, stream):
        """Nothing is queued on the host beyond the transfer under way."""

    async def drain(self, stream, timeout=None):
        transfer = self._under_way.get(stream)
        if transfer is not None:
            await self._finish(transfer, timeout)
            self._under_way.pop(stream, None)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)

    def close(self):
        for descriptor in [self._user, *self._files.values()]:
            self.devices.close(descriptor)
