"""Check a build tree's ``build.tcl`` without Vivado: run it under ``tclsh`` against a stand-in.

The stand-in answers every Vivado command the script uses. It knows each vendor IP's
interface pins and CONFIG properties as their documentation gives them (:data:`IP_CATALOG`,
each entry with the document and section it comes from) and the shell's ports from the
wrapper's Verilog and its interface attributes, and it records the block design the script
builds. It fails the script, as Vivado would stop it, on:

* an unknown command, IP, property or property value; a pin or interface that the IP, so
  configured, does not have;
* connected interfaces of different kinds, widths or ID widths, or whose clocks' FREQ_HZ
  differ or are different clocks; a clock net whose pins' FREQ_HZ differ; an external clock
  port whose FREQ_HZ is not the board's;
* a reset driving a reset of the other polarity, or one of another clock domain;
* a required port or interface left unconnected;
* IP generated before its synthesis checkpoint mode is set for a non-project flow;
* clocks of the shell not declared asynchronous to each other;
* a bitstream written when timing fails (the script runs twice: once with timing met, when
  it must write the bitstream and the flash image, and once with timing failed, when it must
  stop before the bitstream).

This checks the script against the documentation, not against Vivado: what Vivado itself
would say about a property's interplay, a placement or timing can only be seen by running it.
Tcl runs for real (``tclsh``, the Debian package ``tcl``); the stand-in's commands are Tcl
procedures that ask this module over a pipe.
"""

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..sw.contract.errors import EseError, ToolchainError

__all__ = ["check_build_tree", "TclCheckError", "IP_CATALOG", "COMMANDS"]


class TclCheckError(EseError, ValueError):
    """build.tcl does something the documented IP or flow does not allow."""


#: The Vivado commands the stand-in answers.
COMMANDS = (
    "create_project", "current_project", "current_design", "set_property", "get_property",
    "read_verilog", "read_xdc", "create_bd_design", "create_bd_cell", "get_bd_cells",
    "get_bd_pins", "get_bd_intf_pins", "get_bd_ports", "get_bd_intf_ports", "create_bd_port",
    "create_bd_intf_port", "connect_bd_net", "connect_bd_intf_net", "assign_bd_address",
    "validate_bd_design", "save_bd_design", "get_files", "generate_target", "make_wrapper",
    "synth_design", "opt_design", "place_design", "phys_opt_design", "route_design",
    "report_utilization", "report_timing_summary", "get_timing_paths", "write_bitstream",
    "write_cfgmem", "get_cells", "get_pins", "get_clocks", "set_false_path",
    "set_clock_groups",
)

_PRELUDE = r"""
fconfigure stdout -translation binary
fconfigure stdin -translation binary
proc ::standin_call {name arguments} {
    set items [list $name {*}$arguments]
    puts -nonewline stdout "CALL [llength $items]\n"
    foreach item $items {
        set bytes [encoding convertto utf-8 $item]
        puts -nonewline stdout "[string length $bytes]\n$bytes"
    }
    flush stdout
    lassign [gets stdin] status length
    set reply [encoding convertfrom utf-8 [read stdin $length]]
    if {$status eq "ERR"} { error $reply }
    return $reply
}
foreach command [lrange $argv 1 end] {
    proc $command args "::standin_call $command \$args"
}
set argv0 [lindex $argv 0]
source [lindex $argv 0]
"""


# --- The vendor IP, as documented -----------------------------------------------------------

@dataclass
class Pin:
    direction: str               # "in" or "out"
    kind: str = "data"           # "clock", "reset" or "data"
    polarity: str = None         # for resets: "ACTIVE_LOW" or "ACTIVE_HIGH"
    clock: str = None            # the clock pin it belongs to
    frequency: float = None      # Hz, for clocks the IP drives or expects
    required: bool = False


@dataclass
class Interface:
    mode: str                    # "Master" or "Slave"
    kind: str                    # "axis", "aximm", "axilite", "diff_clock", "pcie", "ddrx"
    clock: str = None
    data_bytes: int = None
    id_bits: int = None
    frequency: float = None      # Hz, for diff_clock interfaces
    required: bool = False


def _truth(value):
    return str(value).lower() in ("true", "1")


def _integer(low, high):
    def check(value):
        return str(value).isdigit() and low <= int(value) <= high
    check.__doc__ = f"an integer from {low} to {high}"
    return check


def _one_of(*values):
    def check(value):
        return str(value) in values
    check.__doc__ = "one of " + ", ".join(values)
    return check


_BOOLEAN = _one_of("true", "false")


def _xdma_pins(p):
    stream = p["xdma_axi_intf_mm"] == "AXI_Stream"
    frequency = float(p["axisten_freq"]) * 1e6
    pins = {
        "sys_clk": Pin("in", "clock", required=True),
        "sys_clk_gt": Pin("in", "clock", required=True),
        "sys_rst_n": Pin("in", "reset", "ACTIVE_LOW", required=True),
        "axi_aclk": Pin("out", "clock", frequency=frequency),
        "axi_aresetn": Pin("out", "reset", "ACTIVE_LOW", clock="axi_aclk"),
        "user_lnk_up": Pin("out"),
    }
    data_bytes = int(p["axi_data_width"].split("_")[0]) // 8
    interfaces = {"pcie_mgt": Interface("Master", "pcie", required=True)}
    if _truth(p["axilite_master_en"]):
        interfaces["M_AXI_LITE"] = Interface("Master", "axilite", "axi_aclk", 4)
    if stream:
        for channel in range(int(p["xdma_rnum_chnl"])):
            interfaces[f"M_AXIS_H2C_{channel}"] = Interface("Master", "axis", "axi_aclk",
                                                            data_bytes)
        for channel in range(int(p["xdma_wnum_chnl"])):
            interfaces[f"S_AXIS_C2H_{channel}"] = Interface("Slave", "axis", "axi_aclk",
                                                            data_bytes)
    else:
        interfaces["M_AXI"] = Interface("Master", "aximm", "axi_aclk", data_bytes, 4)
    return pins, interfaces


