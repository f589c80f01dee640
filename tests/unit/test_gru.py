"""GRU layers: ``torch.nn.GRU`` and ``torch.nn.GRUCell`` through the converters, load-balanced
pruning, quantization, the per-PE encoding and the golden model.

The reference is PyTorch's own GRU (its definition: gates r, z, n in the weight tensors,
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h) with the same pruned
weights, within the project's float tolerance (docs/arithmetic.md).
"""

import numpy as np
import pytest
import torch
from torch import nn

import ese
from ese.sw.compiler.converters import GRU_INPUT_SLOTS, GRU_RECURRENT_SLOTS, describe
from ese.sw.compiler.pruning import prune_module
from ese.sw.contract.arithmetic import gru_update, sigmoid_table, tanh_table
from ese.sw.contract.memory_map import GRU_SLOTS
from ese.sw.contract.placement import Placement
from ese.sw.runtime.encoding import decode_image

from helpers import FLOAT_TOLERANCE, frames, pruned_like

MODULES = {
    "gru": lambda: nn.GRU(13, 22),
    "gru-2-layers-no-bias": lambda: nn.GRU(13, 22, num_layers=2, bias=False),
    "gru-batch-first": lambda: nn.GRU(7, 30, batch_first=True),
    "gru-3-layers": lambda: nn.GRU(5, 9, num_layers=3),
    "grucell": lambda: nn.GRUCell(11, 19),
}


def test_gru_description_places_pytorchs_blocks_in_the_slots():
    module = nn.GRU(5, 6, num_layers=2)
    layers = describe(module).layers
    assert [layer.kind for layer in layers] == ["gru", "gru"] and layers[1].inputs == 6
    hidden = 6
    w_ih, w_hh = module.weight_ih_l0.detach().numpy(), module.weight_hh_l0.detach().numpy()
    b_ih, b_hh = module.bias_ih_l0.detach().numpy(), module.bias_hh_l0.detach().numpy()
    block = lambda a, k: a[k * hidden:(k + 1) * hidden]      # noqa: E731
    slot = {name: index for index, name in enumerate(GRU_SLOTS)}
    layer = layers[0]
    np.testing.assert_allclose(block(layer.input_weights, slot["r"]), block(w_ih, 0), rtol=1e-6)
    np.testing.assert_allclose(block(layer.input_weights, slot["z"]), block(w_ih, 1), rtol=1e-6)
    np.testing.assert_allclose(block(layer.input_weights, slot["n_x"]), block(w_ih, 2),
                               rtol=1e-6)
    assert not block(layer.input_weights, slot["n_h"]).any()
    np.testing.assert_allclose(block(layer.recurrent_weights, slot["n_h"]), block(w_hh, 2),
                               rtol=1e-6)
    assert not block(layer.recurrent_weights, slot["n_x"]).any()
    np.testing.assert_allclose(block(layer.bias, slot["r"]), block(b_ih, 0) + block(b_hh, 0),
                               rtol=1e-6)
    np.testing.assert_allclose(block(layer.bias, slot["n_x"]), block(b_ih, 2), rtol=1e-6)
    np.testing.assert_allclose(block(layer.bias, slot["n_h"]), block(b_hh, 2), rtol=1e-6)
    assert layer.peephole is None and layer.projection is None


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("density, pes", [(None, 4), (0.3, 4), (0.5, 8), (0.2, 2), (0.6, 1)])
def test_predict_is_close_to_the_float_gru(name, density, pes):
    torch.manual_seed(len(name))
    program = ese.compile(MODULES[name]().eval(), ese.Config(pes=pes), density=density)
    x = frames(40, program.inputs, seed=pes)
    reference = program.float_reference(x)
    assert np.abs(program.predict(x) - reference).max() < FLOAT_TOLERANCE
    if density is not None:
        assert abs(program.report.density - density) < 0.02


def test_the_density_counts_pytorchs_weights_not_the_empty_slots():
    program = ese.compile(nn.GRU(10, 16), ese.Config(pes=4))
    assert program.report.weights == 3 * 16 * (10 + 16)
    assert program.report.density > 0.99


