"""The whole machine: the host driver against the system RTL, over AXI bus models.

driver -> AXI4-Lite registers -> weight image stored in and loaded from the DDR model (AxiRam)
-> several lock-step channels -> results, with random idle cycles and back-pressure on every
bus, and outputs equal to the golden model's.

The fault scenarios at the end are cocotb tests of this module, which the runner starts in
the simulator (``module=__name__``) on the package's :class:`ese.sim.system_testbench.SystemBench`.
"""

import itertools
import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, with_timeout

import ese
from ese.boards import ADM_PCIE_KU3
from ese.sim.harness import stall_pattern
from ese.sim.runner import run_system
from ese.sim.system_testbench import bench_for, loaded, open_job, save
from ese.sw.contract.errors import CapacityError, ImageError
from ese.sw.contract.registers import Control, Register
from ese.sw.runtime.driver import Accelerator, DeviceError

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


def test_an_image_compiled_with_defaults_runs_on_the_cards_memory_bus(program):
    """The image is compiled for the default 64-bit memory port, the system is built with
    the ADM-PCIE-KU3's 512-bit one (its Board): the driver reads the card's parameters and
    lays the image out again before it writes anything, as on the card."""
    card = ADM_PCIE_KU3.hardware(program.config)
    assert (program.config.memory_data_bits, card.memory_data_bits) == (64, 512)
    a, b = frames(5, 13, seed=11), frames(3, 13, seed=12)
    outputs, _ = run_system(program, [a, b], hardware=card, stall_probability=0.25, seed=8)
    assert np.array_equal(outputs[0][0], program.predict(a))
    assert np.array_equal(outputs[1][0], program.predict(b))


def test_image_for_other_hardware_is_refused_before_any_write(program):
    other = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                        hardware(8, channels=2), density=0.3)
    run_system(program, [None], other_image=other, seed=1, stall_probability=0.25,
               testcase="image_for_other_hardware_is_refused_before_any_write", module=__name__)


def test_error_flags_surface_as_named_exceptions(program):
    run_system(program, [None], seed=2, stall_probability=0.25,
               testcase="error_flags_surface_as_named_exceptions", module=__name__)


def test_resets_in_the_middle_of_runs_leave_nothing_behind(program):
    """Three runs cut short by a reset at random points, under back-pressure on every bus,
    then the same frames again: outputs equal the golden model's."""
    a, b = frames(16, 13, seed=7), frames(16, 13, seed=8)
    outputs, counters = run_system(
        program, [a, b], stall_probability=0.25, seed=5,
        testcase="reset_in_the_middle_of_runs_then_rerun_clean", module=__name__,
        options={"aborts": 3, "abort_cycles": 600})
    assert np.array_equal(outputs[0][0], program.predict(a))
    assert np.array_equal(outputs[1][0], program.predict(b))
    # The aborted runs did take steps in, so the resets really cut work short.
    assert counters["steps_in"] > 16


