"""The ADM-PCIE-KU3 target: the Amaranth platform and the Vivado build tree (no Vivado here)."""

import json

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal

import ese
from ese.boards import BOARDS, DEFAULT_BOARD, board
from ese.boards.adm_pcie_ku3 import ADM_PCIE_KU3, DDR3_PINS, AdmPcieKu3Platform
from ese.boards.board import Board, register
from ese.boards.resource_model import load_model
from ese.boards.vivado import write_build_tree
from ese.sw.contract.registers import build_id
from ese.sw.tools.cli import main

from helpers import hardware


def test_platform_prepares_a_vivado_build_without_vivado():
    class Blink(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            counter = Signal(28)
            m.d.sync += counter.eq(counter + 1)
            return m

    platform = AdmPcieKu3Platform()
    plan = platform.build(Blink(), name="blink", do_build=False)
    files = dict(plan.files)
    script = files["blink.tcl"]
    assert "xcku060-ffva1156-2-e" in script
    assert "D23" in files["blink.xdc"] and "DIFF_HSTL_I" in files["blink.xdc"]


def test_the_card_is_described_once_and_everything_reads_it():
    """The part, resources, memory bus and clock of the ADM-PCIE-KU3 (Alpha Data's card with
    the XCKU060; resources from Xilinx DS890) live in one Board, which the platform, the
    build flow, the estimate and the command line read."""
    card = board("adm-pcie-ku3")
    assert card is ADM_PCIE_KU3 and BOARDS[DEFAULT_BOARD] is card
    assert card.part == "xcku060-ffva1156-2-e"
    assert card.platform is AdmPcieKu3Platform and card.platform.device == card.device
    assert card.resources == {"lut": 331_680, "ff": 663_360, "dsp": 2_760, "bram36": 1_080}
    config = card.hardware(ese.Config(pes=4))
    assert (config.memory_data_bits, config.memory_address_bits, config.clock_mhz) == \
        (512, 33, 200.0)
    with pytest.raises(ese.ConfigError, match="the boards are: adm-pcie-ku3"):
        board("ku115")
    with pytest.raises(ValueError, match="already registered"):
        register(card)
    with pytest.raises(ValueError, match="lacks resource counts"):
        register(Board("other", "Other", "xcku040", "ffva1156", "2-e", {"lut": 1}, 64, 32,
                       1 << 30, 100.0))


def test_ddr3_pins_are_distinct_and_complete():
    pins = [pin for value in DDR3_PINS.values() for pin in value.split()]
    assert len(pins) == len(set(pins))
    assert len(DDR3_PINS["dq"].split()) == 72 and len(DDR3_PINS["addr"].split()) == 16


def test_build_tree_is_complete(tmp_path):
    config = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), hardware(4, channels=2),
                         density=0.3).config
    tree = write_build_tree(ADM_PCIE_KU3, config, tmp_path / "ku3")
    tcl = (tree / "build.tcl").read_text()
    for needed in ("create_project -in_memory", "xilinx.com:ip:xdma", "xilinx.com:ip:ddr3",
                   "AXI_Stream", "synth_design", "route_design", "write_bitstream",
                   "report_utilization", "ese_card_bd", "write_cfgmem"):
        assert needed in tcl, needed
    xdc = (tree / "constraints" / "adm_pcie_ku3.xdc").read_text()
    assert "AB6" in xdc and "K22" in xdc and "C8" in xdc        # refclk, PERST#, dq[0]
    shell = (tree / "rtl" / "ese_card.v").read_text()
    assert "module ese_card" in shell and "m_axi__araddr" in shell and "ASYNC_REG" in shell
    wrapper = (tree / "rtl" / "ese_card_bd.v").read_text()
    assert "module ese_card_bd" in wrapper and "m_axi_araddr" in wrapper
    assert "frames_tkeep" in wrapper and "m_axi_awid" in wrapper
    described = json.loads((tree / "config.json").read_text())
    assert described["config"]["memory_data_bits"] == ADM_PCIE_KU3.memory_data_bits == 512
    assert described["part"] == "xcku060-ffva1156-2-e"
    assert "FREQ_HZ 200000000" in wrapper
    assert described["build_id"] == build_id(ese.Config.from_dict(described["config"]))


