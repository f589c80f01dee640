"""The Vivado build tree for the accelerator system on the ADM-PCIE-KU3.

:func:`write_build_tree` writes everything Vivado needs to turn the accelerator system into a
bitstream for the card, as a non-project Tcl flow:

* ``rtl/ese_system.v``: the accelerator system (:mod:`ese.hw.system`), generated here;
* ``rtl/ese_accelerator_bd.v``: a wrapper with AXI port names Vivado's block design infers
  interfaces from (``s_axil_awaddr``, ``m_axi_araddr``, ``host_frames_tdata``, ...);
* ``constraints/adm_pcie_ku3.xdc``: pins (PCIe, DDR3 SODIMM 0) and bitstream settings;
* ``build.tcl``: a block design with the vendor IP the card needs around the accelerator (the
  XDMA PCIe DMA engine in AXI-Stream mode with its AXI4-Lite master, the DDR3 memory
  controller with an AXI4 port, clock-crossing FIFOs and width converters), then synthesis,
  implementation, reports and the bitstream;
* ``config.json``: the hardware parameters and build identifier the bitstream carries.

:func:`run_vivado` runs the flow when ``vivado`` is on PATH.
"""

import json
import shutil
import subprocess
from pathlib import Path

from ..sw.contract.registers import build_id
from .adm_pcie_ku3 import ADM_PCIE_KU3

__all__ = ["write_build_tree", "run_vivado", "FLOWS"]

#: The XDMA's AXI-Stream width and clock for PCIe Gen3 x8.
XDMA_STREAM_BITS = 256
#: The cards this flow is written for (its block design and constraints are the card's).
FLOWS = (ADM_PCIE_KU3.name,)


def _ports(system):
    """(direction, width, name) of every port of the system's Verilog, AXI ports first."""
    ports = []
    from amaranth.hdl import Shape
    from amaranth.lib.wiring import In
    for path, member, _ in system.signature.flatten(system):
        name = "__".join(str(p) for p in path)
        direction = "input" if member.flow == In else "output"
        ports.append((direction, Shape.cast(member.shape).width, name))
    return ports


def _wrapper(system, board):
    lines = [
        "// Wrapper of ese_system with single-underscore AXI port names, so that Vivado's",
        "// block design infers its AXI4-Lite, AXI4 and AXI4-Stream interfaces.",
        "module ese_accelerator_bd (",
        '    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axil:m_axi:weights:host_frames:'
        f'host_results, ASSOCIATED_RESET rst, FREQ_HZ {round(board.clock_mhz * 1e6)}" *)',
        "    input wire clk,",
        '    (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_HIGH" *)',
        "    input wire rst,",
    ]
    ports = _ports(system)
    for index, (direction, width, name) in enumerate(ports):
        flat = name.replace("__", "_")
        vector = f"[{width - 1}:0] " if width > 1 else ""
        comma = "," if index < len(ports) - 1 else ""
        lines.append(f"    {direction} wire {vector}{flat}{comma}")
    lines.append(");")
    lines.append("    ese_system system (")
    lines.append("        .clk(clk), .rst(rst),")
    for index, (_, _, name) in enumerate(ports):
        comma = "," if index < len(ports) - 1 else ""
        lines.append(f"        .{name}({name.replace('__', '_')}){comma}")
    lines += ["    );", "endmodule", ""]
    return "\n".join(lines)