def test_a_card_that_never_answers_times_out_and_reset_recovers(program):
    a = frames(6, 13, seed=9)
    outputs, _ = run_system(program, [a, None], stall_probability=0.25, seed=6,
                            testcase="unanswered_run_times_out_and_reset_recovers", module=__name__,
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
    assert report.frames == 300 and report.sequences >= 2 * 4
    assert report.mismatched_frames == 0 and report.passed
    assert report.steps_out == 150 and report.simulated_cycles > 150 * 100


def test_soak_with_delta_layers_checks_every_frame():
    """`ese soak --delta`'s engine: delta layers over slowly changing sequences of random
    lengths, several per channel, each start renewing its channel's delta state."""
    from ese.sw.tools.soak import SoakSettings, run_soak
    report = run_soak(SoakSettings(frames=150, longest_sequence=40, stall_probability=0.25,
                                   config=hardware(4, channels=2), delta=(0.05, 0.1)))
    assert report.frames == 300 and report.sequences >= 2 * 4 and report.delta == [0.05, 0.1]
    assert report.mismatched_frames == 0 and report.passed


def test_utterances_in_pieces_and_initial_states_through_the_driver(program):
    """Two channels, each its own utterance, given to the card in pieces: the card carries
    their state from piece to piece, so the outputs equal one run on the joined frames; then
    a run from an initial state on one channel (stored behind the image and loaded with it)
    and from zero on the other, whose final state is read back from the card."""
    a, b = frames(12, 13, seed=21), frames(12, 13, seed=22)
    rng = np.random.default_rng(5)
    state = (rng.uniform(-0.9, 0.9, size=(2, 9)), rng.uniform(-3, 3, size=(2, 22)))
    _check_pieces_and_states(program, a, b, state)


def _check_pieces_and_states(program, a, b, state):
    """Run the utterances_in_pieces_and_initial_states scenario on the LSTMP ``program``
    (two channels, ``a`` and ``b``; ``state`` for ``a``'s second run) and check every output
    and the final states read back against the golden model."""
    outputs, _ = run_system(program, [a, b], testcase="utterances_in_pieces_and_initial_states",
                            module=__name__, stall_probability=0.25, seed=9,
                            options={"cuts": [3, 4, 9],
                                     "state": [part.tolist() for part in state]})
    assert np.array_equal(outputs[0][0], program.predict(a))
    assert np.array_equal(outputs[1][0], program.predict(b))
    expected_a, (h_a, c_a) = program.predict(a, state=state, return_state=True)
    expected_b, (h_b, c_b) = program.predict(b, return_state=True)
    assert np.array_equal(outputs[0][1], expected_a)
    assert np.array_equal(outputs[1][1], expected_b)
    # The state the card ended in, read back from it (a state dump).
    assert np.array_equal(outputs[0][2], h_a) and np.array_equal(outputs[0][3], c_a)
    assert np.array_equal(outputs[1][2], h_b) and np.array_equal(outputs[1][3], c_b)


def test_gru_channels_utterances_and_state_through_the_driver():
    """A two-layer GRU through the same system: two channels' utterances in pieces equal one
    run, a run from h0 on one channel, and the h each channel ends in read back."""
    from torch import nn
    program = ese.compile(nn.GRU(13, 22, num_layers=2), hardware(4, channels=2), density=0.3)
    a, b = frames(12, 13, seed=31), frames(12, 13, seed=32)
    h0 = np.random.default_rng(6).uniform(-0.9, 0.9, size=(2, 22))
    outputs, _ = run_system(program, [a, b], testcase="utterances_in_pieces_and_initial_states",
                            module=__name__, stall_probability=0.25, seed=10,
                            options={"cuts": [2, 7, 8], "state": [h0.tolist()]})
    assert np.array_equal(outputs[0][0], program.predict(a))
    assert np.array_equal(outputs[1][0], program.predict(b))
    expected_a, h_a = program.predict(a, state=h0, return_state=True)
    expected_b, h_b = program.predict(b, return_state=True)
    assert np.array_equal(outputs[0][1], expected_a) and np.array_equal(outputs[0][2], h_a)
    assert np.array_equal(outputs[1][1], expected_b) and np.array_equal(outputs[1][2], h_b)


def test_gru_weights_streamed_from_memory():
    """The streamed machine of the test above runs a GRU: its entries many times the rings,
    streamed from the DDR model every step, under back-pressure on every bus."""
    from torch import nn
    config = hardware(4, channels=2, stream_window=8, memory_data_bits=256)
    program = ese.compile(nn.GRU(13, 22, num_layers=2), config, density=0.5)
    assert min(len(program.image.entry_words(pe)) for pe in range(4)) > 8 * config.stream_window
    a, b = frames(5, 13, seed=14), frames(4, 13, seed=15)
    outputs, counters = run_system(program, [a, b], stall_probability=0.25, seed=12)
    assert np.array_equal(outputs[0][0], program.predict(a))
    assert np.array_equal(outputs[1][0], program.predict(b))
    assert counters["steps_in"] == counters["steps_out"] == 5


def test_delta_layers_streamed_in_pieces_and_from_loaded_states():
    """Delta layers (docs/arithmetic.md, "Delta layers") on the streamed machine: their
    entries streamed from the DDR model every step, two channels given their utterances in
    pieces (the card carries the last transmitted values and the carried sums from piece to
    piece, so the outputs equal one run on the joined frames), then a run from a loaded
    state (which renews every channel's delta state), whose final state is read back."""
    import torch
    config = hardware(4, channels=2, stream_window=8, memory_data_bits=256, delta=1)
    torch.manual_seed(3)
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2), config,
                          density=0.5, delta=(0.05, 0.1))
    assert min(len(program.image.entry_words(pe)) for pe in range(4)) > 8 * config.stream_window
    rng = np.random.default_rng(6)
    a, b = (np.cumsum(rng.normal(scale=0.25, size=(12, 13)), axis=0) for _ in range(2))
    trace = []
    program.predict_codes(program.encode_inputs(a)[0], trace=trace)
    assert sum(int(np.count_nonzero(r["recurrent"])) for r in trace) < 0.7 * sum(
        r["recurrent"].size for r in trace), "the thresholds skip too little to test them"
    state = (rng.uniform(-0.9, 0.9, size=(2, 9)), rng.uniform(-3, 3, size=(2, 22)))
    _check_pieces_and_states(program, a, b, state)


