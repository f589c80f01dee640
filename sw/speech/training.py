"""The recognizer's model and its training: LSTMP or GRU layers (what the accelerator runs) and
a linear CTC output layer (the host's), trained with CTC, pruned step by step with retraining.

PyTorch is imported when a function runs, so that decoding and features need none of it.
"""

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from .scoring import greedy_decode

__all__ = ["build_recognizer", "TrainingSettings", "train_epochs", "train", "prune_iteratively",
           "train_delta", "float_hypotheses", "output_layer", "save_model", "load_model",
           "density_of"]


def build_recognizer(inputs, cells, proj, layers, phones, cell="lstmp"):
    """The model: recurrent layers (``recurrent``, what the accelerator runs: LSTMP layers of
    ``cells`` cells projected to ``proj``, or, with ``cell="gru"``, GRU layers of ``cells``
    units) and a linear CTC output layer over the phones and the blank (``output``, run by
    the host); it returns log-probabilities."""
    import torch

    class PhoneRecognizer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if cell == "gru":
                self.gru = torch.nn.GRU(inputs, cells, num_layers=layers, batch_first=True)
                width = cells
            else:
                self.lstm = torch.nn.LSTM(inputs, cells, num_layers=layers, proj_size=proj,
                                          batch_first=True)
                width = proj
            self.output = torch.nn.Linear(width, phones + 1)
            #: Thresholds: the recurrent layers run as delta layers (delta-aware training;
            #: see ese.sw.compiler.delta); None runs them as PyTorch does.
            self.delta = None
            #: The weight of the L1 term on the states' changes in delta-aware training, and
            #: the term of the last forward pass.
            self.change_weight = 0.0
            self.change = None

        @property
        def recurrent(self):
            """The layers the accelerator runs."""
            return self.gru if cell == "gru" else self.lstm

        def forward(self, x):
            if self.delta is not None:
                from ..compiler.delta import delta_forward
                statistics = {}
                y = delta_forward(self.recurrent, x, self.delta, statistics)
                self.change = statistics["change"]
            else:
                y, _ = self.recurrent(x)
            return self.output(y).log_softmax(-1)

    return PhoneRecognizer()


@dataclass
class TrainingSettings:
    cell: str = "lstmp"              # or "gru": GRU layers of ``cells`` units (no ``proj``)
    cells: int = 384
    proj: int = 192
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
    import torch
    inputs = [torch.from_numpy(data.inputs[i]) for i in indices]
    x = torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True)
    lengths = torch.tensor([len(t) for t in inputs])
    targets = torch.cat([torch.from_numpy(data.targets[i]) for i in indices])
    target_lengths = torch.tensor([len(data.targets[i]) for i in indices])
    return x, lengths, targets, target_lengths


def train_epochs(model, data, epochs, learning_rate, batch, seed, log=None, checkpoint=None):
    """Train ``model`` with CTC on ``data`` for ``epochs``; returns the mean loss per epoch."""
    import torch
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
            if getattr(model, "change_weight", 0.0) and model.change is not None:
                loss = loss + model.change_weight * model.change
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
    import torch
    torch.manual_seed(settings.seed)
    model = build_recognizer(train_data.inputs[0].shape[1], settings.cells, settings.proj,
                             settings.layers, len(phones), settings.cell)
    losses = train_epochs(model, train_data, settings.epochs, settings.learning_rate,
                          settings.batch, settings.seed, log=log, checkpoint=checkpoint)
    return model, losses


