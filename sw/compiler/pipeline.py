"""The compiler's pipeline: a PyTorch module becomes a :class:`~ese.sw.runtime.program.Program`.

``ese.compile`` runs the steps in the order the data flows: convert (the registry of
:mod:`.converters`), prune (:mod:`.pruning`), quantize (:mod:`.quantization`) and encode per PE
(:mod:`ese.sw.runtime.encoding`). Its result belongs to the runtime, which runs and saves it
without the compiler.
"""

import copy

from ..contract.config import Config
from ..contract.errors import ConfigError
from ..runtime.encoding import encode_model
from ..runtime.program import Program
from .converters import converter_for
from .pruning import PRUNING_KINDS, prune_module
from .quantization import quantize_model

__all__ = ["compile"]


def compile(module, config=None, density=None, pruning="balanced"):
    """Compile a PyTorch LSTM for the accelerator.

    Parameters
    ----------
    module : torch.nn.LSTM, torch.nn.LSTMCell or ese.PeepholeLSTM
        The trained model. It is not modified.
    config : Config, optional
        Hardware parameters; ``Config()`` (ESE's) by default. Capacities left as None are
        sized for the model.
    density : float or None
        Fraction of each weight matrix to keep; None keeps the module's own zeros.
    pruning : "balanced" or "global"
        Load-balanced per PE (ESE) or one magnitude threshold per matrix.

    Returns
    -------
    Program
    """
    config = Config() if config is None else config
    if not isinstance(config, Config):
        raise ConfigError(f"config must be an ese.Config, not {type(config).__name__}")
    if pruning not in PRUNING_KINDS:
        raise ConfigError(f"pruning must be one of {', '.join(PRUNING_KINDS)}, not {pruning!r}")
    converter = converter_for(module)
    pruned = copy.deepcopy(module).cpu()
    if density is not None:
        prune_module(pruned, converter.prunable(pruned), density, config.pes, pruning)
    pruned.eval()
    description = converter.describe(pruned)
    model, report = quantize_model(description, config)
    image = encode_model(model, config)
    model.config = image.config
    metadata = {"source": converter.display_name, "density": density,
                "pruning": pruning if density is not None else None}
    return Program(model, image, report, metadata, pruned_module=pruned,
                   run_float=converter.run_float)