def test_a_bidirectional_lstm_runs_in_passes_through_the_driver(program):
    """A bidirectional LSTMP on the same build as the others: the driver loads the image,
    runs the forward half's pass, loads the backward half's descriptors alone and runs its
    frames in reverse, and puts the two halves together as PyTorch does; a second run loads
    the forward pass's descriptors again first. Utterances in pieces are refused by name."""
    import torch
    torch.manual_seed(5)
    module = torch.nn.LSTM(13, 22, proj_size=9, bidirectional=True).eval()
    bidirectional = ese.compile(module, program.config, density=0.3)
    assert [run.backward for run in bidirectional.model.passes()] == [False, True]
    a = frames(7, 13, seed=21)
    outputs, counters = run_system(bidirectional, [a], testcase="bidirectional_passes",
                                   module=__name__,
                                   stall_probability=0.25, seed=13)
    first, again = outputs[0]
    assert first.shape == (7, 18)
    assert np.array_equal(first, bidirectional.predict(a))
    assert np.array_equal(again, bidirectional.predict(a[:4]))
    assert counters["steps_out"] == 2 * (7 + 4)


# cocotb scenarios (run in the simulator by the tests above).

@cocotb.test()
async def bidirectional_passes(dut):
    """See test_a_bidirectional_lstm_runs_in_passes_through_the_driver."""
    settings, bench, frames, limit = await loaded(dut)
    driver = bench.driver
    a = frames[0][0]
    first = await with_timeout(driver.run(a), *limit)
    again = await with_timeout(driver.run(a[:4]), *limit)
    try:
        driver.utterance()
    except ese.InputError as error:
        assert "bidirectional" in str(error), str(error)
    else:
        raise AssertionError("an utterance in pieces was accepted for a bidirectional model")
    await save(bench, [[first, again]])

@cocotb.test()
async def utterances_in_pieces_and_initial_states(dut):
    """See test_utterances_in_pieces_and_initial_states_through_the_driver."""
    settings, bench, frames, limit = await loaded(dut)
    driver = bench.driver
    a, b = frames[0][0], frames[1][0]
    pieces, start = [], 0
    async with driver.utterance() as utterance:
        for cut in settings["cuts"] + [len(a)]:
            pieces.append(await with_timeout(utterance.run([a[start:cut], b[start:cut]]),
                                             *limit))
            start = cut
        try:
            await utterance.run([a[:2], b[:3]])
        except ese.InputError as error:
            assert "lock step" in str(error), str(error)
        else:
            raise AssertionError("pieces of different lengths were accepted")
    joined = [np.concatenate([piece[channel][0] for piece in pieces]) for channel in (0, 1)]
    state = tuple(np.array(part) for part in settings["state"])
    state = state[0] if len(state) == 1 else state          # a GRU's: h0 alone
    from_state, final = await with_timeout(
        driver.run([a, b], state=[state, None], return_state=True), *limit)
    final = [ends if isinstance(ends, tuple) else (ends,) for ends in final]
    await save(bench, [[joined[0], from_state[0][0], *final[0]],
                       [joined[1], from_state[1][0], *final[1]]])


@cocotb.test()
async def reset_in_the_middle_of_runs_then_rerun_clean(dut):
    """Runs are cut short by a reset at random points (while steps and results are in
    flight, under back-pressure), then the frames run again: the outputs must equal the
    golden model's, with nothing of the aborted runs left in the card or the transport."""
    settings, bench, frames, limit = await loaded(dut)
    driver = bench.driver
    rng = random.Random(settings["seed"])
    aborted = 0
    for _ in range(settings["aborts"]):
        run = cocotb.start_soon(driver.run(frames))
        # Somewhere inside the run: after the first step has gone in, before the last result.
        while await bench.transport.read_register(Register.STEPS_IN) < 1 + aborted:
            await ClockCycles(dut.clk, 10)
        await ClockCycles(dut.clk, rng.randrange(1, settings["abort_cycles"]))
        if run.done():
            raise AssertionError("the run finished before it could be cut short")
        run.cancel()
        await with_timeout(driver.reset(), *limit)
        aborted = await bench.transport.read_register(Register.STEPS_IN)
    outputs = await with_timeout(driver.run(frames), *limit)
    await save(bench, outputs)


