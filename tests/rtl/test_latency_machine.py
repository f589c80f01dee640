"""The latency machine's parameters in Verilator: entries of several columns
(Config.block_columns) and cell lanes (Config.cell_lanes), on random configurations,
bit-exact with the golden model under stalls.

The configurations are drawn once, from a fixed seed, over the parameters' ranges (PEs, columns
per entry, cell lanes, channels) and the kinds of model (LSTM; LSTMP with peepholes, two
layers; GRU, two layers); each is a Verilator build. The seed is one whose draw covers every
entry width, one and two cell lanes for the LSTMP and the GRU, and one and two channels (the
module checks it). Every case loads an initial state into one channel, restarts another
mid-run, and reads the final states back out of the hardware.
"""

import random

import numpy as np
import pytest
from torch import nn

import ese
from ese.hw.timing import hardware_timing
from ese.sw.compiler.performance import predict_performance

from helpers import FLOAT_TOLERANCE, frames, hardware

MODELS = {
    "lstm": lambda: nn.LSTM(13, 22),
    "lstmp-peepholes-2-layers": lambda: ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
    "gru-2-layers": lambda: nn.GRU(13, 30, num_layers=2),
}


def _draw(count, seed):
    """``count`` configurations: every model kind and every entry width in turn, the PE count,
    the cell lanes (those the PEs and the width allow) and the channels drawn."""
    rng = random.Random(seed)
    kinds, widths = list(MODELS), [2, 4, 8, 16]
    rng.shuffle(kinds)
    rng.shuffle(widths)
    cases = []
    for i in range(count):
        width, pes = widths[i % len(widths)], rng.choice([2, 4, 8])
        lanes = rng.choice([c for c in (1, 2) if c == 1 or (c <= width and 4 * c <= pes)])
        cases.append({"model": kinds[i % len(kinds)], "block_columns": width, "pes": pes,
                      "cell_lanes": lanes, "channels": rng.choice([1, 2])})
    return cases


CASES = _draw(4, seed=15)
assert {case["block_columns"] for case in CASES} == {2, 4, 8, 16}
assert {(case["model"], case["cell_lanes"]) for case in CASES} >= {
    ("lstmp-peepholes-2-layers", 2), ("gru-2-layers", 2)}
assert {case["channels"] for case in CASES} == {1, 2}


def _case_id(case):
    return ("{model}-{pes}-pes-{block_columns}-columns-{cell_lanes}-lanes-{channels}-channels"
            .format(**case))


def _compiled(case):
    config = hardware(case["pes"], block_columns=case["block_columns"],
                      cell_lanes=case["cell_lanes"], channels=case["channels"])
    return ese.compile(MODELS[case["model"]](), config, density=0.3)


def _random_state(program, rng):
    layers = program.model.layers
    h = rng.uniform(-0.9, 0.9, size=(len(layers), layers[0].outputs))
    if layers[0].is_gru:
        return h
    return h, rng.uniform(-3, 3, size=(len(layers), layers[0].cells))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_random_configurations_are_bit_exact_with_states_loaded_and_read_back(case):
    program = _compiled(case)
    assert program.config.block_columns == case["block_columns"]
    rng = np.random.default_rng(3)
    inputs = program.inputs
    x = frames(7, inputs, seed=1)
    states = [_random_state(program, rng)]
    runs = [x]
    if case["channels"] == 2:
        # The second channel restarts mid-run from zero state.
        runs.append([frames(3, inputs, seed=2), frames(4, inputs, seed=3)])
        states.append(None)
    result = program.simulate(runs, state=states, stall_probability=0.25, seed=5,
                              return_state=True)
    assert result.mismatches == 0
    outputs, final = result.outputs, result.state      # each channel's
    assert np.array_equal(outputs[0][0], program.predict(x, state=states[0]))
    ends = [program.predict(x, state=states[0], return_state=True)[1]]
    if case["channels"] == 2:
        assert np.array_equal(outputs[1][0], program.predict(runs[1][0]))
        assert np.array_equal(outputs[1][1], program.predict(runs[1][1]))
        ends.append(program.predict(runs[1][1], return_state=True)[1])
    for channel, end in enumerate(ends):
        got = final[channel]
        if program.model.layers[0].is_gru:
            assert np.array_equal(got, end)
        else:
            assert np.array_equal(got[0], end[0]) and np.array_equal(got[1], end[1])
    assert np.abs(program.predict(x) - program.float_reference(x)).max() < FLOAT_TOLERANCE


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_model_predicts_each_configuration_to_the_cycle(case):
    """Without stalls, the performance model's frames after the first equal the RTL's to the
    cycle: these small layers are bound by the chain, whose every hand-off the model takes
    from the hardware's own latencies (the sum of a block's products among them)."""
    program = _compiled(case)
    x = frames(10, program.inputs, seed=4)
    trace = []
    program.predict_codes(program.encode_inputs(x)[0], trace=trace)
    prediction = predict_performance(program.image, hardware_timing(program.config), trace)
    result = program.simulate(x)
    assert result.cycles_per_frame[1:] == prediction.frame_cycles[1:]


def test_an_explored_machine_runs_in_rtl_as_the_explorer_says(tmp_path):
    """ese explore's cycles per frame for a machine of the GRU case above (8 PEs, blocks of 8
    columns, two cell lanes) are what its RTL runs, within 5%: the same module, pruned as the
    explorer prunes it, compiled with the tests' fixed capacities (which share that case's
    Verilator build and change no cycle)."""
    import torch

    from ese.sw.tools.explore import ExploreSettings, explore
    torch.manual_seed(0)
    module = MODELS["gru-2-layers"]()
    path = tmp_path / "model.pt"
    torch.save(module.state_dict(), path)
    settings = ExploreSettings(model=str(path), density=0.3, pes=(8,), block_columns=(8,),
                               cell_lanes=(2,), entries_per_read=(4,), frames=10)
    (row,) = explore(settings)["machines"]
    program = ese.compile(module, hardware(8, block_columns=8, cell_lanes=2, channels=1),
                          density=0.3)
    x = frames(10, program.inputs, seed=9)
    result = program.simulate(x)
    assert result.mismatches == 0
    rtl = np.mean(result.cycles_per_frame[2:-1])
    assert abs(row["cycles_per_frame"] / rtl - 1) < 0.05, (row, rtl)
