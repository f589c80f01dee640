"""Running a program's frames on the generated RTL: Verilator driven by cocotb 2.x.

:func:`simulate` builds (or reuses) the Verilator model for the program's hardware
parameters, writes a job (the program's load stream and the quantized frames), runs the
cocotb testbench of :mod:`ese.sim.testbench` through cocotb's runner, and reads back every
output word and the cycle on which each frame completed. It compares the words with the golden
model, so a :class:`SimulationResult` says whether the hardware was bit-exact.
"""

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sw.contract.errors import InputError, SimulationError
from ..sw.runtime.encoding import state_dump_words, state_load_words
from ..sw.runtime.quantized import PassSchedule
from ..sw.runtime.steps import plan_steps
from .build import DESIGNS, TOPLEVEL, build_simulator, build_tree_simulator

__all__ = ["SimulationResult", "simulate", "run_testbench", "run_system"]


@dataclass
class SimulationResult:
    """What one RTL simulation produced and measured.

    Attributes
    ----------
    outputs : float array (frames, outputs), or list per channel
        The hardware's outputs, decoded; identical to ``Program.predict`` when bit-exact. For
        frames given per channel, a list with, for each channel, a list of arrays (one per
        sequence).
    output_codes : int array (steps, channels, outputs)
        The raw output words of every channel at every step.
    expected_codes : int array (steps, channels, outputs)
        The golden model's words for the same steps.
    cycles_per_frame : list of int
        Clock cycles of each frame: from the first input word to the frame's last output word
        for the first frame, and between consecutive frames' last output words after it.
        In a paced run, each frame's latency: from sending its first input word (to an idle
        machine) to receiving its last output word.
    load_cycles : int
        Cycles to stream the weight image in.
    state : (h, c), or a list of them per channel, or None
        With ``return_state``: the state the hardware ended in, read back from it (a state
        dump), in ``Program.predict``'s shapes; per channel unless one sequence was given.
    """

    outputs: np.ndarray
    output_codes: np.ndarray
    expected_codes: np.ndarray
    cycles_per_frame: list
    load_cycles: int
    build_seconds: float
    build_cached: bool
    wall_seconds: float
    clock_mhz: float
    stall_probability: float = 0.0
    paced: bool = False
    details: dict = field(default_factory=dict)
    state: object = None

    @property
    def mismatches(self):
        """Output words that differ from the golden model."""
        return int(np.count_nonzero(self.output_codes != self.expected_codes))

    @property
    def bitexact(self):
        return self.mismatches == 0

    @property
    def total_cycles(self):
        return self.load_cycles + int(sum(self.cycles_per_frame))

    @property
    def simulated_cycles_per_second(self):
        return self.total_cycles / self.wall_seconds if self.wall_seconds else 0.0

    def latency_us(self, frame=-1):
        return self.cycles_per_frame[frame] / self.clock_mhz


