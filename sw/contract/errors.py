"""The project's exceptions.

Every error a user can cause (an unsupported model, a bad weight image, inputs of the wrong
shape, a missing tool) is raised as a subclass of :class:`EseError`, with a message that names
the problem and what to do about it. The subclasses also derive from the closest built-in
exception so that generic handlers keep working.
"""

__all__ = [
    "EseError", "ConfigError", "UnsupportedModelError", "CapacityError", "ImageError",
    "InputError", "ToolchainError", "SimulationError",
]


class EseError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(EseError, ValueError):
    """A hardware parameter in :class:`ese.Config` is out of range or inconsistent."""


class UnsupportedModelError(EseError, TypeError):
    """The PyTorch module, or one of its options, has no converter."""


class CapacityError(EseError, ValueError):
    """The model does not fit the memories or arithmetic of the configured hardware."""


class ImageError(EseError, ValueError):
    """A weight image is malformed, truncated, corrupted or built for other hardware."""


class InputError(EseError, ValueError):
    """Input frames have the wrong shape or hold values that cannot be encoded (NaN, inf)."""


class ToolchainError(EseError, RuntimeError):
    """A tool the simulation needs (Verilator, a C++ compiler, Yosys) is missing or failed."""


class SimulationError(EseError, RuntimeError):
    """The RTL simulation ran but did not finish its job."""
