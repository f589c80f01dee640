"""Magnitude pruning, load-balanced per PE (ESE) or global, through torch.nn.utils.prune.

Load-balance-aware pruning deals the rows of a matrix to the PEs the way the hardware does (the
machine's :class:`~ese.sw.contract.placement.Placement`) and prunes each PE's sub-matrix to the
same density, so every PE gets the same number of non-zeros and none waits for a slower one.
Global pruning keeps the largest magnitudes of the whole matrix, whatever PE they land on.
Both prune what the machine's sparse entries hold: single weights, or on a machine of block
entries (``Config.block_columns``) whole blocks of a row's neighbouring columns, scored by the
sum of their weights' magnitudes (Mao et al. 2017), since a block costs its PE a cycle
whatever it holds.

Load-balanced pruning can also balance column banks (``column_banks``): each PE's columns dealt
to banks (column, or block, ``c`` in bank ``c mod banks``) and every (PE, bank) pruned to the
same density. That is the balance a machine of column lanes (several columns a beat, each to
its own lane) would need so that no lane waits for another, since a lane works through its
bank of every row its PE holds. Bank-balanced sparsity (Cao et al., FPGA 2019) asks more:
equal non-zeros in every bank of every row. No such machine is built here, and the pattern is
measured for its accuracy (``ese speech-eval --column-banks``).

Both are ``torch.nn.utils.prune`` methods, so they work for iterative pruning with retraining
(prune, train, prune again: a new mask only ever removes weights the previous one kept) on a
PyTorch module's parameters, and for the one-shot pruning of :func:`ese.compile`, which prunes
the :class:`~ese.sw.compiler.model.ModelDescription` whatever front end made it
(:func:`prune_description`). Both deal rows to PEs by the one rule of
:meth:`~ese.sw.contract.placement.Placement.owners`, so a module pruned for training and the
same module pruned by the compiler keep the same weights.
"""

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from ..contract.errors import ConfigError
from ..contract.placement import Placement
from .converters import GRU_INPUT_SLOTS, GRU_RECURRENT_SLOTS, RNN_SLOTS, PrunableMatrix

__all__ = ["LoadBalancedUnstructured", "GlobalBlocks", "load_balanced_unstructured",
           "global_unstructured", "mask_matrices", "prune_module", "prune_description",
           "PRUNING_KINDS"]


def _block_scores(t, default_mask, width):
    """Each block of ``width`` neighbouring columns of every row of a 2-D weight, scored by
    the sum of its live weights' magnitudes, as (rows, blocks); and which blocks have a live
    weight. Blocks an earlier mask removed score -1, below every live one, so they stay
    removed."""
    rows, columns = t.shape
    pad = -columns % width
    live = torch.nn.functional.pad(default_mask, (0, pad)).view(rows, -1, width)
    magnitude = torch.nn.functional.pad((t * default_mask).abs(), (0, pad)).view(rows, -1, width)
    alive = live.bool().any(dim=2)
    removed = torch.full(alive.shape, -1.0, dtype=t.dtype)
    return torch.where(alive, magnitude.sum(dim=2), removed), alive


def _columns_of(block_mask, columns, width):
    """A (rows, blocks) mask of blocks as the (rows, columns) mask of their weights."""
    return block_mask.repeat_interleave(width, dim=1)[:, :columns]

PRUNING_KINDS = ("balanced", "global")


def _check_density(density):
    if isinstance(density, bool) or not isinstance(density, (int, float)) \
            or not 0.0 < float(density) <= 1.0:
        raise ConfigError(f"density must be a number in (0, 1], not {density!r}")
    return float(density)


def _check_banks(banks):
    if isinstance(banks, bool) or not isinstance(banks, int) or banks < 1:
        raise ConfigError(f"column_banks must be a positive integer, not {banks!r}")
    return banks


def _keep_largest(scores, keep):
    """Mask keeping the ``keep`` largest of a 1-D score tensor (ties broken by position)."""
    mask = torch.zeros_like(scores)
    if keep > 0:
        # A stable sort makes the choice among equal magnitudes reproducible.
        order = torch.sort(scores, descending=True, stable=True).indices
        mask[order[:keep]] = 1
    return mask