def test_gru_update_follows_the_float_equations():
    """The integer update against the float GRU on random sums, within the error its
    roundings allow (in activation LSBs): each table is within one LSB of its function, so r
    carries one LSB times |n_h| into the candidate, which n_h's and the candidate's own
    rounding add half an LSB each to; tanh passes that on scaled by 1 - n^2 and adds its
    own LSB; z carries one LSB times |h - n|, and h' is rounded once more."""
    config = ese.Config(pes=4)
    rng = np.random.default_rng(0)
    cells = 2000
    acc = config.product_frac_bits
    frac = config.activation_frac_bits
    sums = rng.normal(scale=2.0, size=(4, cells))
    previous = rng.uniform(-1, 1, size=cells)
    gates = np.rint(sums * 2 ** acc).astype(np.int64)
    h_codes = np.rint(previous * 2 ** frac).astype(np.int64)
    bias = np.zeros((4, cells), dtype=np.int64)
    new = gru_update(config, gates, bias, h_codes, sigmoid_table(config), tanh_table(config))
    real = dict(zip(GRU_SLOTS, gates / 2 ** acc))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))      # noqa: E731
    r, z = sigmoid(real["r"]), sigmoid(real["z"])
    n = np.tanh(real["n_x"] + r * real["n_h"])
    expected = (1 - z) * n + z * h_codes / 2 ** frac
    error = np.abs(new / 2 ** frac - expected) * 2 ** frac
    bound = 1 + 0.5 + np.abs(h_codes / 2 ** frac - n) + (np.abs(real["n_h"]) + 1) * (1 - n ** 2)
    assert np.all(error <= bound) and error.max() > 1      # and the test can tell
    # Update gate fully open: h is kept exactly; fully closed: h' is n.
    slot = GRU_SLOTS.index
    keep = np.zeros((4, 1), dtype=np.int64)
    keep[slot("z")] = 20 << acc                  # z = sigmoid(8) rounds to 1.0 in Q3.12
    assert gru_update(config, keep, bias[:, :1], np.array([1234]))[0] == 1234
    shut = np.zeros((4, 1), dtype=np.int64)
    shut[slot("z")] = -20 << acc                 # z = 0: h' = n = tanh(n_x + r * n_h)
    shut[slot("n_x")] = 1 << (acc - 1)           # n_x = 0.5, n_h = 0
    assert gru_update(config, shut, bias[:, :1], np.array([1234]))[0] == round(
        np.tanh(0.5) * 2 ** frac)