def _constraints(board):
    lanes, ddr3 = board.pins["pcie_lanes"], board.pins["ddr3"]
    lines = [
        f"# {board.title} ({board.part}): pins and settings of the ese accelerator.",
        "# Pin assignments: Alpha Data's published constraints for the card (see",
        "# ese/boards/adm_pcie_ku3.py).",
        "",
        "# PCIe: reference clock 1 (100 MHz) and PERST1#, lanes 0-7.",
        "set_property PACKAGE_PIN AB6 [get_ports pcie_refclk_clk_p]",
        "set_property PACKAGE_PIN AB5 [get_ports pcie_refclk_clk_n]",
        "create_clock -name pcie_refclk -period 10.000 [get_ports pcie_refclk_clk_p]",
        "set_property -dict {PACKAGE_PIN K22 IOSTANDARD LVCMOS18 PULLUP true} "
        "[get_ports pcie_perst_n]",
        "set_false_path -from [get_ports pcie_perst_n]",
    ]
    for lane, (txp, txn, rxp, rxn) in enumerate(lanes):
        lines.append(f"set_property PACKAGE_PIN {txp} [get_ports {{pcie_mgt_txp[{lane}]}}]")
        lines.append(f"set_property PACKAGE_PIN {txn} [get_ports {{pcie_mgt_txn[{lane}]}}]")
        lines.append(f"set_property PACKAGE_PIN {rxp} [get_ports {{pcie_mgt_rxp[{lane}]}}]")
        lines.append(f"set_property PACKAGE_PIN {rxn} [get_ports {{pcie_mgt_rxn[{lane}]}}]")
    lines += ["", "# DDR3 SODIMM 0 (64 data bits used; the controller sets the I/O standards)."]
    names = {"dq": "ddr3_dq", "dqs_p": "ddr3_dqs_p", "dqs_n": "ddr3_dqs_n", "dm": "ddr3_dm",
             "addr": "ddr3_addr", "ba": "ddr3_ba", "ck_p": "ddr3_ck_p", "ck_n": "ddr3_ck_n",
             "cke": "ddr3_cke", "cs_n": "ddr3_cs_n", "odt": "ddr3_odt"}
    used = {"dq": 64, "dqs_p": 8, "dqs_n": 8, "dm": 8}
    for signal, port in names.items():
        pins = ddr3[signal].split()[:used.get(signal)]
        for bit, pin in enumerate(pins):
            lines.append(f"set_property PACKAGE_PIN {pin} [get_ports {{{port}[{bit}]}}]")
    for signal in ("ras_n", "cas_n", "we_n", "reset_n"):
        lines.append(f"set_property PACKAGE_PIN {ddr3[signal]} [get_ports ddr3_{signal}]")
    lines += [
        f"set_property PACKAGE_PIN {ddr3['sys_clk_p']} [get_ports ddr3_sys_clk_clk_p]",
        f"set_property PACKAGE_PIN {ddr3['sys_clk_n']} [get_ports ddr3_sys_clk_clk_n]",
        "set_property IOSTANDARD DIFF_HSTL_I [get_ports {ddr3_sys_clk_clk_p ddr3_sys_clk_clk_n}]",
        "create_clock -name ddr3_sys_clk -period 5.000 [get_ports ddr3_sys_clk_clk_p]",
        "",
        "# Configuration: BPI x16 flash, as the card ships.",
        "set_property CFGBVS GND [current_design]",
        "set_property CONFIG_VOLTAGE 1.8 [current_design]",
        "set_property CONFIG_MODE BPI16 [current_design]",
        "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
        "set_property BITSTREAM.CONFIG.EXTMASTERCCLK_EN DIV-1 [current_design]",
        "set_property BITSTREAM.CONFIG.BPI_SYNC_MODE TYPE1 [current_design]",
        "",
    ]
    return "\n".join(lines)