class LoadBalancedUnstructured(prune.BasePruningMethod):
    """Prune every PE's rows of a 2-D weight to the same density.

    Parameters
    ----------
    density : float
        Fraction of each PE's weights (or blocks of weights) to keep, in (0, 1].
    placement : Placement
        Where the target hardware puts each row and how many columns its entries hold
        (:class:`~ese.sw.contract.placement.Placement`).
    rows_per_group : int
        The cell count for stacked gate matrices (whose rows i, f, g, o of a cell are
        interleaved), the row count otherwise; see :meth:`Placement.owners`.
    slots, rotated :
        A GRU's gate matrices: the gate slot of each group of rows, and the rotation of the
        slots (see :meth:`Placement.owners`).
    column_banks : int
        Balance every (PE, bank) rather than every PE: the columns (or blocks) ``c`` with the
        same ``c mod column_banks`` form a bank (a PE's share of each bank balanced, as
        column lanes would need; see the module's docstring). 1, the default, balances PEs alone.
    """

    PRUNING_TYPE = "global"   # the method needs the whole matrix to see which row is where

    def __init__(self, density, placement, rows_per_group, slots=None, rotated=False,
                 column_banks=1):
        self.density = _check_density(density)
        self.column_banks = _check_banks(column_banks)
        if not isinstance(placement, Placement):
            raise TypeError(f"placement must be a Placement, not {type(placement).__name__}")
        self.placement = placement
        self.rows_per_group = rows_per_group
        self.slots = slots
        self.rotated = rotated

    def compute_mask(self, t, default_mask):
        if t.dim() != 2:
            raise ValueError(f"load-balanced pruning needs a 2-D weight, not {t.dim()}-D")
        width = self.placement.block_columns
        scores, alive = _block_scores(t, default_mask, width)
        kept = torch.zeros_like(scores)
        owner = torch.as_tensor(self.placement.owners(t.shape[0], self.rows_per_group,
                                                      self.slots, self.rotated))
        blocks = scores.shape[1]
        banks = [torch.arange(bank, blocks, self.column_banks)
                 for bank in range(min(self.column_banks, blocks))]
        for pe in range(self.placement.pes):
            rows = torch.nonzero(owner == pe).flatten()
            if len(rows) == 0:
                continue
            for columns in banks:
                at = (rows[:, None], columns[None, :])
                block = scores[at].flatten()
                keep = min(int(round(self.density * block.numel())),
                           int(alive[at].sum().item()))
                kept[at] = _keep_largest(block, keep).view(len(rows), -1)
        return _columns_of(kept, t.shape[1], width).to(default_mask.dtype)

    @classmethod
    def apply(cls, module, name, density, placement, rows_per_group, slots=None, rotated=False,
              column_banks=1, importance_scores=None):
        return super().apply(module, name, density=density, placement=placement,
                             rows_per_group=rows_per_group, slots=slots, rotated=rotated,
                             column_banks=column_banks, importance_scores=importance_scores)


def load_balanced_unstructured(module, name, density, placement, rows_per_group, slots=None,
                               rotated=False, column_banks=1):
    """Prune ``module.<name>`` load-balanced per PE, or per (PE, column bank) (like
    ``prune.l1_unstructured``)."""
    LoadBalancedUnstructured.apply(module, name, density, placement, rows_per_group, slots,
                                   rotated, column_banks)
    return module