def test_a_shells_verilog_is_converted_once_per_design(tmp_path, monkeypatch):
    """write_build_tree keeps the shell's converted Verilog in the cache (sim.build's
    cached_verilog): the same design is read back, and any other design converts anew."""
    from ese.sim.build import cached_verilog
    monkeypatch.setenv("ESE_CACHE_DIR", str(tmp_path))
    converted = []

    def convert(text):
        converted.append(text)
        return text

    assert cached_verilog({"design": "shell", "pes": 4}, lambda: convert("first")) == "first"
    assert cached_verilog({"design": "shell", "pes": 4}, lambda: convert("again")) == "first"
    assert cached_verilog({"design": "shell", "pes": 8}, lambda: convert("other")) == "other"
    assert converted == ["first", "other"]
    assert len(list((tmp_path / "verilog").iterdir())) == 2


def test_ese_build_writes_the_tree_and_says_no_bitstream_was_made(tmp_path, capsys):
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), hardware(4, channels=2),
                          density=0.3)
    program.save(tmp_path / "model.ese")
    assert main(["build", "--board", "adm-pcie-ku3", "--out", str(tmp_path / "tree"),
                 "--image", str(tmp_path / "model.ese")]) == 0
    out = capsys.readouterr().out
    assert "no bitstream was made" in out
    assert (tmp_path / "tree" / "build.tcl").exists()


def test_ese_build_delta_gives_the_card_delta_units(tmp_path):
    """`ese build --delta`: the tree's hardware has delta units (Config.delta=1), so it
    takes images with delta layers as well as without; hardware without them refuses
    delta layers by name."""
    import torch
    torch.manual_seed(0)
    plain = ese.compile(torch.nn.GRU(7, 10), hardware(4), density=0.5)
    plain.save(tmp_path / "plain.ese")
    tree = tmp_path / "tree"
    assert main(["build", "--board", "adm-pcie-ku3", "--out", str(tree), "--image",
                 str(tmp_path / "plain.ese"), "--delta", "--no-vivado"]) == 0
    card = ese.Config.from_dict(json.loads((tree / "config.json").read_text())["config"])
    assert card.delta == 1
    delta = plain.retarget(plain.config.replace(delta=1)).with_delta((0.05, 0.1))
    delta.save(tmp_path / "delta.ese")
    assert ese.load(tmp_path / "delta.ese", config=card).model.has_delta
    assert not ese.load(tmp_path / "plain.ese", config=card).model.has_delta
    with pytest.raises(ese.ImageError, match="delta layers"):
        ese.load(tmp_path / "delta.ese", config=card.replace(delta=0))


def test_the_readme_flow_loads_its_own_image_on_the_build_trees_hardware(tmp_path, capsys):
    """`ese compile` with its defaults (a 64-bit memory port), then `ese build --image`: the
    card's build has the board's 512-bit port, and loading the image for the build tree's
    parameters (what Accelerator.load does with the card's) must lay it out again, not
    refuse it (issue 13's first finding)."""
    import torch
    torch.save(ese.PeepholeLSTM(13, 22, proj_size=9).state_dict(), tmp_path / "module.pt")
    image, tree = tmp_path / "model.ese", tmp_path / "tree"
    assert main(["compile", str(tmp_path / "module.pt"), "-o", str(image), "--pes", "4",
                 "--density", "0.3"]) == 0
    assert main(["build", "--board", "adm-pcie-ku3", "--out", str(tree), "--image", str(image),
                 "--no-vivado"]) == 0
    card = ese.Config.from_dict(json.loads((tree / "config.json").read_text())["config"])
    compiled = ese.load(image)
    assert compiled.config.memory_data_bits != card.memory_data_bits == 512
    on_card = ese.load(image, config=card)
    assert on_card.config == card
    x = np.random.default_rng(0).normal(size=(6, 13))
    assert np.array_equal(on_card.predict(x), compiled.predict(x))
    with pytest.raises(ese.ImageError, match="pes: image 4, hardware 8"):
        ese.load(image, config=card.replace(pes=8))


def _cell(kind, inputs, outputs, **parameters):
    """A cell of a Yosys JSON netlist."""
    connections = {**inputs, **outputs}
    directions = {**{k: "input" for k in inputs}, **{k: "output" for k in outputs}}
    return {"type": kind, "connections": connections, "port_directions": directions,
            "parameters": parameters}


