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
same code runs in asyncio and in cocotb.

Loading checks the card before it writes anything: the build identifier and every hardware
parameter are read from registers, and an image built for other hardware is refused with
:class:`~ese.sw.errors.ImageError`. Error flags read from the card raise
:class:`DeviceError` naming them.
"""

import asyncio
import os
from dataclasses import dataclass

import numpy as np

from .errors import EseError, ImageError
from .registers import (
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

__all__ = ["Accelerator", "DeviceError", "HardwareInfo", "XdmaTransport", "pack_steps",
           "unpack_results"]


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


def pack_steps(codes, starts, bits):
    """Frame steps in the host stream format: a header word, then one word per input.

    ``codes`` is (steps, channels, inputs); ``starts`` (steps, channels). Returns a list of
    bytes objects, one per step.
    """
    codes = np.asarray(codes, dtype=np.int64)
    steps, channels, inputs = codes.shape
    word_bytes = channels * bits // 8
    packed = []
    mask = (1 << bits) - 1
    for step in range(steps):
        header = sum(1 << c for c in range(channels) if starts[step][c])
        words = [header] + [sum((int(v) & mask) << (bits * c) for c, v in enumerate(column))
                            for column in codes[step].T]
        packed.append(b"".join(w.to_bytes(word_bytes, "little") for w in words))
    return packed


def unpack_results(data, channels, outputs, bits):
    """One step's result bytes -> int64 array (channels, outputs) of signed values."""
    word_bytes = channels * bits // 8
    values = np.empty((channels, outputs), dtype=np.int64)
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    for index in range(outputs):
        word = int.from_bytes(data[index * word_bytes:(index + 1) * word_bytes], "little")
        for channel in range(channels):
            values[channel, index] = (((word >> (bits * channel)) & mask) ^ sign) - sign
    return values


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
        How long to wait for the card before giving up.
    """

    def __init__(self, transport, image_address=0, poll_seconds=1e-6, timeout_seconds=1.0):
        if image_address % 4096:
            raise ValueError(f"the image address must be 4 KB aligned, not {image_address:#x}")
        self.transport = transport
        self.image_address = image_address
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.info = None
        self.program = None

    async def identify(self):
        """Read and check the card's identity and parameters; returns HardwareInfo."""
        read = self.transport.read_register
        magic = await read(Register.MAGIC)
        if magic != MAGIC:
            raise DeviceError(f"no ese accelerator answers (magic {magic:#010x}, expected "
                              f"{MAGIC:#010x})")
        values = [await read(CONFIG_BASE + 4 * index) for index in range(len(config_fields()))]
        config = config_from_registers(values)
        identifier = await read(Register.BUILD_ID)
        if identifier != build_id(config):
            raise DeviceError(f"the card's build identifier {identifier:#010x} does not match "
                              f"its own parameters; the bitstream and this ese disagree")
        self.info = HardwareInfo(config, identifier, await read(Register.FORMAT_VERSION))
        return self.info

    async def load(self, image):
        """Load a weight image (a path or a Program) onto the card; returns the Program.

        The image is checked against the card's parameters before anything is written.
        """
        from .image import FORMAT_VERSION
        from .program import Program, load
        info = self.info or await self.identify()
        if info.format_version != FORMAT_VERSION:
            raise ImageError(f"the card loads image format {info.format_version}, this ese "
                             f"writes {FORMAT_VERSION}")
        if isinstance(image, Program):
            program = image.retarget(info.config)
        else:
            program = load(image, config=info.config)
        words = program.image.load_words()
        write = self.transport.write_register
        await write(Register.CONTROL, Control.CLEAR_ERRORS)
        await write(Register.IMAGE_ADDRESS, self.image_address)
        await write(Register.IMAGE_WORDS, len(words))
        await write(Register.CONTROL, Control.STORE_IMAGE)
        await self.transport.send("weights", words.astype("<u4").tobytes())
        await self._wait_until_clear(Status.STORING, "storing the weight image")
        stored = await self.transport.read_register(Register.IMAGE_STORED)
        if stored != len(words):
            raise DeviceError(f"the card stored {stored} of {len(words)} image words")
        await write(Register.CONTROL, Control.LOAD_IMAGE)
        await self._wait_until_clear(Status.LOADING, "loading the weight image")
        status = await self.transport.read_register(Register.STATUS)
        if not status & Status.LOADED:
            raise DeviceError("the card did not report the image loaded")
        self.program = program
        return program

    async def run(self, frames):
        """Run frames; the same forms as ``Program.simulate`` (one sequence, or per channel).

        Returns the outputs decoded to real numbers: an array for one sequence, otherwise a
        list per channel of arrays per sequence.
        """
        from .steps import plan_steps
        program = self.program
        if program is None:
            raise DeviceError("no weight image is loaded; call load() first")
        plan = plan_steps(program, frames, golden=False)
        config = program.config
        bits = config.activation_bits
        steps = pack_steps(plan.codes, plan.starts, bits)
        result_bytes = program.outputs * config.channels * bits // 8
        outputs = np.empty((plan.steps, config.channels, program.outputs), dtype=np.int64)
        # Two steps in flight: the card buffers two, and reading each result before sending
        # the step after next never leaves it waiting for the host.
        ahead = min(2, len(steps))
        for step in steps[:ahead]:
            await self.transport.send("frames", step)
        for index in range(plan.steps):
            data = await self.transport.receive("results", result_bytes)
            outputs[index] = unpack_results(data, config.channels, program.outputs, bits)
            if index + ahead < len(steps):
                await self.transport.send("frames", steps[index + ahead])
        await self.check_errors()
        decoded = program.decode_outputs(outputs)
        return decoded[:, 0] if plan.single else plan.channel_outputs(decoded)

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
        """Reset the accelerator (frames in flight are dropped; weights stay) and clear errors."""
        await self.transport.write_register(Register.CONTROL,
                                            Control.RESET | Control.CLEAR_ERRORS)

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


