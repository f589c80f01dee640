"""cocotb testbench of the accelerator: load a weight image, stream frames, collect outputs.

This module runs inside the simulator process (cocotb loads it). It reads a job written by
:mod:`ese.sim.runner` (the load stream, the input frames, bus-stall settings), drives the
design through cocotbext-axi bus models and writes the outputs and the cycle of every frame's
completion back for the runner to compare with the golden model.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

__all__ = ["AcceleratorBench", "run_job", "stall_pattern", "CLOCK_NS"]

CLOCK_NS = 5   # 200 MHz


def stall_pattern(probability, rng):
    """A pause generator: True (stall this cycle) with the given probability."""
    while True:
        yield rng.random() < probability


class AcceleratorBench:
    """Clock, reset and bus models around the ``ese_accelerator`` top level."""

    def __init__(self, dut, activation_bits, stall_probability=0.0, seed=0):
        self.dut = dut
        self.activation_bits = activation_bits
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
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

    def cycle(self):
        return int(get_sim_time(unit="ns")) // CLOCK_NS

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def load(self, words, timeout_cycles=None):
        """Send the load stream and wait until the last word is taken."""
        await self.weights.send(AxiStreamFrame([int(w) for w in words]))
        limit = timeout_cycles or 10 * len(words) + 10_000
        await with_timeout(self.weights.wait(), limit * CLOCK_NS, "ns")

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
        bits = self.activation_bits
        mask = (1 << bits) - 1
        sign = 1 << (bits - 1)
        outputs, completed = [], []

        async def send(index):
            words = [sum((int(v) & mask) << (bits * c) for c, v in enumerate(column))
                     for column in codes[index].T]
            user = [0] * len(words)
            user[0] = sum(1 << c for c in range(channels) if starts[index][c])
            await self.frames_in.send(AxiStreamFrame(words, tuser=user))

        async def receive():
            frame = await with_timeout(self.frames_out.recv(), timeout_cycles * CLOCK_NS, "ns")
            step = [[(((word >> (bits * c)) & mask) ^ sign) - sign for word in frame.tdata]
                    for c in range(channels)]
            outputs.append(step)
            completed.append(self.cycle())

        if paced:
            latencies = []
            for index in range(steps):
                sent = self.cycle()
                await send(index)
                await receive()
                latencies.append(completed[-1] - sent)
            return outputs, latencies
        for index in range(steps):
            await send(index)
        for _ in range(steps):
            await receive()
        return outputs, completed


def _open_job(dut):
    job = np.load(os.environ["ESE_SIM_JOB"])
    settings = json.loads(str(job["settings"]))
    bench = AcceleratorBench(dut, settings["activation_bits"], settings["stall_probability"],
                             settings["seed"])
    return job, settings, bench


def _flags(dut):
    return {name: int(getattr(dut, name).value) for name in ("load_error", "frame_error")}


@cocotb.test()
async def run_job(dut):
    """Run the job named by $ESE_SIM_JOB and write $ESE_SIM_RESULT."""
    job, settings, bench = _open_job(dut)
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
    flags = _flags(dut)
    np.savez(os.environ["ESE_SIM_RESULT"],
             outputs=np.array(outputs, dtype=np.int64),
             completed=np.array(completed, dtype=np.int64),
             markers=np.array([started, loaded, sequence_start], dtype=np.int64),
             flags=json.dumps(flags))
    assert not flags["load_error"], "the accelerator flagged a malformed load record"
    assert not flags["frame_error"], "the accelerator flagged a frame of the wrong length"


@cocotb.test()
async def malformed_load_record_is_flagged_and_skipped(dut):
    """A record for an unknown memory sets load_error; the records after it still load."""
    job, settings, bench = _open_job(dut)
    await bench.reset()
    bad_record = [0x7F, 0, 3, 1, 2, 3]            # target 0x7f does not exist
    await bench.load(list(bad_record) + [int(w) for w in job["load_words"]])
    await ClockCycles(dut.clk, 2)
    assert _flags(dut)["load_error"] == 1, "the malformed record was not flagged"
    outputs, _ = await bench.run_sequence(job["inputs"], settings["timeout_cycles"])
    assert np.array_equal(np.array(outputs), job["expected"]), \
        "the records after the malformed one did not load correctly"


@cocotb.test()
async def frame_of_wrong_length_is_flagged(dut):
    """A frame whose tlast comes early sets frame_error."""
    job, settings, bench = _open_job(dut)
    await bench.reset()
    await bench.load(job["load_words"])
    await ClockCycles(dut.clk, 2)
    assert _flags(dut)["frame_error"] == 0
    bits = bench.activation_bits
    step = job["inputs"][0]                   # (channels, inputs)
    short = [sum((int(v) & ((1 << bits) - 1)) << (bits * c) for c, v in enumerate(column))
             for column in step.T[:-1]]
    await bench.frames_in.send(AxiStreamFrame(short, tuser=[1] + [0] * (len(short) - 1)))
    await bench.frames_in.wait()
    await ClockCycles(dut.clk, 4)
    assert _flags(dut)["frame_error"] == 1, "a short frame was not flagged"


@cocotb.test()
async def new_sequence_starts_from_zero_state(dut):
    """A sequence run twice, with tuser on the first word, gives the same outputs twice."""
    job, settings, bench = _open_job(dut)
    await bench.reset()
    await bench.load(job["load_words"])
    await ClockCycles(dut.clk, 2)
    first, _ = await bench.run_sequence(job["inputs"], settings["timeout_cycles"])
    second, _ = await bench.run_sequence(job["inputs"], settings["timeout_cycles"])
    assert np.array_equal(np.array(first), job["expected"])
    assert np.array_equal(np.array(second), job["expected"]), "state leaked between sequences"
