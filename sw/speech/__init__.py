"""Phone recognition end to end: features, an LSTMP (or GRU) + CTC model, compression, phone
error rate.

The pipeline ESE's accuracy claim rests on, on a corpus of :mod:`ese.sw.speech.corpus`:

1. **Features** (:mod:`.frontend`): 40 log-mel filterbank energies every 10 ms (25 ms
   windows, librosa) and their deltas, normalised per dimension with the training set's
   mean and deviation, and clipped to the activation format's range.
2. **Model** (:func:`.training.build_recognizer`): ``torch.nn.LSTM`` with ``proj_size`` (LSTMP
   layers, what the accelerator runs), or ``torch.nn.GRU`` (``cell="gru"``), and a linear CTC
   output layer over the phones plus a blank, which the host computes from the
   accelerator's outputs.
3. **Training** (:mod:`.training`): CTC loss, Adam, utterances batched by length; progress,
   a checkpoint per epoch, reproducible from a seed.
4. **Compression** (:func:`.training.prune_iteratively`): the recurrent matrices pruned density by
   density with ``torch.nn.utils.prune`` (load-balanced per PE, or one magnitude threshold
   per matrix), retraining with the masks in place after each step; then :func:`ese.compile`
   quantizes to fixed point and encodes for the hardware.
5. **Evaluation** (:mod:`.scoring`, :mod:`.evaluation`): greedy CTC decoding and the edit
   distance to the reference phones, for the float model and through ``Program.predict``
   (the bit-exact golden model of the hardware), whose outputs go through the same
   output layer.

The exported recognizer (:mod:`.recognizer`) runs on the accelerator's program and the host's
output layer; ``ese demo`` runs the committed one in ``models/``. The names below are
imported from their modules on first use, so that the corpus or the decoder does not pull
in PyTorch.
"""

import importlib

_EXPORTS = {
    "frontend": ("MELS", "HOP", "WINDOW", "FEATURE_LIMIT", "features", "normalise",
                 "FeatureSet", "load_features"),
    "scoring": ("greedy_decode", "edit_distance", "phone_error_rate"),
    "training": ("build_recognizer", "TrainingSettings", "train_epochs", "train",
                 "prune_iteratively", "float_hypotheses", "output_layer", "save_model",
                 "load_model", "density_of"),
    "evaluation": ("EvaluationSettings", "evaluate", "write_report", "plot_report", "plot_delta"),
    "recognizer": ("export_recognizer", "CompiledRecognizer"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
