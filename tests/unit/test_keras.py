"""Keras 3 models (its torch backend; no TensorFlow): LSTM, GRU (reset_after=True), SimpleRNN,
stacked, with and without return_sequences, in memory and as .keras files, each against
Keras' own forward pass. The RTL run of a Keras model is in tests/rtl/test_core.py."""

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")      # no TensorFlow: keras' torch backend
import keras  # noqa: E402  (an optional extra, which make test installs)

import ese  # noqa: E402
from ese.sw.compiler.frontends import recurrent_parts  # noqa: E402

from helpers import FLOAT_TOLERANCE, frames  # noqa: E402

CONFIG = ese.Config(pes=4)
layers = keras.layers


def _model(*recurrent, inputs=5, head=False):
    keras.utils.set_random_seed(0)
    stack = [keras.Input((None, inputs)), *recurrent]
    if head:
        stack.append(layers.Dense(3, name="head"))
    return keras.Sequential(stack)


def _keras_outputs(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x[None].astype("float32"))))[0]


@pytest.mark.parametrize("make", [
    lambda: [layers.LSTM(8, return_sequences=True, name="lstm")],
    lambda: [layers.LSTM(8, return_sequences=True, use_bias=False, name="lstm")],
    lambda: [layers.GRU(7, return_sequences=True, name="gru")],
    lambda: [layers.SimpleRNN(6, return_sequences=True, name="rnn")],
    lambda: [layers.LSTM(8, return_sequences=True), layers.GRU(7, return_sequences=True),
             layers.SimpleRNN(6, return_sequences=True)],
], ids=["lstm", "lstm-no-bias", "gru", "simplernn", "lstm-gru-simplernn"])
def test_keras_recurrent_layers_follow_keras(make):
    model = _model(*make())
    x = frames(20, 5, seed=1)
    expected = _keras_outputs(model, x)
    program = ese.compile(model, CONFIG)
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
    assert program.metadata["source"].startswith("Keras ")


def test_the_last_layer_returning_its_last_frame_returns_it_alone():
    model = _model(layers.LSTM(8, return_sequences=True), layers.GRU(6))
    x = frames(15, 5, seed=2)
    expected = _keras_outputs(model, x)
    program = ese.compile(model, CONFIG, density=0.5)
    assert program.last_frame_only and expected.shape == (6,)
    assert program.predict(x).shape == (6,) and program.float_reference(x).shape == (6,)
    dense = ese.compile(model, CONFIG)
    assert np.abs(dense.predict(x) - expected).max() < FLOAT_TOLERANCE


def test_a_keras_model_with_a_head_is_compiled_in_part_and_as_a_file(tmp_path):
    model = _model(layers.LSTM(8, return_sequences=True, name="encoder"),
                   layers.SimpleRNN(4, return_sequences=True, name="decoder"), head=True)
    with pytest.raises(ese.UnsupportedModelError, match="layers other than recurrent ones "
                                                        r"\(head\); its recurrent layers are "
                                                        "'encoder', 'decoder'"):
        ese.compile(model, CONFIG)
    program = ese.compile(model, CONFIG, density=0.5, submodule=["encoder", "decoder"])
    x = frames(12, 5, seed=3)
    hidden = keras.Sequential([keras.Input((None, 5)), model.get_layer("encoder"),
                               model.get_layer("decoder")])
    dense = ese.compile(model, CONFIG, submodule=["encoder", "decoder"])
    assert np.abs(dense.float_reference(x) - _keras_outputs(hidden, x)).max() < 1e-5
    path = tmp_path / "tagger.keras"
    model.save(path)
    assert recurrent_parts(path) == ["encoder", "decoder"]
    from_file = ese.compile(path, CONFIG, density=0.5, submodule=["encoder", "decoder"])
    assert all(a.equals(b) for a, b in zip(from_file.model.layers, program.model.layers))


@pytest.mark.parametrize("layer, message", [
    (lambda: layers.GRU(6, reset_after=False), "reset_after=False"),
    (lambda: layers.LSTM(6, activation="relu"), "activation='relu'"),
    (lambda: layers.LSTM(6, recurrent_activation="hard_sigmoid"),
     "recurrent_activation='hard_sigmoid'"),
    (lambda: layers.SimpleRNN(6, go_backwards=True), "go_backwards=True"),
    (lambda: layers.Bidirectional(layers.LSTM(6), merge_mode="sum"), "merge_mode='sum'"),
])
def test_what_the_hardware_cannot_run_is_refused_naming_the_option(layer, message):
    with pytest.raises(ese.UnsupportedModelError, match=message):
        ese.compile(_model(layer()), CONFIG)


def test_an_inner_layer_returning_its_last_frame_is_refused():
    model = _model(layers.LSTM(8, name="first"), layers.RepeatVector(3),
                   layers.GRU(6, name="second"))
    with pytest.raises(ese.UnsupportedModelError, match="'first' returns its last frame only"):
        ese.compile(model, CONFIG, submodule=["first", "second"])


def test_without_keras_a_keras_file_asks_for_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    _model(layers.LSTM(4)).save(path)
    monkeypatch.setitem(sys.modules, "keras", None)       # as if keras were not installed
    with pytest.raises(ese.UnsupportedModelError, match=r"pip install 'ese-lstm\[keras\]'"):
        ese.compile(path, CONFIG)


@pytest.mark.parametrize("make", [
    lambda: [layers.Bidirectional(layers.LSTM(8, return_sequences=True)),
             layers.Bidirectional(layers.GRU(6, return_sequences=True))],
    lambda: [layers.Bidirectional(layers.SimpleRNN(6, return_sequences=True)),
             layers.Bidirectional(layers.LSTM(5))],
], ids=["bilstm-bigru", "bisimplernn-bilstm-last-frame"])
def test_bidirectional_wrappers_follow_keras(make):
    """Keras' Bidirectional: the forward layer and its go_backwards copy, concatenated; with
    return_sequences=False, the forward half's last step and the backward half's last step
    (its first frame), as Keras returns them."""
    model = _model(*make())
    x = frames(14, 5, seed=9)
    expected = _keras_outputs(model, x)
    program = ese.compile(model, CONFIG)
    assert [layer.direction for layer in program.model.layers] == ["forward", "backward"] * 2
    assert np.abs(program.float_reference(x) - expected).max() < 1e-5
    assert np.abs(program.predict(x) - expected).max() < FLOAT_TOLERANCE