class XdmaTransport:
    """The ADM-PCIE-KU3 card through the Xilinx XDMA driver's character devices.

    Registers are the XDMA user BAR (``<prefix>_user``); frame steps go to ``<prefix>_h2c_0``,
    the weight image to ``<prefix>_h2c_1``, and results come from ``<prefix>_c2h_0``. The
    blocking device calls run in a worker thread.
    """

    STREAMS = {"frames": "h2c_0", "weights": "h2c_1", "results": "c2h_0"}

    def __init__(self, prefix="/dev/xdma0"):
        self.prefix = prefix
        missing = [f"{prefix}_{name}" for name in ["user", *self.STREAMS.values()]
                   if not os.path.exists(f"{prefix}_{name}")]
        if missing:
            from .errors import ToolchainError
            raise ToolchainError(
                f"no XDMA device: {', '.join(missing)} missing; load the Xilinx XDMA driver "
                f"(xdma.ko) and check the card is programmed with the ese bitstream")
        self._user = os.open(f"{prefix}_user", os.O_RDWR)
        self._files = {name: os.open(f"{prefix}_{device}",
                                     os.O_RDONLY if device.startswith("c2h") else os.O_WRONLY)
                       for name, device in self.STREAMS.items()}

    async def read_register(self, offset):
        data = await asyncio.to_thread(os.pread, self._user, 4, int(offset))
        return int.from_bytes(data, "little")

    async def write_register(self, offset, value):
        await asyncio.to_thread(os.pwrite, self._user, int(value).to_bytes(4, "little"),
                                int(offset))

    async def send(self, stream, data):
        view = memoryview(data)
        while view:
            written = await asyncio.to_thread(os.write, self._files[stream], view)
            view = view[written:]

    async def receive(self, stream, size):
        parts, remaining = [], size
        while remaining:
            part = await asyncio.to_thread(os.read, self._files[stream], remaining)
            if not part:
                raise DeviceError(f"the card's {stream} stream ended")
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)

    def close(self):
        for descriptor in [self._user, *self._files.values()]:
            os.close(descriptor)
