"""Phone recognition end to end: features, an LSTMP + CTC model, compression, phone error rate.

The pipeline ESE's accuracy claim rests on, on a corpus of :mod:`ese.sw.speech.corpus`:

1. **Features** (:func:`features`): 40 log-mel filterbank energies every 10 ms (25 ms
   windows, librosa) and their deltas, normalised per dimension with the training set's
   mean and deviation, and clipped to the activation format's range.
2. **Model** (:func:`build_recognizer`): ``torch.nn.LSTM`` with ``proj_size`` (LSTMP
   layers, what the accelerator runs) and a linear CTC output layer over the phones plus a
   blank, which the host computes from the accelerator's outputs.
3. **Training** (:func:`train`): CTC loss, Adam, utterances batched by length; progress,
   a checkpoint per epoch, reproducible from a seed.
4. **Compression** (:func:`prune_iteratively`): the LSTM's matrices pruned density by
   density with ``torch.nn.utils.prune`` (load-balanced per PE, or one magnitude threshold
   per matrix), retraining with the masks in place after each step; then :func:`ese.compile`
   quantizes to fixed point and encodes for the hardware.
5. **Evaluation** (:func:`phone_error_rate`): greedy CTC decoding and the edit distance to
   the reference phones, for the float model and through ``Program.predict`` (the bit-exact
   golden model of the hardware), whose LSTM outputs go through the same output layer.
"""

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.errors import InputError

__all__ = ["FeatureSet", "build_recognizer", "features", "load_features", "train",
           "prune_iteratively", "phone_error_rate", "greedy_decode", "edit_distance",
           "TrainingSettings", "EvaluationSettings", "evaluate", "density_of", "normalise",
           "export_recognizer", "CompiledRecognizer"]

MELS = 40
HOP = 160        # 10 ms at 16 kHz
WINDOW = 400     # 25 ms
#: Normalised features are clipped here: inside the 16-bit activation format's range (+-8).
FEATURE_LIMIT = 7.5


def features(audio, sample_rate=16000):
    """Log-mel energies and their deltas, (frames, 2 * MELS) float32."""
    import librosa
    mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=512, hop_length=HOP,
                                         win_length=WINDOW, n_mels=MELS)
    logmel = np.log(mel + 1e-6)
    delta = librosa.feature.delta(logmel, width=5, mode="nearest")
    return np.concatenate([logmel, delta]).T.astype(np.float32)


def normalise(raw, normalisation):
    """Features scaled by the training set's mean and deviation, clipped to FEATURE_LIMIT."""
    mean, std = np.asarray(normalisation["mean"]), np.asarray(normalisation["std"])
    return np.clip((raw - mean) / std, -FEATURE_LIMIT, FEATURE_LIMIT).astype(np.float32)


@dataclass
class FeatureSet:
    """A split's features (normalised), phone targets and names."""

    inputs: list          # float32 arrays (frames, features)
    targets: list         # int arrays of phone indices (1..phones; 0 is the CTC blank)
    names: list


def load_features(corpus, split, phones=None, normalisation=None, cache=True, log=None):
    """Features of one split, normalised; returns (FeatureSet, phones, normalisation).

    ``phones`` and ``normalisation`` come from the training split when not given. Raw
    features are cached in ``CORPUS/features_<split>.npz``.
    """
    import librosa

    from .corpus import SAMPLE_RATE, phone_set, read_corpus
    utterances = read_corpus(corpus, split)
    if phones is None:
        phones = phone_set(utterances)
    index = {phone: i + 1 for i, phone in enumerate(phones)}
    cache_path = Path(corpus) / f"features_{split}.npz"
    names = [u.name for u in utterances]
    raw = None
    if cache and cache_path.exists():
        with np.load(cache_path, allow_pickle=False) as saved:
            if list(saved["names"]) == names:
                raw = [saved[f"u{i}"] for i in range(len(names))]
    if raw is None:
        raw = []
        for number, utterance in enumerate(utterances):
            audio, _ = librosa.load(utterance.audio_path, sr=SAMPLE_RATE, mono=True)
            raw.append(features(audio))
            if log is not None and number % 200 == 0:
                log(f"features of {split}: {number} of {len(utterances)}")
        if cache:
            np.savez(cache_path, names=np.array(names), **{f"u{i}": f for i, f in enumerate(raw)})
    if normalisation is None:
        stacked = np.concatenate(raw)
        normalisation = {"mean": stacked.mean(axis=0).tolist(),
                         "std": (stacked.std(axis=0) + 1e-5).tolist()}
    inputs = [normalise(f, normalisation) for f in raw]
    unknown = sorted({p for u in utterances for p in u.phones if p not in index})
    if unknown:
        raise InputError(f"the {split} transcripts use phones the training set has not: "
                         f"{' '.join(unknown)}")
    targets = [np.array([index[p] for p in u.phones], dtype=np.int64) for u in utterances]
    return FeatureSet(inputs, targets, names), phones, normalisation