@pytest.mark.parametrize("cells, pes", [(13, 8), (16, 4), (5, 2), (3, 1), (40, 32), (64, 32)])
def test_gru_rows_go_to_the_pes_that_the_encoding_puts_them_in(cells, pes):
    """Pruning counts each of PyTorch's rows for the PE that holds it: the slot it maps to,
    rotated with its cell's local row."""
    for slots, name in ((GRU_INPUT_SLOTS, "W_ih"), (GRU_RECURRENT_SLOTS, "W_hh")):
        owner = Placement(pes).owners(3 * cells, cells, slots, rotated=True)
        for pe in range(pes):
            held = Placement(pes).gate_rows(cells, pe, rotated=True)
            # Stacked rows (4 slots) back to PyTorch's (3 blocks) where this matrix has them.
            expected = sorted(block * cells + row % cells for row in held
                              for block, slot in enumerate(slots) if row // cells == slot)
            assert np.flatnonzero(owner == pe).tolist() == expected, (name, pe)
    if pes >= 4:
        # A cell's four slots still share one local row in four neighbouring PEs.
        cell = cells - 1
        rows = [Placement(pes).gate_row(cell, slot, rotated=True) for slot in range(4)]
        assert sorted(row % pes for row in rows) == [(4 * cell) % pes + k for k in range(4)]


def test_rotation_balances_the_slots_unequal_work():
    """Without the rotation the PEs holding r and z would do I + H multiplies a row, those
    holding n_x only I and n_h only H: with it every PE gets the same share of each."""
    torch.manual_seed(0)
    module = nn.GRU(40, 128)
    program = ese.compile(module, ese.Config(pes=16), density=0.25)
    work = program.image.real_entries_per_pe
    assert work.max() == work.min()
    unrotated = []
    for pe in range(16):
        rows = Placement(16).gate_rows(128, pe, rotated=False)
        model = program.model.layers[0]
        unrotated.append(int(np.count_nonzero(model.gate_weights[rows])))
    assert max(unrotated) > 1.4 * min(unrotated)


def test_load_balanced_gru_pruning_gives_every_pe_the_same_work_per_matrix():
    module = nn.GRU(24, 40)
    prune_module(module, ese.sw.compiler.converters.converter_for(module).prunable(module),
                 0.25, Placement(8))
    for name, slots, columns in (("weight_ih_l0", GRU_INPUT_SLOTS, 24),
                                 ("weight_hh_l0", GRU_RECURRENT_SLOTS, 40)):
        owner = Placement(8).owners(120, 40, slots, rotated=True)
        weight = getattr(module, name).detach()
        counts = [int(torch.count_nonzero(weight[torch.as_tensor(owner == pe)]))
                  for pe in range(8)]
        rows = [int((owner == pe).sum()) for pe in range(8)]
        assert counts == [round(0.25 * n * columns) for n in rows]


def test_gru_images_round_trip_and_refuse_what_a_gru_cannot_hold(tmp_path):
    program = ese.compile(nn.GRU(9, 23, num_layers=2), ese.Config(pes=4), density=0.3)
    assert decode_image(program.image).equals(program.model)
    program.save(tmp_path / "gru.ese")
    loaded = ese.load(tmp_path / "gru.ese")
    x = frames(6, 9)
    assert np.array_equal(loaded.predict(x), program.predict(x))
    assert [layer["kind"] for layer in loaded.summary()["layers"]] == ["gru", "gru"]
    # A GRU's n_h slot takes no input weights.
    program.model.layers[0].input_weights[23 * GRU_SLOTS.index("n_h")] = 5
    image = ese.sw.runtime.encoding.encode_model(program.model, program.config)
    with pytest.raises(ese.ImageError, match="n_h slot"):
        decode_image(image)


@pytest.mark.parametrize("module, message", [
    (nn.GRU(4, 8, num_layers=2, dropout=0.5), "training mode with dropout=0.5.*eval"),
    (nn.GRUCell(0, 3), "input_size=0"),
])
def test_unsupported_gru_options_are_refused_with_what_to_do(module, message):
    with pytest.raises(ese.UnsupportedModelError, match=message):
        ese.compile(module, ese.Config(pes=4))


def test_hardware_without_the_gru_update_refuses_grus_and_runs_lstms(tmp_path):
    """Config(gru=0) builds the LSTM update alone: a GRU does not compile for it, a GRU image
    does not load on it, and an LSTM image compiled for the default hardware loads and runs
    unchanged."""
    lean = ese.Config(pes=4, gru=False)
    assert lean.gru == 0 and ese.Config(pes=4).gru == 1
    with pytest.raises(ese.ConfigError, match=r"Config.gru must be between 0 and 1"):
        ese.Config(pes=4, gru=2)
    with pytest.raises(ese.ConfigError, match=r"layer 0 is a GRU.*Config\(gru=1\)"):
        ese.compile(nn.GRU(4, 8), lean)
    lstm = ese.compile(nn.LSTM(4, 8), ese.Config(pes=4))
    gru = ese.compile(nn.GRU(4, 8), ese.Config(pes=4))
    lstm.save(tmp_path / "lstm.ese")
    gru.save(tmp_path / "gru.ese")
    hardware = lstm.config.replace(gru=0)
    x = frames(5, 4)
    assert np.array_equal(ese.load(tmp_path / "lstm.ese", config=hardware).predict(x),
                          lstm.predict(x))
    with pytest.raises(ese.ImageError, match="GRU layers, the hardware no GRU update"):
        ese.load(tmp_path / "gru.ese", config=gru.config.replace(gru=0))


def test_a_gru_needs_a_cell_state_word_that_holds_h():
    config = ese.Config(pes=4, cell_bits=12, cell_frac_bits=8)
    with pytest.raises(ese.ConfigError, match="cell_bits.*at least activation_bits"):
        ese.compile(nn.GRU(4, 8), config)


# State: nn.GRU's h0.

def _torch_gru(module, x, h0):
    tensor = lambda a: torch.tensor(a, dtype=torch.float32)     # noqa: E731
    with torch.no_grad():
        if isinstance(module, nn.GRUCell):
            h, outputs = tensor(h0)[None], []
            for frame in x:
                h = module(tensor(frame)[None], h)
                outputs.append(h[0].numpy())
            return np.array(outputs)
        output, _ = module(tensor(x)[:, None], tensor(h0)[:, None])
        return output[:, 0].numpy()


@pytest.mark.parametrize("name", ["gru-2-layers-no-bias", "grucell"])
def test_gru_state_in_pieces_and_from_h0_follows_pytorch(name):
    torch.manual_seed(0)
    module = MODULES[name]().eval()
    program = ese.compile(module, ese.Config(pes=4), density=0.5)
    x = frames(20, program.inputs, seed=3)
    whole, h = program.predict(x, return_state=True)
    assert np.array_equal(np.atleast_2d(h)[-1], whole[-1])     # the last layer's h is y
    first, state = program.predict(x[:7], return_state=True)
    assert np.array_equal(np.concatenate([first, program.predict(x[7:], state=state)]), whole)
    with program.utterance() as utterance:
        pieces = [utterance.run(x[:5]), utterance.run(x[5:])]
        assert np.array_equal(utterance.state, h)
    assert np.array_equal(np.concatenate(pieces), whole)
    h0 = np.random.default_rng(4).uniform(-0.9, 0.9, size=h.shape)
    expected = _torch_gru(pruned_like(module, program.config, 0.5), x, h0)
    assert np.abs(program.predict(x, state=h0) - expected).max() < FLOAT_TOLERANCE
    with pytest.raises(ese.InputError, match="h0 alone"):
        program.predict(x, state=(h0, h0))
