"""``verilator --lint-only -Wall`` on the generated Verilog, with the waivers of lint.vlt.

Every waiver is written down and explained in ``lint.vlt`` next to this module; any other
warning is reported (and fails the tests).
"""

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..sw.contract.errors import ToolchainError
from .build import DESIGNS, generate_verilog
from .toolchain import verilator_environment

__all__ = ["WAIVERS", "LintReport", "lint_verilog", "lint_file"]

WAIVERS = Path(__file__).with_name("lint.vlt")
_WARNING = re.compile(r"^%(Warning|Error)(-[A-Z0-9_]+)?: (.*)$")


@dataclass
class LintReport:
    design: str
    returncode: int
    messages: list = field(default_factory=list)   # one line per warning or error

    @property
    def clean(self):
        return self.returncode == 0 and not self.messages


def lint_file(path, toplevel):
    """Lint one Verilog file with ``-Wall`` and the project's waivers."""
    verilator_environment()
    command = ["verilator", "--lint-only", "-Wall", "--top-module", toplevel, str(WAIVERS),
               str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        raise ToolchainError(f"verilator --lint-only could not run: {error}") from None
    messages = [line for line in (result.stdout + result.stderr).splitlines()
                if _WARNING.match(line) and "Exiting due to" not in line]
    return LintReport(toplevel, result.returncode, messages)


def lint_verilog(config, design="accelerator"):
    """Generate the Verilog of ``design`` (see ese.sim.build.DESIGNS) for ``config`` and lint
    it; returns a :class:`LintReport`."""
    toplevel = DESIGNS[design]
    with tempfile.TemporaryDirectory(prefix="ese-lint-") as directory:
        # Named after its module, as Verilator's DECLFILENAME rule asks.
        path = Path(directory) / f"{toplevel}.v"
        path.write_text(generate_verilog(config, design))
        return lint_file(path, toplevel)
