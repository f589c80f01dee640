"""The Vivado build tree for the accelerator system on the ADM-PCIE-KU3.

:func:`write_build_tree` writes everything Vivado needs to turn the accelerator into a
bitstream for the card, as a non-project Tcl flow:

* ``rtl/ese_card.v``: the card's shell around the accelerator system (:mod:`ese.hw.shell`:
  clock crossings, reset synchronisers, DMA-beat width conversion), generated here;
* ``rtl/ese_card_bd.v``: a wrapper with the port names and interface attributes Vivado's
  block design infers the shell's interfaces, clocks and resets from;
* ``constraints/adm_pcie_ku3.xdc``: pins (PCIe, DDR3 SODIMM 0), clocks and bitstream settings;
* ``build.tcl``: a block design with the vendor IP the card needs (the XDMA PCIe DMA engine
  in AXI-Stream mode, the DDR3 memory controller, the PCIe reference clock buffer) around the
  shell, then synthesis, implementation, reports, a timing check, the bitstream and the flash
  image;
* ``config.json``: the hardware parameters, clocks and build identifier the bitstream carries
  (what ``ese.sim`` builds the card's simulation from).

:func:`run_vivado` runs the flow when ``vivado`` is on PATH. :mod:`.tcl_check` runs build.tcl
against a stand-in for Vivado that knows the IP's documented pins and properties.
"""

import json
import shutil
import subprocess
from pathlib import Path

from ..sw.contract.registers import build_id
from .adm_pcie_ku3 import ADM_PCIE_KU3

__all__ = ["write_build_tree", "run_vivado", "FLOWS", "SHELL", "WRAPPER", "BITSTREAM"]

#: The cards this flow is written for (its block design and constraints are the card's).
FLOWS = (ADM_PCIE_KU3.name,)
#: The shell's module, its block-design wrapper, and the bitstream's file name.
SHELL = "ese_card"
WRAPPER = "ese_card_bd"
BITSTREAM = "ese_adm_pcie_ku3"

#: Which of the shell's ports are clocks: (bus interfaces, reset ports, the Board's clock).
_CLOCKS = {
    "pcie_clk": ("s_axil:frames:weights:results", "pcie_rst_n", "pcie"),
    "clk": (None, None, "accelerator"),
    "memory_clk": ("m_axi", "memory_rst:memory_aresetn", "memory"),
}
#: The shell's resets and their polarity.
_RESETS = {"pcie_rst_n": "ACTIVE_LOW", "memory_rst": "ACTIVE_HIGH", "perst_n": "ACTIVE_LOW",
           "memory_sys_rst": "ACTIVE_HIGH", "memory_aresetn": "ACTIVE_LOW"}


def _ports(shell):
    """(direction, width, name) of every port of the shell's Verilog."""
    from amaranth.hdl import Shape
    from amaranth.lib.wiring import In
    ports = []
    for path, member, _ in shell.signature.flatten(shell):
        name = "__".join(str(p) for p in path)
        direction = "input" if member.flow == In else "output"
        ports.append((direction, Shape.cast(member.shape).width, name))
    return ports


