"""The build tree's constraints against the card's published pinout.

Every pin, I/O standard, clock and configuration setting the xdc sets is compared with tables
taken from the public designs for the ADM-PCIE-KU3 (transcribed here, with where each comes
from):

* PCIe: slaclab/axi-pcie-core @a3e3fde, hardware/AlphaDataKu3/xdc/AlphaDataKu3Core.xdc
  L15-53 (lanes 0-7), L95-96 (REFCLK1), L100 (PERST1_L, LVCMOS18), L108 (a 10 ns refclk),
  L121-127 (configuration and bitstream settings); the same pins in Xilinx's SDAccel
  platform for the card (ReconfigureIO/reco-sdaccel @c949badd, adm-pcie3-ku3_2ddr.xdc L3-35).
* DDR3 SODIMM 0: open-power/snap @bac9a583, hardware/setup/ADKU3/snap_ddr3_b0pins.xdc (all
  134 PACKAGE_PIN lines; the DM pins at L426-474 take ba[0]'s I/O standard and output
  impedance; c0_sys_clk on D23/C23, DIFF_HSTL_I), and its 400 MHz reference
  (hardware/setup/create_snap_ip.tcl: C0.DDR3_InputClockPeriod 2500).
* UNUSEDPIN Pullnone: both designs (SNAP snap_bitstream_pre.tcl L26, SLAC L124).
"""

import re

import pytest

from ese.boards.adm_pcie_ku3 import ADM_PCIE_KU3, AdmPcieKu3Platform
from ese.boards.vivado import write_build_tree

from helpers import hardware

#: SLAC AlphaDataKu3Core.xdc L15-53: (TX P, TX N, RX P, RX N) of lanes 0-7.
PUBLISHED_PCIE_LANES = [
    ("AC4", "AC3", "AB2", "AB1"), ("AE4", "AE3", "AD2", "AD1"), ("AG4", "AG3", "AF2", "AF1"),
    ("AH6", "AH5", "AH2", "AH1"), ("AK6", "AK5", "AJ4", "AJ3"), ("AL4", "AL3", "AK2", "AK1"),
    ("AM6", "AM5", "AM2", "AM1"), ("AN4", "AN3", "AP2", "AP1"),
]
#: SNAP snap_ddr3_b0pins.xdc: SODIMM 0 by signal, bit 0 first.
PUBLISHED_DDR3 = {
    "addr": "C24 B20 F27 B21 E27 A22 E26 E25 A23 E22 A27 D25 A25 A29 D24 E23",
    "ba": "E28 D26 B22",
    "cas_n": "C27", "ras_n": "D28", "we_n": "D29", "reset_n": "B25",
    "ck_n": "A24 C22", "ck_p": "B24 C21", "cke": "C26 B26", "cs_n": "B27 A28", "odt": "C28 B29",
    "dm": "F8 L8 D14 E11 G24 H11 G17 J15 B14",
    "dq": "C8 D8 A9 B9 D10 D9 E10 C9 J8 J9 F9 G10 H9 H8 F10 G9 F15 E16 F14 E15 D16 E17 E18 D15 "
          "D13 C11 C12 B11 A13 C13 A12 B12 F24 F22 E21 E20 G21 H21 F23 G22 H12 G12 H13 J11 J13 "
          "L12 K12 K11 H19 F18 H18 H17 G14 G15 H16 F17 L18 L15 L19 K16 K15 K17 K18 J16 B16 B17 "
          "A18 C18 C17 B15 A15 A19",
    "dqs_n": "A10 J10 D18 E13 F20 K13 F19 J18 B19",
    "dqs_p": "B10 K10 D19 F13 G20 L13 G19 J19 C19",
    "sys_clk_p": "D23", "sys_clk_n": "C23",
}
#: SLAC AlphaDataKu3Core.xdc L121-127 (and L124 UNUSEDPIN, also SNAP's).
PUBLISHED_CONFIGURATION = {
    "BITSTREAM.GENERAL.COMPRESS": "TRUE", "BITSTREAM.CONFIG.EXTMASTERCCLK_EN": "DIV-1",
    "BITSTREAM.CONFIG.BPI_SYNC_MODE": "TYPE1", "BITSTREAM.CONFIG.UNUSEDPIN": "Pullnone",
    "CONFIG_MODE": "BPI16", "CFGBVS": "GND", "CONFIG_VOLTAGE": "1.8",
}