def _torch():
    import torch
    return torch


def build_recognizer(inputs, cells, proj, layers, phones):
    """The model: LSTMP layers (``lstm``, what the accelerator runs) and a linear CTC output
    layer over the phones and the blank (``output``, run by the host); it returns
    log-probabilities."""
    torch = _torch()

    class PhoneRecognizer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(inputs, cells, num_layers=layers, proj_size=proj,
                                      batch_first=True)
            self.output = torch.nn.Linear(proj, phones + 1)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.output(y).log_softmax(-1)

    return PhoneRecognizer()


@dataclass
class TrainingSettings:
    cells: int = 512
    proj: int = 256
    layers: int = 2
    epochs: int = 20
    batch: int = 16
    learning_rate: float = 2e-3
    seed: int = 0


def _batches(data, batch, rng):
    """Indices of utterances in batches of similar length, in random order."""
    order = np.argsort([len(x) for x in data.inputs], kind="stable")
    groups = [order[i:i + batch] for i in range(0, len(order), batch)]
    rng.shuffle(groups)
    return groups


def _padded(data, indices):
    torch = _torch()
    inputs = [torch.from_numpy(data.inputs[i]) for i in indices]
    x = torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True)
    lengths = torch.tensor([len(t) for t in inputs])
    targets = torch.cat([torch.from_numpy(data.targets[i]) for i in indices])
    target_lengths = torch.tensor([len(data.targets[i]) for i in indices])
    return x, lengths, targets, target_lengths


def train_epochs(model, data, epochs, learning_rate, batch, seed, log=None, checkpoint=None):
    """Train ``model`` with CTC on ``data`` for ``epochs``; returns the mean loss per epoch."""
    torch = _torch()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    # The rate falls to a tenth along a cosine over the epochs of this call.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs),
                                                          eta_min=learning_rate / 10)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    losses = []
    for epoch in range(epochs):
        model.train()
        total, count, started = 0.0, 0, time.monotonic()
        groups = _batches(data, batch, rng)
        for step, indices in enumerate(groups):
            x, lengths, targets, target_lengths = _padded(data, indices)
            log_probs = model(x).transpose(0, 1)          # (time, batch, classes)
            loss = ctc(log_probs, targets, lengths, target_lengths)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            total += float(loss.detach()) * len(indices)
            count += len(indices)
            if log is not None and step % 10 == 0:
                log(f"epoch {epoch + 1}/{epochs}: batch {step + 1}/{len(groups)}, "
                    f"loss {total / count:.3f}")
        losses.append(total / count)
        schedule.step()
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.3f} "
                f"({time.monotonic() - started:.0f} s)")
        if checkpoint is not None:
            torch.save(model.state_dict(), checkpoint)
    return losses


def train(train_data, phones, settings, log=None, checkpoint=None):
    """A dense model trained from ``settings.seed``; returns (model, losses)."""
    torch = _torch()
    torch.manual_seed(settings.seed)
    model = build_recognizer(train_data.inputs[0].shape[1], settings.cells, settings.proj,
                             settings.layers, len(phones))
    losses = train_epochs(model, train_data, settings.epochs, settings.learning_rate,
                          settings.batch, settings.seed, log=log, checkpoint=checkpoint)
    return model, losses


def prune_iteratively(model, train_data, density, kind, pes, steps, epochs_per_step,
                      learning_rate, batch, seed, log=None):
    """Prune ``model``'s LSTM from its density to ``density`` in ``steps`` geometric steps,
    retraining for ``epochs_per_step`` after each with the masks in place (pruned weights
    stay zero); returns the pruned model (a copy, masks made permanent)."""
    import copy

    from torch.nn.utils import prune

    from ..compiler.converters import converter_for
    from ..compiler.pruning import mask_matrices
    pruned = copy.deepcopy(model)
    lstm = pruned.lstm
    matrices = converter_for(lstm).prunable(lstm)
    start = density_of(lstm)
    for step in range(1, steps + 1):
        # Pruned weights are zeros, the smallest magnitudes, so they stay pruned.
        target = start * (density / start) ** (step / steps)
        mask_matrices(matrices, target, pes, kind)
        if log is not None:
            log(f"{kind} pruning: density {target:.3f} (step {step} of {steps})")
        train_epochs(pruned, train_data, epochs_per_step, learning_rate, batch, seed + step,
                     log=log)
        for matrix in matrices:
            prune.remove(matrix.owner, matrix.name)
    return pruned