def _wrapper(shell, board):
    clocks = board.clocks()
    lines = [
        f"// Wrapper of {SHELL} with single-underscore port names and the interface attributes",
        "// Vivado's block design reads (UG994: \"Inferring clocks, resets and interfaces\"):",
        "// the AXI4-Lite, AXI4 and AXI4-Stream interfaces by prefix, each clock's frequency",
        "// and buses, each reset's polarity.",
        f"module {WRAPPER} (",
    ]
    ports = _ports(shell)
    for index, (direction, width, name) in enumerate(ports):
        flat = name.replace("__", "_")
        if flat in _CLOCKS:
            buses, resets, domain = _CLOCKS[flat]
            parameters = [f"FREQ_HZ {round(clocks[domain] * 1e6)}"]
            if buses:
                parameters.insert(0, f"ASSOCIATED_BUSIF {buses}")
            if resets:
                parameters.insert(1, f"ASSOCIATED_RESET {resets}")
            lines.append(f'    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 {flat} CLK" *)')
            lines.append(f'    (* X_INTERFACE_PARAMETER = "{", ".join(parameters)}" *)')
        elif flat in _RESETS:
            lines.append(f'    (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 {flat} RST" *)')
            lines.append(f'    (* X_INTERFACE_PARAMETER = "POLARITY {_RESETS[flat]}" *)')
        vector = f"[{width - 1}:0] " if width > 1 else ""
        comma = "," if index < len(ports) - 1 else ""
        lines.append(f"    {direction} wire {vector}{flat}{comma}")
    lines.append(");")
    lines.append(f"    {SHELL} shell (")
    for index, (_, _, name) in enumerate(ports):
        comma = "," if index < len(ports) - 1 else ""
        lines.append(f"        .{name}({name.replace('__', '_')}){comma}")
    lines += ["    );", "endmodule", ""]
    return "\n".join(lines)