@pytest.fixture(scope="module")
def xdc(tmp_path_factory):
    tree = write_build_tree(ADM_PCIE_KU3, hardware(2), tmp_path_factory.mktemp("ku3"))
    return (tree / "constraints" / "adm_pcie_ku3.xdc").read_text()


def _package_pins(xdc):
    """port -> package pin, for every PACKAGE_PIN the xdc sets."""
    pins = {}
    for match in re.finditer(r"PACKAGE_PIN (\w+)\}? .*?\[get_ports \{?([\w\[\]]+)\}?\]", xdc):
        pins[match.group(2)] = match.group(1)
    for match in re.finditer(r"-dict \{PACKAGE_PIN (\w+)[^}]*\} \[get_ports (\w+)\]", xdc):
        pins[match.group(2)] = match.group(1)
    return pins


def _expected_pins():
    expected = {"pcie_refclk_clk_p": "AB6", "pcie_refclk_clk_n": "AB5", "pcie_perst_n": "K22"}
    for lane, (txp, txn, rxp, rxn) in enumerate(PUBLISHED_PCIE_LANES):
        expected.update({f"pcie_mgt_txp[{lane}]": txp, f"pcie_mgt_txn[{lane}]": txn,
                         f"pcie_mgt_rxp[{lane}]": rxp, f"pcie_mgt_rxn[{lane}]": rxn})
    for signal, pins in PUBLISHED_DDR3.items():
        pins = pins.split()
        if signal.startswith("sys_clk"):
            expected[f"ddr3_sys_clk_clk_{signal[-1]}"] = pins[0]
        elif len(pins) == 1 and signal in ("cas_n", "ras_n", "we_n", "reset_n"):
            expected[f"ddr3_{signal}"] = pins[0]
        else:
            expected.update({f"ddr3_{signal}[{bit}]": pin for bit, pin in enumerate(pins)})
    return expected


def test_every_pin_is_the_published_one_and_every_published_pin_is_set(xdc):
    assert _package_pins(xdc) == _expected_pins()


def test_io_standards_and_clocks_are_the_published_ones(xdc):
    assert re.search(r"PACKAGE_PIN K22 IOSTANDARD LVCMOS18 .*pcie_perst_n", xdc)
    assert "set_property IOSTANDARD DIFF_HSTL_I [get_ports {ddr3_sys_clk_clk_p " \
           "ddr3_sys_clk_clk_n}]" in xdc
    # The DM pins take ba[0]'s standard and impedance (the controller sets those), as SNAP's.
    assert "set_property IOSTANDARD [get_property IOSTANDARD [get_ports {ddr3_ba[0]}]] " \
           "[get_ports {ddr3_dm[*]}]" in xdc
    assert "OUTPUT_IMPEDANCE [get_property OUTPUT_IMPEDANCE [get_ports {ddr3_ba[0]}]]" in xdc
    clocks = re.findall(r"create_clock -name (\w+) -period ([\d.]+) \[get_ports (\w+)\]", xdc)
    # The PCIe refclk (10 ns, SLAC L108); the DDR3 reference's clock is the controller's own
    # constraint (as in SNAP, which creates none).
    assert clocks == [("pcie_refclk", "10.000", "pcie_refclk_clk_p")]
    assert ADM_PCIE_KU3.memory_reference_mhz == 1e6 / 2500


def test_configuration_settings_are_the_published_ones(xdc):
    settings = dict(re.findall(r"set_property (\S+) (\S+) \[current_design\]", xdc))
    assert settings == PUBLISHED_CONFIGURATION


def test_the_platform_has_no_clock_without_a_public_source():
    """clk200 on W23/W24 had no public source (issue 13, item 11): no design of the card
    uses a fabric clock there. The platform's default clock is the SODIMM 0 reference."""
    resources = {(r.name, r.number) for r in AdmPcieKu3Platform.resources}
    assert ("clk200", 0) not in resources
    assert AdmPcieKu3Platform.default_clk == "ddr3_clk"
    pins = [pin for r in AdmPcieKu3Platform.resources for s in [r] for pin in repr(s).split()]
    assert not any("W23" in pin or "W24" in pin for pin in pins)
