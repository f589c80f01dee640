"""The acoustic front end: 40 log-mel energies every 10 ms and their deltas, normalised with the
training set's statistics and clipped to the activation format's range."""

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MELS", "HOP", "WINDOW", "FEATURE_LIMIT", "features", "normalise", "FeatureSet",
           "load_features"]


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
    #: Phones of the transcripts that training never had (see :func:`load_features`).
    unknown_phones: dict = dataclasses.field(default_factory=dict)


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
    # A phone training never had (espeak-ng's glottal stop in one accent, say) cannot be
    # recognised; it stays in the reference as a class the model never outputs, so it always
    # counts as an error, and the set says how many there were.
    unknown = Counter(p for u in utterances for p in u.phones if p not in index)
    never_output = len(phones) + 1
    targets = [np.array([index.get(p, never_output) for p in u.phones], dtype=np.int64)
               for u in utterances]
    return (FeatureSet(inputs, targets, names, dict(sorted(unknown.items()))), phones,
            normalisation)
