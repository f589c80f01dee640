"""The whole machine: the host driver against the system RTL, over AXI bus models.

driver -> AXI4-Lite registers -> weight image stored in and loaded from the DDR model (AxiRam)
-> several lock-step channels -> results, with random idle cycles and back-pressure on every
bus, and outputs equal to the golden model's.
"""

import numpy as np
import pytest

import ese
from ese.sim.runner import run_system

from helpers import frames, hardware


@pytest.fixture(scope="module")
def program():
    return ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                       hardware(4, channels=2), density=0.3)


def test_driver_runs_channels_through_the_system_under_back_pressure(program):
    a = frames(7, 13, seed=1)
    b1, b2 = frames(3, 13, seed=2), frames(4, 13, seed=3)
    outputs, counters = run_system(program, [a, [b1, b2]], stall_probability=0.25, seed=3)
    (out_a,), (out_b1, out_b2) = outputs
    assert np.array_equal(out_a, program.predict(a))
    assert np.array_equal(out_b1, program.predict(b1))
    assert np.array_equal(out_b2, program.predict(b2))
    assert counters["steps_in"] == counters["steps_out"] == 7
    assert 0 < counters["step_cycles"] < counters["busy_cycles"] < counters["cycles"]


def test_image_for_other_hardware_is_refused_before_any_write(program):
    other = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                        hardware(8, channels=2), density=0.3)
    run_system(program, [None], other_image=other, seed=1, stall_probability=0.25,
               testcase="image_for_other_hardware_is_refused_before_any_write")


def test_error_flags_surface_as_named_exceptions(program):
    run_system(program, [None], seed=2, stall_probability=0.25,
               testcase="error_flags_surface_as_named_exceptions")


def test_resets_in_the_middle_of_runs_leave_nothing_behind(program):
    """Three runs cut short by a reset at random points, under back-pressure on every bus,
    then the same frames again: outputs equal the golden model's."""
    a, b = frames(16, 13, seed=7), frames(16, 13, seed=8)
    outputs, counters = run_system(
        program, [a, b], stall_probability=0.25, seed=5,
        testcase="reset_in_the_middle_of_runs_then_rerun_clean",
        options={"aborts": 3, "abort_cycles": 600})
    assert np.array_equal(outputs[0][0], program.predict(a))
    assert np.array_equal(outputs[1][0], program.predict(b))
    # The aborted runs did take steps in, so the resets really cut work short.
    assert counters["steps_in"] > 16


def test_a_card_that_never_answers_times_out_and_reset_recovers(program):
    a = frames(6, 13, seed=9)
    outputs, _ = run_system(program, [a, None], stall_probability=0.25, seed=6,
                            testcase="unanswered_run_times_out_and_reset_recovers",
                            options={"driver_timeout_seconds": 50e-6})
    assert np.array_equal(outputs[0][0], program.predict(a))


def test_weights_streamed_from_memory_for_a_model_larger_than_the_chip():
    """Streamed configuration: each PE holds two rings of 8 entry words; the model's entries
    are many times that, so every frame step streams them from the DDR model again. Under
    back-pressure on every bus, loading twice (the second load stops and drains the
    streamer), the outputs equal the golden model's."""
    config = hardware(4, channels=2, stream_window=8, memory_data_bits=256)
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2), config,
                          density=0.5)
    per_pe = [len(program.image.entry_words(pe)) for pe in range(config.pes)]
    assert min(per_pe) > 4 * 2 * config.stream_window
    a = frames(5, 13, seed=4)
    b1, b2 = frames(2, 13, seed=5), frames(4, 13, seed=6)
    outputs, counters = run_system(program, [a, [b1, b2]], stall_probability=0.25, seed=4,
                                   loads=2)
    (out_a,), (out_b1, out_b2) = outputs
    assert np.array_equal(out_a, program.predict(a))
    assert np.array_equal(out_b1, program.predict(b1))
    assert np.array_equal(out_b2, program.predict(b2))
    assert counters["steps_in"] == counters["steps_out"] == 6


def test_soak_in_small_checks_every_frame():
    """`ese soak`'s engine on a few hundred frames (the README's figure comes from the full
    10,000-step run); it shares the system build of the tests above."""
    from ese.sw.tools.soak import SoakSettings, run_soak
    report = run_soak(SoakSettings(frames=150, longest_sequence=40, stall_probability=0.25,
                                   config=hardware(4, channels=2)))
    assert report["frames"] == 300 and report["sequences"] >= 2 * 4
    assert report["mismatched_frames"] == 0
    assert report["steps_out"] == 150 and report["simulated_cycles"] > 150 * 100
