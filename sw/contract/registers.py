"""The control and status registers of the accelerator system, shared by hardware and driver.

The system (:mod:`ese.hw.system`) exposes these 32-bit registers on an AXI4-Lite port; the
host driver (:mod:`ese.sw.runtime.driver`) reads and writes them through a transport (the board's
XDMA user BAR, or cocotb's AXI-Lite master in simulation). Offsets are in bytes.

The build identifier is a hash of the hardware parameters and the weight image format
version, so that a driver can refuse an image built for other hardware before it writes
anything; the parameters themselves are readable too (``CONFIG_BASE``), one per register, so
the driver can say what differs and lay the image out for the card's memories.
"""

import enum
import json
import zlib
from dataclasses import fields

__all__ = ["Register", "Control", "Status", "ERROR_FLAGS", "MAGIC", "CONFIG_BASE",
           "config_fields", "config_register_values", "config_from_registers", "build_id"]

#: The first register reads "ESE1".
MAGIC = 0x45534531


class Register(enum.IntEnum):
    MAGIC = 0x00            # read: MAGIC
    FORMAT_VERSION = 0x04   # read: the weight image format this hardware loads
    BUILD_ID = 0x08         # read: build_id(config)
    CONTROL = 0x0C          # write: Control bits (each a one-shot command)
    STATUS = 0x10           # read: Status bits
    ERRORS = 0x14           # read: sticky ERROR_FLAGS; Control.CLEAR_ERRORS clears them
    IMAGE_ADDRESS = 0x18    # read/write: DDR byte address of the weight image's load stream
    IMAGE_WORDS = 0x1C      # read/write: 32-bit words in the load stream
    STEPS_IN = 0x20         # read: frame steps accepted since reset
    STEPS_OUT = 0x24        # read: frame steps completed since reset
    CYCLES_LOW = 0x28       # read: clock cycles since reset (reading LOW latches HIGH)
    CYCLES_HIGH = 0x2C
    BUSY_LOW = 0x30         # read: cycles spent on frame steps (reading LOW latches HIGH)
    BUSY_HIGH = 0x34
    STEP_CYCLES = 0x38      # read: cycles between the last two completed steps
    IMAGE_STORED = 0x3C     # read: words of the image written to DDR so far


class Control(enum.IntFlag):
    STORE_IMAGE = 1 << 0    # write the next IMAGE_WORDS words of the weight stream to DDR
    LOAD_IMAGE = 1 << 1     # read the image from DDR into the accelerator's memories
    CLEAR_ERRORS = 1 << 2
    RESET = 1 << 3          # reset the accelerator (drops frames in flight, keeps weights)
    DUMP_STATE = 1 << 4     # send every layer's state out of the results stream (one packet)


class Status(enum.IntFlag):
    BUSY = 1 << 0           # a frame step is in flight
    STORING = 1 << 1        # the weight stream is being written to DDR
    LOADING = 1 << 2        # the image is being read from DDR into the memories
    LOADED = 1 << 3         # an image has been loaded since reset
    ERROR = 1 << 4          # some error flag is set
    RESULT_OPEN = 1 << 5    # a result's first word has left and its last not yet (after a
                            # reset, the zero word that ends a cut result is still to be read)


#: Sticky error flags: bit, name, meaning.
ERROR_FLAGS = {
    0: ("load_error", "a load record named an unknown memory or ran past one"),
    1: ("frame_error", "an input step's tlast disagreed with the model's input size"),
    2: ("memory_error", "the DDR answered an AXI read or write with an error response"),
    3: ("command_error", "a command arrived while the machine was busy and was ignored"),
    4: ("stream_error", "a host packet was not a whole number of words; its tail was dropped"),
}

#: The Config fields follow MAGIC..IMAGE_STORED, one register each, in Config field order.
CONFIG_BASE = 0x80


def config_fields():
    from .config import Config
    return [f.name for f in fields(Config)]


def config_register_values(config):
    """The register value of every Config field (clock in kHz; None as 0)."""
    values = []
    for name in config_fields():
        value = getattr(config, name)
        if name == "clock_mhz":
            value = int(round(value * 1000))
        values.append(0 if value is None else int(value))
    return values


def config_from_registers(values):
    """Rebuild a Config from the values read at CONFIG_BASE."""
    from .config import Config
    settings = {}
    for name, value in zip(config_fields(), values):
        settings[name] = value / 1000 if name == "clock_mhz" else int(value)
    return Config(**settings)


def build_id(config):
    """A 32-bit identifier of the hardware parameters and the image format version."""
    from .memory_map import FORMAT_VERSION
    parameters = {k: v for k, v in config.to_dict().items() if k != "clock_mhz"}
    text = json.dumps({"format": FORMAT_VERSION, "config": parameters}, sort_keys=True)
    return zlib.crc32(text.encode()) & 0xFFFFFFFF