def _xdma_rules(p):
    """PG195, "Data widths and clock frequencies": Gen3 x8 moves 256 bits at 250 MHz."""
    if (p["pl_link_cap_max_link_width"], p["pl_link_cap_max_link_speed"]) == ("X8", "8.0_GT/s"):
        if p["axi_data_width"] != "256_bit" or p["axisten_freq"] != "250":
            return ["PCIe Gen3 x8 needs CONFIG.axi_data_width 256_bit and CONFIG.axisten_freq "
                    "250 (PG195, data widths and clock frequencies)"]
    return []


def _ddr3_pins(p):
    axi = _truth(p["C0.DDR3_AxiSelection"])
    ui = 1e12 / (4 * int(p["C0.DDR3_TimePeriod"])) if p["C0.DDR3_PhyClockRatio"] == "4:1" \
        else 1e12 / (2 * int(p["C0.DDR3_TimePeriod"]))
    pins = {
        "sys_rst": Pin("in", "reset", "ACTIVE_HIGH", required=True),
        "c0_ddr3_ui_clk": Pin("out", "clock", frequency=ui),
        "c0_ddr3_ui_clk_sync_rst": Pin("out", "reset", "ACTIVE_HIGH", clock="c0_ddr3_ui_clk"),
        "c0_init_calib_complete": Pin("out"),
    }
    if axi:
        pins["c0_ddr3_aresetn"] = Pin("in", "reset", "ACTIVE_LOW", clock="c0_ddr3_ui_clk",
                                      required=True)
    for index in range(1, 5):
        value = p[f"ADDN_UI_CLKOUT{index}_FREQ_HZ"]
        if value != "None":
            pins[f"addn_ui_clkout{index}"] = Pin("out", "clock", frequency=float(value) * 1e6)
    interfaces = {
        "C0_SYS_CLK": Interface("Slave", "diff_clock", required=True,
                                frequency=1e12 / int(p["C0.DDR3_InputClockPeriod"])),
        "C0_DDR3": Interface("Master", "ddrx", required=True),
    }
    if axi:
        interfaces["C0_DDR3_S_AXI"] = Interface(
            "Slave", "aximm", "c0_ddr3_ui_clk", int(p["C0.DDR3_AxiDataWidth"]) // 8,
            int(p["C0.DDR3_AxiIDWidth"]), required=True)
        if _truth(p["C0.DDR3_Ecc"]):
            interfaces["C0_DDR3_S_AXI_CTRL"] = Interface("Slave", "axilite", "c0_ddr3_ui_clk", 4)
    return pins, interfaces


def _ddr3_rules(p):
    problems = []
    data = int(p["C0.DDR3_DataWidth"])
    if _truth(p["C0.DDR3_Ecc"]):
        if data != 72 or _truth(p["C0.DDR3_DataMask"]):
            problems.append("ECC needs C0.DDR3_DataWidth 72 and C0.DDR3_DataMask false "
                            "(PG150, ECC)")
        data = 64
    ratio = int(p["C0.DDR3_PhyClockRatio"].split(":")[0])
    if _truth(p["C0.DDR3_AxiSelection"]) and int(p["C0.DDR3_AxiDataWidth"]) != 2 * ratio * data:
        problems.append(f"C0.DDR3_AxiDataWidth must be 2 x {ratio} x {data} = "
                        f"{2 * ratio * data} for this memory (PG150, AXI4 slave interface)")
    return problems


def _buffer_pins(p):
    if p["C_BUF_TYPE"] != "IBUFDSGTE":
        return {"BUFG_O": Pin("out", "clock")}, {}
    return ({"IBUF_OUT": Pin("out", "clock"), "IBUF_DS_ODIV2": Pin("out", "clock")},
            {"CLK_IN_D": Interface("Slave", "diff_clock", required=True)})


def _constant_pins(p):
    return {"dout": Pin("out")}, {}


@dataclass
class IpDefinition:
    """A vendor IP as its documentation gives it."""
    vlnv: str
    source: str                          # the document (and section) the entry rests on
    properties: dict                     # CONFIG name -> (check, default)
    interface: object                    # props -> (pins, interfaces)
    rules: object = None                 # props -> [problems]


