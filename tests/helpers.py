"""Shared helpers of the test suite.

Hardware configurations used by the RTL tests fix their memory capacities, so that many
models share one Verilator build per configuration (a build takes 10-30 s; a simulation
about one second).
"""

import copy

import numpy as np

import ese

#: Tolerance of the fixed-point golden model against float PyTorch with the same pruned
#: weights, for the test models (rows of at most ~300 inputs, activations of order 1). The
#: error is dominated by weight rounding (half an LSB, 2**-11, per weight, adding up like a
#: random walk over a row: ~5e-3 in a pre-activation for 281 dense inputs) plus one LSB
#: (2**-12) from each table lookup and requantization; the worst case measured over dense and
#: pruned LSTM, LSTMP, LSTMCell and PeepholeLSTM models of these sizes was 3.4e-3 (median
#: 6e-4). 0.01 is 40 activation LSBs, about three times the worst seen. See docs/arithmetic.md.
FLOAT_TOLERANCE = 0.01


def hardware(pes, **overrides):
    """A test hardware configuration with fixed capacities (shared Verilator builds)."""
    capacities = dict(max_layers=2, input_depth=32, pointer_depth=128, entry_depth=1024,
                      cells_per_pe=32, projections_per_pe=16, cell_depth=128, vector_depth=128)
    capacities.update(overrides)
    return ese.Config(pes=pes, **capacities)


def pruned_like(module, config, density, kind="balanced"):
    """A copy of a PyTorch module pruned as ``ese.compile(module, config, density=...)``
    prunes it (through the converter's matrices, as training does), for comparisons with
    PyTorch's own forward pass."""
    from ese.sw.compiler.converters import converter_for
    from ese.sw.compiler.pruning import prune_module
    from ese.sw.contract.placement import Placement
    module = copy.deepcopy(module)
    prune_module(module, converter_for(module).prunable(module), density, Placement.of(config),
                 kind)
    return module.eval()


def frames(count, inputs, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(scale=scale, size=(count, inputs))


# Models whose formats lie beyond ESE's (see tests/unit/test_formats.py).

def rescaled(module, input_gain, projection_gain=1.0):
    """The same float function with inputs ``input_gain`` times larger and projections
    ``projection_gain`` times larger."""
    import torch
    module = copy.deepcopy(module)
    with torch.no_grad():
        module.weight_ih_l0.div_(input_gain)
        for layer in range(module.num_layers):
            if module.proj_size:
                getattr(module, f"weight_hr_l{layer}").mul_(projection_gain)
                getattr(module, f"weight_hh_l{layer}").div_(projection_gain)
                if layer + 1 < module.num_layers:
                    getattr(module, f"weight_ih_l{layer + 1}").div_(projection_gain)
    return module


def sequences(count, frames, inputs, gain, seed):
    """``count`` sequences of normal frames times ``gain``, clipped to +-50."""
    values = np.random.default_rng(seed).normal(size=(count, frames, inputs)) * gain
    return np.clip(values, -50, 50)


# Amaranth simulator helpers (async testbenches).

async def stream_put(ctx, stream, payload, gaps=None):
    """Send one payload on an Amaranth stream; ``gaps`` (a random.Random) inserts idle cycles."""
    while gaps is not None and gaps.random() < 0.3:
        await ctx.tick()
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, stalls=None):
    """Receive one payload from an Amaranth stream; ``stalls`` applies random back-pressure."""
    while stalls is not None and stalls.random() < 0.3:
        ctx.set(stream.ready, 0)
        await ctx.tick()
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def run_simulation(dut, *testbenches, processes=(), deadline=None):
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in testbenches:
        sim.add_testbench(bench)
    for process in processes:
        sim.add_process(process)
    if deadline is None:
        sim.run()
    else:
        sim.run_until(deadline)


def ese_command(*args, timeout=900):
    """Run ``python -m ese`` as a user would; returns the completed process."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "ese", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
