"""Delta layers (docs/arithmetic.md, "Delta layers: temporal sparsity") in the golden model.

The golden model keeps, per layer, the last transmitted value of every column and the sums
carried from frame to frame. These tests hold it to the definition in two ways: with every
threshold 0 a delta layer must give exactly what the layer gives without deltas (the sums are
exact integers, so carrying them changes nothing), and with thresholds it must agree with
:func:`reference`, the definition written out again as plainly as possible (dense integer
matrices, one frame at a time, nothing shared with the golden model but the cell updates).
"""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import ese
from ese.sw.contract.arithmetic import (
    DeltaThresholds,
    cell_update,
    delta_columns,
    gru_update,
    project_output,
)
from ese.sw.runtime.quantized import delta_thresholds

from helpers import frames

DELTA = ese.Config(pes=4, delta=1)

MODULES = {
    "lstm": lambda: nn.LSTM(7, 12),
    "lstm-2-layers": lambda: nn.LSTM(7, 12, num_layers=2),
    "lstmp-peepholes-2-layers": lambda: ese.PeepholeLSTM(6, 9, proj_size=5, num_layers=2),
    "gru": lambda: nn.GRU(7, 12),
    "gru-2-layers": lambda: nn.GRU(5, 10, num_layers=2),
}


def compiled(name, delta=None, density=0.5, seed=0):
    torch.manual_seed(seed)
    return ese.compile(MODULES[name](), DELTA, density=density, delta=delta)


def smooth(count, inputs, seed=0):
    """Slowly changing frames (a random walk), as speech features are."""
    steps = np.random.default_rng(seed).normal(scale=0.15, size=(count, inputs))
    return np.cumsum(steps, axis=0)


def reference(program, codes):
    """The delta definition, frame by frame, in exact integers (Python ints via object
    arrays): v_hat, the carried gate sums and the carried projection sums per layer."""
    config = program.config
    sequence = [list(map(int, row)) for row in codes]
    for layer in program.model.layers:
        thresholds = layer.delta
        aligns = layer.formats.alignments()
        cells = layer.cells
        w_x = layer.input_weights.astype(object) * (1 << aligns["input_align"])
        w_r = layer.recurrent_weights.astype(object) * (1 << aligns["recurrent_align"])
        last_x = np.zeros(layer.inputs, dtype=object)
        last_h = np.zeros(layer.recurrent, dtype=object)
        gates = np.zeros(4 * cells, dtype=object)
        y = np.zeros(layer.recurrent, dtype=np.int64)
        c = np.zeros(cells, dtype=np.int64)
        if layer.proj:
            w_p = layer.projection.astype(object) * (1 << aligns["projection_align"])
            last_m = np.zeros(cells, dtype=object)
            projected = np.zeros(layer.proj, dtype=object)
        outputs = []
        for x in sequence:
            for values, last, threshold, weights in ((x, last_x, thresholds.x, w_x),
                                                     (list(map(int, y)), last_h, thresholds.h,
                                                      w_r)):
                for j, value in enumerate(values):
                    if abs(value - last[j]) > threshold:
                        gates += weights[:, j] * (value - last[j])
                        last[j] = value
            sums = gates.astype(np.int64).reshape(4, cells)
            bias = layer.bias.reshape(4, cells)
            if layer.is_gru:
                c = m = gru_update(config, sums, bias, c, formats=layer.formats)
            else:
                c, m = cell_update(config, sums, bias, layer.peephole, c, formats=layer.formats)
            if layer.proj:
                for j, value in enumerate(map(int, m)):
                    if abs(value - last_m[j]) > thresholds.m:
                        projected += w_p[:, j] * (value - last_m[j])
                        last_m[j] = value
                y = project_output(config, projected.astype(np.int64), layer.formats)
            else:
                y = m
            outputs.append(list(map(int, y)))
        sequence = outputs
    return np.array(sequence, dtype=np.int64)


