"""build.tcl under tclsh against the documented-IP stand-in (ese.boards.tcl_check): it passes
as written, and fails on each defect the first review found when that defect is put back.

This checks the script against the IP's documentation (PG195, PG150, PB043, UG896/UG994,
UG908; the table is ese.boards.tcl_check.IP_CATALOG), not against Vivado.
"""

import shutil

import pytest

from ese.boards.adm_pcie_ku3 import ADM_PCIE_KU3
from ese.boards.tcl_check import TclCheckError, check_build_tree, tcl_split
from ese.boards.vivado import write_build_tree

from helpers import hardware


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_build_tree(ADM_PCIE_KU3, hardware(2, channels=3),
                            tmp_path_factory.mktemp("ku3") / "tree")


def _mutated(tree, tmp_path, old, new, file="build.tcl"):
    copy = tmp_path / "mutated"
    shutil.copytree(tree, copy)
    text = (copy / file).read_text()
    assert old in text, old
    (copy / file).write_text(text.replace(old, new))
    return copy


def test_the_written_script_passes_and_writes_the_bitstream_and_the_flash_image(tree):
    summary = check_build_tree(tree)
    assert summary["written"] == ["ese_adm_pcie_ku3.bit", "ese_adm_pcie_ku3.mcs"]
    assert summary["cells"]["xdma"] == "xilinx.com:ip:xdma"
    assert summary["cells"]["shell"] == "module:ese_card_bd"
    assert not (tree / "reports").exists()          # the check writes nothing into the tree


DEFECTS = {
    # 2: XDMA's read channels are H2C, its write channels C2H (PG195).
    "h2c_and_c2h_swapped": (
        "CONFIG.xdma_rnum_chnl {2} \\\n    CONFIG.xdma_wnum_chnl {1}",
        "CONFIG.xdma_rnum_chnl {1} \\\n    CONFIG.xdma_wnum_chnl {2}",
        "no interface M_AXIS_H2C_1"),
    # 3: the block design's IP generated without a synthesis checkpoint mode.
    "no_synth_checkpoint_mode": (
        "set_property synth_checkpoint_mode None [get_files ese_ku3.bd]\n", "",
        "synth_checkpoint_mode"),
    # 4: the DDR3 reference clock is 400 MHz on this card (SNAP: InputClockPeriod 2500).
    "reference_clock_200_mhz": (
        "CONFIG.C0.DDR3_InputClockPeriod {2500}", "CONFIG.C0.DDR3_InputClockPeriod {5000}",
        "expects 200 MHz"),
    "reference_clock_without_freq_hz": (
        "set_property CONFIG.FREQ_HZ {400000000} [get_bd_intf_ports ddr3_sys_clk]\n", "",
        "has no FREQ_HZ"),
    # 5: XDMA's active-low axi_aresetn driving the controller's active-high sys_rst.
    "active_low_reset_into_sys_rst": (
        "connect_bd_net [get_bd_pins shell/memory_sys_rst] [get_bd_pins ddr3/sys_rst]",
        "connect_bd_net [get_bd_pins xdma/axi_aresetn] [get_bd_pins ddr3/sys_rst]",
        "the reset is inverted"),
    # 7: a reset crossing clock domains unsynchronised, and no asynchronous clock groups.
    "reset_across_clock_domains": (
        "connect_bd_net [get_bd_pins shell/memory_aresetn] [get_bd_pins ddr3/c0_ddr3_aresetn]",
        "connect_bd_net [get_bd_pins xdma/axi_aresetn] [get_bd_pins ddr3/c0_ddr3_aresetn]",
        "without a synchroniser"),
    "no_asynchronous_clock_groups": (
        "set_clock_groups -asynchronous", "list", "not declared asynchronous"),
    # 10: a bitstream written without checking timing.
    "timing_not_checked": (
        "if {[get_property SLACK $worst] < 0} {", "if {0} {", "although timing failed"),
    # A required port left unconnected.
    "calibration_unconnected": (
        "connect_bd_net [get_bd_pins ddr3/c0_init_calib_complete] "
        "[get_bd_pins shell/memory_calibrated]\n", "", "memory_calibrated is required"),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_put_back_fails_the_check(tree, tmp_path, defect):
    old, new, message = DEFECTS[defect]
    with pytest.raises(TclCheckError, match=message):
        check_build_tree(_mutated(tree, tmp_path, old, new))


def test_interfaces_whose_clocks_differ_in_freq_hz_fail(tree, tmp_path):
    """The shell's pcie_clk said to be 125 MHz: its AXI interfaces no longer match XDMA's."""
    mutated = _mutated(tree, tmp_path, "pcie_rst_n, FREQ_HZ 250000000",
                       "pcie_rst_n, FREQ_HZ 125000000", file="rtl/ese_card_bd.v")
    with pytest.raises(TclCheckError, match="different FREQ_HZ: xdma/axi_aclk 250 MHz, "
                       "shell/pcie_clk 125 MHz"):
        check_build_tree(mutated)


def test_unknown_properties_and_values_fail(tree, tmp_path):
    with pytest.raises(TclCheckError, match="has no property CONFIG.xdma_num_chnl"):
        check_build_tree(_mutated(tree, tmp_path, "CONFIG.xdma_rnum_chnl",
                                  "CONFIG.xdma_num_chnl"))
    with pytest.raises(TclCheckError, match="cannot be 'AXI_Streaming'"):
        check_build_tree(_mutated(tree, tmp_path / "b", "{AXI_Stream}", "{AXI_Streaming}"))


def test_tcl_lists_split_as_tcl_splits_them():
    assert tcl_split('CONFIG.a {X8} CONFIG.b {8.0_GT/s} "two words" {a {b c}}') == \
        ["CONFIG.a", "X8", "CONFIG.b", "8.0_GT/s", "two words", "a {b c}"]
