"""Initial and carried state: ``predict(x, state=(h0, c0), return_state=True)`` and
``Program.utterance()``, against float PyTorch given the same (h0, c0).

The first case is hls4ml's own PyTorch recurrent test (test/pytest/test_recurrent_pytorch.py:
``nn.LSTM(10, 20, batch_first=True)`` called as ``rnn(x, (h0, c0))`` on x of shape (1, 1, 10)),
with the tolerance of this project (0.01) instead of hls4ml's 0.1, and non-zero states too.
"""

import numpy as np
import pytest
import torch
from torch import nn

import ese

from helpers import FLOAT_TOLERANCE, frames, pruned_like


def _torch_with_state(module, x, h0, c0):
    tensor = lambda a: torch.tensor(a, dtype=torch.float32)     # noqa: E731
    with torch.no_grad():
        if isinstance(module, nn.LSTMCell):
            h, c, outputs = tensor(h0)[None], tensor(c0)[None], []
            for frame in x:
                h, c = module(tensor(frame)[None], (h, c))
                outputs.append(h[0].numpy())
            return np.array(outputs)
        batch_first = getattr(module, "batch_first", False)
        batched = tensor(x)[None] if batch_first else tensor(x)[:, None]
        output, _ = module(batched, (tensor(h0)[:, None], tensor(c0)[:, None]))
        return (output[0] if batch_first else output[:, 0]).numpy()


@pytest.mark.parametrize("frame_count", [1, 12])
@pytest.mark.parametrize("zero_state", [True, False])
def test_hls4ml_lstm_with_h0_and_c0(frame_count, zero_state):
    torch.manual_seed(0)
    module = nn.LSTM(10, 20, num_layers=1, batch_first=True, bias=True).eval()
    program = ese.compile(module, ese.Config(pes=4))
    x = frames(frame_count, 10, seed=1)
    rng = np.random.default_rng(2)
    h0 = np.zeros((1, 1, 20)) if zero_state else rng.uniform(-0.9, 0.9, size=(1, 1, 20))
    c0 = np.zeros((1, 1, 20)) if zero_state else rng.uniform(-3, 3, size=(1, 1, 20))
    expected = _torch_with_state(module, x, h0[:, 0], c0[:, 0])
    assert np.abs(program.predict(x, state=(h0, c0)) - expected).max() < FLOAT_TOLERANCE


MODULES = {
    "lstm-2-layers-proj": lambda: nn.LSTM(6, 10, num_layers=2, proj_size=4),
    "lstmcell": lambda: nn.LSTMCell(6, 8),
    "peephole-2-layers": lambda: ese.PeepholeLSTM(6, 9, num_layers=2, proj_size=5),
}


@pytest.mark.parametrize("name", MODULES)
def test_state_in_pieces_equals_one_call_and_follows_pytorch(name):
    torch.manual_seed(0)
    module = MODULES[name]().eval()
    program = ese.compile(module, ese.Config(pes=4), density=0.5)
    x = frames(20, 6, seed=3)
    whole, (h, c) = program.predict(x, return_state=True)
    first, state = program.predict(x[:7], return_state=True)
    assert np.array_equal(np.concatenate([first, program.predict(x[7:], state=state)]), whole)
    with program.utterance() as utterance:
        pieces = [utterance.run(x[:5]), utterance.run(x[5:6]), utterance.run(x[6:])]
        final = utterance.state
    assert np.array_equal(np.concatenate(pieces), whole)
    assert np.array_equal(final[0], h) and np.array_equal(final[1], c)
    # From a non-zero state, against PyTorch with the same pruned weights (PeepholeLSTM
    # takes (y0, c0) as nn.LSTM does).
    rng = np.random.default_rng(4)
    h0 = rng.uniform(-0.9, 0.9, size=h.shape)
    c0 = rng.uniform(-2, 2, size=c.shape)
    pruned = pruned_like(module, program.config, 0.5)
    if name.startswith("peephole"):
        with torch.no_grad():
            expected = pruned(torch.tensor(x, dtype=torch.float32),
                              (torch.tensor(h0, dtype=torch.float32),
                               torch.tensor(c0, dtype=torch.float32)))[0].numpy()
    else:
        expected = _torch_with_state(pruned, x, h0, c0)
    assert np.abs(program.predict(x, state=(h0, c0)) - expected).max() < FLOAT_TOLERANCE


@pytest.mark.parametrize("state, message", [
    ("not a pair", "a pair"),
    ((np.zeros((2, 5)), np.zeros((2, 10))), r"h0 has shape \(2, 5\); this model's is \(2, 4\)"),
    ((np.zeros((2, 4)), np.zeros((3, 10))), "c0 has shape"),
    ((np.full((2, 4), np.nan), np.zeros((2, 10))), "NaN"),
])
def test_bad_states_are_refused(state, message):
    program = ese.compile(nn.LSTM(6, 10, num_layers=2, proj_size=4), ese.Config(pes=4))
    with pytest.raises(ese.InputError, match=message):
        program.predict(frames(3, 6), state=state)