def greedy_decode(log_probs):
    """Best path: the most likely class per frame, repeats merged, blanks (0) dropped."""
    best = np.asarray(log_probs).argmax(axis=-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(c) for c in best[keep] if c != 0]


def edit_distance(reference, hypothesis):
    """Levenshtein distance between two sequences."""
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        current = [i]
        for j, h in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def phone_error_rate(hypotheses, references):
    """Edits over reference phones, in percent."""
    edits = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
    return 100.0 * edits / max(1, sum(len(r) for r in references))


def float_hypotheses(model, data):
    """Greedy decodes of the float model."""
    torch = _torch()
    model.eval()
    with torch.no_grad():
        return [greedy_decode(model(torch.from_numpy(x)[None])[0].numpy())
                for x in data.inputs]


def output_layer(model, projected):
    """The host's output layer on the accelerator's LSTM outputs: log-probabilities."""
    torch = _torch()
    with torch.no_grad():
        return model.output(torch.as_tensor(np.asarray(projected), dtype=torch.float32)
                            ).log_softmax(-1).numpy()


def save_model(model, path, phones, normalisation, settings):
    """A trained recognizer with what it needs to run again: phones and feature scaling."""
    torch = _torch()
    torch.save({"state": model.state_dict(), "phones": phones, "normalisation": normalisation,
                "settings": dataclasses.asdict(settings)}, path)


def load_model(path):
    """Inverse of :func:`save_model`: (model, phones, normalisation, settings)."""
    torch = _torch()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    settings = TrainingSettings(**saved["settings"])
    inputs = len(saved["normalisation"]["mean"])
    model = build_recognizer(inputs, settings.cells, settings.proj, settings.layers,
                             len(saved["phones"]))
    model.load_state_dict(saved["state"])
    return model, saved["phones"], saved["normalisation"], settings


def density_of(lstm):
    from ..compiler.converters import converter_for
    matrices = converter_for(lstm).prunable(lstm)
    total = sum(getattr(m.owner, m.name).numel() for m in matrices)
    kept = sum(int((getattr(m.owner, m.name) != 0).sum()) for m in matrices)
    return kept / total


@dataclass
class EvaluationSettings:
    """What `ese speech-eval` runs (see :func:`evaluate`)."""

    corpus: str = ""                 # a corpus directory; built there if it has no splits
    utterances: int = 2000           # size of a corpus to build
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)
    densities: tuple = (0.5, 0.3, 0.2, 0.15, 0.112, 0.08, 0.05)
    target_density: float = 0.112    # where the golden model and the RTL are checked
    prune_steps: int = 1
    #: Retraining epochs after pruning to each density (in the order of ``densities``), or
    #: one count for all. The steps near the target need the most: 0.15 -> 0.112 removes a
    #: quarter of what is left from a network already at 15%.
    retrain_epochs: "int | tuple" = (2, 2, 2, 3, 7, 3, 3)
    pes: int = 32
    weight_bits: int = 12
    activation_bits: int = 16
    rtl_utterances: int = 3
    work: str = ""                   # checkpoints and the trained models
    #: Where to write the recognizer at the target density, load-balanced (PREFIX.ese and
    #: PREFIX.npz, see export_recognizer), compiled for ``export_pes`` PEs; "" for nowhere.
    export: str = ""
    export_pes: int = 8


