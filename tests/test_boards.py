"""The ADM-PCIE-KU3 target: the Amaranth platform and the Vivado build tree (no Vivado here)."""

import json

from amaranth.hdl import Elaboratable, Module, Signal

import ese
from ese.boards.adm_pcie_ku3 import DDR3_PINS, AdmPcieKu3Platform
from ese.boards.vivado import write_build_tree
from ese.sw.cli import main
from ese.sw.registers import build_id

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
    assert "W23" in files["blink.xdc"] and "LVDS" in files["blink.xdc"]


def test_ddr3_pins_are_distinct_and_complete():
    pins = [pin for value in DDR3_PINS.values() for pin in value.split()]
    assert len(pins) == len(set(pins))
    assert len(DDR3_PINS["dq"].split()) == 72 and len(DDR3_PINS["addr"].split()) == 16


def test_build_tree_is_complete(tmp_path):
    config = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), hardware(4, channels=2),
                         density=0.3).config
    tree = write_build_tree(config, tmp_path / "ku3")
    tcl = (tree / "build.tcl").read_text()
    for needed in ("create_project -in_memory", "xilinx.com:ip:xdma", "xilinx.com:ip:ddr3",
                   "AXI_Stream", "synth_design", "route_design", "write_bitstream",
                   "report_utilization", "ese_accelerator_bd"):
        assert needed in tcl, needed
    xdc = (tree / "constraints" / "adm_pcie_ku3.xdc").read_text()
    assert "AB6" in xdc and "K22" in xdc and "C8" in xdc        # refclk, PERST#, dq[0]
    system = (tree / "rtl" / "ese_system.v").read_text()
    assert "module ese_system" in system and "m_axi__araddr" in system
    wrapper = (tree / "rtl" / "ese_accelerator_bd.v").read_text()
    assert "module ese_accelerator_bd" in wrapper and "m_axi_araddr" in wrapper
    described = json.loads((tree / "config.json").read_text())
    assert described["config"]["memory_data_bits"] == 512
    assert described["build_id"] == build_id(ese.Config.from_dict(described["config"]))


def test_ese_build_writes_the_tree_and_says_no_bitstream_was_made(tmp_path, capsys):
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), hardware(4, channels=2),
                          density=0.3)
    program.save(tmp_path / "model.ese")
    assert main(["build", "--board", "adm-pcie-ku3", "--out", str(tmp_path / "tree"),
                 "--image", str(tmp_path / "model.ese")]) == 0
    out = capsys.readouterr().out
    assert "no bitstream was made" in out
    assert (tmp_path / "tree" / "build.tcl").exists()