@pytest.mark.parametrize("name", MODULES)
def test_zero_thresholds_give_the_outputs_without_deltas_bit_for_bit(name):
    plain = compiled(name)
    delta = plain.with_delta((0, 0))
    assert all(layer.delta == DeltaThresholds() for layer in delta.model.layers)
    x = frames(40, plain.inputs, seed=3, scale=2.0)
    counts_plain, counts_delta = {}, {}
    want = plain.predict_codes(plain.encode_inputs(x)[0], saturated=counts_plain)
    got = delta.predict_codes(delta.encode_inputs(x)[0], saturated=counts_delta)
    np.testing.assert_array_equal(got, want)
    assert counts_delta == counts_plain
    # From a state, too (the first frame transmits every non-zero column of h0).
    rng = np.random.default_rng(1)
    layers = plain.model.layers
    h0 = [rng.uniform(-0.9, 0.9, layer.outputs) for layer in layers]
    c0 = [rng.uniform(-2, 2, layer.cells) for layer in layers]
    state = h0 if plain.hidden_state_only else (h0, c0)
    np.testing.assert_array_equal(delta.predict(x, state=state), plain.predict(x, state=state))


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("seed", [0, 1])
def test_thresholds_follow_the_definition(name, seed):
    rng = np.random.default_rng(seed)
    plain = compiled(name, seed=seed)
    per_layer = [DeltaThresholds(*map(int, rng.integers(0, 600, size=3)))
                 for _ in plain.model.layers]
    program = plain.with_delta(per_layer)
    codes = program.encode_inputs(smooth(30, program.inputs, seed))[0]
    np.testing.assert_array_equal(program.predict_codes(codes), reference(program, codes))


