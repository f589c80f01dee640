"""The compiler's pipeline: a PyTorch module becomes a :class:`~ese.sw.runtime.program.Program`.

``ese.compile`` runs the steps in the order the data flows: convert (the registry of
:mod:`.converters`), prune (:mod:`.pruning`), quantize (:mod:`.quantization`) and encode per PE
(:mod:`ese.sw.runtime.encoding`). Its result belongs to the runtime, which runs and saves it
without the compiler.
"""

import copy

import numpy as np

from ..contract.arithmetic import LayerFormats
from ..contract.config import Config
from ..contract.errors import ConfigError
from ..contract.placement import Placement
from ..runtime.encoding import encode_model
from ..runtime.program import Program
from .converters import converter_for
from .formats import calibration_sequences, choose_formats, float_forward
from .pruning import PRUNING_KINDS, prune_module
from .quantization import quantize_model

__all__ = ["compile"]


def compile(module, config=None, density=None, pruning="balanced", calibration=None,
            formats="auto", node=None, delta=None):
    """Compile a PyTorch LSTM or GRU (or an ONNX graph's) for the accelerator.

    Parameters
    ----------
    module : torch.nn.LSTM, LSTMCell, GRU, GRUCell, ese.PeepholeLSTM, an ONNX file or ModelProto
        The trained model. It is not modified. From ONNX, the LSTM and GRU operators' nodes
        (see :mod:`.onnx_import`).
    config : Config, optional
        Hardware parameters; ``Config()`` (ESE's) by default. Capacities left as None are
        sized for the model.
    density : float or None
        Fraction of each weight matrix to keep; None keeps the module's own zeros.
    pruning : "balanced" or "global"
        Load-balanced per PE (ESE) or one magnitude threshold per matrix.
    calibration : array or list of arrays, optional
        Representative input frames: one sequence (frames, inputs), a batch (sequences,
        frames, inputs) or a list of sequences. They choose the first layer's input format
        and each projection's output format, and the report records what saturated on them
        and the largest error of the outputs against the float model.
    node : str or list of str, optional
        ONNX only: the LSTM or GRU node (or chain of nodes) to compile, by name or by path
        through the If/Loop/Scan subgraphs that hold it
        (``ese.sw.compiler.onnx_import.recurrent_nodes``); by default the main graph's LSTM
        and GRU nodes, which must form one chain.
    formats : "auto" or "configured"
        "auto" (the default) chooses each matrix's, peepholes' and biases' format from their
        values (see :mod:`.formats`); "configured" keeps ``config``'s formats everywhere (ESE's
        fixed formats; whatever lies beyond them saturates).
    delta : thresholds, optional
        Make the layers delta layers (docs/arithmetic.md, "Delta layers"), which transmit
        only the columns that changed by more than a threshold: ``(theta_x, theta_h)`` or
        ``(theta_x, theta_h, theta_m)`` in real units for every layer, or a list per layer
        (see :meth:`Program.with_delta`). Needs ``Config(delta=1)``.

    Returns
    -------
    Program
    """
    config = Config() if config is None else config
    if not isinstance(config, Config):
        raise ConfigError(f"config must be an ese.Config, not {type(config).__name__}")
    if pruning not in PRUNING_KINDS:
        raise ConfigError(f"pruning must be one of {', '.join(PRUNING_KINDS)}, not {pruning!r}")
    from .onnx_import import import_onnx, is_onnx_model
    if is_onnx_model(module):
        module = import_onnx(module, node=node)
    elif node is not None:
        raise ConfigError("node= picks an LSTM or GRU node of an ONNX model; this model is a "
                          f"{type(module).__name__}")
    converter = converter_for(module)
    pruned = copy.deepcopy(module).cpu()
    if density is not None:
        prune_module(pruned, converter.prunable(pruned), density, Placement.of(config),
                     pruning)
    pruned.eval()
    description = converter.describe(pruned)
    if formats not in ("auto", "configured"):
        raise ConfigError(f"formats must be 'auto' or 'configured', not {formats!r}")
    sequences = runs = None
    if calibration is not None:
        sequences = calibration_sequences(calibration, description.inputs)
        runs = [float_forward(description, sequence) for sequence in sequences]
    if formats == "auto":
        chosen = choose_formats(description, config, sequences, runs)
    else:
        chosen = [LayerFormats() for _ in description.layers]
    model, report = quantize_model(description, config, chosen)
    image = encode_model(model, config)
    model.config = image.config
    metadata = {"source": converter.source(module), "density": density,
                "pruning": pruning if density is not None else None}
    program = Program(model, image, report, metadata, pruned_module=pruned,
                      run_float=converter.run_float)
    if delta is not None:
        program = program.with_delta(delta)
    if sequences is not None:
        report.calibration = calibrate(program, sequences, runs)
    return program


def calibrate(program, sequences, runs):
    """What the calibration frames show of a compiled program: how many values saturated
    (inputs, cell states, projection outputs, per layer) and the largest distance of its
    outputs from the float model's (``runs``: :func:`.formats.float_forward` on each)."""
    saturated = {}
    largest = 0.0
    frames = 0
    for sequence, run in zip(sequences, runs):
        codes, clipped = program.encode_inputs(sequence)
        if clipped:
            saturated["input"] = saturated.get("input", 0) + clipped
        outputs = program.decode_outputs(program.predict_codes(codes, saturated=saturated))
        reference = run[-1]
        largest = max(largest, float(np.abs(outputs - reference).max()))
        frames += len(sequence)
    return {"frames": frames, "saturated": {k: v for k, v in saturated.items() if v},
            "max_error": largest}