def _build_tcl(config, board):
    width = config.activation_bits * config.channels
    return f"""# Non-project Vivado flow: the ese accelerator system on the Alpha Data ADM-PCIE-KU3.
# Run: vivado -mode batch -source build.tcl   (from this directory)
#
# The block design puts vendor IP around the accelerator (ese_accelerator_bd):
#   PCIe Gen3 x8 --- XDMA (AXI-Stream mode, {XDMA_STREAM_BITS}-bit, 250 MHz)
#        H2C 0 (frame steps) --> FIFO (250 -> {board.clock_mhz:g} MHz) --> width {XDMA_STREAM_BITS} -> {width} --> host_frames
#        H2C 1 (weight image) -> FIFO (250 -> {board.clock_mhz:g} MHz) --> width {XDMA_STREAM_BITS} -> 32 --> weights
#        C2H 0 (results) <------ FIFO ({board.clock_mhz:g} -> 250 MHz) <-- width {width} -> {XDMA_STREAM_BITS} <-- host_results
#        AXI4-Lite master (user BAR) --> clock converter --> s_axil (registers)
#   DDR3 SODIMM 0 --- memory controller (AXI4 slave, {board.memory_data_bits}-bit) <-- m_axi
# The accelerator runs on the memory controller's {board.clock_mhz:g} MHz user clock.

set part {board.part}
set here [file dirname [file normalize [info script]]]
file mkdir $here/reports
create_project -in_memory -part $part
set_property target_language Verilog [current_project]
read_verilog [list $here/rtl/ese_system.v $here/rtl/ese_accelerator_bd.v]
read_xdc $here/constraints/adm_pcie_ku3.xdc

create_bd_design ese_ku3

# PCIe reference clock buffer and the DMA engine.
create_bd_cell -type ip -vlnv xilinx.com:ip:util_ds_buf refclk_buffer
set_property CONFIG.C_BUF_TYPE IBUFDSGTE [get_bd_cells refclk_buffer]
create_bd_cell -type ip -vlnv xilinx.com:ip:xdma xdma
set_property -dict [list \\
    CONFIG.mode_selection {{Advanced}} \\
    CONFIG.pl_link_cap_max_link_width {{X8}} \\
    CONFIG.pl_link_cap_max_link_speed {{8.0_GT/s}} \\
    CONFIG.axi_data_width {{{XDMA_STREAM_BITS}_bit}} \\
    CONFIG.axisten_freq {{250}} \\
    CONFIG.xdma_axi_intf_mm {{AXI_Stream}} \\
    CONFIG.xdma_wnum_chnl {{2}} \\
    CONFIG.xdma_rnum_chnl {{1}} \\
    CONFIG.axilite_master_en {{true}} \\
    CONFIG.axilite_master_size {{4}} \\
    CONFIG.axilite_master_scale {{Kilobytes}} \\
] [get_bd_cells xdma]

# DDR3 SODIMM 0, with an AXI4 slave port.
create_bd_cell -type ip -vlnv xilinx.com:ip:ddr3 ddr3
set_property -dict [list \\
    CONFIG.C0.DDR3_MemoryType {{SODIMMs}} \\
    CONFIG.C0.DDR3_MemoryPart {{MT18KSF1G72HZ-1G6}} \\
    CONFIG.C0.DDR3_TimePeriod {{1250}} \\
    CONFIG.C0.DDR3_InputClockPeriod {{5000}} \\
    CONFIG.C0.DDR3_PhyClockRatio {{4:1}} \\
    CONFIG.C0.DDR3_DataWidth {{64}} \\
    CONFIG.C0.DDR3_AxiSelection {{true}} \\
    CONFIG.C0.DDR3_AxiDataWidth {{{board.memory_data_bits}}} \\
    CONFIG.C0.DDR3_AxiAddressWidth {{{board.memory_address_bits}}} \\
] [get_bd_cells ddr3]

# The accelerator.
create_bd_cell -type module -reference ese_accelerator_bd accelerator

# Register access across clocks.
create_bd_cell -type ip -vlnv xilinx.com:ip:axi_clock_converter registers_crossing

# Streams across clocks and widths.
foreach {{name width}} [list frames {width} weights 32 results {width}] {{
    create_bd_cell -type ip -vlnv xilinx.com:ip:axis_data_fifo ${{name}}_crossing
    set_property -dict [list CONFIG.IS_ACLK_ASYNC {{1}} CONFIG.FIFO_DEPTH {{512}}] \\
        [get_bd_cells ${{name}}_crossing]
    create_bd_cell -type ip -vlnv xilinx.com:ip:axis_dwidth_converter ${{name}}_width
    if {{$name eq "results"}} {{
        set_property -dict [list CONFIG.S_TDATA_NUM_BYTES [expr {{$width / 8}}] \\
            CONFIG.M_TDATA_NUM_BYTES [expr {{{XDMA_STREAM_BITS} / 8}}] CONFIG.HAS_TLAST {{1}}] \\
            [get_bd_cells ${{name}}_width]
    }} else {{
        set_property -dict [list CONFIG.S_TDATA_NUM_BYTES [expr {{{XDMA_STREAM_BITS} / 8}}] \\
            CONFIG.M_TDATA_NUM_BYTES [expr {{$width / 8}}] CONFIG.HAS_TLAST {{1}}] \\
            [get_bd_cells ${{name}}_width]
    }}
}}

# External ports.
create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:diff_clock_rtl:1.0 pcie_refclk
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:pcie_7x_mgt_rtl:1.0 pcie_mgt
create_bd_port -dir I -type rst pcie_perst_n
create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:diff_clock_rtl:1.0 ddr3_sys_clk
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:ddrx_rtl:1.0 ddr3
connect_bd_intf_net [get_bd_intf_ports pcie_refclk] [get_bd_intf_pins refclk_buffer/CLK_IN_D]
connect_bd_net [get_bd_pins refclk_buffer/IBUF_OUT] [get_bd_pins xdma/sys_clk_gt]
connect_bd_net [get_bd_pins refclk_buffer/IBUF_DS_ODIV2] [get_bd_pins xdma/sys_clk]
connect_bd_net [get_bd_ports pcie_perst_n] [get_bd_pins xdma/sys_rst_n]
connect_bd_intf_net [get_bd_intf_ports pcie_mgt] [get_bd_intf_pins xdma/pcie_mgt]
connect_bd_intf_net [get_bd_intf_ports ddr3_sys_clk] [get_bd_intf_pins ddr3/C0_SYS_CLK]
connect_bd_intf_net [get_bd_intf_ports ddr3] [get_bd_intf_pins ddr3/C0_DDR3]
connect_bd_net [get_bd_pins xdma/axi_aresetn] [get_bd_pins ddr3/sys_rst] \\
    [get_bd_pins registers_crossing/s_axi_aresetn]

# Clocks and resets: the PCIe side at 250 MHz, the accelerator on the DDR user clock.
set pcie_clock [get_bd_pins xdma/axi_aclk]
set user_clock [get_bd_pins ddr3/c0_ddr3_ui_clk]
connect_bd_net $pcie_clock [get_bd_pins registers_crossing/s_axi_aclk] \\
    [get_bd_pins frames_crossing/s_axis_aclk] [get_bd_pins weights_crossing/s_axis_aclk] \\
    [get_bd_pins results_width/aclk] [get_bd_pins results_crossing/m_axis_aclk]
connect_bd_net $user_clock [get_bd_pins accelerator/clk] \\
    [get_bd_pins registers_crossing/m_axi_aclk] [get_bd_pins frames_crossing/m_axis_aclk] \\
    [get_bd_pins weights_crossing/m_axis_aclk] [get_bd_pins frames_width/aclk] \\
    [get_bd_pins weights_width/aclk] [get_bd_pins results_crossing/s_axis_aclk]
connect_bd_net [get_bd_pins ddr3/c0_ddr3_ui_clk_sync_rst] [get_bd_pins accelerator/rst]
create_bd_cell -type ip -vlnv xilinx.com:ip:util_vector_logic user_reset_n
set_property -dict [list CONFIG.C_SIZE {{1}} CONFIG.C_OPERATION {{not}}] \\
    [get_bd_cells user_reset_n]
connect_bd_net [get_bd_pins ddr3/c0_ddr3_ui_clk_sync_rst] [get_bd_pins user_reset_n/Op1]
connect_bd_net [get_bd_pins user_reset_n/Res] [get_bd_pins ddr3/c0_ddr3_aresetn] \\
    [get_bd_pins registers_crossing/m_axi_aresetn] [get_bd_pins frames_crossing/s_axis_aresetn] \\
    [get_bd_pins weights_crossing/s_axis_aresetn] [get_bd_pins results_crossing/s_axis_aresetn] \\
    [get_bd_pins frames_width/aresetn] [get_bd_pins weights_width/aresetn] \\
    [get_bd_pins results_width/aresetn]

# Data paths.
connect_bd_intf_net [get_bd_intf_pins xdma/M_AXI_LITE] [get_bd_intf_pins registers_crossing/S_AXI]
connect_bd_intf_net [get_bd_intf_pins registers_crossing/M_AXI] [get_bd_intf_pins accelerator/s_axil]
connect_bd_intf_net [get_bd_intf_pins accelerator/m_axi] [get_bd_intf_pins ddr3/C0_DDR3_S_AXI]
connect_bd_intf_net [get_bd_intf_pins xdma/M_AXIS_H2C_0] [get_bd_intf_pins frames_crossing/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins frames_crossing/M_AXIS] [get_bd_intf_pins frames_width/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins frames_width/M_AXIS] [get_bd_intf_pins accelerator/host_frames]
connect_bd_intf_net [get_bd_intf_pins xdma/M_AXIS_H2C_1] [get_bd_intf_pins weights_crossing/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins weights_crossing/M_AXIS] [get_bd_intf_pins weights_width/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins weights_width/M_AXIS] [get_bd_intf_pins accelerator/weights]
connect_bd_intf_net [get_bd_intf_pins accelerator/host_results] [get_bd_intf_pins results_crossing/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins results_crossing/M_AXIS] [get_bd_intf_pins results_width/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins results_width/M_AXIS] [get_bd_intf_pins xdma/S_AXIS_C2H_0]

assign_bd_address
validate_bd_design
save_bd_design
generate_target all [get_files ese_ku3.bd]
set wrapper [make_wrapper -files [get_files ese_ku3.bd] -top]
read_verilog $wrapper

synth_design -top ese_ku3_wrapper -part $part
opt_design
place_design
phys_opt_design
route_design
report_utilization -hierarchical -file $here/reports/utilization.rpt
report_utilization -file $here/reports/utilization_summary.rpt
report_timing_summary -file $here/reports/timing.rpt
write_bitstream -force $here/ese_adm_pcie_ku3.bit
puts "ese: wrote $here/ese_adm_pcie_ku3.bit"
"""


