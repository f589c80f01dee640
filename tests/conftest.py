"""pytest fixtures and markers shared by every test module.

Tests are grouped by kind in folders (unit, hw, rtl, system, speech, cli, boards); each test
carries its folder's marker, and every test of rtl/ and system/ also carries ``rtl`` (it
builds or runs Verilator), as do the tests elsewhere marked so one by one.
"""

from pathlib import Path

import pytest
import torch

KINDS = ("unit", "hw", "rtl", "system", "speech", "cli", "boards")
#: Folders whose every test runs Verilator.
VERILATOR_FOLDERS = ("rtl", "system")


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = Path(str(item.fspath)).parent.name
        if kind not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of the folders {KINDS}")
        item.add_marker(kind)
        if kind in VERILATOR_FOLDERS:
            item.add_marker("rtl")


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(1234)