class GlobalBlocks(prune.BasePruningMethod):
    """Keep the blocks of ``width`` neighbouring columns of a 2-D weight with the largest sums
    of magnitudes, over the whole matrix (one threshold, whatever PE they land on)."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, density, width):
        self.density = _check_density(density)
        self.width = width

    def compute_mask(self, t, default_mask):
        scores, alive = _block_scores(t, default_mask, self.width)
        keep = min(int(round(self.density * scores.numel())), int(alive.sum().item()))
        kept = _keep_largest(scores.flatten(), keep).view(scores.shape)
        return _columns_of(kept, t.shape[1], self.width).to(default_mask.dtype)

    @classmethod
    def apply(cls, module, name, density, width, importance_scores=None):
        return super().apply(module, name, density=density, width=width,
                             importance_scores=importance_scores)


def global_unstructured(module, name, density, placement=Placement(1)):
    """Prune ``module.<name>`` to ``density`` by one magnitude threshold over the matrix: of
    its weights (``prune.l1_unstructured``), or of its blocks where ``placement``'s entries
    hold several columns (:class:`GlobalBlocks`)."""
    density = _check_density(density)
    if placement.block_columns > 1:
        GlobalBlocks.apply(module, name, density, placement.block_columns)
        return module
    total = getattr(module, name).numel()
    prune.l1_unstructured(module, name, amount=total - int(round(density * total)))
    return module


def mask_matrices(matrices, density, placement, kind="balanced", column_banks=1):
    """Attach ``torch.nn.utils.prune`` masks of ``density`` to ``matrices`` (from a
    converter's ``prunable``), load-balanced per PE of ``placement`` (a
    :class:`~ese.sw.contract.placement.Placement`), and per column bank of each PE where
    ``column_banks`` > 1, or by one threshold per matrix; they stay (and keep pruned weights
    at zero through training) until ``prune.remove``."""
    if kind not in PRUNING_KINDS:
        raise ConfigError(f"pruning must be one of {', '.join(PRUNING_KINDS)}, not {kind!r}")
    density = _check_density(density)
    if _check_banks(column_banks) > 1 and kind != "balanced":
        raise ConfigError(f"column banks balance load-balanced pruning; {kind!r} pruning has "
                          "no banks (use --pruning balanced, or column_banks=1)")
    for matrix in matrices:
        if kind == "balanced":
            load_balanced_unstructured(matrix.owner, matrix.name, density, placement,
                                       matrix.rows_per_group, matrix.slots, matrix.rotated,
                                       column_banks)
        else:
            global_unstructured(matrix.owner, matrix.name, density, placement)


def prune_module(module, matrices, density, placement, kind="balanced"):
    """One-shot pruning of ``matrices`` (from a converter's ``prunable``) in place.

    The masks are made permanent (``prune.remove``), so the module is again a plain module
    whose pruned weights are zeros.
    """
    mask_matrices(matrices, density, placement, kind)
    for matrix in matrices:
        prune.remove(matrix.owner, matrix.name)
    return module


def prune_description(description, density, placement, kind="balanced"):
    """A copy of a :class:`~ese.sw.compiler.model.ModelDescription` with its weight matrices
    pruned to ``density`` (one-shot, as :func:`prune_module`).

    The matrices are pruned as PyTorch's modules hold them: an LSTM layer's W_x and W_r (gate
    rows i, f, g, o of a cell interleaved) and its projection; a GRU layer's three gate
    blocks of W_x (r, z, n_x) and of W_r (r, z, n_h), in their rotated slots, without the
    slot each matrix leaves empty; a simple RNN's W and U, in the n_x slot. So the weights
    kept are those :func:`prune_module` keeps in the module the description came from.
    """
    holder = nn.Module()
    matrices, places = [], []

    def add(index, attribute, rows, rows_per_group, slots=None, rotated=False):
        name = f"{attribute}_l{index}"
        values = getattr(description.layers[index], attribute)[rows]
        holder.register_parameter(name, nn.Parameter(torch.tensor(values), requires_grad=False))
        matrices.append(PrunableMatrix(holder, name, rows_per_group, slots, rotated))
        places.append((index, attribute, rows, name))

    for index, layer in enumerate(description.layers):
        cells = layer.cells
        if layer.is_gru:
            slots_of = {"input_weights": GRU_INPUT_SLOTS,
                        "recurrent_weights": GRU_RECURRENT_SLOTS}
            if layer.is_rnn:
                slots_of = {"input_weights": RNN_SLOTS, "recurrent_weights": RNN_SLOTS}
            for attribute, slots in slots_of.items():
                rows = np.concatenate([np.arange(slot * cells, (slot + 1) * cells)
                                       for slot in slots])
                add(index, attribute, rows, cells, slots, rotated=True)
            continue
        add(index, "input_weights", slice(None), cells)
        add(index, "recurrent_weights", slice(None), cells)
        if layer.projection is not None:
            add(index, "projection", slice(None), layer.proj)
    prune_module(holder, matrices, density, placement, kind)
    layers = [dataclasses.replace(layer) for layer in description.layers]
    for index, attribute, rows, name in places:
        values = getattr(layers[index], attribute).copy()
        values[rows] = getattr(holder, name).detach().numpy()
        setattr(layers[index], attribute, values)
    return dataclasses.replace(description, layers=layers,
                               notes=dict(description.notes, density=density, pruning=kind))