def evaluate(settings, log=None):
    """The whole pipeline; returns the report (a dict).

    Dense float PER; then, for each pruning kind, one chain through the densities from the
    largest down (each pruned further from the one before and retrained, as ESE prunes), and
    at each the pruned float PER and the PER through ``Program.predict`` (fixed point, the
    hardware's golden model); at the target density with load-balanced pruning,
    ``Program.simulate`` (RTL) on the first test utterances, whose decodes must equal
    ``predict``'s. The dense model is kept in ``work`` and reused when its settings match.
    """
    import ese

    from .corpus import SPLITS, build_corpus
    torch = _torch()
    started = time.monotonic()
    say = log or (lambda text: None)
    epochs_for = _retrain_schedule(settings)
    corpus = Path(settings.corpus)
    if not all((corpus / split).is_dir() for split in SPLITS):
        say(f"synthesising a corpus of {settings.utterances} utterances in {corpus}")
        build_corpus(corpus, settings.utterances, seed=settings.training.seed, log=log)
    work = Path(settings.work or corpus / "work")
    work.mkdir(parents=True, exist_ok=True)
    train_data, phones, normalisation = load_features(corpus, "train", log=log)
    test_data, _, _ = load_features(corpus, "test", phones, normalisation, log=log)
    training = settings.training
    dense_path = work / "dense.pt"
    if dense_path.exists():
        model, saved_phones, _, saved = load_model(dense_path)
        if saved_phones != phones or saved != training:
            model = None
    else:
        model = None
    losses = []
    if model is None:
        model, losses = train(train_data, phones, training, log=log,
                              checkpoint=work / "checkpoint.pt")
        save_model(model, dense_path, phones, normalisation, training)
    references = test_data.targets
    report = {
        "corpus": {"directory": str(corpus), "train": len(train_data.inputs),
                   "test": len(test_data.inputs), "phones": len(phones),
                   "test_phones": int(sum(len(r) for r in references))},
        "model": {"inputs": int(train_data.inputs[0].shape[1]), "cells": training.cells,
                  "proj": training.proj, "layers": training.layers,
                  "parameters": int(sum(p.numel() for p in model.parameters()))},
        "training": {**dataclasses.asdict(training), "losses": losses},
        "dense_float_per": phone_error_rate(float_hypotheses(model, test_data), references),
    }
    say(f"dense float PER {report['dense_float_per']:.2f}%")
    config = ese.Config(pes=settings.pes, weight_bits=settings.weight_bits,
                        activation_bits=settings.activation_bits)
    rows = {density: {"density": density} for density in settings.densities}
    for kind in ("balanced", "global"):
        # One chain per kind, as in ESE: each density starts from the one before, pruned
        # further and retrained.
        pruned, chain = model, [dataclasses.asdict(training), kind, settings.pes,
                                settings.prune_steps]
        for density in sorted(settings.densities, reverse=True):
            row = rows[density]
            row["retrain_epochs"] = epochs_for[density]
            # A model pruned along the same chain before is reused (resuming a run).
            chain = chain + [density, epochs_for[density]]
            saved_path = work / f"pruned_{kind}_{density}.pt"
            reused = _load_pruned(saved_path, chain, pruned)
            if reused is not None:
                say(f"density {density} {kind}: reusing {saved_path}")
                pruned = reused
            else:
                pruned = prune_iteratively(pruned, train_data, density, kind, settings.pes,
                                           settings.prune_steps, epochs_for[density],
                                           training.learning_rate / 4, training.batch,
                                           training.seed, log=log)
                torch.save({"chain": chain, "state": pruned.state_dict()}, saved_path)
            program = ese.compile(pruned.lstm, config)
            golden = [greedy_decode(output_layer(pruned, program.predict(x)))
                      for x in test_data.inputs]
            row[kind] = {
                "density": density_of(pruned.lstm),
                "float_per": phone_error_rate(float_hypotheses(pruned, test_data), references),
                "golden_per": phone_error_rate(golden, references),
                "saturated_weights": int(program.report.saturated_total),
            }
            say(f"density {density} {kind}: float {row[kind]['float_per']:.2f}%, golden "
                f"{row[kind]['golden_per']:.2f}%")
            if kind == "balanced" and math.isclose(density, settings.target_density):
                report["rtl"] = _rtl_check(program, pruned, test_data, golden,
                                           settings.rtl_utterances, log)
                if settings.export:
                    export_recognizer(pruned, phones, normalisation,
                                      config.replace(pes=settings.export_pes), settings.export)
                    say(f"recognizer written to {settings.export}.ese and .npz")
    report["densities"] = [rows[density] for density in settings.densities]
    report["seconds"] = time.monotonic() - started
    return report