@pytest.mark.parametrize("name", ["lstmp-peepholes-2-layers", "gru-2-layers"])
def test_an_utterance_in_pieces_equals_one_run(name):
    program = compiled(name, delta=(0.05, 0.1))
    x = smooth(50, program.inputs, seed=4)
    whole = program.predict(x)
    with program.utterance() as utterance:
        pieces = [utterance.run(x[start:start + 17]) for start in range(0, 50, 17)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_the_trace_holds_the_deltas_broadcast_and_thresholds_skip_columns():
    x = smooth(60, 7, seed=5)
    counts = {}
    for theta in (0.0, 0.02, 0.1, 0.4):
        program = compiled("lstm-2-layers", delta=(theta, theta))
        trace = []
        program.predict_codes(program.encode_inputs(x)[0], trace=trace)
        # Every transmitted delta exceeds the threshold; what is skipped is broadcast as 0.
        for index, (layer, recorded) in enumerate(zip(program.model.layers, trace)):
            for kind, limit in (("inputs", layer.delta.x), ("recurrent", layer.delta.h)):
                sent = recorded[kind][recorded[kind] != 0]
                assert np.all(np.abs(sent) > limit), (theta, index, kind)
        counts[theta] = sum(int(np.count_nonzero(r[k])) for r in trace
                            for k in ("inputs", "recurrent"))
    assert counts[0.0] > counts[0.02] > counts[0.1] > counts[0.4] > 0


def test_real_thresholds_become_lsbs_of_each_columns_format():
    program = compiled("lstmp-peepholes-2-layers")
    config = program.config
    chosen = delta_thresholds(program.model, config, (0.1, 0.25, 0.5))
    for layer, thresholds in zip(program.model.layers, chosen):
        x_frac = layer.formats.format(config, "input").frac
        h_frac = layer.formats.format(config, "output").frac
        assert thresholds == DeltaThresholds(int(np.floor(0.1 * 2 ** x_frac)),
                                             int(np.floor(0.25 * 2 ** h_frac)),
                                             int(0.5 * 2 ** config.activation_frac_bits))
    # theta_m defaults to theta_h; per layer, None leaves a layer without deltas.
    assert delta_thresholds(program.model, config, (0.1, 0.25))[0].m == chosen[0].m // 2
    mixed = delta_thresholds(program.model, config, [None, DeltaThresholds(1, 2, 3)])
    assert mixed == [None, DeltaThresholds(1, 2, 3)]
    # |change| > theta: a change of exactly theta is not transmitted.
    delta, sent = delta_columns(np.array([409, 410, -410, 0]), np.zeros(4, np.int64), 409)
    assert list(sent) == [False, True, True, False] and list(delta) == [0, 410, -410, 0]


@pytest.mark.parametrize("delta, message", [
    ((0.1,), "2 or 3 delta thresholds"),
    ((0.1, -1), "finite and >= 0"),
    ((0.1, float("nan")), "finite and >= 0"),
    ("ab", "real numbers"),
    ([(0.1, 0.1)], "gives 1 layers' thresholds; the model has 2"),
    ((0.1, 100.0), "outside 0 .. 65535 LSBs"),
])
def test_bad_thresholds_are_refused_by_name(delta, message):
    program = compiled("lstm-2-layers")
    with pytest.raises(ese.ConfigError, match=message):
        program.with_delta(delta)


def test_delta_layers_need_hardware_with_delta_units():
    torch.manual_seed(0)
    module = nn.LSTM(7, 12)
    with pytest.raises(ese.ConfigError, match=r"delta layer.*Config\(delta=1\)"):
        ese.compile(module, ese.Config(pes=4), delta=(0.1, 0.1))
    program = ese.compile(module, DELTA, delta=(0.1, 0.1))
    with pytest.raises(ese.ImageError, match="delta layers.*delta=0"):
        program.retarget(dataclasses.replace(program.config, delta=0))


def test_thresholds_survive_the_weight_image(tmp_path):
    program = compiled("lstmp-peepholes-2-layers",
                       delta=[(0.05, 0.1, 0.2), None])
    program.save(tmp_path / "delta.ese")
    loaded = ese.load(tmp_path / "delta.ese")
    assert [layer.delta for layer in loaded.model.layers] == [
        layer.delta for layer in program.model.layers]
    assert loaded.model.layers[1].delta is None and loaded.model.layers[0].delta.m > 0
    x = smooth(20, program.inputs, seed=6)
    np.testing.assert_array_equal(loaded.predict(x), program.predict(x))
    assert loaded.summary()["layers"][0]["delta"] == dataclasses.asdict(
        program.model.layers[0].delta)


def test_the_accumulator_bound_counts_deltas_twice():
    torch.manual_seed(0)
    module = nn.LSTM(16, 8)
    with torch.no_grad():
        module.weight_ih_l0.fill_(1.9)
        module.weight_hh_l0.fill_(0.0)
    # The narrowest accumulator that takes the layer without deltas.
    for bits in range(29, 50):
        try:
            ese.compile(module, ese.Config(pes=4, delta=1, accumulator_bits=bits),
                        formats="configured")
        except ese.CapacityError:
            continue
        plain_bits = bits
        break
    with pytest.raises(ese.CapacityError, match="worst-case sum"):
        ese.compile(module, ese.Config(pes=4, delta=1, accumulator_bits=plain_bits),
                    formats="configured", delta=(0.0, 0.0))
    ese.compile(module, ese.Config(pes=4, delta=1, accumulator_bits=plain_bits + 1),
                formats="configured", delta=(0.0, 0.0))


# The float forward pass of delta layers that delta-aware training runs.

FLOAT_MODULES = {
    "lstm-2-layers": lambda: nn.LSTM(7, 12, num_layers=2),
    "lstmp-2-layers-batch-first": lambda: nn.LSTM(7, 12, proj_size=5, num_layers=2,
                                                  batch_first=True),
    "gru-2-layers": lambda: nn.GRU(7, 12, num_layers=2),
    "gru-no-bias": lambda: nn.GRU(7, 12, bias=False),
}


@pytest.mark.parametrize("name", FLOAT_MODULES)
def test_float_delta_layers_with_zero_thresholds_are_the_module(name):
    from ese.sw.compiler.delta import delta_forward
    torch.manual_seed(0)
    module = FLOAT_MODULES[name]()
    x = torch.cumsum(torch.randn(3, 25, 7) * 0.2, 1)
    if not module.batch_first:
        x = x.transpose(0, 1)
    with torch.no_grad():
        want, _ = module(x)
        got = delta_forward(module, x, (0.0, 0.0))
    assert float((got - want).abs().max()) < 1e-5


@pytest.mark.parametrize("name", ["lstmp-2-layers-batch-first", "gru-2-layers"])
def test_float_delta_layers_are_close_to_the_golden_model(name):
    """With thresholds the float and fixed-point models may decide a column differently
    where its change lies within rounding of the threshold; on these smooth sequences they
    agree to a few LSBs' worth and transmit about the same columns."""
    from ese.sw.compiler.delta import delta_forward
    torch.manual_seed(1)
    module = FLOAT_MODULES[name]()
    x = smooth(40, 7, seed=2)
    program = ese.compile(module, DELTA, delta=(0.05, 0.1))
    statistics = {}
    with torch.no_grad():
        floats = delta_forward(module, torch.as_tensor(x, dtype=torch.float32)[None]
                               if module.batch_first else
                               torch.as_tensor(x, dtype=torch.float32)[:, None],
                               (0.05, 0.1), statistics)
    floats = (floats[0] if module.batch_first else floats[:, 0]).numpy()
    assert np.abs(program.predict(x) - floats).max() < 0.02
    trace = []
    program.predict_codes(program.encode_inputs(x)[0], trace=trace)
    golden_h = (sum(int(np.count_nonzero(r["recurrent"])) for r in trace)
                / sum(r["recurrent"].size for r in trace))
    sent, seen = statistics["h"]
    assert abs(golden_h - sent / seen) < 0.05


@pytest.mark.parametrize("name", ["gru-1-layer", "lstm-1-layer"])
def test_the_change_term_is_the_outputs_mean_change_and_trains_the_weights(name):
    """The L1 term delta-aware training may add (``statistics["change"]``): with zero
    thresholds, the mean absolute change of the layer's output from one frame to the next,
    as the module's own outputs give it, with a gradient that reaches the recurrent weights
    (a term computed before the frame's output, as it once was, is zero)."""
    from ese.sw.compiler.delta import delta_forward
    torch.manual_seed(3)
    module = nn.GRU(7, 12) if name.startswith("gru") else nn.LSTM(7, 12)
    x = torch.cumsum(torch.randn(30, 2, 7) * 0.3, 0)
    with torch.no_grad():
        outputs, _ = module(x)
    want = float((outputs[1:] - outputs[:-1]).abs().mean())
    statistics = {}
    delta_forward(module, x, (0.0, 0.0), statistics)
    change = statistics["change"]
    assert want > 0.01 and abs(float(change.detach()) - want) < 1e-6
    change.backward()
    assert float(module.weight_hh_l0.grad.abs().sum()) > 0


def test_delta_training_keeps_pruned_weights_zero_and_learns():
    from ese.sw.speech.frontend import FeatureSet
    from ese.sw.speech.training import build_recognizer, train_delta
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_recognizer(6, 16, 8, 1, 3)
    with torch.no_grad():
        model.lstm.weight_hh_l0[::2] = 0.0
    zeros = model.lstm.weight_hh_l0 == 0
    inputs = [np.cumsum(rng.normal(scale=0.3, size=(30, 6)), 0).astype(np.float32)
              for _ in range(16)]
    targets = [rng.integers(1, 4, size=5) for _ in range(16)]
    data = FeatureSet(inputs, targets, [f"u{i}" for i in range(16)])
    tuned = train_delta(model, data, (0.1, 0.1), 2, 5e-3, 8, 0)
    assert tuned.delta == (0.1, 0.1) and model.delta is None
    assert not tuned.lstm.weight_hh_l0[zeros].any()
    assert not torch.equal(tuned.lstm.weight_hh_l0, model.lstm.weight_hh_l0)