#: The vendor IP build.tcl may use.
IP_CATALOG = {
    "xilinx.com:ip:xdma": IpDefinition(
        "xilinx.com:ip:xdma",
        "PG195 (DMA/Bridge Subsystem for PCI Express) v4.1: 'Port Descriptions' (sys_clk, "
        "sys_clk_gt, sys_rst_n, axi_aclk, axi_aresetn; AXI4-Stream H2C/C2H, AXI4-Lite "
        "master), 'Customizing and Generating the Subsystem' (PCIe DMA tab: read channels "
        "are H2C, write channels C2H); Xilinx/dma_ip_drivers",
        {"mode_selection": (_one_of("Basic", "Advanced"), "Basic"),
         "pl_link_cap_max_link_width": (_one_of("X1", "X2", "X4", "X8", "X16"), "X8"),
         "pl_link_cap_max_link_speed": (_one_of("2.5_GT/s", "5.0_GT/s", "8.0_GT/s"),
                                        "8.0_GT/s"),
         "axi_data_width": (_one_of("64_bit", "128_bit", "256_bit", "512_bit"), "256_bit"),
         "axisten_freq": (_one_of("62.5", "125", "250"), "250"),
         "xdma_axi_intf_mm": (_one_of("AXI_Memory_Mapped", "AXI_Stream"),
                              "AXI_Memory_Mapped"),
         "xdma_rnum_chnl": (_integer(1, 4), "1"),
         "xdma_wnum_chnl": (_integer(1, 4), "1"),
         "axilite_master_en": (_BOOLEAN, "false"),
         "axilite_master_size": (_integer(1, 1024), "1"),
         "axilite_master_scale": (_one_of("Kilobytes", "Megabytes", "Gigabytes"),
                                  "Megabytes"),
         "pf0_device_id": (lambda v: re.fullmatch(r"[0-9A-Fa-f]{4}", str(v)) is not None,
                           "8038"),
         "xdma_pcie_64bit_en": (_BOOLEAN, "false")},
        _xdma_pins, _xdma_rules),
    "xilinx.com:ip:ddr3": IpDefinition(
        "xilinx.com:ip:ddr3",
        "PG150 (UltraScale Architecture-Based FPGAs Memory IP): DDR3 'Port Descriptions' "
        "(sys_rst active high, c0_ddr3_ui_clk, c0_ddr3_ui_clk_sync_rst active high, "
        "c0_ddr3_aresetn active low, addn_ui_clkout1-4), 'AXI4 Slave Interface'; the names as "
        "generated for this card in Xilinx's adm-pcie-ku3 SDAccel platform "
        "(ReconfigureIO/reco-sdaccel @c949badd) and open-power/snap create_snap_ip.tcl",
        {"C0.DDR3_MemoryType": (_one_of("Components", "SODIMMs", "UDIMMs", "RDIMMs"),
                                "Components"),
         "C0.DDR3_MemoryPart": (lambda v: bool(str(v)), ""),
         "C0.DDR3_TimePeriod": (_integer(938, 3300), "1250"),
         "C0.DDR3_InputClockPeriod": (_integer(1000, 20000), "5000"),
         "C0.DDR3_PhyClockRatio": (_one_of("4:1", "2:1"), "4:1"),
         "C0.DDR3_CasLatency": (_integer(5, 14), "11"),
         "C0.DDR3_CasWriteLatency": (_integer(5, 10), "8"),
         "C0.DDR3_DataWidth": (lambda v: str(v).isdigit() and int(v) % 8 == 0
                               and 8 <= int(v) <= 80, "64"),
         "C0.DDR3_DataMask": (_BOOLEAN, "true"),
         "C0.DDR3_Ecc": (_BOOLEAN, "false"),
         "Internal_Vref": (_BOOLEAN, "true"),
         "C0.DDR3_AxiSelection": (_BOOLEAN, "false"),
         "C0.DDR3_AxiDataWidth": (_one_of("32", "64", "128", "256", "512"), "64"),
         "C0.DDR3_AxiAddressWidth": (_integer(27, 37), "30"),
         "C0.DDR3_AxiIDWidth": (_integer(1, 16), "4"),
         **{f"ADDN_UI_CLKOUT{i}_FREQ_HZ": (lambda v: v == "None" or str(v).isdigit(), "None")
            for i in range(1, 5)}},
        _ddr3_pins, _ddr3_rules),
    "xilinx.com:ip:util_ds_buf": IpDefinition(
        "xilinx.com:ip:util_ds_buf",
        "PB043 (Utility Buffer): C_BUF_TYPE; IBUFDSGTE with CLK_IN_D, IBUF_OUT and "
        "IBUF_DS_ODIV2; PG195 'Clocking' (UltraScale: sys_clk from ODIV2, sys_clk_gt from O)",
        {"C_BUF_TYPE": (_one_of("IBUFDS", "IBUFDSGTE", "BUFG", "BUFGCE", "BUFG_GT",
                                "OBUFDS"), "IBUFDS")},
        _buffer_pins),
    "xilinx.com:ip:xlconstant": IpDefinition(
        "xilinx.com:ip:xlconstant", "PB040 (Constant): CONST_WIDTH, CONST_VAL; dout",
        {"CONST_WIDTH": (_integer(1, 4096), "1"), "CONST_VAL": (_integer(0, 1 << 30), "1")},
        _constant_pins),
}
#: External interface types build.tcl may create.
INTERFACE_TYPES = {"xilinx.com:interface:diff_clock_rtl:1.0": "diff_clock",
                   "xilinx.com:interface:pcie_7x_mgt_rtl:1.0": "pcie",
                   "xilinx.com:interface:ddrx_rtl:1.0": "ddrx"}


# --- The shell, from its wrapper ------------------------------------------------------------

