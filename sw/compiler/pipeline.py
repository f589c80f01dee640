"""The compiler's pipeline: a trained model becomes a :class:`~ese.sw.runtime.program.Program`.

``ese.compile`` runs the steps in the order the data flows: read the model into a
:class:`~.model.ModelDescription` (the registry of front ends, :mod:`.frontends`), prune the
description (:func:`.pruning.prune_description`), choose formats (:mod:`.formats`), quantize
(:mod:`.quantization`) and encode per PE (:mod:`ese.sw.runtime.encoding`). Its result belongs
to the runtime, which runs and saves it without the compiler; the pruned description stays
with it as the float reference (:func:`.formats.float_forward`).
"""

import numpy as np

from ..contract.arithmetic import LayerFormats
from ..contract.config import Config
from ..contract.errors import ConfigError
from ..contract.placement import Placement
from ..runtime.encoding import encode_model
from ..runtime.program import Program
from .formats import calibration_sequences, choose_formats, float_forward, float_outputs
from .frontends import read_model
from .pruning import PRUNING_KINDS, prune_description
from .quantization import quantize_model, requantization

__all__ = ["compile"]


def compile(module, config=None, density=None, pruning="balanced", calibration=None,
            formats="auto", node=None, delta=None, submodule=None, trust_pickle=False):
    """Compile a trained LSTM or GRU, from any front end (:mod:`.frontends`), for the
    accelerator.

    Parameters
    ----------
    module : a model or a model file's path
        The trained model, not modified: ``torch.nn.LSTM``, ``LSTMCell``, ``GRU``,
        ``GRUCell``, ``ese.PeepholeLSTM`` or a model holding them (see ``submodule``); a
        ``state_dict``; a TorchScript module or archive; a ``torch.export`` program or
        ``.pt2`` archive; an ONNX model or file (the LSTM and GRU operators' nodes, see
        :mod:`.onnx_import`); a ``torch.save`` file. Files are told apart by their content.
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
    submodule : str or list of str, optional
        PyTorch: the recurrent submodule (or chain of them) of a larger model to compile, by
        its name in ``named_modules()`` or the state_dict (``"encoder.rnn"``);
        :func:`.frontends.recurrent_parts` lists them.
    trust_pickle : bool
        Read a file of ``torch.save(module)``, which runs code from the file
        (``torch.load(weights_only=False)``). Without it such files are refused.
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
    if formats not in ("auto", "configured"):
        raise ConfigError(f"formats must be 'auto' or 'configured', not {formats!r}")
    source = read_model(module, submodule=submodule, node=node, trust_pickle=trust_pickle)
    description = source
    if density is not None:
        description = prune_description(source, density, Placement.of(config), pruning)
    sequences = runs = None
    if calibration is not None:
        sequences = calibration_sequences(calibration, description.inputs)
        runs = [float_forward(description, sequence) for sequence in sequences]
    if formats == "auto":
        chosen = choose_formats(description, config, sequences, runs)
    else:
        chosen = [LayerFormats() for _ in description.layers]
    model, report = quantize_model(description, config, chosen)
    trained = source.notes.get("trained_weights")
    if trained:
        report.requantized = requantization(description, model, config, trained)
    image = encode_model(model, config)
    model.config = image.config
    metadata = {"source": source.source, "density": density,
                "pruning": pruning if density is not None else None}
    for name in ("nodes", "state_inputs", "last_frame_only", "trained_weights"):
        if name in source.notes:
            metadata[name] = source.notes[name]
    program = Program(model, image, report, metadata, float_model=description,
                      run_float=float_outputs)
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
        reference = np.concatenate([run[index] for index in program.float_model.stages()[-1]],
                                   axis=1)
        largest = max(largest, float(np.abs(outputs - reference).max()))
        frames += len(sequence)
    return {"frames": frames, "saturated": {k: v for k, v in saturated.items() if v},
            "max_error": largest}
