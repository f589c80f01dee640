"""ese: FPGA accelerators for sparse, quantized LSTM and GRU inference, in the style of ESE.

The public API::

    import ese
    cfg  = ese.Config(pes=4, channels=1)
    prog = ese.compile(module, cfg, density=0.3)
    y    = prog.predict(x)
    res  = prog.simulate(x)
    prog.save(path); prog = ese.load(path)

The package's parts live in subpackages, in layers that import only downwards:
``ese.sw.contract`` (what both sides of the wire agree on), ``ese.hw`` (the Amaranth
hardware), ``ese.sw.runtime`` (programs, images, the golden model, the host driver),
``ese.sw.compiler`` (PyTorch in, integer models out), ``ese.sim`` (Verilator through
cocotb), ``ese.boards`` (the cards), and on top ``ese.sw.tools`` (the command line) and
``ese.sw.speech``.

Names are imported on first use, so that processes which need only one part (the cocotb
testbench inside the simulator, the command line's help) do not pay for PyTorch's import.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "ese.sw.contract.config",
    "Program": "ese.sw.runtime.program",
    "compile": "ese.sw.compiler.pipeline",
    "load": "ese.sw.runtime.program",
    "PeepholeLSTM": "ese.sw.compiler.peephole",
    "EseError": "ese.sw.contract.errors",
    "ConfigError": "ese.sw.contract.errors",
    "UnsupportedModelError": "ese.sw.contract.errors",
    "CapacityError": "ese.sw.contract.errors",
    "ImageError": "ese.sw.contract.errors",
    "InputError": "ese.sw.contract.errors",
    "ToolchainError": "ese.sw.contract.errors",
    "SimulationError": "ese.sw.contract.errors",
    "Accelerator": "ese.sw.runtime.driver",
    "XdmaTransport": "ese.sw.runtime.driver",
    "DeviceError": "ese.sw.runtime.driver",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ese' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
