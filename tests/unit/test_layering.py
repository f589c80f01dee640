"""The layers of the house, read from the imports of every module.

Dependencies point one way (README, "Architecture"): the contract at the bottom, the hardware
and the runtime on it, the compiler on the runtime, the simulator joining the hardware and the
runtime, the boards on the hardware and the simulator, the applications on top. This test
parses every module of the package (nothing is imported), resolves each import, and checks it
against the table below: at module level strictly, and inside functions too, where the only
way up is the short list of deferred imports after it, each with its reason.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ese

ROOT = Path(__file__).resolve().parents[2]
#: Import name of each top-level folder (pyproject.toml's package-dir).
FOLDERS = {"ese": "ese", "sw": "ese.sw", "hw": "ese.hw", "sim": "ese.sim",
           "boards": "ese.boards"}

#: Layer of a module: the longest matching prefix.
LAYERS = {
    "ese": "api",
    "ese.sw": "api",
    "ese.sw.contract": "contract",
    "ese.hw": "hw",
    "ese.sw.runtime": "runtime",
    "ese.sw.compiler": "compiler",
    "ese.sim": "sim",
    "ese.boards": "boards",
    "ese.sw.tools": "tools",
    "ese.sw.speech": "speech",
}

#: What each layer may import from the project.
ALLOWED = {
    "contract": {"contract"},
    "hw": {"hw", "contract"},
    "runtime": {"runtime", "contract"},
    "compiler": {"compiler", "runtime", "contract"},
    "sim": {"sim", "hw", "runtime", "contract"},
    "boards": {"boards", "sim", "hw", "contract"},
    "speech": {"speech", "api", "compiler", "runtime", "contract"},
    "tools": {"tools", "speech", "api", "boards", "sim", "hw", "compiler", "runtime",
              "contract"},
    "api": {"api", "tools"},
}

#: Imports inside a function that go against the table, each for a reason. Nothing else may.
DEFERRED_UPWARDS = {
    # Program.simulate, the public API's RTL run, starts the simulator only when called.
    ("ese.sw.runtime.program", "ese.sim.runner"),
}

#: Third-party packages each layer may import at module level (others may import them too).
HEAVY = {
    "torch": {"compiler"},
    # The optional front ends' packages: inside the functions that read their models only.
    "keras": set(),
    "brevitas": set(),
    "amaranth": {"hw", "sim", "boards"},
    "cocotb": {"sim"},
    "cocotbext": {"sim"},
    "cocotb_tools": {"sim"},
}
#: Where a heavy package may be imported inside a function.
HEAVY_DEFERRED = {
    "torch": {"compiler", "speech", "tools"},
    # and the tools' table of front ends (ese frontends), which builds their models.
    "keras": {"compiler", "tools"},
    "brevitas": {"compiler", "tools"},
    "amaranth": {"hw", "sim", "boards", "tools"},
    "cocotb": {"sim"},
    "cocotbext": {"sim"},
    "cocotb_tools": {"sim"},
}


def _modules():
    """(module name, path, is package) of every module of the distribution."""
    found = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found.append((".".join([package, *parts]), path, is_package))
    return found


MODULES = _modules()
NAMES = {name for name, _, _ in MODULES}


def layer_of(module):
    best = max((prefix for prefix in LAYERS
                if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def _imports(name, path, is_package):
    """Every import of a module as (target module, deferred, line)."""
    package = name if is_package else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node, deferred):
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, deferred, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                # "from package import module" names a module; otherwise the target itself.
                for alias in child.names:
                    candidate = f"{target}.{alias.name}"
                    found.append((candidate if candidate in NAMES else target, deferred,
                                  child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


IMPORTS = {name: _imports(name, path, is_package) for name, path, is_package in MODULES}


def test_every_module_is_in_a_layer_and_every_import_resolves():
    for name, imports in IMPORTS.items():
        layer_of(name)
        for target, _, line in imports:
            if target.split(".")[0] == "ese":
                assert target in NAMES, f"{name}:{line} imports {target}, which does not exist"


def test_project_imports_point_down_the_layers():
    wrong = []
    for name, imports in IMPORTS.items():
        layer = layer_of(name)
        for target, deferred, line in imports:
            if target.split(".")[0] != "ese" or layer_of(target) in ALLOWED[layer]:
                continue
            if deferred and (name, target) in DEFERRED_UPWARDS:
                continue
            wrong.append(f"{name}:{line} ({layer}) imports {target} ({layer_of(target)})"
                         + (" inside a function" if deferred else ""))
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_heavy_packages_stay_in_their_layers():
    wrong = []
    for name, imports in IMPORTS.items():
        layer = layer_of(name)
        for target, deferred, line in imports:
            top = target.split(".")[0]
            allowed = (HEAVY_DEFERRED if deferred else HEAVY).get(top)
            if allowed is not None and layer not in allowed:
                wrong.append(f"{name}:{line} ({layer}) imports {target}"
                             + (" inside a function" if deferred else ""))
    assert not wrong, "\n".join(wrong)


def test_no_cycles_between_layers():
    edges = {}
    for name, imports in IMPORTS.items():
        for target, deferred, _ in imports:
            if target.split(".")[0] == "ese" and not deferred:
                a, b = layer_of(name), layer_of(target)
                if a != b:
                    edges.setdefault(a, set()).add(b)
    order, state = [], {}

    def walk(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"a cycle between layers: {' -> '.join(path)}"
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            walk(nxt, [*path, nxt])
        state[node] = "done"
        order.append(node)

    for node in sorted(edges):
        walk(node, [node])
    assert order.index("contract") < order.index("hw") < order.index("sim")


def test_the_table_is_not_empty_words():
    """The layers the table names really hold modules, and each rule has been exercised."""
    layers = {layer_of(name) for name in NAMES}
    assert layers == set(ALLOWED)
    for name, target in DEFERRED_UPWARDS:
        assert any(t == target and deferred for t, deferred, _ in IMPORTS[name]), \
            f"{name} no longer imports {target}: drop it from DEFERRED_UPWARDS"


HOST_ONLY = """
import sys
import numpy as np
import ese
from ese import Accelerator, XdmaTransport
program = ese.load(sys.argv[1])
y = program.predict(np.load(sys.argv[2]))
np.save(sys.argv[3], y)
wider = ese.load(sys.argv[1], config=program.config.replace(entry_depth=4096))
assert (wider.predict(np.load(sys.argv[2])) == y).all()
heavy = sorted(m for m in ("torch", "amaranth", "cocotb", "cocotbext") if m in sys.modules)
assert not heavy, f"a host that only runs images imported {heavy}"
"""


def test_a_host_that_only_runs_images_imports_neither_torch_nor_amaranth(tmp_path):
    import torch
    torch.manual_seed(3)
    program = ese.compile(torch.nn.LSTM(12, 20, proj_size=8), ese.Config(pes=4), density=0.4)
    program.save(tmp_path / "model.ese")
    x = np.random.default_rng(0).normal(size=(5, 12))
    np.save(tmp_path / "x.npy", x)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    subprocess.run([sys.executable, "-c", HOST_ONLY, str(tmp_path / "model.ese"),
                    str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], check=True,
                   env=environment, timeout=120)
    assert np.array_equal(np.load(tmp_path / "y.npy"), program.predict(x))


OPTIONAL_FRONT_ENDS = """
import sys
import torch
import ese
ese.compile(torch.nn.LSTM(4, 6), ese.Config(pes=2), density=0.5)
loaded = sorted(m for m in ("keras", "brevitas") if m in sys.modules)
assert not loaded, f"compiling a PyTorch module imported {loaded}"
for blocked in ("keras", "brevitas"):
    sys.modules[blocked] = None           # as if the extras were not installed
ese.compile(torch.nn.GRU(4, 6), ese.Config(pes=2))
"""


def test_the_optional_front_ends_are_imported_only_for_their_models():
    subprocess.run([sys.executable, "-c", OPTIONAL_FRONT_ENDS], check=True, timeout=120)


@pytest.mark.parametrize("module", ["ese.sw.contract.registers", "ese.sw.runtime.program",
                                    "ese.sw.runtime.driver", "ese.sw.compiler.performance"])
def test_lower_layers_import_alone(module):
    """Each lower module imports in a fresh process without PyTorch or Amaranth."""
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "heavy = [m for m in ('torch', 'amaranth') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_package_is_in_the_distribution():
    """pyproject.toml lists the packages by hand (its folders map onto ese.*): a new
    subpackage missing there would work in a checkout and be absent from an install."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    packages = {name for name, _, is_package in MODULES if is_package}
    assert packages == listed
