"""XdmaTransport against a stand-in for Xilinx's XDMA character devices and a card behind them.

The stand-in follows dma_ip_drivers (XDMA/linux-kernel/xdma, as read at 8721136e):

* ``char_sgdma_open`` (cdev_sgdma.c): a C2H stream opened with O_TRUNC flushes at end of
  packet; a second open of the same C2H device is EBUSY.
* ``check_transfer_align`` (cdev_sgdma.c): the buffer's offset within the engine's alignment
  must equal the file position's (which reads and writes never move from 0), else EINVAL.
* ``engine_service_final_transfer``/``xdma_xfer_submit`` (libxdma.c): with the flush, a read
  returns at the packet's tlast with its length, and a longer packet fills the read and leaves
  the rest for the next; without it, a packet shorter than the read fails it with EIO. A read
  that sees no packet within ``c2h_timeout`` fails with ETIMEDOUT.
* PG195/PG347 "DMA C2H Stream": a C2H descriptor is a multiple of 64 bytes (EINVAL here).

Behind it, a card that checks every frame step the host writes against the golden plan and
answers each with the golden model's result, as the shell sends it (one packet, tlast, its
exact length).
"""

import asyncio
import ctypes
import errno
import os
import threading

import numpy as np
import pytest

import ese
from ese.sw.contract.memory_map import FORMAT_VERSION, LoadTarget
from ese.sw.contract.registers import (
    CONFIG_BASE,
    MAGIC,
    Control,
    Register,
    Status,
    build_id,
    config_register_values,
)
from ese.sw.contract.wire import channel_word, pack_steps, word_bytes
from ese.sw.runtime.driver import Accelerator, DeviceError, XdmaTransport
from ese.sw.runtime.steps import plan_steps

from helpers import frames, hardware

ALIGNMENT = 64          # the engines' address alignment (register 0x4C) in this stand-in


class CardBehindXdma:
    """A card: registers, the image's words, frame steps checked against the expected ones and
    answered with the expected results."""

    def __init__(self, program, expected_steps, results):
        config = program.config
        self.registers = {Register.MAGIC: MAGIC, Register.FORMAT_VERSION: FORMAT_VERSION,
                          Register.BUILD_ID: build_id(config), Register.STATUS: 0,
                          Register.ERRORS: 0, Register.STEPS_IN: 0, Register.STEPS_OUT: 0,
                          Register.IMAGE_STORED: 0, Register.STEP_CYCLES: 0}
        for index, value in enumerate(config_register_values(config)):
            self.registers[CONFIG_BASE + 4 * index] = value
        self.expected_steps = list(expected_steps)
        self.results = list(results)
        self.packets = []                # C2H packets waiting for the host
        self.steps_seen = []
        self.image = bytearray()
        self.silent = False              # a card that takes steps but never answers
        self.arrived = threading.Condition()

    def write_register(self, offset, value):
        if offset == Register.CONTROL:
            if value & Control.STORE_IMAGE:
                self.image.clear()
            if value & Control.LOAD_IMAGE:
                self.registers[Register.STATUS] |= Status.LOADED
            if value & Control.RESET:
                with self.arrived:
                    self.registers[Register.STATUS] &= ~Status.BUSY
        else:
            self.registers[offset] = value

    def read_register(self, offset):
        return self.registers.get(offset, 0)

    def h2c(self, channel, data):
        if channel == 1:
            self.image += data
            self.registers[Register.IMAGE_STORED] = len(self.image) // 4
            return
        step = len(self.steps_seen)
        assert data == self.expected_steps[step], f"frame step {step} differs"
        self.steps_seen.append(data)
        self.registers[Register.STEPS_IN] += 1
        if not self.silent:
            with self.arrived:
                self.packets.append(self.results[step])
                self.registers[Register.STEPS_OUT] += 1
                self.arrived.notify_all()


class XdmaDevicesStandin:
    """The XDMA driver's character devices, as dma_ip_drivers behaves (see the module)."""

    def __init__(self, card, c2h_timeout=0.5):
        self.card = card
        self.c2h_timeout = c2h_timeout
        self.files = {}
        self.next = 3
        self.read_sizes = []

    def exists(self, path):
        return path.split("xdma0_", 1)[-1] in ("user", "h2c_0", "h2c_1", "c2h_0")

    def open(self, path, flags):
        device = path.split("xdma0_", 1)[1]
        if device.startswith("c2h") and any(d == device for d, _ in self.files.values()):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self.next += 1
        self.files[self.next] = (device, flags)
        return self.next

    def close(self, descriptor):
        del self.files[descriptor]

    def pread(self, descriptor, size, offset):
        return self.card.read_register(offset).to_bytes(4, "little")

    def pwrite(self, descriptor, data, offset):
        self.card.write_register(offset, int.from_bytes(data, "little"))
        return len(data)

    @staticmethod
    def _check_alignment(buffer):
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        if address % ALIGNMENT != 0 % ALIGNMENT:
            raise OSError(errno.EINVAL, "Invalid transfer alignment detected")

    def write_from(self, descriptor, view):
        device, _ = self.files[descriptor]
        self._check_alignment(view.obj if isinstance(view, memoryview) else view)
        self.card.h2c(int(device.rsplit("_", 1)[1]), bytes(view))
        return len(view)

    def read_into(self, descriptor, buffer):
        device, flags = self.files[descriptor]
        self._check_alignment(buffer)
        if len(buffer) % 64:
            raise OSError(errno.EINVAL, "a C2H stream descriptor is a multiple of 64 bytes")
        self.read_sizes.append(len(buffer))
        card = self.card
        with card.arrived:
            if not card.arrived.wait_for(lambda: card.packets, self.c2h_timeout):
                raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
            packet = card.packets[0]
            if len(packet) < len(buffer) and not flags & os.O_TRUNC:
                card.packets.pop(0)
                raise OSError(errno.EIO, "the engine stopped half-way (no end-of-packet flush)")
            buffer[:min(len(packet), len(buffer))] = packet[:len(buffer)]
            if len(packet) > len(buffer):
                card.packets[0] = packet[len(buffer):]
                return len(buffer)
            card.packets.pop(0)
            return len(packet)


