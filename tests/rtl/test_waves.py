"""Waveforms: ``simulate(waves=...)`` writes an FST trace of the run from its own traced build.

The trace is read back with pylibfst (the FST reader of GTKWave's libfst), so what is checked
is what GTKWave or Surfer would show: the signals the README names, over the whole run.
"""

import json

import numpy as np
import pylibfst
import pytest
from torch import nn

import ese

from helpers import ese_command, frames, hardware

#: The signals the README tells a user to look at first.
FIRST_SIGNALS = (
    "$rootio.frames_in__tvalid", "$rootio.frames_out__tvalid", "$rootio.busy",
    "ese_accelerator.sequencer.fsm_state [3:0]",
    "ese_accelerator.arbiter.broadcast__valid", "ese_accelerator.arbiter.broadcast__ready",
    "ese_accelerator.arbiter.broadcast__payload.beat.column [6:0]",
    "ese_accelerator.pe0.accepting", "ese_accelerator.sequencer.cells_busy",
    "ese_accelerator.writeback.busy",
)


def _check_trace(path, program, cycles):
    context = pylibfst.lib.fstReaderOpen(str(path).encode())
    assert context != pylibfst.ffi.NULL
    try:
        _, signals = pylibfst.get_scopes_signals2(context)
        missing = [name for name in FIRST_SIGNALS if name not in signals.by_name]
        assert not missing
        # Picoseconds (timescale 10**-12) at the 200 MHz clock: the trace covers every cycle
        # of the load and of the frames.
        assert pylibfst.lib.fstReaderGetTimescale(context) == -12
        period = 1e6 / program.config.clock_mhz
        assert pylibfst.lib.fstReaderGetEndTime(context) / period >= cycles
    finally:
        pylibfst.lib.fstReaderClose(context)


def _program():
    return ese.compile(nn.LSTM(5, 7, proj_size=3), hardware(2), density=0.5)


def test_simulate_writes_an_fst_trace_of_the_whole_run(tmp_path):
    program = _program()
    x = frames(3, 5)
    path = tmp_path / "run.fst"
    traced = program.simulate(x, waves=path)
    assert traced.bitexact and np.array_equal(traced.outputs, program.predict(x))
    _check_trace(path, program, traced.total_cycles)
    # The same run without waves uses the untraced build, and the same cycles.
    plain = program.simulate(x)
    assert plain.details["build_directory"] != traced.details["build_directory"]
    assert plain.cycles_per_frame == traced.cycles_per_frame


def test_ese_simulate_writes_waves(tmp_path):
    program = _program()
    program.save(tmp_path / "model.ese")
    np.save(tmp_path / "x.npy", frames(2, 5))
    run = ese_command("simulate", tmp_path / "model.ese", "-i", tmp_path / "x.npy",
                      "--waves", tmp_path / "cli.fst", "--json")
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["bitexact"]
    _check_trace(tmp_path / "cli.fst", program, sum(figures["cycles_per_frame"]))


def test_waves_into_a_missing_folder_are_refused_before_building(tmp_path):
    program = ese.compile(nn.LSTMCell(5, 7), hardware(2))
    with pytest.raises(ese.InputError, match="its folder does not exist"):
        program.simulate(frames(2, 5), waves=tmp_path / "absent" / "run.fst")