def _readme(config, identifier, board):
    return f"""# ese accelerator on the {board.title}

Generated by `ese build --board {board.name}`. Build with Vivado (the flow uses the XDMA
and DDR3 memory controller IP that ship with it):

    vivado -mode batch -source build.tcl

It writes `ese_adm_pcie_ku3.bit` and `reports/` (utilization, timing). Load the bitstream,
install Xilinx's XDMA driver (`xdma.ko`, from dma_ip_drivers), then use the card with
`ese run model.ese -i frames.npz -o outputs.npz`.

Hardware: {config.pes} PEs, {config.channels} channels, {config.weight_bits}-bit weights,
{config.activation_bits}-bit activations, {board.clock_mhz:g} MHz (the DDR3 controller's user clock).
Build identifier: {identifier:#010x} (`ese` refuses images built for other parameters).

Files: `rtl/ese_system.v` (the accelerator system), `rtl/ese_accelerator_bd.v` (its AXI
wrapper for the block design), `constraints/adm_pcie_ku3.xdc` (pins: PCIe REFCLK1, PERST1#
and lanes 0-7, DDR3 SODIMM 0), `config.json` (the hardware parameters).

The XDMA runs in AXI-Stream mode: H2C channel 0 carries frame steps, H2C channel 1 the
weight image, C2H channel 0 the results, and the AXI4-Lite master (user BAR, 4 KB) the
registers. Check the PCIe block and GT quad Vivado picks against Alpha Data's reference
design for the card if link training fails.
"""