def _card_for(channels, steps=5):
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), hardware(2, channels=channels),
                          density=0.3)
    per_channel = [frames(steps, 13, seed=c) for c in range(channels)]
    plan = plan_steps(program, per_channel)
    bits = program.config.activation_bits
    expected = pack_steps(plan.codes, plan.starts, bits)
    size = word_bytes(channels, bits)
    results = [b"".join(channel_word(step[:, index], bits).to_bytes(size, "little")
                        for index in range(program.outputs)) for step in plan.expected]
    return program, per_channel, CardBehindXdma(program, expected, results)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_the_driver_runs_through_xdma_character_devices(channels):
    """Results of 18, 36 and 54 bytes (not whole 32-byte beats): each read asks for a whole
    page, ends at the packet's tlast (O_TRUNC) and gets the result at its length."""
    program, per_channel, card = _card_for(channels)
    devices = XdmaDevicesStandin(card)
    transport = XdmaTransport("/dev/xdma0", devices=devices)

    async def run():
        accelerator = Accelerator(transport, timeout_seconds=2.0)
        await accelerator.load(program)
        return await accelerator.run(per_channel)

    try:
        outputs = asyncio.run(run())
    finally:
        transport.close()
    for channel in range(channels):
        assert np.array_equal(outputs[channel][0], program.predict(per_channel[channel]))
    assert len(card.steps_seen) == 5
    # The load stream as stored: the image's words, then a PADDING record to the next 4 KB
    # (where an initial state's records would follow).
    words = program.retarget(program.config).image.load_words().astype("<u4").tobytes()
    assert card.image[:len(words)] == words and len(card.image) % 4096 == 0
    padding = np.frombuffer(bytes(card.image[len(words):]), dtype="<u4")
    if len(padding):
        assert padding[0] == LoadTarget.PADDING and padding[2] == len(padding) - 3
    assert all(size % XdmaTransport.PAGE == 0 for size in devices.read_sizes)


def test_without_o_trunc_a_short_packet_fails_the_read():
    """What the old transport did (no O_TRUNC): the driver fails a read whose packet ends
    early with EIO, which the transport reports as a DeviceError."""
    program, per_channel, card = _card_for(1)

    class WithoutTrunc(XdmaDevicesStandin):
        def open(self, path, flags):
            return super().open(path, flags & ~os.O_TRUNC)

    transport = XdmaTransport("/dev/xdma0", devices=WithoutTrunc(card))

    async def run():
        accelerator = Accelerator(transport, timeout_seconds=2.0)
        await accelerator.load(program)
        return await accelerator.run(per_channel)

    try:
        with pytest.raises(DeviceError, match="failed the read of results"):
            asyncio.run(run())
    finally:
        transport.close()


def test_a_silent_card_times_out_keeps_the_read_and_reset_recovers():
    """The card takes steps but answers none: the run times out (the read stays under way in
    its thread, as a blocking device call cannot be cancelled); reset() waits for what is
    under way, and discards results with reads of the largest packet, which end at tlast."""
    program, per_channel, card = _card_for(1, steps=3)
    card.silent = True
    devices = XdmaDevicesStandin(card, c2h_timeout=5.0)
    transport = XdmaTransport("/dev/xdma0", devices=devices)

    async def run():
        accelerator = Accelerator(transport, timeout_seconds=0.2)
        await accelerator.load(program)
        with pytest.raises(DeviceError, match="produced no result"):
            await accelerator.run(per_channel)
        with pytest.raises(DeviceError, match="reset"):
            await accelerator.run(per_channel)
        # The card answers the step it had (the one the kept read is waiting for) and one
        # more, then the reset: the driver drops both.
        with card.arrived:
            card.packets += card.results[:2]
            card.registers[Register.STEPS_OUT] += 2
            card.arrived.notify_all()
        await accelerator.reset()
        assert not card.packets
        return devices.read_sizes

    try:
        sizes = asyncio.run(run())
    finally:
        transport.close()
    assert sizes[-1] == XdmaTransport.LARGEST_PACKET


def test_a_second_reader_of_the_c2h_device_is_refused():
    program, _, card = _card_for(1, steps=1)
    devices = XdmaDevicesStandin(card)
    first = XdmaTransport("/dev/xdma0", devices=devices)
    try:
        with pytest.raises(OSError, match=os.strerror(errno.EBUSY)):
            XdmaTransport("/dev/xdma0", devices=devices)
    finally:
        first.close()


def test_a_card_of_another_image_format_is_named_before_its_parameters_are_read():
    """The registers after FORMAT_VERSION are that version's map: a bitstream of another
    format is refused by its version, not by whatever its parameter registers then hold."""
    program, _, card = _card_for(1)
    card.registers[Register.FORMAT_VERSION] = FORMAT_VERSION - 1
    card.registers[CONFIG_BASE] = 12345                       # not a PE count of this map
    transport = XdmaTransport("/dev/xdma0", devices=XdmaDevicesStandin(card))
    try:
        with pytest.raises(DeviceError, match=f"image format {FORMAT_VERSION - 1} and this "
                                              f"ese of format {FORMAT_VERSION}"):
            asyncio.run(Accelerator(transport).identify())
    finally:
        transport.close()