@cocotb.test()
async def unanswered_run_times_out_and_reset_recovers(dut):
    """A card that never delivers its results (the results stream held off) makes the run
    time out with a clear error, refuses to run again until reset, and after a reset runs
    the frames exactly."""
    settings, bench, frames, limit = await loaded(dut)
    driver = bench.driver
    results = bench.models.results
    results.set_pause_generator(itertools.repeat(True))
    driver.timeout_seconds = settings["driver_timeout_seconds"]
    for expected in ("produced no result for frame step 1", "call reset() before running"):
        try:
            await with_timeout(driver.run(frames), *limit)
        except DeviceError as error:
            assert expected in str(error), str(error)
        else:
            raise AssertionError("a run without results did not time out")
    assert await bench.transport.read_register(Register.STEPS_OUT) == 0, \
        "no result should have left the card while the results were held off"
    # The fault clears; the driver resets the card and runs again.
    results.set_pause_generator(stall_pattern(settings["stall_probability"],
                                              random.Random(settings["seed"])))
    await with_timeout(driver.reset(), *limit)
    outputs = await with_timeout(driver.run(frames), *limit)
    await save(bench, outputs)


@cocotb.test()
async def image_for_other_hardware_is_refused_before_any_write(dut):
    """The driver reads the card's parameters and refuses a mismatched image untouched."""
    job, settings = open_job()
    bench = bench_for(dut, settings)
    await bench.reset()
    try:
        await bench.driver.load(settings["other_image"])
    except ImageError as error:
        assert "built for other hardware" in str(error), str(error)
    else:
        raise AssertionError("an image built for other hardware was accepted")
    assert bench.transport.writes == [], f"the driver wrote {bench.transport.writes}"
    # An image that would run past the card's memory is refused before any write, too.
    top = Accelerator(bench.transport, image_address=bench.models.memory_bytes - 4096,
                      memory_bytes=bench.models.memory_bytes)
    try:
        await top.load(settings["image"])
    except CapacityError as error:
        assert "past the card's" in str(error), str(error)
    else:
        raise AssertionError("an image past the end of the memory was accepted")
    assert bench.transport.writes == [], f"the driver wrote {bench.transport.writes}"
    assert await bench.transport.read_register(Register.IMAGE_STORED) == 0


@cocotb.test()
async def error_flags_surface_as_named_exceptions(dut):
    """A frame step of the wrong length sets frame_error, a malformed load record
    load_error, a command while busy command_error; the driver raises each by name, and a
    reset clears them."""
    job, settings = open_job()
    bench = bench_for(dut, settings)
    await bench.reset()
    await bench.driver.load(settings["image"])
    transport = bench.transport
    # A step shorter than the model's input (its tlast too early).
    inputs = bench.driver.program.inputs
    word = 2 * settings["channels"]
    await transport.send("frames", (1).to_bytes(word, "little") + bytes(word * (inputs - 2)))
    await ClockCycles(dut.clk, 500)
    await _expect_flag(bench, "frame_error")
    await bench.driver.reset()
    # Store and load a stream whose first record names no memory.
    words = np.array([0x7F, 0, 2, 1, 2], dtype="<u4")
    await transport.write_register(Register.IMAGE_WORDS, len(words))
    await transport.write_register(Register.CONTROL, Control.STORE_IMAGE)
    await transport.send("weights", words.tobytes())
    await ClockCycles(dut.clk, 500)
    await transport.write_register(Register.CONTROL, Control.LOAD_IMAGE)
    await ClockCycles(dut.clk, 500)
    await _expect_flag(bench, "load_error")
    await bench.driver.reset()
    await bench.driver.check_errors()       # cleared
    # A second STORE_IMAGE while the first is still storing is ignored and flagged.
    await transport.write_register(Register.IMAGE_WORDS, 64)
    await transport.write_register(Register.CONTROL, Control.STORE_IMAGE)
    await transport.write_register(Register.CONTROL, Control.STORE_IMAGE)
    await _expect_flag(bench, "command_error")


async def _expect_flag(bench, flag):
    """check_errors must raise DeviceError naming exactly ``flag``."""
    try:
        await bench.driver.check_errors()
    except DeviceError as error:
        assert error.flags == (flag,), error.flags
        assert flag in str(error)
    else:
        raise AssertionError(f"{flag} was not raised")
