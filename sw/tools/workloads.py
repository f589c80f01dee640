"""The layers the tools run when no model is given: ESE's peephole LSTMP, or a GRU, randomly
initialised.

The demo, the benchmark and the soak each compile one; these are the recipes they share.
"""

__all__ = ["random_peephole_program", "random_gru_program", "random_program", "CELLS"]

#: The layer kinds the tools offer (``--cell``).
CELLS = ("lstmp", "gru")


def random_program(cell, inputs, cells, proj, config, **options):
    """:func:`random_peephole_program` (``cell="lstmp"``) or :func:`random_gru_program`
    (``"gru"``: ``cells`` units, ``proj`` unused)."""
    if cell == "gru":
        return random_gru_program(inputs, cells, config, **options)
    return random_peephole_program(inputs, cells, proj, config, **options)


def _spread_rows(module, prefixes, row_spread):
    """Scale each row of the weight matrices named ``prefixes*`` by exp(N(0, row_spread))."""
    import torch
    with torch.no_grad():
        for name, weight in module.named_parameters():
            if name.startswith(prefixes):
                weight.mul_(torch.exp(row_spread * torch.randn(weight.shape[0], 1)))


def random_peephole_program(inputs, cells, proj, config, *, layers=1, density=None,
                            pruning="balanced", seed=0, row_spread=0.0, formats="configured"):
    """An ``ese.PeepholeLSTM`` with PyTorch's default initialization from ``seed``, pruned to
    ``density`` and compiled for ``config``; returns the Program.

    It keeps ESE's fixed formats by default (``formats="configured"``), as ESE's benchmark
    did: the cycles of a frame follow the activations' zeros (zero columns are skipped), and
    formats chosen from this random layer would give its small recurrent weights bits taken
    from y, whose small values would then round to zero and be skipped, a speed-up of the
    formats, not of the design.

    PyTorch's initialization is independent and identically distributed, so global pruning
    leaves every PE about the same work. Trained networks are not like that (some cells'
    rows carry much larger weights than others); ``row_spread`` scales each row of each
    matrix by exp(N(0, row_spread)) to mimic it.
    """
    import torch

    import ese
    torch.manual_seed(seed)
    module = ese.PeepholeLSTM(inputs, cells, proj_size=proj, num_layers=layers)
    if row_spread:
        _spread_rows(module, ("weight_ih", "weight_hh", "weight_hr"), row_spread)
    return ese.compile(module, config, density=density, pruning=pruning, formats=formats)


def random_gru_program(inputs, hidden, config, *, layers=1, density=None, pruning="balanced",
                       seed=0, row_spread=0.0, formats="configured"):
    """A ``torch.nn.GRU`` with PyTorch's default initialization from ``seed``, pruned and
    compiled as :func:`random_peephole_program` does the LSTMP (ESE's fixed formats by
    default, for the same reason)."""
    import torch

    import ese
    torch.manual_seed(seed)
    module = torch.nn.GRU(inputs, hidden, num_layers=layers)
    if row_spread:
        _spread_rows(module, ("weight_ih", "weight_hh"), row_spread)
    return ese.compile(module, config, density=density, pruning=pruning, formats=formats)
