"""The exported phone recognizer: the accelerator's weight image and the host's output layer,
phones and feature scaling, and the recognizer that runs them."""

from pathlib import Path

import numpy as np

from .frontend import features, normalise
from .scoring import greedy_decode

__all__ = ["export_recognizer", "CompiledRecognizer"]


def export_recognizer(model, phones, normalisation, config, prefix, delta=None):
    """Write what recognising phones on the accelerator needs: ``PREFIX.ese`` (the recurrent
    layers compiled for ``config``: the hardware's weight image; with ``delta``, delta layers
    of those thresholds, as ``ese.compile`` takes them) and ``PREFIX.npz`` (the host's part:
    the CTC output layer, the phone set and the feature scaling)."""
    import ese
    prefix = Path(prefix)
    program = ese.compile(model.recurrent, config, delta=delta)
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

    def log_probabilities(self, outputs):
        """The host's output layer on the accelerator's outputs."""
        logits = np.asarray(outputs) @ self.output_weight.T + self.output_bias
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def decode(self, outputs):
        """Greedy CTC decoding to phone symbols."""
        return [self.phones[i - 1] for i in greedy_decode(self.log_probabilities(outputs))]