@contextlib.contextmanager
def _outside_pytest():
    """cocotb's runner exits the process on failures when it sees pytest; we report instead."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def simulate(program, frames, *, stall_probability=0.0, seed=0, log=None, keep=None,
             timeout_cycles=None, paced=False, waves=None, state=None, return_state=False):
    """Run ``frames`` through the RTL of ``program``'s hardware.

    Parameters
    ----------
    program : Program
    frames : array (frames, inputs), or a list per channel
        Real-valued inputs, quantized exactly as ``Program.predict`` does: one sequence for
        channel 0, or for each channel a sequence, a list of sequences to run back to back
        (each from zero state), or None (see ``ese.sim.plan``).
    stall_probability : float
        Probability of an idle cycle on each input stream and of back-pressure on the output
        stream, in every cycle (0 for the pure hardware timing).
    seed : int
        Seed of the stall patterns.
    paced : bool
        Send each frame only after the previous frame's output arrived (to measure the latency
        of a frame on an idle machine) instead of streaming them.
    log : callable, optional
        Receives one-line progress messages.
    keep : path, optional
        Directory to keep the simulation's files in (a temporary directory otherwise).
    timeout_cycles : int, optional
        Fail if a frame takes longer than this (default: generous, from the model's size).
    waves : path, optional
        Write an FST trace of every signal of the run to this file (GTKWave or Surfer open
        it). The traced model is its own cached build; runs without waves keep their speed.
    state : (h0, c0), or a list of them (or None) per channel, optional
        Initial states, as ``Program.predict`` takes them: loaded into the hardware (VECTORS
        and CELL_STATES records after the weights) before the first frame, and the first
        sequence of each such channel runs on from it.
    return_state : bool
        After the frames, read the state back out of the hardware (``ese.hw.dump``) into
        ``SimulationResult.state``.
    """
    if not 0.0 <= stall_probability < 1.0:
        raise InputError(f"stall_probability must be in [0, 1), not {stall_probability}")
    if program.model.bidirectional:
        return _simulate_passes(program, frames, stall_probability=stall_probability, seed=seed,
                                log=log, keep=keep, timeout_cycles=timeout_cycles, paced=paced,
                                waves=waves, state=state, return_state=return_state)
    plan = plan_steps(program, frames, state=state)
    expected = plan.expected
    started = time.monotonic()
    extra = (state_load_words(program.image, plan.initial) if plan.has_initial_state
             else None)
    options = {"paced": bool(paced)}
    if return_state:
        program.check_state_readable()
        options["dump_words"] = state_dump_words(program.image)
    result, build = run_testbench(program, "run_job", plan.codes, expected,
                                  starts=plan.starts, stall_probability=stall_probability,
                                  extra_load=extra,
                                  seed=seed, log=log, keep=keep, timeout_cycles=timeout_cycles,
                                  options=options, waves=waves)
    wall = time.monotonic() - started - build.seconds
    output_codes = result["outputs"]
    completed = result["completed"]
    started_cycle, loaded_cycle, sequence_cycle = (int(v) for v in result["markers"])
    flags = json.loads(str(result["flags"]))
    if output_codes.shape != expected.shape:
        raise SimulationError(f"the hardware produced outputs of shape {output_codes.shape}, "
                              f"expected {expected.shape}")
    cycles = (completed.tolist() if paced
              else np.diff(np.concatenate([[sequence_cycle], completed])).tolist())
    decoded = program.decode_outputs(output_codes)
    outputs = (program.returned(decoded[:, 0]) if plan.single else
               [[program.returned(sequence) for sequence in channel]
                for channel in plan.channel_outputs(decoded)])
    final = None
    if return_state:
        states = program.states_from_dump(result["state"])
        final = states[0] if plan.single else states
    return SimulationResult(
        outputs=outputs, output_codes=output_codes,
        expected_codes=expected, cycles_per_frame=[int(c) for c in cycles],
        load_cycles=loaded_cycle - started_cycle, build_seconds=build.seconds,
        build_cached=build.cached, wall_seconds=wall, clock_mhz=program.config.clock_mhz,
        stall_probability=stall_probability, paced=paced,
        details={"flags": flags, "build_directory": str(build.directory),
                 "build_recorded_seconds": build.recorded_seconds},
        state=final)


def _simulate_passes(program, frames, *, stall_probability, seed, log, keep, timeout_cycles,
                     paced, waves, state, return_state):
    """A bidirectional model on the RTL: one simulation, its passes one after another as the
    host schedules them (:meth:`Program.run_passes`): the whole image, the first pass's
    frames, then for each later pass a load of its layers' descriptors alone and its frames,
    a backward pass's in reverse time order. Each pass is given the frames the golden model
    computes for it (which are the hardware's own when the passes before were bit-exact, as
    the comparison of every pass's outputs checks); ``output_codes`` holds every word each
    pass sent, pass after pass. ``cycles_per_frame`` has every step of every pass; a later
    pass's first step includes the load of its descriptors (``load_cycles`` is the image's)."""
    if isinstance(frames, (list, tuple)) or state is not None or return_state:
        raise InputError(
            "a bidirectional model runs one whole sequence at a time, from zero state: give "
            "simulate one (frames, inputs) array, without state= or return_state= (predict "
            "takes both)")
    started = time.monotonic()
    codes, _ = program.encode_inputs(frames)
    expected_outputs, runs = program.run_passes(codes)
    image = program.image
    passes = []
    for number, (run, inputs, _) in enumerate(runs):
        starts = np.zeros((len(inputs), 1), dtype=bool)
        starts[0] = True
        passes.append((image.load_words() if number == 0 else image.pass_load_words(run),
                       inputs[:, None, :], starts))
    expected = np.concatenate([outputs for _, _, outputs in runs], axis=1)[:, None, :]
    result, build = run_testbench(program, "run_passes", codes, expected,
                                  stall_probability=stall_probability, seed=seed, log=log,
                                  keep=keep, timeout_cycles=timeout_cycles,
                                  options={"paced": bool(paced)}, waves=waves, passes=passes)
    wall = time.monotonic() - started - build.seconds
    produced = [result[f"outputs_{number}"] for number in range(len(runs))]
    for (run, _, outputs), sent in zip(runs, produced):
        if sent.shape != (len(outputs), 1, outputs.shape[1]):
            raise SimulationError(f"pass {run} produced outputs of shape {sent.shape}, expected "
                                  f"{(len(outputs), 1, outputs.shape[1])}")
    schedule = PassSchedule(program.model, codes)
    for (run, _, _), sent in zip(runs, produced):
        schedule.record(run, sent[:, 0])
    started_cycle, loaded_cycle, sequence_cycle = (int(v) for v in result["markers"])
    completed = result["completed"]
    cycles = (completed.tolist() if paced
              else np.diff(np.concatenate([[sequence_cycle], completed])).tolist())
    return SimulationResult(
        outputs=program.returned(program.decode_outputs(schedule.outputs())),
        output_codes=np.concatenate(produced, axis=2), expected_codes=expected,
        cycles_per_frame=[int(c) for c in cycles], load_cycles=loaded_cycle - started_cycle,
        build_seconds=build.seconds, build_cached=build.cached, wall_seconds=wall,
        clock_mhz=program.config.clock_mhz, stall_probability=stall_probability, paced=paced,
        details={"flags": json.loads(str(result["flags"])), "passes": len(runs),
                 "build_directory": str(build.directory),
                 "build_recorded_seconds": build.recorded_seconds})


def run_testbench(program, testcase, codes, expected, *, starts=None, stall_probability=0.0,
                  seed=0, log=None, keep=None, timeout_cycles=None, options=None,
                  module="ese.sim.testbench", waves=None, extra_load=None, passes=None):
    """Run one cocotb test on ``program``'s hardware: ``testcase`` of ``module``
    (:mod:`ese.sim.testbench` by default; a test's own scenarios elsewhere).

    The test gets the program's load stream, the input ``codes`` (steps, channels, inputs),
    the channels that begin a sequence at each step (``starts``; by default every channel at
    the first step) and the ``expected`` output codes (steps, channels, outputs); codes and
    expectations for one channel may be given as (frames, inputs) and (frames, outputs).
    Returns ``(results, build)``: the arrays the test saved (empty if it saved none) and the
    :class:`~ese.sim.build.SimulatorBuild`. A failing test raises SimulationError. ``waves``:
    a path for an FST trace of the run; ``extra_load``: load words sent after the image's
    (an initial state). ``passes`` (for ``run_passes``): a list of ``(load_words, codes,
    starts)``, each pass's load stream (the image's, then its layers' descriptors), frames and
    sequence starts, in place of ``codes`` and the image's load stream.
    """
    if program.config.streamed:
        raise InputError(
            f"this hardware streams its weights from off-chip memory (Config.stream_window = "
            f"{program.config.stream_window}), which only the whole-system simulation models: "
            f"run it with `ese run IMAGE --transport sim` (ese.sim.runner.run_system)")
    codes, expected = np.asarray(codes), np.asarray(expected)
    if codes.ndim == 2:
        codes, expected = codes[:, None, :], expected[:, None, :]
    if starts is None:
        starts = np.zeros(codes.shape[:2], dtype=bool)
        starts[0] = True
    if waves is not None:
        waves = Path(waves).resolve()
        if not waves.parent.is_dir():
            raise InputError(f"cannot write the waveform {waves}: its folder does not exist")
    build = build_simulator(program.config, log=log, waves=waves is not None)
    if timeout_cycles is None:
        entries = int(program.image.entries_per_pe.max())
        timeout_cycles = 1_000_000 + 100 * (entries + program.config.vector_depth
                                             + program.config.cell_depth)
    settings = {
        "activation_bits": program.config.activation_bits,
        "clock_mhz": program.config.clock_mhz,
        "stall_probability": float(stall_probability),
        "seed": int(seed),
        "timeout_cycles": int(timeout_cycles),
        **(options or {}),
    }
    if log is not None:
        log(f"simulating {len(codes)} frames in Verilator ({testcase})")
    with contextlib.ExitStack() as stack:
        work = _work_directory(stack, keep, "ese-sim-")
        job = work / "job.npz"
        load_words = program.image.load_words()
        if extra_load is not None:
            load_words = np.concatenate([load_words, np.asarray(extra_load, dtype=np.uint32)])
        arrays = {}
        for number, (words, pass_codes, pass_starts) in enumerate(passes or []):
            arrays.update({f"load_words_{number}": np.asarray(words, dtype=np.uint32),
                           f"inputs_{number}": pass_codes,
                           f"starts_{number}": np.asarray(pass_starts, dtype=bool)})
        np.savez(job, load_words=load_words, inputs=codes, expected=expected,
                 starts=np.asarray(starts, dtype=bool), settings=json.dumps(settings),
                 passes=len(passes or []), **arrays)
        result_path = _run_testbench(module, TOPLEVEL, testcase, build, work, job, seed,
                                     "the testbench", waves=waves)
        if result_path is None:
            return {}, build
        with np.load(result_path) as saved:
            return {name: saved[name] for name in saved.files}, build


def _work_directory(stack, keep, prefix):
    """The simulation's working directory: ``keep`` if given, else a temporary one that
    ``stack`` removes."""
    if keep is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    work = Path(keep)
    work.mkdir(parents=True, exist_ok=True)
    return work


def _run_testbench(module, toplevel, testcase, build, work, job, seed, what, waves=None):
    """Run one cocotb test of ``module`` on ``build`` in ``work``, with the job file ``job``
    (and an FST trace written to ``waves``, on a traced build).

    Returns the path of the result file it wrote, or None; a simulation that did not run or
    a failed test raises SimulationError with the end of the log.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    result_path = work / "result.npz"
    try:
        with _outside_pytest():
            results = get_runner("verilator").test(
                test_module=module, testcase=testcase, hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog", build_dir=build.directory, test_dir=work,
                results_xml=str(work / "results.xml"), log_file=work / "simulation.log",
                extra_env={"ESE_SIM_JOB": str(job), "ESE_SIM_RESULT": str(result_path)},
                seed=seed, waves=waves is not None,
                test_args=["--trace-file", str(waves)] if waves is not None else [])
        tests, failed = get_results(results)
    except (RuntimeError, SystemExit) as error:
        raise SimulationError(f"the simulation did not run ({error}):\n"
                              f"{_tail(work / 'simulation.log')}") from None
    if failed or tests != 1:
        raise SimulationError(f"{what}'s {testcase} failed:\n"
                              f"{_tail(work / 'simulation.log')}")
    return result_path if result_path.exists() else None


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log was written)"


def run_system(program, frames, *, testcase="run_through_driver", stall_probability=0.0,
               seed=0, log=None, keep=None, other_image=None, timeout_cycles=None, loads=1,
               options=None, module=None, hardware=None, tree=None):
    """Run a cocotb test of the host driver against the system RTL: ``testcase`` of
    ``module`` (:mod:`ese.sim.system_testbench` by default).

    ``frames`` takes the forms of ``Program.simulate`` (a list per channel, or one sequence).
    The program is saved as a weight image that the driver loads from its file, as it would
    on the card. Returns ``(outputs, counters)``: per channel, per sequence, the decoded
    outputs; and the card's counters. ``loads``: how many times the driver loads the image
    before it runs the frames. ``options``: further settings for the test case. ``hardware``:
    the system's parameters, when the card differs from what the image was compiled for (the
    driver reads them from the card and lays the image out again, as on a real card).
    ``tree``: a board build tree (``ese build``); the card is then simulated from the tree's
    own RTL and parameters, every clock at its frequency, through :mod:`ese.sim.card_testbench`.
    """
    clocks = None
    if tree is not None:
        from ..sw.contract.config import Config
        described = json.loads((Path(tree) / "config.json").read_text())
        system = Config.from_dict(described["config"])
        clocks = described["clocks_mhz"]
        build = build_tree_simulator(tree, log=log)
        toplevel = described["top"]
        module = module or "ese.sim.card_testbench"
    else:
        system = hardware or program.config
        build = build_simulator(system, log=log, design="system")
        toplevel = DESIGNS["system"]
        module = module or "ese.sim.system_testbench"
    if isinstance(frames, np.ndarray):
        frames = [frames]
    settings = {"stall_probability": float(stall_probability), "seed": int(seed),
                "channels": program.config.channels, "clock_mhz": system.clock_mhz,
                "timeout_cycles": int(timeout_cycles or 5_000_000), "loads": int(loads),
                "clocks_mhz": clocks, **(options or {})}
    arrays = {}
    for channel, entry in enumerate(frames):
        sequences = [] if entry is None else (entry if isinstance(entry, (list, tuple))
                                              else [entry])
        for index, sequence in enumerate(sequences):
            arrays[f"frames_{channel}_{index}"] = np.asarray(sequence, dtype=np.float64)
    with contextlib.ExitStack() as stack:
        work = _work_directory(stack, keep, "ese-system-")
        settings["image"] = str(work / "model.ese")
        program.save(settings["image"])
        if other_image is not None:
            settings["other_image"] = str(work / "other.ese")
            other_image.save(settings["other_image"])
        job = work / "job.npz"
        np.savez(job, settings=json.dumps(settings), **arrays)
        if log is not None:
            log(f"running the host driver against the system RTL ({testcase})")
        result_path = _run_testbench(module, toplevel, testcase, build, work, job,
                                     seed, "the system testbench")
        if result_path is None:
            return None, None
        with np.load(result_path) as saved:
            counters = json.loads(str(saved["counters"]))
            outputs = []
            for channel in range(program.config.channels):
                names = sorted((n for n in saved.files if n.startswith(f"outputs_{channel}_")),
                               key=lambda n: int(n.rsplit("_", 1)[1]))
                outputs.append([saved[name] for name in names])
        return outputs, counters