def _retrain_schedule(settings):
    """Retraining epochs per density, from ``settings.retrain_epochs``."""
    epochs = settings.retrain_epochs
    if isinstance(epochs, int):
        epochs = (epochs,) * len(settings.densities)
    epochs = tuple(epochs)
    if len(epochs) != len(settings.densities) or any(int(e) < 0 for e in epochs):
        raise InputError(f"retraining epochs {list(epochs)} do not match the densities "
                         f"{list(settings.densities)}: give one count, or one per density")
    return dict(zip(settings.densities, (int(e) for e in epochs)))


def _load_pruned(path, chain, like):
    """The model saved at ``path`` if it was pruned along ``chain``, else None."""
    import copy
    torch = _torch()
    if not Path(path).exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:       # an unreadable or older file: prune again
        return None
    if not isinstance(saved, dict) or saved.get("chain") != json.loads(json.dumps(chain)):
        return None
    model = copy.deepcopy(like)
    model.load_state_dict(saved["state"])
    return model


def _rtl_check(program, model, data, golden, count, log):
    """Run the first ``count`` test utterances on the RTL; their decodes must equal the golden
    model's."""
    decodes, exact = [], True
    for index in range(min(count, len(data.inputs))):
        result = program.simulate(data.inputs[index], log=log)
        exact &= result.bitexact
        decodes.append(greedy_decode(output_layer(model, result.outputs)) == golden[index])
    return {"utterances": len(decodes), "bitexact": bool(exact),
            "decodes_equal_predict": bool(all(decodes))}


def write_report(report, path):
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def plot_report(report, path):
    """PER against density for both pruning kinds (float and fixed point), and the dense PER."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    densities = [row["density"] for row in report["densities"]]
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for kind, colour in (("balanced", "tab:blue"), ("global", "tab:orange")):
        axes.plot(densities, [row[kind]["float_per"] for row in report["densities"]], "o--",
                  color=colour, label=f"{kind}, float")
        axes.plot(densities, [row[kind]["golden_per"] for row in report["densities"]], "s-",
                  color=colour, label=f"{kind}, fixed point (golden model)")
    axes.axhline(report["dense_float_per"], color="gray", linestyle=":", label="dense, float")
    axes.axhline(report["dense_float_per"] + 0.5, color="gray", linestyle="--", linewidth=0.8,
                 label="dense + 0.5 (the target at density <= 0.112)")
    axes.set_xscale("log")
    axes.set_xticks(densities, [f"{d:g}" for d in densities])
    axes.minorticks_off()
    axes.set_xlabel("density (non-zero weights)")
    axes.set_ylabel("phone error rate (%)")
    axes.set_title("Test PER after pruning and quantization")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def export_recognizer(model, phones, normalisation, config, prefix):
    """Write what recognising phones on the accelerator needs: ``PREFIX.ese`` (the LSTM layers
    compiled for ``config``: the hardware's weight image) and ``PREFIX.npz`` (the host's part:
    the CTC output layer, the phone set and the feature scaling)."""
    import ese
    prefix = Path(prefix)
    program = ese.compile(model.lstm, config)
    program.save(prefix.with_suffix(".ese"))
    np.savez_compressed(
        prefix.with_suffix(".npz"), phones=np.array(phones),
        output_weight=model.output.weight.detach().numpy().astype(np.float32),
        output_bias=model.output.bias.detach().numpy().astype(np.float32),
        mean=np.asarray(normalisation["mean"], dtype=np.float64),
        std=np.asarray(normalisation["std"], dtype=np.float64))
    return program


class CompiledRecognizer:
    """A phone recognizer written by :func:`export_recognizer`: the accelerator's program
    and the host's output layer."""

    def __init__(self, prefix):
        import ese
        prefix = Path(prefix)
        self.program = ese.load(prefix.with_suffix(".ese"))
        with np.load(prefix.with_suffix(".npz"), allow_pickle=False) as saved:
            self.phones = [str(p) for p in saved["phones"]]
            self.output_weight = saved["output_weight"].astype(np.float64)
            self.output_bias = saved["output_bias"].astype(np.float64)
            self.normalisation = {"mean": saved["mean"], "std": saved["std"]}

    def features(self, audio):
        return normalise(features(audio), self.normalisation)

    def log_probabilities(self, lstm_outputs):
        """The host's output layer on the accelerator's outputs."""
        logits = np.asarray(lstm_outputs) @ self.output_weight.T + self.output_bias
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def decode(self, lstm_outputs):
        """Greedy CTC decoding to phone symbols."""
        return [self.phones[i - 1] for i in greedy_decode(self.log_probabilities(lstm_outputs))]