def module_ports(verilog, module):
    """Pins and interfaces of ``module`` as Vivado's block design infers them from its ports
    and X_INTERFACE attributes (UG994, module references)."""
    match = re.search(rf"module\s+{module}\s*\((.*?)\);", verilog, re.S)
    if match is None:
        raise TclCheckError(f"no module {module} in the Verilog read")
    ports = {}
    parameters = {}
    lines = match.group(1).splitlines()
    pending = []
    for line in lines:
        attributes = re.findall(r'\(\*\s*X_INTERFACE_PARAMETER\s*=\s*"([^"]*)"\s*\*\)', line)
        if attributes:
            pending += attributes
            continue
        port = re.match(r"\s*(input|output)\s+wire\s+(?:\[(\d+):0\]\s+)?(\w+)", line)
        if port:
            width = int(port.group(2)) + 1 if port.group(2) else 1
            ports[port.group(3)] = ("in" if port.group(1) == "input" else "out", width)
            parameters[port.group(3)] = dict(item.strip().split(" ", 1)
                                             for p in pending for item in p.split(","))
            pending = []
    pins, interfaces, in_interface = {}, {}, set()
    for name, (direction, width) in ports.items():
        for suffix in ("_tdata", "_awaddr"):
            if name.endswith(suffix):
                prefix = name[:-len(suffix)]
                if suffix == "_tdata":
                    interfaces[prefix] = Interface("Master" if direction == "out" else "Slave",
                                                   "axis", data_bytes=width // 8)
                else:
                    full = f"{prefix}_awlen" in ports
                    data = ports[f"{prefix}_wdata"][1] // 8
                    ids = ports[f"{prefix}_awid"][1] if f"{prefix}_awid" in ports else None
                    interfaces[prefix] = Interface("Master" if direction == "out" else "Slave",
                                                   "aximm" if full else "axilite",
                                                   data_bytes=data, id_bits=ids)
    for name in ports:
        if any(name.startswith(prefix + "_") for prefix in interfaces):
            in_interface.add(name)
    for name, (direction, width) in ports.items():
        if name in in_interface:
            continue
        given = parameters[name]
        if "FREQ_HZ" in given:
            pins[name] = Pin(direction, "clock", frequency=float(given["FREQ_HZ"]),
                             required=direction == "in")
            for bus in given.get("ASSOCIATED_BUSIF", "").split(":"):
                if bus:
                    interfaces[bus].clock = name
        elif "POLARITY" in given:
            pins[name] = Pin(direction, "reset", given["POLARITY"], required=direction == "in")
        else:
            pins[name] = Pin(direction, required=direction == "in")
    for name, pin in pins.items():
        if pin.kind == "clock":
            for reset in parameters[name].get("ASSOCIATED_RESET", "").split(":"):
                if reset:
                    pins[reset].clock = name
    for interface in interfaces.values():
        interface.required = True
    return pins, interfaces


# --- The stand-in ---------------------------------------------------------------------------

def tcl_split(text):
    """The elements of a Tcl list (braces, quotes and backslashes, as Tcl parses them)."""
    items, i, n = [], 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return items
        if text[i] == "{":
            depth, j = 1, i + 1
            while depth:
                if text[j] == "\\":
                    j += 1
                elif text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            items.append(text[i + 1:j - 1])
            i = j
        elif text[i] == '"':
            j = text.index('"', i + 1)
            items.append(text[i + 1:j])
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace():
                j += 1
            items.append(text[i:j].replace("\\", ""))
            i = j


@dataclass
class Cell:
    name: str
    vlnv: str
    properties: dict = field(default_factory=dict)
    module: tuple = None         # (pins, interfaces) of a module reference

    def interface(self):
        if self.module is not None:
            return self.module
        definition = IP_CATALOG[self.vlnv]
        values = {name: default for name, (_, default) in definition.properties.items()}
        values.update(self.properties)
        return definition.interface(values)


class Standin:
    """The stand-in for Vivado: every command of :data:`COMMANDS`, recording the design."""

    def __init__(self, tree, board, timing_slack):
        self.tree = Path(tree)
        self.board = board
        self.timing_slack = timing_slack
        self.verilog = {}
        self.cells = {}
        self.ports = {}              # name -> Pin or Interface (external)
        self.nets = []               # lists of endpoints ("cell/pin" or "port")
        self.intf_nets = []
        self.file_properties = {}
        self.steps = []
        self.clock_groups = []
        self.wrapper = None
        self.written = []
        self.rules = {}              # cell -> (its IP's rules, its property values)

    # Dispatch.
    def call(self, name, arguments):
        return getattr(self, f"do_{name}")(list(arguments))

    def _fail(self, message):
        raise TclCheckError(message)

    @staticmethod
    def _options(arguments, flags=(), valued=()):
        options, rest, i = {}, [], 0
        while i < len(arguments):
            item = arguments[i]
            if item in valued:
                options[item] = arguments[i + 1]
                i += 2
            elif item in flags:
                options[item] = True
                i += 1
            elif item.startswith("-") and len(item) > 1 and not item[1].isdigit():
                raise TclCheckError(f"unknown option {item}")
            else:
                rest.append(item)
                i += 1
        return options, rest

    # Project and files.
    def do_create_project(self, a):
        options, _ = self._options(a, ("-in_memory", "-force"), ("-part",))
        if options.get("-part") != self.board.part:
            self._fail(f"the project's part {options.get('-part')} is not the card's "
                       f"{self.board.part}")
        self.steps.append("project")
        return "project:1"

    def do_current_project(self, a):
        return "project:1"

    def do_current_design(self, a):
        return "design:1"

    def do_read_verilog(self, a):
        for path in (p for item in a for p in tcl_split(item)):
            if path == self.wrapper:
                self.steps.append("read_wrapper")
                continue
            file = Path(path)
            if not file.exists():
                self._fail(f"read_verilog: no file {path}")
            self.verilog[file.name] = file.read_text()
        return ""

    def do_read_xdc(self, a):
        if not Path(a[-1]).exists():
            self._fail(f"read_xdc: no file {a[-1]}")
        return ""

    def do_get_files(self, a):
        return f"file:{a[-1]}"

    # Properties.
    def do_set_property(self, a):
        if a[0] == "-dict":
            pairs = tcl_split(a[1])
            targets = a[2:]
        else:
            pairs = a[:2]
            targets = a[2:]
        for target in (t for item in targets for t in tcl_split(item)):
            for name, value in zip(pairs[::2], pairs[1::2]):
                self._set(target, name, value)
        return ""

    def _set(self, target, name, value):
        kind, _, label = target.partition(":")
        if kind == "cell":
            cell = self.cells[label]
            if cell.module is not None:
                self._fail(f"{label} is a module reference and has no CONFIG.{name}")
            definition = IP_CATALOG[cell.vlnv]
            key = name.removeprefix("CONFIG.")
            if not name.startswith("CONFIG.") or key not in definition.properties:
                self._fail(f"{cell.vlnv} has no property {name} ({definition.source})")
            check, _ = definition.properties[key]
            if not check(value):
                self._fail(f"{cell.vlnv} {name} cannot be {value!r}: {check.__doc__ or ''} "
                           f"({definition.source})")
            cell.properties[key] = str(value)
            rules = definition.rules
            if rules is not None:
                values = {n: d for n, (_, d) in definition.properties.items()}
                values.update(cell.properties)
                self.rules[label] = (rules, values)
        elif kind in ("port", "intf_port"):
            port = self.ports[label]
            if name == "CONFIG.FREQ_HZ":
                port.frequency = float(value)
            elif name == "CONFIG.POLARITY" and kind == "port":
                port.polarity = value
            else:
                self._fail(f"port {label} has no property {name}")
        elif kind == "file":
            if name != "synth_checkpoint_mode" or value not in ("None", "Singular",
                                                                "Hierarchical"):
                self._fail(f"{label}: no property {name} = {value}")
            self.file_properties[(label, name)] = value
        elif kind == "project":
            if name != "target_language" or value not in ("Verilog", "VHDL"):
                self._fail(f"the project has no property {name} = {value}")
        elif kind == "design":
            pass
        else:
            self._fail(f"set_property on an unknown object {target}")

    def do_get_property(self, a):
        name, target = a[0], a[1]
        if target == "path:worst" and name == "SLACK":
            return str(self.timing_slack)
        self._fail(f"get_property {name} of {target} is not known to the stand-in")

    # The block design.
    def do_create_bd_design(self, a):
        self.design = a[-1]
        return f"design:{a[-1]}"

    def do_create_bd_cell(self, a):
        options, rest = self._options(a, (), ("-type", "-vlnv", "-reference"))
        name = rest[-1]
        if options["-type"] == "ip":
            vlnv = options["-vlnv"]
            base = ":".join(vlnv.split(":")[:3])
            if base not in IP_CATALOG:
                self._fail(f"no IP {vlnv} is known (known: {', '.join(IP_CATALOG)})")
            self.cells[name] = Cell(name, base)
        elif options["-type"] == "module":
            reference = options["-reference"]
            sources = [text for text in self.verilog.values()
                       if re.search(rf"module\s+{reference}\b", text)]
            if not sources:
                self._fail(f"no module {reference} was read (read_verilog)")
            self.cells[name] = Cell(name, f"module:{reference}",
                                    module=module_ports(sources[0], reference))
        else:
            self._fail(f"create_bd_cell -type {options['-type']}")
        return f"cell:{name}"

    def do_get_bd_cells(self, a):
        if a[-1] not in self.cells:
            self._fail(f"no cell {a[-1]}")
        return f"cell:{a[-1]}"

    def _pin(self, path, interface):
        cell_name, _, pin = path.partition("/")
        if cell_name not in self.cells:
            self._fail(f"no cell {cell_name}")
        pins, interfaces = self.cells[cell_name].interface()
        table = interfaces if interface else pins
        if pin not in table:
            what = "interface" if interface else "pin"
            self._fail(f"{self.cells[cell_name].vlnv} ({cell_name}), as configured, has no "
                       f"{what} {pin}; it has {', '.join(sorted(table))}")
        return table[pin]

    def do_get_bd_pins(self, a):
        self._pin(a[-1], False)
        return f"pin:{a[-1]}"

    def do_get_bd_intf_pins(self, a):
        self._pin(a[-1], True)
        return f"intf_pin:{a[-1]}"

    def do_get_bd_ports(self, a):
        if a[-1] not in self.ports:
            self._fail(f"no port {a[-1]}")
        return f"port:{a[-1]}"

    def do_get_bd_intf_ports(self, a):
        if a[-1] not in self.ports:
            self._fail(f"no interface port {a[-1]}")
        return f"intf_port:{a[-1]}"

    def do_create_bd_port(self, a):
        options, rest = self._options(a, (), ("-dir", "-type", "-from", "-to"))
        kind = {"rst": "reset", "clk": "clock"}.get(options.get("-type"), "data")
        # An input port drives the design: it is an output seen from inside.
        self.ports[rest[-1]] = Pin("out" if options["-dir"] == "I" else "in", kind)
        return f"port:{rest[-1]}"

    def do_create_bd_intf_port(self, a):
        options, rest = self._options(a, (), ("-mode", "-vlnv"))
        if options["-vlnv"] not in INTERFACE_TYPES:
            self._fail(f"no interface type {options['-vlnv']}")
        self.ports[rest[-1]] = Interface(options["-mode"], INTERFACE_TYPES[options["-vlnv"]])
        return f"intf_port:{rest[-1]}"

    def _endpoint(self, handle, interface):
        kind, _, label = handle.partition(":")
        if kind in ("pin", "intf_pin"):
            return label, self._pin(label, interface)
        if kind in ("port", "intf_port"):
            return label, self.ports[label]
        self._fail(f"cannot connect {handle}")

    def do_connect_bd_net(self, a):
        endpoints = [self._endpoint(h, False) for item in a for h in tcl_split(item)]
        drivers = [name for name, pin in endpoints if pin.direction == "out"]
        if len(drivers) != 1:
            self._fail(f"a net needs one driver, not {len(drivers)}: "
                       f"{', '.join(n for n, _ in endpoints)}")
        for net in self.nets:
            if set(net) & {name for name, _ in endpoints}:
                net.extend(name for name, _ in endpoints if name not in net)
                return ""
        self.nets.append([drivers[0]] + [n for n, _ in endpoints if n != drivers[0]])
        return ""

    def do_connect_bd_intf_net(self, a):
        (left, first), (right, second) = [self._endpoint(h, True) for h in a]
        if first.kind != second.kind:
            self._fail(f"{left} ({first.kind}) and {right} ({second.kind}) are different "
                       f"interfaces")
        external = (left in self.ports) or (right in self.ports)
        if external != (first.mode == second.mode):
            self._fail(f"{left} ({first.mode}) cannot connect to {right} ({second.mode})")
        for attribute in ("data_bytes", "id_bits"):
            one, two = getattr(first, attribute), getattr(second, attribute)
            if one is not None and two is not None and one != two:
                self._fail(f"{left} and {right} differ in {attribute}: {one} and {two}")
        if first.kind == "diff_clock" and external:
            port, inside = (first, second) if left in self.ports else (second, first)
            name = left if left in self.ports else right
            if port.frequency is None:
                self._fail(f"clock port {name} has no FREQ_HZ")
            if inside.frequency is not None and abs(port.frequency - inside.frequency) > 1:
                self._fail(f"clock port {name} is {port.frequency / 1e6:g} MHz, but "
                           f"{right if name == left else left} expects "
                           f"{inside.frequency / 1e6:g} MHz")
        self.intf_nets.append((left, right))
        return ""

    def do_assign_bd_address(self, a):
        return ""

    def _net_of(self, name):
        for net in self.nets:
            if name in net:
                return net
        return None

    def _pin_or_port(self, name):
        if name in self.ports:
            return self.ports[name]
        return self._pin(name, False)

    def do_validate_bd_design(self, a):
        for label, (rules, values) in self.rules.items():
            for problem in rules(values):
                self._fail(f"{label}: {problem}")
        connected = {name for net in self.nets for name in net}
        connected_intf = {name for pair in self.intf_nets for name in pair}
        for cell in self.cells.values():
            pins, interfaces = cell.interface()
            for name, pin in pins.items():
                if pin.required and f"{cell.name}/{name}" not in connected:
                    self._fail(f"{cell.name}/{name} is required and left unconnected")
            for name, interface in interfaces.items():
                if interface.required and f"{cell.name}/{name}" not in connected_intf:
                    self._fail(f"{cell.name}/{name} is required and left unconnected")
        self._check_clock_nets()
        self._check_reset_nets()
        self._check_interface_clocks()
        for name, port in self.ports.items():
            if isinstance(port, Pin) and port.kind == "reset" and port.polarity is None:
                self._fail(f"reset port {name} has no POLARITY")
        self.steps.append("validated")
        return ""

    def _clock_source(self, cell_pin):
        """The driver of the net a clock pin is on (the clock's identity)."""
        net = self._net_of(cell_pin)
        return net[0] if net else None

    def _check_clock_nets(self):
        for net in self.nets:
            pins = [(name, self._pin_or_port(name)) for name in net]
            known = [(name, pin.frequency) for name, pin in pins
                     if pin.kind == "clock" and pin.frequency is not None]
            if any(pin.kind == "clock" for _, pin in pins) and len(
                    {round(f) for _, f in known}) > 1:
                self._fail("a clock net joins pins of different FREQ_HZ: " + ", ".join(
                    f"{name} {f / 1e6:g} MHz" for name, f in known))

    def _domain(self, name, pin):
        if pin.clock is None:
            return None
        cell = name.partition("/")[0]
        return self._clock_source(f"{cell}/{pin.clock}")

    def _check_reset_nets(self):
        for net in self.nets:
            driver_name = net[0]
            driver = self._pin_or_port(driver_name)
            if driver.kind != "reset":
                continue
            for load_name in net[1:]:
                load = self._pin_or_port(load_name)
                if load.kind != "reset":
                    continue
                if driver.polarity and load.polarity and driver.polarity != load.polarity:
                    self._fail(f"{driver_name} ({driver.polarity}) drives {load_name} "
                               f"({load.polarity}): the reset is inverted")
                source, sink = self._domain(driver_name, driver), self._domain(load_name, load)
                if source and sink and source != sink:
                    self._fail(f"{driver_name} (a reset of {source}'s domain) drives "
                               f"{load_name} (of {sink}'s) without a synchroniser")

    def _check_interface_clocks(self):
        for left, right in self.intf_nets:
            if left in self.ports or right in self.ports:
                continue
            first, second = self._pin(left, True), self._pin(right, True)
            if first.clock is None or second.clock is None:
                continue
            clocks = []
            for name in (left, right):
                cell = name.partition("/")[0]
                interface = self._pin(name, True)
                clocks.append((f"{cell}/{interface.clock}",
                               self._pin(f"{cell}/{interface.clock}", False)))
            (a_name, a), (b_name, b) = clocks
            if a.frequency and b.frequency and abs(a.frequency - b.frequency) > 1:
                self._fail(f"{left} and {right} are connected but their clocks' FREQ_HZ "
                           f"differ: {a_name} {a.frequency / 1e6:g} MHz, {b_name} "
                           f"{b.frequency / 1e6:g} MHz")
            if self._clock_source(a_name) != self._clock_source(b_name):
                self._fail(f"{left} and {right} are connected but clocked by different "
                           f"clocks ({a_name}, {b_name})")

    def do_save_bd_design(self, a):
        return ""

    def do_generate_target(self, a):
        if "validated" not in self.steps:
            self._fail("generate_target before validate_bd_design")
        bd = a[-1].partition(":")[2]
        if self.file_properties.get((bd, "synth_checkpoint_mode")) != "None":
            self._fail(f"generate_target on {bd} without 'set_property synth_checkpoint_mode "
                       f"None': in a non-project flow its IP would be synthesized out of "
                       f"context by nobody and left as black boxes (UG896, UG994)")
        self.steps.append("generated")
        return ""

    def do_make_wrapper(self, a):
        if "generated" not in self.steps:
            self._fail("make_wrapper before generate_target")
        self.wrapper = str(self.tree / f"{self.design}_wrapper.v")
        return self.wrapper

    # Synthesis and implementation.
    def do_synth_design(self, a):
        options, _ = self._options(a, (), ("-top", "-part"))
        if "read_wrapper" not in self.steps:
            self._fail("synth_design before the block design's wrapper is read")
        if options.get("-top") != f"{self.design}_wrapper":
            self._fail(f"synth_design -top {options.get('-top')}: the top is the block "
                       f"design's wrapper {self.design}_wrapper")
        self.steps.append("synthesized")
        return ""

    def _after(self, step, needed):
        if needed not in self.steps:
            self._fail(f"{step} before {needed.replace('_', ' ')}")
        self.steps.append(step)
        return ""

    def do_opt_design(self, a):
        self._check_clock_groups()
        return self._after("optimized", "synthesized")

    def do_place_design(self, a):
        return self._after("placed", "optimized")

    def do_phys_opt_design(self, a):
        return self._after("phys_optimized", "placed")

    def do_route_design(self, a):
        return self._after("routed", "placed")

    def do_report_utilization(self, a):
        return ""

    def do_report_timing_summary(self, a):
        return ""

    def do_get_timing_paths(self, a):
        if "routed" not in self.steps:
            self._fail("get_timing_paths before route_design")
        self.steps.append("timing_read")
        return "path:worst"

    def do_write_bitstream(self, a):
        if "routed" not in self.steps:
            self._fail("write_bitstream before route_design")
        if self.timing_slack < 0:
            self._fail("write_bitstream ran although timing failed: the script must check "
                       "the worst slack and stop")
        self.written.append(a[-1])
        return ""

    def do_write_cfgmem(self, a):
        options, _ = self._options(a, ("-force",), ("-format", "-interface", "-size",
                                                     "-loadbit", "-file"))
        if options.get("-format") != "mcs" or options.get("-interface") != "BPIx16":
            self._fail("the card boots from BPI x16 flash: write_cfgmem -format mcs "
                       "-interface BPIx16 (UG908)")
        load = options.get("-loadbit", "").split()
        if len(load) != 3 or load[0] != "up" or load[2] not in self.written:
            self._fail(f"write_cfgmem -loadbit {options.get('-loadbit')!r} does not load the "
                       f"bitstream written")
        self.written.append(options["-file"])
        return ""

    # Constraints issued from Tcl.
    def do_get_cells(self, a):
        return "cells:marked"

    def do_get_pins(self, a):
        options, rest = self._options(a, ("-quiet",), ("-of", "-of_objects", "-filter"))
        if rest:
            path = rest[-1]
            prefix = f"{self.design}_i/"
            if not path.startswith(prefix):
                self._fail(f"get_pins {path}: not a pin of the design")
            cell_pin = path[len(prefix):]
            self._pin(cell_pin, False)
            return f"netpin:{cell_pin}"
        return "pins:marked"

    def do_get_clocks(self, a):
        options, _ = self._options(a, (), ("-of_objects",))
        target = options.get("-of_objects", "")
        if not target.startswith("netpin:"):
            self._fail(f"get_clocks -of_objects {target}")
        source = self._clock_source(target.partition(":")[2])
        if source is None:
            self._fail(f"{target} is on no clock net")
        return f"clock:{source}"

    def do_set_false_path(self, a):
        return ""

    def do_set_clock_groups(self, a):
        groups, i = [], 0
        while i < len(a):
            if a[i] == "-group":
                groups.append(set(tcl_split(a[i + 1])))
                i += 2
            else:
                i += 1
        if "-asynchronous" not in a:
            self._fail("set_clock_groups without -asynchronous")
        self.clock_groups.append(groups)
        return ""

    def _check_clock_groups(self):
        """Every pair of the shell's clocks, from different sources, is asynchronous."""
        shell = [cell for cell in self.cells.values() if cell.module is not None]
        for cell in shell:
            pins, _ = cell.interface()
            sources = sorted({self._clock_source(f"{cell.name}/{name}")
                              for name, pin in pins.items() if pin.kind == "clock"} - {None})
            for i, one in enumerate(sources):
                for two in sources[i + 1:]:
                    if not any(any(f"clock:{one}" in g for g in groups)
                               and any(f"clock:{two}" in g for g in groups)
                               and not any({f"clock:{one}", f"clock:{two}"} <= g
                                           for g in groups)
                               for groups in self.clock_groups):
                        self._fail(f"the clocks {one} and {two} of {cell.name} are not "
                                   f"declared asynchronous (set_clock_groups -asynchronous)")


def _tclsh():
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        raise ToolchainError("tclsh is not installed: install the Debian package tcl "
                             "(make test installs it)")
    return tclsh


def run_script(tree, board, timing_slack):
    """Run ``tree``'s build.tcl once against the stand-in; returns it, or raises
    TclCheckError with the first problem."""
    tree = Path(tree)
    standin = Standin(tree, board, timing_slack)
    with tempfile.TemporaryDirectory(prefix="ese-tcl-") as scratch:
        prelude = Path(scratch) / "standin.tcl"
        prelude.write_text(_PRELUDE)
        # A copy, so the check writes nothing into the tree (the script makes reports/).
        copy = Path(scratch) / "tree"
        shutil.copytree(tree, copy)
        standin.tree = copy
        process = subprocess.Popen([_tclsh(), str(prelude), str(copy / "build.tcl"),
                                    *COMMANDS], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=copy)
        problem = None
        output = []
        try:
            while True:
                line = process.stdout.readline().decode()
                if not line:
                    break
                if not line.startswith("CALL "):
                    output.append(line)
                    continue
                items = []
                for _ in range(int(line.split()[1])):
                    length = int(process.stdout.readline())
                    items.append(process.stdout.read(length).decode())
                try:
                    reply, status = standin.call(items[0], items[1:]), "OK"
                except TclCheckError as error:
                    problem = problem or str(error)
                    reply, status = str(error), "ERR"
                data = reply.encode()
                process.stdin.write(f"{status} {len(data)}\n".encode() + data)
                process.stdin.flush()
        finally:
            process.stdin.close()
            errors = process.stderr.read().decode(errors="replace")
            process.wait()
        if problem is not None:
            raise TclCheckError(f"build.tcl: {problem}")
        standin.output = "".join(output)
        standin.tree = tree
        # The script's own error (Tcl's message, first line), if it stopped itself.
        standin.stopped = errors.strip().splitlines()[0] if process.returncode else None
        return standin


def check_build_tree(tree, board=None):
    """Check ``tree``'s build.tcl: it must build, check timing, write the bitstream and the
    flash image when timing is met, and stop before the bitstream when it is not.

    Returns a summary (a dict); raises TclCheckError naming the first problem.
    """
    from . import board as board_named
    tree = Path(tree)
    described = json.loads((tree / "config.json").read_text())
    board = board or board_named(described["board"])
    passed = run_script(tree, board, timing_slack=0.125)
    if passed.stopped:
        raise TclCheckError(f"build.tcl stopped: {passed.stopped}")
    if not any(path.endswith(".bit") for path in passed.written) or \
            not any(path.endswith(".mcs") for path in passed.written):
        raise TclCheckError("build.tcl did not write the bitstream and the flash image")
    failed = run_script(tree, board, timing_slack=-0.5)
    if not failed.stopped or failed.written:
        raise TclCheckError(f"build.tcl went on although timing failed (it wrote "
                            f"{failed.written or 'nothing'}, and did not stop)")
    _check_external_clocks(passed, board)
    return {"cells": {name: cell.vlnv for name, cell in passed.cells.items()},
            "timing_failed": failed.stopped,
            "nets": len(passed.nets), "interface_nets": len(passed.intf_nets),
            "written": [Path(p).name for p in passed.written]}


def _check_external_clocks(standin, board):
    """The board's clock inputs carry the board's frequencies."""
    expected = {"pcie_refclk": 100e6, "ddr3_sys_clk": board.memory_reference_mhz * 1e6}
    for name, frequency in expected.items():
        port = standin.ports.get(name)
        if port is None or port.frequency is None or abs(port.frequency - frequency) > 1:
            raise TclCheckError(f"the clock port {name} must be {frequency / 1e6:g} MHz on the "
                                f"{board.title}")
