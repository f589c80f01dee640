"""The Alpha Data ADM-PCIE-KU3: a PCIe Gen3 x8 card with a Kintex UltraScale XCKU060.

Part xcku060-ffva1156-2-e; PCIe Gen3 x8 on the edge connector (reference clock, PERST# and
eight lanes); two DDR3 SODIMM sockets, 72 bits wide (64 data bits and ECC), each with a
400 MHz reference clock for its memory controller. This platform describes the parts of the
card the accelerator system uses: the PCIe lanes and SODIMM 0 with its reference clock.

Pin assignments are those of Alpha Data's published constraints for the card: the PCIe lanes,
PERST1# (K22) and REFCLK1 (AB6/AB5) as in SLAC's axi-pcie-core
(hardware/AlphaDataKu3/xdc); the SODIMM 0 pinout and its reference clock (D23/C23,
DIFF_HSTL_I, 400 MHz: C0.DDR3_InputClockPeriod 2500) as in open-power/snap
(hardware/setup/ADKU3/snap_ddr3_b0pins.xdc, hardware/setup/create_snap_ip.tcl). No public
design of the card uses another fabric clock, so none is described. The DDR3 I/O standards
are set by the memory controller IP, which owns those pins.
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
    "sys_clk_p": "D23",     # the memory controller's 400 MHz reference (DIFF_HSTL_I)
    "sys_clk_n": "C23",
}


class AdmPcieKu3Platform(XilinxPlatform):
    """Amaranth platform of the ADM-PCIE-KU3."""

    device = "xcku060"
    package = "ffva1156"
    speed = "2-e"
    default_clk = "ddr3_clk"
    resources = [
        Resource("ddr3_clk", 0, DiffPairs(DDR3_PINS["sys_clk_p"], DDR3_PINS["sys_clk_n"],
                                          dir="i"), Clock(400e6), Attrs(IOSTANDARD="DIFF_HSTL_I")),
        Resource("pcie", 0,
                 Subsignal("refclk", DiffPairs("AB6", "AB5", dir="i"), Clock(100e6)),
                 Subsignal("perst", PinsN("K22", dir="i"), Attrs(IOSTANDARD="LVCMOS18")),
                 Subsignal("tx", DiffPairs(" ".join(lane[0] for lane in PCIE_LANES),
                                           " ".join(lane[1] for lane in PCIE_LANES), dir="o")),
                 Subsignal("rx", DiffPairs(" ".join(lane[2] for lane in PCIE_LANES),
                                           " ".join(lane[3] for lane in PCIE_LANES), dir="i"))),
        Resource("ddr3", 0,
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
    # The accelerator's own clock: the memory controller's additional user clock output
    # (addn_ui_clkout1, PG150 "Additional Clock Outputs"), the build flow's choice.
    clock_mhz=200.0,
    # DDR3-1600 (a 1250 ps memory clock) at the 4:1 PHY ratio: a 200 MHz user-interface clock
    # (PG150, "Clocking"); the controller's AXI4 IDs are 4 bits wide (C0.DDR3_AxiIDWidth).
    memory_clock_mhz=200.0,
    memory_id_bits=4,
    # The controller's reference: 400 MHz on c0_sys_clk (D23/C23) in Alpha Data's own
    # configuration (open-power/snap: C0.DDR3_InputClockPeriod 2500 ps).
    memory_reference_mhz=400.0,
    # XDMA at PCIe Gen3 x8: 256-bit AXI4-Stream at 250 MHz (PG195, "Data widths").
    host_stream_bits=256,
    host_clock_mhz=250.0,
    pins={"pcie_lanes": PCIE_LANES, "ddr3": DDR3_PINS},
    platform=AdmPcieKu3Platform,
    presets={
        # ESE's operating point: 32 PEs, 32 channels, one column per entry and one cell a
        # cycle (FPGA 2017).
        "ese": {"pes": 32, "channels": 32},
        # The latency machine: one channel of 128 PEs taking blocks of eight columns (1,024
        # multiplies a cycle) and eight cells a cycle; two entries a read keep its entry
        # words in 2.5 BRAM36 a PE (README, "The latency machine").
        "latency": {"pes": 128, "channels": 1, "block_columns": 8, "cell_lanes": 8,
                    "entries_per_read": 2},
    },
))
