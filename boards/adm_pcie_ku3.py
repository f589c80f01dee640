"""The Alpha Data ADM-PCIE-KU3: a PCIe Gen3 x8 card with a Kintex UltraScale XCKU060.

Part xcku060-ffva1156-2-e; a 200 MHz LVDS reference clock; PCIe Gen3 x8 on the edge
connector (reference clock, PERST# and eight lanes); two DDR3 SODIMM sockets, 72 bits wide
(64 data bits and ECC). This platform describes the parts of the card the accelerator system
uses: the reference clock, the PCIe lanes and SODIMM 0.

Pin assignments are those of Alpha Data's published constraints for the card (the PCIe lanes,
PERST1# and REFCLK1 as used by SLAC's axi-pcie-core and by the OpenPOWER SNAP framework; the
SODIMM 0 pinout and the 200 MHz reference clock from Alpha Data's SNAP board support, Apache
2.0). The DDR3 I/O standards are set by the memory controller IP, which owns those pins.
"""

from amaranth.build import Attrs, Clock, DiffPairs, Pins, PinsN, Resource, Subsignal
from amaranth.vendor import XilinxPlatform

from .board import Board, register

__all__ = ["ADM_PCIE_KU3", "AdmPcieKu3Platform", "DDR3_PINS", "PCIE_LANES"]

#: PCIe lanes 0-7: (TX P, TX N, RX P, RX N).
PCIE_LANES = [
    ("AC4", "AC3", "AB2", "AB1"), ("AE4", "AE3", "AD2", "AD1"),
    ("AG4", "AG3", "AF2", "AF1"), ("AH6", "AH5", "AH2", "AH1"),
    ("AK6", "AK5", "AJ4", "AJ3"), ("AL4", "AL3", "AK2", "AK1"),
    ("AM6", "AM5", "AM2", "AM1"), ("AN4", "AN3", "AP2", "AP1"),
]

#: SODIMM 0, by signal, bit 0 first.
DDR3_PINS = {
    "dq": "C8 D8 A9 B9 D10 D9 E10 C9 J8 J9 F9 G10 H9 H8 F10 G9 F15 E16 F14 E15 D16 E17 E18 "
          "D15 D13 C11 C12 B11 A13 C13 A12 B12 F24 F22 E21 E20 G21 H21 F23 G22 H12 G12 H13 "
          "J11 J13 L12 K12 K11 H19 F18 H18 H17 G14 G15 H16 F17 L18 L15 L19 K16 K15 K17 K18 "
          "J16 B16 B17 A18 C18 C17 B15 A15 A19",
    "dqs_p": "B10 K10 D19 F13 G20 L13 G19 J19 C19",
    "dqs_n": "A10 J10 D18 E13 F20 K13 F19 J18 B19",
    "dm": "F8 L8 D14 E11 G24 H11 G17 J15 B14",
    "addr": "C24 B20 F27 B21 E27 A22 E26 E25 A23 E22 A27 D25 A25 A29 D24 E23",
    "ba": "E28 D26 B22",
    "ck_p": "B24 C21",
    "ck_n": "A24 C22",
    "cke": "C26 B26",
    "cs_n": "B27 A28",
    "odt": "C28 B29",
    "ras_n": "D28",
    "cas_n": "C27",
    "we_n": "D29",
    "reset_n": "B25",
    "sys_clk_p": "D23",     # the memory controller's 200 MHz reference (DIFF_HSTL_I)
    "sys_clk_n": "C23",
}


class AdmPcieKu3Platform(XilinxPlatform):
    """Amaranth platform of the ADM-PCIE-KU3."""

    device = "xcku060"
    package = "ffva1156"
    speed = "2-e"
    default_clk = "clk200"
    resources = [
        Resource("clk200", 0, DiffPairs("W23", "W24", dir="i"), Clock(200e6),
                 Attrs(IOSTANDARD="LVDS", DIFF_TERM="TRUE")),
        Resource("pcie", 0,
                 Subsignal("refclk", DiffPairs("AB6", "AB5", dir="i"), Clock(100e6)),
                 Subsignal("perst", PinsN("K22", dir="i"), Attrs(IOSTANDARD="LVCMOS18")),
                 Subsignal("tx", DiffPairs(" ".join(lane[0] for lane in PCIE_LANES),
                                           " ".join(lane[1] for lane in PCIE_LANES), dir="o")),
                 Subsignal("rx", DiffPairs(" ".join(lane[2] for lane in PCIE_LANES),
                                           " ".join(lane[3] for lane in PCIE_LANES), dir="i"))),
        Resource("ddr3", 0,
                 Subsignal("clk", DiffPairs(DDR3_PINS["sys_clk_p"], DDR3_PINS["sys_clk_n"],
                                            dir="i"), Clock(200e6),
                           Attrs(IOSTANDARD="DIFF_HSTL_I")),
                 Subsignal("dq", Pins(DDR3_PINS["dq"], dir="io")),
                 Subsignal("dqs", DiffPairs(DDR3_PINS["dqs_p"], DDR3_PINS["dqs_n"], dir="io")),
                 Subsignal("dm", Pins(DDR3_PINS["dm"], dir="o")),
                 Subsignal("a", Pins(DDR3_PINS["addr"], dir="o")),
                 Subsignal("ba", Pins(DDR3_PINS["ba"], dir="o")),
                 Subsignal("clk_out", DiffPairs(DDR3_PINS["ck_p"], DDR3_PINS["ck_n"], dir="o")),
                 Subsignal("cke", Pins(DDR3_PINS["cke"], dir="o")),
                 Subsignal("cs", PinsN(DDR3_PINS["cs_n"], dir="o")),
                 Subsignal("odt", Pins(DDR3_PINS["odt"], dir="o")),
                 Subsignal("ras", PinsN(DDR3_PINS["ras_n"], dir="o")),
                 Subsignal("cas", PinsN(DDR3_PINS["cas_n"], dir="o")),
                 Subsignal("we", PinsN(DDR3_PINS["we_n"], dir="o")),
                 Subsignal("reset", PinsN(DDR3_PINS["reset_n"], dir="o"))),
    ]
    connectors = []


ADM_PCIE_KU3 = register(Board(
    name="adm-pcie-ku3",
    title="Alpha Data ADM-PCIE-KU3",
    device=AdmPcieKu3Platform.device,
    package=AdmPcieKu3Platform.package,
    speed=AdmPcieKu3Platform.speed,
    # The XCKU060's resources (Xilinx DS890), as counted by Vivado's utilization report.
    resources={"lut": 331_680, "ff": 663_360, "dsp": 2_760, "bram36": 1_080},
    # The DDR3 controller's AXI port: 512 bits at a 4:1 clock ratio, 8 GB addressed.
    memory_data_bits=512,
    memory_address_bits=33,
    memory_bytes=8 << 30,
    # The accelerator runs on the DDR3 controller's user clock (the build flow's choice).
    clock_mhz=200.0,
    pins={"pcie_lanes": PCIE_LANES, "ddr3": DDR3_PINS},
    platform=AdmPcieKu3Platform,
))
