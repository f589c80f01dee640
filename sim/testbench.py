"""cocotb bench of the accelerator core: load a weight image, stream frames, collect outputs.

This module runs inside the simulator process (cocotb loads it). Its test :func:`run_job`
reads a job written by :mod:`ese.sim.runner` (the load stream, the input frames, bus-stall
settings), drives the design through cocotbext-axi bus models and writes the outputs and the
cycle of every frame's completion back for the runner to compare with the golden model; it
is what ``Program.simulate`` runs. Tests of other scenarios (tests/rtl/test_core.py) build
their own on :class:`AcceleratorBench` and :func:`open_job`.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from ..sw.contract.wire import channel_values, starts_mask, step_words
from .harness import ClockedBench, stall_pattern

__all__ = ["AcceleratorBench", "run_job", "open_job", "error_flags"]


class AcceleratorBench(ClockedBench):
    """Clock, reset and bus models around the ``ese_accelerator`` top level."""

    def __init__(self, dut, activation_bits, clock_mhz, stall_probability=0.0, seed=0):
        super().__init__(dut, clock_mhz)
        self.activation_bits = activation_bits
        self.weights = AxiStreamSource(AxiStreamBus.from_prefix(dut, "weights_"), dut.clk,
                                       dut.rst, byte_size=32)
        self.frames_in = AxiStreamSource(AxiStreamBus.from_prefix(dut, "frames_in_"), dut.clk,
                                         dut.rst, byte_size=len(dut.frames_in__tdata))
        self.frames_out = None      # attached after loading: a sink polls every clock cycle
        self.stall_probability = stall_probability
        self.rng = random.Random(seed)
        for logger in (self.weights.log, self.frames_in.log):
            logger.setLevel("WARNING")
        if stall_probability > 0:
            for bus in (self.weights, self.frames_in):
                bus.set_pause_generator(stall_pattern(stall_probability, self.rng))
        dut.frames_out__tready.value = 0
        dut.dump_state.value = 0

    def attach_output(self):
        """Start the output sink (with back-pressure when stalls are on)."""
        if self.frames_out is None:
            self.frames_out = AxiStreamSink(AxiStreamBus.from_prefix(self.dut, "frames_out_"),
                                            self.dut.clk, self.dut.rst,
                                            byte_size=len(self.dut.frames_out__tdata))
            self.frames_out.log.setLevel("WARNING")
            if self.stall_probability > 0:
                self.frames_out.set_pause_generator(
                    stall_pattern(self.stall_probability, self.rng))

    async def load(self, words, timeout_cycles=None):
        """Send the load stream and wait until the last word is taken."""
        await self.weights.send(AxiStreamFrame([int(w) for w in words]))
        limit = timeout_cycles or 10 * len(words) + 10_000
        await with_timeout(self.weights.wait(), *self.cycles(limit))

    async def dump_state(self):
        """Strobe the core's ``dump_state`` for a cycle."""
        await RisingEdge(self.dut.clk)
        self.dut.dump_state.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.dump_state.value = 0

    async def send_step(self, codes, starts):
        """Queue one frame step: ``codes`` (channels, inputs), ``starts`` (channels,)."""
        words = step_words(codes, self.activation_bits)
        user = [0] * len(words)
        user[0] = starts_mask(starts)
        await self.frames_in.send(AxiStreamFrame(words, tuser=user))

    async def receive_step(self, channels, timeout_cycles):
        """One step's outputs, (channels, outputs) lists of signed values."""
        frame = await with_timeout(self.frames_out.recv(), *self.cycles(timeout_cycles))
        values = [channel_values(word, channels, self.activation_bits) for word in frame.tdata]
        return [list(column) for column in zip(*values)]

    async def run_sequence(self, codes, timeout_cycles, paced=False, starts=None):
        """Run frame steps; returns (outputs, completion cycle of each step).

        ``codes`` is (steps, channels, inputs) and ``starts`` (steps, channels) marks where a
        channel begins a sequence (every channel at the first step by default). Steps are
        queued all at once (streaming) or, when ``paced``, each is sent only after the
        previous step's output has arrived; then the second list holds each step's latency,
        from sending its first word to receiving its last output. Outputs are (steps,
        channels, outputs) lists of signed values.
        """
        self.attach_output()
        codes = np.asarray(codes)
        steps, channels, _ = codes.shape
        if starts is None:
            starts = np.zeros((steps, channels), dtype=bool)
            starts[0] = True
        outputs, completed = [], []

        async def receive():
            outputs.append(await self.receive_step(channels, timeout_cycles))
            completed.append(self.cycle())

        if paced:
            latencies = []
            for index in range(steps):
                sent = self.cycle()
                await self.send_step(codes[index], starts[index])
                await receive()
                latencies.append(completed[-1] - sent)
            return outputs, latencies
        for index in range(steps):
            await self.send_step(codes[index], starts[index])
        for _ in range(steps):
            await receive()
        return outputs, completed