def prune_iteratively(model, train_data, density, kind, pes, steps, epochs_per_step,
                      learning_rate, batch, seed, log=None, block_columns=1, column_banks=1):
    """Prune ``model``'s recurrent layers from their density to ``density`` in ``steps``
    geometric steps, for ``pes`` PEs whose entries hold ``block_columns`` columns (whole
    blocks kept or dropped), balanced per (PE, column bank) where ``column_banks`` > 1
    (see ese.sw.compiler.pruning), retraining for ``epochs_per_step`` after each with the masks in
    place (pruned weights stay zero); returns the pruned model (a copy, masks made
    permanent)."""
    import copy

    from torch.nn.utils import prune

    from ..compiler.converters import converter_for
    from ..compiler.pruning import mask_matrices
    from ..contract.placement import Placement
    pruned = copy.deepcopy(model)
    recurrent = pruned.recurrent
    matrices = converter_for(recurrent).prunable(recurrent)
    start = density_of(recurrent)
    for step in range(1, steps + 1):
        # Pruned weights are zeros, the smallest magnitudes, so they stay pruned.
        target = start * (density / start) ** (step / steps)
        mask_matrices(matrices, target, Placement(pes, block_columns), kind, column_banks)
        if log is not None:
            log(f"{kind} pruning: density {target:.3f} (step {step} of {steps})")
        train_epochs(pruned, train_data, epochs_per_step, learning_rate, batch, seed + step,
                     log=log)
        for matrix in matrices:
            prune.remove(matrix.owner, matrix.name)
    return pruned


def train_delta(model, train_data, thresholds, epochs, learning_rate, batch, seed, log=None,
                change_weight=0.0):
    """Delta-aware fine-tuning: a copy of ``model`` trained for ``epochs`` with its recurrent
    layers run as delta layers of ``thresholds`` (``(theta_x, theta_h[, theta_m])``, real),
    its zero weights kept zero (their gradients are masked, so pruning holds), and
    ``change_weight`` times the states' mean absolute change from frame to frame added to
    the loss. The copy keeps ``delta`` set, so its float forward (``float_hypotheses``) is
    the thresholded one."""
    import copy
    tuned = copy.deepcopy(model)
    tuned.delta = tuple(thresholds)
    tuned.change_weight = change_weight
    hooks = [parameter.register_hook(lambda grad, keep=(parameter != 0).detach():
                                     grad * keep.to(grad.dtype))
             for name, parameter in tuned.recurrent.named_parameters()
             if name.startswith("weight")]
    try:
        train_epochs(tuned, train_data, epochs, learning_rate, batch, seed, log=log)
    finally:
        for hook in hooks:
            hook.remove()
        tuned.change = None
    return tuned


def float_hypotheses(model, data):
    """Greedy decodes of the float model."""
    import torch
    model.eval()
    with torch.no_grad():
        return [greedy_decode(model(torch.from_numpy(x)[None])[0].numpy())
                for x in data.inputs]


def output_layer(model, projected):
    """The host's output layer on the accelerator's outputs: log-probabilities."""
    import torch
    with torch.no_grad():
        return model.output(torch.as_tensor(np.asarray(projected), dtype=torch.float32)
                            ).log_softmax(-1).numpy()


def save_model(model, path, phones, normalisation, settings):
    """A trained recognizer with what it needs to run again: phones and feature scaling."""
    import torch
    torch.save({"state": model.state_dict(), "phones": phones, "normalisation": normalisation,
                "settings": dataclasses.asdict(settings)}, path)


def load_model(path):
    """Inverse of :func:`save_model`: (model, phones, normalisation, settings)."""
    import torch
    saved = torch.load(path, map_location="cpu", weights_only=True)
    settings = TrainingSettings(**{"cell": "lstmp", **saved["settings"]})
    inputs = len(saved["normalisation"]["mean"])
    model = build_recognizer(inputs, settings.cells, settings.proj, settings.layers,
                             len(saved["phones"]), settings.cell)
    model.load_state_dict(saved["state"])
    return model, saved["phones"], saved["normalisation"], settings


def density_of(recurrent):
    """The fraction of the recurrent layers' prunable weights that are non-zero."""
    from ..compiler.converters import converter_for
    matrices = converter_for(recurrent).prunable(recurrent)
    total = sum(getattr(m.owner, m.name).numel() for m in matrices)
    kept = sum(int((getattr(m.owner, m.name) != 0).sum()) for m in matrices)
    return kept / total
