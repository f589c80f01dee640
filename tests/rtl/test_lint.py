"""The generated Verilog passes ``verilator --lint-only -Wall``, with only the waivers that
sim/lint.vlt writes down and explains."""

import pytest

import ese
from ese.sim.lint import WAIVERS, lint_file, lint_verilog

from helpers import hardware

CONFIGURATIONS = {
    "resident": dict(pes=4, channels=2),
    "streamed": dict(pes=4, channels=2, stream_window=8, memory_data_bits=256),
    "blocks": dict(pes=8, channels=2, block_columns=8),
}


# Block entries are linted once, in the system, which holds the accelerator core: each lint of
# a design takes 10-20 s of the CI's budget.
CASES = [(name, design) for name in sorted(CONFIGURATIONS) for design in ("accelerator", "system")
         if not (name == "blocks" and design == "accelerator")]


@pytest.mark.parametrize("name,design", CASES)
def test_generated_verilog_is_lint_clean(design, name):
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                          hardware(**CONFIGURATIONS[name]), density=0.3)
    report = lint_verilog(program.config, design)
    assert report.clean, "\n".join(report.messages)


def test_every_waiver_is_explained():
    lines = WAIVERS.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("lint_off"):
            # Each waiver (or group of them) follows a comment that says why.
            above = [text for text in lines[:index] if text.strip()]
            assert above[-1].startswith(("//", "lint_off")), line
    assert sum(line.startswith("//") for line in lines) >= 3 * sum(
        line.startswith("lint_off") for line in lines)


def test_an_unwaived_warning_is_reported(tmp_path):
    # A blocking assignment in a clocked block: -Wall warns, and no waiver covers it.
    path = tmp_path / "bad.v"
    path.write_text("module bad(input clk, input a, output reg y);\n"
                    "  always @(posedge clk) y = a;\nendmodule\n")
    report = lint_file(path, "bad")
    assert not report.clean
    assert any("BLKSEQ" in message for message in report.messages)
