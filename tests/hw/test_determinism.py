"""The same model and configuration give byte-identical weight images and Verilog, in fresh
processes with different hash seeds (no dependence on set or dict order, time or memory
addresses)."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys

import pytest
from pathlib import Path
import torch
import ese
from ese.sim.build import generate_verilog
out = Path(sys.argv[1])
torch.manual_seed(7)
module = ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2)
for name, config in (("resident", ese.Config(pes=4, channels=2)),
                     ("streamed", ese.Config(pes=4, channels=2, stream_window=8,
                                             memory_data_bits=256))):
    program = ese.compile(module, config, density=0.3)
    program.save(out / f"{name}.ese")
    (out / f"{name}.load").write_bytes(program.image.load_words().tobytes())
    (out / f"{name}_system.v").write_text(generate_verilog(program.config, "system"))
(out / "accelerator.v").write_text(generate_verilog(program.config, "accelerator"))
"""


def _build(directory, hash_seed):
    directory.mkdir()
    environment = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
    subprocess.run([sys.executable, "-c", SCRIPT, str(directory)], check=True,
                   env=environment, timeout=600)
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.mark.slow
def test_images_and_verilog_are_byte_identical_across_processes(tmp_path):
    first = _build(tmp_path / "first", 1)
    second = _build(tmp_path / "second", 2)
    assert sorted(first) == ["accelerator.v", "resident.ese", "resident.load",
                             "resident_system.v", "streamed.ese", "streamed.load",
                             "streamed_system.v"]
    for name in first:
        assert first[name] == second[name], f"{name} differs between two identical builds"
    # And the two configurations really are different hardware.
    assert first["resident_system.v"] != first["streamed_system.v"]


def test_a_model_built_in_another_environment_is_not_reused(monkeypatch):
    """A Verilator model finds cocotb's VPI libraries by the path it was built with (its
    RUNPATH), so one built in a virtual environment since deleted cannot start: the cache key
    holds the libraries' path, and each environment builds its own model."""
    import ese
    from ese.sim import build
    config = ese.Config(pes=4)
    here = build.build_key(config)
    assert build.build_key(config) == here
    monkeypatch.setattr(build, "_cocotb_libraries", lambda: "/elsewhere/.venv/cocotb/libs")
    assert build.build_key(config) != here
