"""What the project knows of a card: one :class:`Board` per card, in one registry.

A board description holds every fact of a card that the rest of the project uses: the FPGA
part (as Amaranth's :class:`~amaranth.vendor.XilinxPlatform` spells it: device, package,
speed grade), the device's resources (for the estimate), the memory controller's AXI port
(for the hardware's memory bus and the streamer), the accelerator's clock, the pins, and the
Amaranth platform built from those pins. The build flow (:mod:`.vivado`), the resource
estimate (:mod:`.estimate`) and the command line (``--board``) read them from
:data:`BOARDS`, so a new card is one new description, and a fact is never written twice.
"""

from dataclasses import dataclass, field

from ..sw.contract.errors import ConfigError

__all__ = ["Board", "BOARDS", "register", "board"]

#: Resource names, as Vivado's utilization report counts them.
RESOURCE_NAMES = ("lut", "ff", "dsp", "bram36")


@dataclass(frozen=True)
class Board:
    """A PCIe card that runs the accelerator system.

    Attributes
    ----------
    name : str
        The command line's name of the card (``ese build --board NAME``).
    title : str
        The card's name for people.
    device, package, speed : str
        The FPGA, as Amaranth's XilinxPlatform takes it ("xcku060", "ffva1156", "2-e").
    resources : dict
        The device's LUT, FF, DSP and BRAM36 counts (the vendor's data sheet).
    memory_data_bits, memory_address_bits : int
        The memory controller's AXI4 port, which the system's ``m_axi`` connects to.
    memory_bytes : int
        The memory the hardware's image and streamed weights may use.
    clock_mhz : float
        The accelerator's clock on the card.
    memory_clock_mhz : float
        The memory controller's user-interface clock (its AXI4 port's clock).
    memory_reference_mhz : float
        The memory controller's reference clock from the board.
    memory_id_bits : int
        The memory controller's AXI4 ID width.
    host_stream_bits, host_clock_mhz : int, float
        The PCIe DMA engine's AXI4-Stream width and user clock.
    pins : dict
        Pin assignments by interface, for the constraints and the platform.
    platform : type
        The Amaranth platform of the card.
    presets : dict
        Named machines for the card (``--preset NAME``): each the :class:`~ese.Config`
        parameters that make it (PEs, columns per entry, cell lanes, entries per read,
        channels); memory capacities are sized for the model compiled on them.
    """

    name: str
    title: str
    device: str
    package: str
    speed: str
    resources: dict
    memory_data_bits: int
    memory_address_bits: int
    memory_bytes: int
    clock_mhz: float
    memory_clock_mhz: float = 200.0
    memory_reference_mhz: float = 0.0
    memory_id_bits: int = 4
    host_stream_bits: int = 256
    host_clock_mhz: float = 250.0
    pins: dict = field(default_factory=dict)
    platform: type = None
    presets: dict = field(default_factory=dict)

    @property
    def part(self):
        """The part name Vivado takes, as Amaranth's XilinxPlatform composes it."""
        return f"{self.device}-{self.package}-{self.speed}"

    def hardware(self, config):
        """``config`` for this card: its memory bus and its clock."""
        return config.replace(memory_data_bits=self.memory_data_bits,
                              memory_address_bits=self.memory_address_bits,
                              clock_mhz=self.clock_mhz)

    def clocks(self):
        """The card's clock domains, in MHz, as the shell names them."""
        return {"pcie": self.host_clock_mhz, "accelerator": self.clock_mhz,
                "memory": self.memory_clock_mhz}

    def percent(self, name, used):
        """``used`` as a percentage of the device's ``name`` resource."""
        return 100.0 * used / self.resources[name]

    def preset(self, name):
        """The Config parameters of the machine called ``name``; ConfigError names the card's
        presets otherwise."""
        try:
            return dict(self.presets[name])
        except KeyError:
            raise ConfigError(f"the {self.title} has no preset called {name!r}; its presets "
                              f"are: {', '.join(sorted(self.presets))}") from None


#: Every card the project builds for, by name.
BOARDS = {}


def register(description):
    """Add a board description to :data:`BOARDS`; a name may be registered once."""
    if description.name in BOARDS:
        raise ValueError(f"a board named {description.name!r} is already registered")
    missing = set(RESOURCE_NAMES) - set(description.resources)
    if missing:
        raise ValueError(f"board {description.name!r} lacks resource counts {sorted(missing)}")
    BOARDS[description.name] = description
    return description


def board(name):
    """The board description called ``name``; ConfigError names the known ones otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ConfigError(f"no board is called {name!r}; the boards are: "
                          f"{', '.join(sorted(BOARDS))}") from None
