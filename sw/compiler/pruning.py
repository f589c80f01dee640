"""Magnitude pruning, load-balanced per PE (ESE) or global, through torch.nn.utils.prune.

Load-balance-aware pruning deals the rows of a matrix to the PEs the way the hardware does (the
machine's :class:`~ese.sw.contract.placement.Placement`) and prunes each PE's sub-matrix to the
same density, so every PE gets the same number of non-zeros and none waits for a slower one.
Global pruning keeps the largest magnitudes of the whole matrix, whatever PE they land on.

Both are ``torch.nn.utils.prune`` methods, so they work for one-shot pruning in
:func:`ese.compile` and for iterative pruning with retraining (prune, train, prune again: a new
mask only ever removes weights the previous one kept).
"""

import torch
from torch.nn.utils import prune

from ..contract.errors import ConfigError
from ..contract.placement import Placement

__all__ = ["LoadBalancedUnstructured", "load_balanced_unstructured", "global_unstructured",
           "mask_matrices", "prune_module", "PRUNING_KINDS"]

PRUNING_KINDS = ("balanced", "global")


def _check_density(density):
    if isinstance(density, bool) or not isinstance(density, (int, float)) \
            or not 0.0 < float(density) <= 1.0:
        raise ConfigError(f"density must be a number in (0, 1], not {density!r}")
    return float(density)


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
        Fraction of each PE's weights to keep, in (0, 1].
    placement : Placement
        Where the target hardware puts each row (:class:`~ese.sw.contract.placement.Placement`).
    rows_per_group : int
        The cell count for stacked gate matrices (whose rows i, f, g, o of a cell are
        interleaved), the row count otherwise; see :meth:`Placement.owners`.
    slots, rotated :
        A GRU's gate matrices: the gate slot of each group of rows, and the rotation of the
        slots (see :meth:`Placement.owners`).
    """

    PRUNING_TYPE = "global"   # the method needs the whole matrix to see which row is where

    def __init__(self, density, placement, rows_per_group, slots=None, rotated=False):
        self.density = _check_density(density)
        if not isinstance(placement, Placement):
            raise TypeError(f"placement must be a Placement, not {type(placement).__name__}")
        self.placement = placement
        self.rows_per_group = rows_per_group
        self.slots = slots
        self.rotated = rotated

    def compute_mask(self, t, default_mask):
        if t.dim() != 2:
            raise ValueError(f"load-balanced pruning needs a 2-D weight, not {t.dim()}-D")
        mask = torch.zeros_like(default_mask)
        # Weights an earlier mask removed must stay removed: they score below every live one.
        scores = torch.where(default_mask.bool(), t.abs(), torch.full_like(t, -1.0))
        owner = torch.as_tensor(self.placement.owners(t.shape[0], self.rows_per_group,
                                                      self.slots, self.rotated))
        for pe in range(self.placement.pes):
            rows = torch.nonzero(owner == pe).flatten()
            if len(rows) == 0:
                continue
            block = scores[rows].flatten()
            keep = min(int(round(self.density * block.numel())),
                       int(default_mask[rows].sum().item()))
            mask[rows] = _keep_largest(block, keep).view(len(rows), -1)
        return mask

    @classmethod
    def apply(cls, module, name, density, placement, rows_per_group, slots=None, rotated=False,
              importance_scores=None):
        return super().apply(module, name, density=density, placement=placement,
                             rows_per_group=rows_per_group, slots=slots, rotated=rotated,
                             importance_scores=importance_scores)


def load_balanced_unstructured(module, name, density, placement, rows_per_group, slots=None,
                               rotated=False):
    """Prune ``module.<name>`` load-balanced per PE (like ``prune.l1_unstructured``)."""
    LoadBalancedUnstructured.apply(module, name, density, placement, rows_per_group, slots,
                                   rotated)
    return module


def global_unstructured(module, name, density):
    """Prune ``module.<name>`` to ``density`` by one magnitude threshold over the matrix."""
    density = _check_density(density)
    total = getattr(module, name).numel()
    prune.l1_unstructured(module, name, amount=total - int(round(density * total)))
    return module


def mask_matrices(matrices, density, placement, kind="balanced"):
    """Attach ``torch.nn.utils.prune`` masks of ``density`` to ``matrices`` (from a
    converter's ``prunable``), load-balanced per PE of ``placement`` (a
    :class:`~ese.sw.contract.placement.Placement`) or by one threshold per matrix; they stay
    (and keep pruned weights at zero through training) until ``prune.remove``."""
    if kind not in PRUNING_KINDS:
        raise ConfigError(f"pruning must be one of {', '.join(PRUNING_KINDS)}, not {kind!r}")
    density = _check_density(density)
    for matrix in matrices:
        if kind == "balanced":
            load_balanced_unstructured(matrix.owner, matrix.name, density, placement,
                                       matrix.rows_per_group, matrix.slots, matrix.rotated)
        else:
            global_unstructured(matrix.owner, matrix.name, density)


def prune_module(module, matrices, density, placement, kind="balanced"):
    """One-shot pruning of ``matrices`` (from a converter's ``prunable``) in place.

    The masks are made permanent (``prune.remove``), so the module is again a plain module
    whose pruned weights are zeros.
    """
    mask_matrices(matrices, density, placement, kind)
    for matrix in matrices:
        prune.remove(matrix.owner, matrix.name)
    return module
