"""ese: FPGA accelerators for sparse, quantized LSTM inference, in the style of ESE.

The public API::

    import ese
    cfg  = ese.Config(pes=4, channels=1)
    prog = ese.compile(module, cfg, density=0.3)
    y    = prog.predict(x)
    res  = prog.simulate(x)
    prog.save(path); prog = ese.load(path)

The package's parts live in subpackages: ``ese.sw`` (compiler, golden model, command line),
``ese.hw`` (the Amaranth hardware), ``ese.sim`` (Verilator simulation through cocotb) and
``ese.boards`` (FPGA board targets).
"""

from .sw.config import Config
from .sw.errors import (CapacityError, ConfigError, EseError, ImageError, InputError,
                        SimulationError, ToolchainError, UnsupportedModelError)
from .sw.peephole import PeepholeLSTM
from .sw.program import Program, compile, load

__version__ = "0.1.0"

__all__ = [
    "Config", "Program", "compile", "load", "PeepholeLSTM",
    "EseError", "ConfigError", "UnsupportedModelError", "CapacityError", "ImageError",
    "InputError", "ToolchainError", "SimulationError",
]