def write_build_tree(board, config, directory):
    """Write ``board``'s Vivado build tree for a sized ``config`` (the card's memory bus and
    clock are set)."""
    from amaranth.back import verilog

    from ..hw.system import AcceleratorSystem
    if board.name not in FLOWS:
        from ..sw.contract.errors import ConfigError
        raise ConfigError(f"no Vivado flow is written for the {board.title}; the flows are "
                          f"for {', '.join(FLOWS)}")
    config = board.hardware(config)
    config.require_sized()
    directory = Path(directory)
    for sub in ("rtl", "constraints"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    system = AcceleratorSystem(config)
    (directory / "rtl" / "ese_accelerator_bd.v").write_text(_wrapper(system, board))
    (directory / "rtl" / "ese_system.v").write_text(
        verilog.convert(system, name="ese_system", emit_src=False))
    (directory / "constraints" / "adm_pcie_ku3.xdc").write_text(_constraints(board))
    (directory / "build.tcl").write_text(_build_tcl(config, board))
    identifier = build_id(config)
    (directory / "config.json").write_text(json.dumps(
        {"board": board.name, "part": board.part, "build_id": identifier,
         "config": config.to_dict()}, indent=2))
    (directory / "README.md").write_text(_readme(config, identifier, board))
    return directory


def run_vivado(directory, log=None):
    """Run the flow if Vivado is on PATH; returns the bitstream path, or None without Vivado."""
    vivado = shutil.which("vivado")
    if vivado is None:
        return None
    directory = Path(directory)
    with open(directory / "vivado.log", "w") as output:
        result = subprocess.run([vivado, "-mode", "batch", "-source", "build.tcl",
                                 "-nojournal"], cwd=directory, stdout=output,
                                stderr=subprocess.STDOUT)
    if result.returncode != 0:
        from ..sw.contract.errors import ToolchainError
        raise ToolchainError(f"Vivado failed (exit {result.returncode}); see "
                             f"{directory / 'vivado.log'}")
    return directory / "ese_adm_pcie_ku3.bit"