def test_lut_levels_count_luts_and_lut_ram_reads_but_not_carries_or_registers():
    from ese.boards.estimate import lut_levels

    # in(2) -> LUT -> CARRY4 -> LUT -> FDRE -> LUT RAM read -> LUT -> out(9)
    module = {"cells": {
        "a": _cell("LUT2", {"I0": [2], "I1": ["1"]}, {"O": [3]}),
        "c": _cell("CARRY4", {"S": [3, 3, 3, 3], "DI": ["0"] * 4, "CI": ["0"], "CYINIT": ["0"]},
                  {"O": [4, 20, 21, 22], "CO": [23, 24, 25, 26]}),
        "b": _cell("LUT3", {"I0": [4], "I1": [2], "I2": [3]}, {"O": [5]}),
        "r": _cell("FDRE", {"D": [5], "C": [1], "CE": ["1"], "R": ["0"]}, {"Q": [6]}),
        "m": _cell("RAM32M16", {"ADDRA": [6] * 5, "DIA": [5, 5], "WE": [5], "WCLK": [1]},
                  {"DOA": [7, 8]}),
        "d": _cell("LUT1", {"I0": [7]}, {"O": [9]}),
    }, "netnames": {"x": {"bits": [2], "hide_name": 0}, "y": {"bits": [9], "hide_name": 0},
                    "q": {"bits": [6], "hide_name": 0}}}
    levels, path = lut_levels(module)
    # Before the register: two LUTs with a carry chain between them. After it: the LUT RAM's
    # asynchronous read and one LUT. The RAM's data input (from b) is written at the clock.
    assert levels == 2
    assert path in (["x"], ["q", "y"])


def test_path_delay_counts_what_lut_levels_hide():
    """The timing proxy: carry chains (a quarter level per CARRY8), a combinational DSP48E2
    (three levels), a block RAM without its output register (two levels of clock-to-out)."""
    from ese.boards.estimate import DELAY_LEVELS, lut_levels, path_delay

    # An unregistered block RAM read -> LUT -> 4 CARRY8 (a 32-bit adder) -> DSP (no
    # registers) -> LUT -> a register.
    module = {"cells": {
        "ram": _cell("RAMB36E2", {"ADDRARDADDR": [2]}, {"DOUTADOUT": [3]}, DOA_REG="0",
                    DOB_REG="0"),
        "a": _cell("LUT2", {"I0": [3], "I1": [3]}, {"O": [4]}),
        "c0": _cell("CARRY8", {"S": [4]}, {"O": [5]}),
        "c1": _cell("CARRY8", {"CI": [5]}, {"O": [6]}),
        "c2": _cell("CARRY8", {"CI": [6]}, {"O": [7]}),
        "c3": _cell("CARRY8", {"CI": [7]}, {"O": [8]}),
        "dsp": _cell("DSP48E2", {"A": [8]}, {"P": [9]}, MREG="0", PREG="0", AREG="0",
                    BREG="0"),
        "b": _cell("LUT1", {"I0": [9]}, {"O": [10]}),
        "r": _cell("FDRE", {"D": [10]}, {"Q": [11]}),
    }, "netnames": {"ram_out": {"bits": [3], "hide_name": 0},
                    "sum": {"bits": [8], "hide_name": 0}}}
    assert lut_levels(module)[0] == 2
    expected = (DELAY_LEVELS["bram_unregistered_output"] + 2 * DELAY_LEVELS["lut"]
                + 4 * DELAY_LEVELS["carry"] + DELAY_LEVELS["dsp_combinational"])
    levels, path = path_delay(module)
    assert levels == expected == 8.0
    assert path == ["ram_out", "sum"]
    # Registered, the same cells count what is left after their registers.
    module["cells"]["ram"]["parameters"].update(DOA_REG="1", DOB_REG="1")
    module["cells"]["dsp"]["parameters"]["PREG"] = "1"
    assert path_delay(module)[0] == 2 * DELAY_LEVELS["lut"] + 4 * DELAY_LEVELS["carry"] - 1.0


@pytest.mark.slow
def test_ese_estimate_synthesises_a_small_machine(tmp_path, capsys):
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), hardware(2, channels=2),
                          density=0.3)
    program.save(tmp_path / "small.ese")
    assert main(["estimate", "--image", str(tmp_path / "small.ese"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pes"] == 2 and report["channels"] == 2
    assert report["method"] == "synthesised directly"
    # One multiplier per PE and channel, at least; block RAM for the entry memories.
    assert report["dsp"] >= 2 * 2
    assert report["bram36"] >= 2
    assert 0 < report["lut"] < 0.2 * 331_680 and report["ff"] > 0
    assert report["lut_percent"] == round(100 * report["lut"] / 331_680, 1)
    assert report["fits"] is True
    assert 2 <= report["lut_levels"] <= 40 and report["deepest_path"]
    # The explorer's resource model (fitted to other, larger machines) predicts this one.
    predicted = load_model().predict(board("adm-pcie-ku3").hardware(program.config))
    for name in ("lut", "ff", "dsp", "bram36"):
        assert abs(predicted[name] / report[name] - 1) < 0.15, (name, predicted, report)