def _constraints(board):
    lanes, ddr3 = board.pins["pcie_lanes"], board.pins["ddr3"]
    lines = [
        f"# {board.title} ({board.part}): pins and settings of the ese accelerator.",
        "# Pin assignments: Alpha Data's published constraints for the card, as in",
        "# open-power/snap hardware/setup/ADKU3 and slaclab/axi-pcie-core",
        "# hardware/AlphaDataKu3 (see ese/boards/adm_pcie_ku3.py).",
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
    lines += ["", "# DDR3 SODIMM 0, 72 bits with ECC (the controller sets the I/O standards of its",
              "# pins; the DM pins, which it does not use, take those of ba[0], as in SNAP's",
              "# snap_ddr3_b0pins.xdc)."]
    names = {"dq": "ddr3_dq", "dqs_p": "ddr3_dqs_p", "dqs_n": "ddr3_dqs_n", "dm": "ddr3_dm",
             "addr": "ddr3_addr", "ba": "ddr3_ba", "ck_p": "ddr3_ck_p", "ck_n": "ddr3_ck_n",
             "cke": "ddr3_cke", "cs_n": "ddr3_cs_n", "odt": "ddr3_odt"}
    for signal, port in names.items():
        for bit, pin in enumerate(ddr3[signal].split()):
            lines.append(f"set_property PACKAGE_PIN {pin} [get_ports {{{port}[{bit}]}}]")
    for signal in ("ras_n", "cas_n", "we_n", "reset_n"):
        lines.append(f"set_property PACKAGE_PIN {ddr3[signal]} [get_ports ddr3_{signal}]")
    reference = board.memory_reference_mhz
    lines += [
        "set_property IOSTANDARD [get_property IOSTANDARD [get_ports {ddr3_ba[0]}]] "
        "[get_ports {ddr3_dm[*]}]",
        "set_property OUTPUT_IMPEDANCE [get_property OUTPUT_IMPEDANCE [get_ports {ddr3_ba[0]}]] "
        "[get_ports {ddr3_dm[*]}]",
        f"set_property PACKAGE_PIN {ddr3['sys_clk_p']} [get_ports ddr3_sys_clk_clk_p]",
        f"set_property PACKAGE_PIN {ddr3['sys_clk_n']} [get_ports ddr3_sys_clk_clk_n]",
        "set_property IOSTANDARD DIFF_HSTL_I [get_ports {ddr3_sys_clk_clk_p ddr3_sys_clk_clk_n}]",
        f"# The controller's own constraints create its {reference:g} MHz reference clock.",
        "",
        "# Configuration: BPI x16 flash, as the card ships.",
        "set_property CFGBVS GND [current_design]",
        "set_property CONFIG_VOLTAGE 1.8 [current_design]",
        "set_property CONFIG_MODE BPI16 [current_design]",
        "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
        "set_property BITSTREAM.CONFIG.EXTMASTERCCLK_EN DIV-1 [current_design]",
        "set_property BITSTREAM.CONFIG.BPI_SYNC_MODE TYPE1 [current_design]",
        "set_property BITSTREAM.CONFIG.UNUSEDPIN Pullnone [current_design]",
        "",
    ]
    return "\n".join(lines)


def _build_tcl(config, board):
    clocks = board.clocks()
    reference_ps = round(1e6 / board.memory_reference_mhz)
    memory_period_ps = round(1e6 / (4 * board.memory_clock_mhz))
    beat = board.host_stream_bits
    return f"""# Non-project Vivado flow: the ese accelerator on the {board.title}.
# Run: vivado -mode batch -source build.tcl   (from this directory)
#
# The block design puts three vendor IPs around the shell ({WRAPPER}, our RTL):
#   PCIe Gen3 x8 --- XDMA (AXI-Stream, {beat}-bit, {clocks['pcie']:g} MHz axi_aclk)
#        H2C 0 (frame steps) --> frames        C2H 0 (results) <-- results
#        H2C 1 (weight image) -> weights       AXI4-Lite master (user BAR) --> s_axil
#   DDR3 SODIMM 0 --- memory controller (AXI4 slave, {board.memory_data_bits}-bit, {clocks['memory']:g} MHz ui_clk) <-- m_axi
#   the controller's addn_ui_clkout1 ({clocks['accelerator']:g} MHz) --> clk (the accelerator's clock)
# The shell crosses every clock domain itself (AsyncFIFOs, reset synchronisers); the three
# clocks are asynchronous to each other.
# XDMA channel names (PG195): H2C channels are "read" channels (xdma_rnum_chnl), C2H channels
# "write" channels (xdma_wnum_chnl).

set part {board.part}
set here [file dirname [file normalize [info script]]]
file mkdir $here/reports
create_project -in_memory -part $part
set_property target_language Verilog [current_project]
read_verilog [list $here/rtl/{SHELL}.v $here/rtl/{WRAPPER}.v]
read_xdc $here/constraints/adm_pcie_ku3.xdc

create_bd_design ese_ku3

# The PCIe reference clock buffer and the DMA engine.
create_bd_cell -type ip -vlnv xilinx.com:ip:util_ds_buf refclk_buffer
set_property CONFIG.C_BUF_TYPE {{IBUFDSGTE}} [get_bd_cells refclk_buffer]
create_bd_cell -type ip -vlnv xilinx.com:ip:xdma xdma
set_property -dict [list \\
    CONFIG.mode_selection {{Advanced}} \\
    CONFIG.pl_link_cap_max_link_width {{X8}} \\
    CONFIG.pl_link_cap_max_link_speed {{8.0_GT/s}} \\
    CONFIG.axi_data_width {{{beat}_bit}} \\
    CONFIG.axisten_freq {{{clocks['pcie']:g}}} \\
    CONFIG.xdma_axi_intf_mm {{AXI_Stream}} \\
    CONFIG.xdma_rnum_chnl {{2}} \\
    CONFIG.xdma_wnum_chnl {{1}} \\
    CONFIG.axilite_master_en {{true}} \\
    CONFIG.axilite_master_size {{4}} \\
    CONFIG.axilite_master_scale {{Kilobytes}} \\
] [get_bd_cells xdma]

# DDR3 SODIMM 0 as Alpha Data configures it for this card (open-power/snap,
# hardware/setup/create_snap_ip.tcl), with an AXI4 slave port and the accelerator's clock.
create_bd_cell -type ip -vlnv xilinx.com:ip:ddr3 ddr3
set_property -dict [list \\
    CONFIG.C0.DDR3_MemoryType {{SODIMMs}} \\
    CONFIG.C0.DDR3_MemoryPart {{MT18KSF1G72HZ-1G6}} \\
    CONFIG.C0.DDR3_TimePeriod {{{memory_period_ps}}} \\
    CONFIG.C0.DDR3_InputClockPeriod {{{reference_ps}}} \\
    CONFIG.C0.DDR3_PhyClockRatio {{4:1}} \\
    CONFIG.C0.DDR3_CasLatency {{11}} \\
    CONFIG.C0.DDR3_CasWriteLatency {{8}} \\
    CONFIG.C0.DDR3_DataWidth {{72}} \\
    CONFIG.C0.DDR3_DataMask {{false}} \\
    CONFIG.C0.DDR3_Ecc {{true}} \\
    CONFIG.Internal_Vref {{false}} \\
    CONFIG.C0.DDR3_AxiSelection {{true}} \\
    CONFIG.C0.DDR3_AxiDataWidth {{{board.memory_data_bits}}} \\
    CONFIG.C0.DDR3_AxiAddressWidth {{{board.memory_address_bits}}} \\
    CONFIG.C0.DDR3_AxiIDWidth {{{board.memory_id_bits}}} \\
    CONFIG.ADDN_UI_CLKOUT1_FREQ_HZ {{{clocks['accelerator']:g}}} \\
] [get_bd_cells ddr3]

# The shell: the accelerator system with its clock crossings (our RTL).
create_bd_cell -type module -reference {WRAPPER} shell

# External ports.
create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:diff_clock_rtl:1.0 pcie_refclk
set_property CONFIG.FREQ_HZ {{100000000}} [get_bd_intf_ports pcie_refclk]
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:pcie_7x_mgt_rtl:1.0 pcie_mgt
create_bd_port -dir I -type rst pcie_perst_n
set_property CONFIG.POLARITY {{ACTIVE_LOW}} [get_bd_ports pcie_perst_n]
create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:diff_clock_rtl:1.0 ddr3_sys_clk
set_property CONFIG.FREQ_HZ {{{round(board.memory_reference_mhz * 1e6)}}} [get_bd_intf_ports ddr3_sys_clk]
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:ddrx_rtl:1.0 ddr3

# PCIe: reference clock, PERST#, lanes.
connect_bd_intf_net [get_bd_intf_ports pcie_refclk] [get_bd_intf_pins refclk_buffer/CLK_IN_D]
connect_bd_net [get_bd_pins refclk_buffer/IBUF_OUT] [get_bd_pins xdma/sys_clk_gt]
connect_bd_net [get_bd_pins refclk_buffer/IBUF_DS_ODIV2] [get_bd_pins xdma/sys_clk]
connect_bd_net [get_bd_ports pcie_perst_n] [get_bd_pins xdma/sys_rst_n] \\
    [get_bd_pins shell/perst_n]
connect_bd_intf_net [get_bd_intf_ports pcie_mgt] [get_bd_intf_pins xdma/pcie_mgt]

# Memory: reference clock, pins, resets (sys_rst is active high: the shell inverts PERST#).
connect_bd_intf_net [get_bd_intf_ports ddr3_sys_clk] [get_bd_intf_pins ddr3/C0_SYS_CLK]
connect_bd_intf_net [get_bd_intf_ports ddr3] [get_bd_intf_pins ddr3/C0_DDR3]
connect_bd_net [get_bd_pins shell/memory_sys_rst] [get_bd_pins ddr3/sys_rst]
connect_bd_net [get_bd_pins shell/memory_aresetn] [get_bd_pins ddr3/c0_ddr3_aresetn]
# With ECC the controller has no data mask; the SODIMM's DM pins are driven low (as Alpha
# Data's own designs for the card do).
create_bd_port -dir O -from 8 -to 0 ddr3_dm
create_bd_cell -type ip -vlnv xilinx.com:ip:xlconstant data_mask
set_property -dict [list CONFIG.CONST_WIDTH {{9}} CONFIG.CONST_VAL {{0}}] [get_bd_cells data_mask]
connect_bd_net [get_bd_pins data_mask/dout] [get_bd_ports ddr3_dm]

# Clocks and resets into the shell.
connect_bd_net [get_bd_pins xdma/axi_aclk] [get_bd_pins shell/pcie_clk]
connect_bd_net [get_bd_pins xdma/axi_aresetn] [get_bd_pins shell/pcie_rst_n]
connect_bd_net [get_bd_pins ddr3/c0_ddr3_ui_clk] [get_bd_pins shell/memory_clk]
connect_bd_net [get_bd_pins ddr3/c0_ddr3_ui_clk_sync_rst] [get_bd_pins shell/memory_rst]
connect_bd_net [get_bd_pins ddr3/c0_init_calib_complete] [get_bd_pins shell/memory_calibrated]
connect_bd_net [get_bd_pins ddr3/addn_ui_clkout1] [get_bd_pins shell/clk]

# Data paths.
connect_bd_intf_net [get_bd_intf_pins xdma/M_AXI_LITE] [get_bd_intf_pins shell/s_axil]
connect_bd_intf_net [get_bd_intf_pins xdma/M_AXIS_H2C_0] [get_bd_intf_pins shell/frames]
connect_bd_intf_net [get_bd_intf_pins xdma/M_AXIS_H2C_1] [get_bd_intf_pins shell/weights]
connect_bd_intf_net [get_bd_intf_pins shell/results] [get_bd_intf_pins xdma/S_AXIS_C2H_0]
connect_bd_intf_net [get_bd_intf_pins shell/m_axi] [get_bd_intf_pins ddr3/C0_DDR3_S_AXI]

assign_bd_address
validate_bd_design
save_bd_design
# Out-of-context IP synthesis needs a project; in this non-project flow the IP is synthesized
# with the design (UG896, "Using IP in non-project mode"; UG994, synthesis checkpoint mode).
set_property synth_checkpoint_mode None [get_files ese_ku3.bd]
generate_target all [get_files ese_ku3.bd]
set wrapper [make_wrapper -files [get_files ese_ku3.bd] -top]
read_verilog $wrapper

synth_design -top ese_ku3_wrapper -part $part

# The shell's synchronisers, marked the way Amaranth's Vivado flow marks them.
foreach cell [get_cells -quiet -hier -filter {{amaranth.vivado.false_path == "TRUE"}}] {{
    set_false_path -to $cell
}}
foreach pin [get_pins -quiet -of [get_cells -quiet -hier \\
        -filter {{amaranth.vivado.false_path_pre == "TRUE"}}] -filter {{REF_PIN_NAME == PRE}}] {{
    set_false_path -to $pin
}}
# The PCIe, accelerator and memory clocks are asynchronous: every path between them goes
# through the shell's crossings.
set_clock_groups -asynchronous \\
    -group [get_clocks -of_objects [get_pins ese_ku3_i/shell/pcie_clk]] \\
    -group [get_clocks -of_objects [get_pins ese_ku3_i/shell/clk]] \\
    -group [get_clocks -of_objects [get_pins ese_ku3_i/shell/memory_clk]]

opt_design
place_design
phys_opt_design
route_design
report_utilization -hierarchical -file $here/reports/utilization.rpt
report_utilization -file $here/reports/utilization_summary.rpt
report_timing_summary -file $here/reports/timing.rpt

# A bitstream is written only when every timing constraint is met.
set worst [get_timing_paths -delay_type min_max -max_paths 1 -nworst 1]
if {{[get_property SLACK $worst] < 0}} {{
    error "ese: timing is not met (worst slack [get_property SLACK $worst] ns); see reports/timing.rpt"
}}
write_bitstream -force $here/{BITSTREAM}.bit
# The flash image: the card boots from its 1 Gb BPI x16 flash (UG908, write_cfgmem).
write_cfgmem -force -format mcs -interface BPIx16 -size 128 \\
    -loadbit "up 0x00000000 $here/{BITSTREAM}.bit" -file $here/{BITSTREAM}.mcs
puts "ese: wrote $here/{BITSTREAM}.bit and $here/{BITSTREAM}.mcs"
"""


def _readme(config, identifier, board):
    clocks = board.clocks()
    return f"""# ese accelerator on the {board.title}

Generated by `ese build --board {board.name}`. Build with Vivado (the flow uses the XDMA
and DDR3 memory controller IP that ship with it):

    vivado -mode batch -source build.tcl

It writes `{BITSTREAM}.bit`, the flash image `{BITSTREAM}.mcs` and `reports/` (utilization,
timing); it stops without a bitstream if timing is not met. Load the bitstream, install
Xilinx's XDMA driver (`xdma.ko`, from dma_ip_drivers), then use the card with
`ese run model.ese -i frames.npz -o outputs.npz`. The same RTL runs in simulation:
`ese run model.ese -i frames.npz -o outputs.npz --transport sim --build-tree .`

Hardware: {config.pes} PEs, {config.channels} channels, {config.weight_bits}-bit weights,
{config.activation_bits}-bit activations. Clocks: the accelerator at {clocks['accelerator']:g} MHz
(the memory controller's addn_ui_clkout1), the memory controller's AXI4 port at
{clocks['memory']:g} MHz, the XDMA's streams and registers at {clocks['pcie']:g} MHz.
Build identifier: {identifier:#010x} (`ese` refuses images built for other parameters).

Files: `rtl/{SHELL}.v` (the accelerator system in its shell: clock crossings, reset
synchronisers, width conversion to the XDMA's {board.host_stream_bits}-bit beats), `rtl/{WRAPPER}.v`
(the shell's block-design wrapper), `constraints/adm_pcie_ku3.xdc` (pins: PCIe REFCLK1,
PERST1# and lanes 0-7, DDR3 SODIMM 0; bitstream settings), `config.json` (the hardware
parameters and clocks).

The XDMA runs in AXI-Stream mode: H2C channel 0 carries frame steps, H2C channel 1 the
weight image, C2H channel 0 the results, and the AXI4-Lite master (user BAR, 4 KB) the
registers. Check the PCIe block and GT quad Vivado picks against Alpha Data's reference
design for the card if link training fails.
"""


def write_build_tree(board, config, directory):
    """Write ``board``'s Vivado build tree for a sized ``config`` (the card's memory bus and
    clock are set)."""
    from amaranth.back import verilog

    from ..hw.shell import CardShell, SynchronizerAttributes
    from ..sim.build import cached_verilog
    if board.name not in FLOWS:
        from ..sw.contract.errors import ConfigError
        raise ConfigError(f"no Vivado flow is written for the {board.title}; the flows are "
                          f"for {', '.join(FLOWS)}")
    config = board.hardware(config)
    config.require_sized()
    directory = Path(directory)
    for sub in ("rtl", "constraints"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    shell = CardShell(config, host_stream_bits=board.host_stream_bits,
                      memory_id_bits=board.memory_id_bits)
    (directory / "rtl" / f"{WRAPPER}.v").write_text(_wrapper(shell, board))
    (directory / "rtl" / f"{SHELL}.v").write_text(cached_verilog(
        {"design": SHELL, "config": config.to_dict(),
         "host_stream_bits": board.host_stream_bits, "memory_id_bits": board.memory_id_bits},
        lambda: verilog.convert(shell, name=SHELL, emit_src=False,
                                platform=SynchronizerAttributes())))
    (directory / "constraints" / "adm_pcie_ku3.xdc").write_text(_constraints(board))
    (directory / "build.tcl").write_text(_build_tcl(config, board))
    identifier = build_id(config)
    (directory / "config.json").write_text(json.dumps(
        {"board": board.name, "part": board.part, "build_id": identifier,
         "top": WRAPPER, "rtl": [f"rtl/{SHELL}.v", f"rtl/{WRAPPER}.v"],
         "clocks_mhz": board.clocks(), "host_stream_bits": board.host_stream_bits,
         "memory_id_bits": board.memory_id_bits, "memory_bytes": board.memory_bytes,
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
    return directory / f"{BITSTREAM}.bit"