def open_job(dut):
    """The job named by $ESE_SIM_JOB, its settings, and a bench built from them."""
    job = np.load(os.environ["ESE_SIM_JOB"])
    settings = json.loads(str(job["settings"]))
    bench = AcceleratorBench(dut, settings["activation_bits"], settings["clock_mhz"],
                             settings["stall_probability"], settings["seed"])
    return job, settings, bench


def error_flags(dut):
    """The core's sticky error outputs, by name."""
    return {name: int(getattr(dut, name).value) for name in ("load_error", "frame_error")}


@cocotb.test()
async def run_job(dut):
    """Run the job named by $ESE_SIM_JOB and write $ESE_SIM_RESULT."""
    job, settings, bench = open_job(dut)
    await bench.reset()
    started = bench.cycle()
    await bench.load(job["load_words"])
    loaded = bench.cycle()
    # Let the last load record finish before frames start arriving.
    await ClockCycles(dut.clk, 2)
    sequence_start = bench.cycle()
    outputs, completed = await bench.run_sequence(job["inputs"], settings["timeout_cycles"],
                                                  paced=settings.get("paced", False),
                                                  starts=job["starts"])
    state = []
    if settings.get("dump_words"):
        # Ask for the state the run ended in: one packet, every layer's y, then its c.
        await bench.dump_state()
        frame = await with_timeout(bench.frames_out.recv(),
                                   *bench.cycles(settings["timeout_cycles"]))
        state = [channel_values(word, len(job["starts"][0]), bench.activation_bits)
                 for word in frame.tdata]
        assert len(state) == settings["dump_words"], \
            f"the state dump had {len(state)} words, not {settings['dump_words']}"
    flags = error_flags(dut)
    np.savez(os.environ["ESE_SIM_RESULT"],
             outputs=np.array(outputs, dtype=np.int64),
             completed=np.array(completed, dtype=np.int64),
             markers=np.array([started, loaded, sequence_start], dtype=np.int64),
             state=np.array(state, dtype=np.int64),
             flags=json.dumps(flags))
    assert not flags["load_error"], "the accelerator flagged a malformed load record"
    assert not flags["frame_error"], "the accelerator flagged a frame of the wrong length"


@cocotb.test()
async def run_passes(dut):
    """Run a bidirectional model's passes (the job's ``passes`` of them): the image, then each
    pass's frames, every pass after the first after a load of its own layers' descriptors
    alone (``load_words_<p>``): the weights stay where the image put them. Writes each
    pass's outputs (``outputs_<p>``) and every step's completion cycle."""
    job, settings, bench = open_job(dut)
    await bench.reset()
    started = bench.cycle()
    results, completed, loaded, sequence_start = {}, [], None, None
    for number in range(int(job["passes"])):
        await bench.load(job[f"load_words_{number}"])
        loaded = loaded if loaded is not None else bench.cycle()
        await ClockCycles(dut.clk, 2)
        sequence_start = sequence_start if sequence_start is not None else bench.cycle()
        outputs, done = await bench.run_sequence(job[f"inputs_{number}"],
                                                 settings["timeout_cycles"],
                                                 paced=settings.get("paced", False),
                                                 starts=job[f"starts_{number}"])
        results[f"outputs_{number}"] = np.array(outputs, dtype=np.int64)
        completed += list(done)
    flags = error_flags(dut)
    np.savez(os.environ["ESE_SIM_RESULT"], **results,
             completed=np.array(completed, dtype=np.int64),
             markers=np.array([started, loaded, sequence_start], dtype=np.int64),
             flags=json.dumps(flags))
    assert not flags["load_error"], "the accelerator flagged a malformed load record"
    assert not flags["frame_error"], "the accelerator flagged a frame of the wrong length"
