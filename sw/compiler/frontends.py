"""Front ends: whatever model a user brings, read into a :class:`~.model.ModelDescription`.

The description is the compiler's hub, as hls4ml's converters produce its own intermediate
form: every front end reads its framework's model into one, and the rest of the compiler
(pruning, formats, quantization, encoding, the float reference) works on the description alone.
A registry holds the front ends; :func:`read_model` asks each in turn whether it takes the
object, or the file by its content (never by its name alone), and the first that does reads
it:

========================  =====================================================================
front end                 takes
========================  =====================================================================
ONNX                      an ``onnx.ModelProto``, or a file that parses as one (:mod:`.onnx_import`)
Keras 3                   a Keras model or recurrent layer, or a ``.keras`` file
                          (:mod:`.keras_import`; the optional extra ``ese-lstm[keras]``)
TorchScript               a ``torch.jit.ScriptModule``, or an archive of ``torch.jit.save``
                          (a zip holding ``code/``): parameters read, no code run
torch.export              an ``ExportedProgram``, or a ``.pt2`` archive of ``torch.export.save``
PyTorch state_dict        a mapping of names to tensors, or a ``torch.save`` file that
                          ``torch.load(weights_only=True)`` reads as one
PyTorch module            a live ``torch.nn.Module`` (:mod:`.converters`; Brevitas' ``QuantLSTM``
                          and ``QuantRNN``, :mod:`.brevitas_import`), or a pickled module
                          from ``torch.save(module)``, only with ``trust_pickle=True``
                          (``torch.load(weights_only=False)`` runs code from the file)
========================  =====================================================================

A model that is more than its recurrent layers (an encoder, a classifier around an LSTM) is
compiled in part: ``submodule="encoder.rnn"`` picks a recurrent submodule by its name, a list
of names a chain of them (stacked layers), as ``node=`` picks ONNX nodes;
:func:`recurrent_parts` lists what a model holds. Without it, a model that holds recurrent
submodules but is not one itself is refused with that list.
"""

import zipfile
from collections.abc import Mapping
from pathlib import Path

from ..contract.errors import ConfigError, UnsupportedModelError
from .model import ModelDescription

__all__ = ["FrontEnd", "read_model", "recurrent_parts", "front_ends", "register_front_end"]

_FRONT_ENDS = []


def register_front_end(cls):
    """Class decorator: add a front end to the registry (tried in the order registered)."""
    _FRONT_ENDS.append(cls())
    return cls


def front_ends():
    """The registered front ends, in the order they are tried."""
    return list(_FRONT_ENDS)


class FileContent:
    """What a file holds, by its first bytes and, for a zip archive, its member names: the
    container (``"zip"``, ``"pickle"``, ``"hdf5"`` or ``"other"``)."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UnsupportedModelError(f"{self.path}: no such model file")
        with open(self.path, "rb") as handle:
            head = handle.read(8)
        self.names = []
        if zipfile.is_zipfile(self.path):
            self.container = "zip"
            with zipfile.ZipFile(self.path) as archive:
                self.names = archive.namelist()
        elif head.startswith(b"\x80"):
            self.container = "pickle"       # torch.save's legacy format: a pickle stream
        elif head.startswith(b"\x89HDF"):
            self.container = "hdf5"
        else:
            self.container = "other"

    def holds(self, part):
        """Whether a zip member's path has ``part`` as one of its folders or its name."""
        return any(part in name.split("/") for name in self.names)


class FrontEnd:
    """One framework's models. Subclasses say what they take and how to read it."""

    #: The framework, as messages name it.
    name = None

    def takes(self, model):
        """Whether ``model``, an object in memory, is this front end's."""
        return False

    def takes_file(self, content):
        """Whether the file (a :class:`FileContent`) is this front end's."""
        return False

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        """The :class:`ModelDescription` of ``model`` (an object this front end takes, or a
        file's :class:`FileContent`)."""
        raise NotImplementedError

    def parts(self, model):
        """The recurrent parts ``model`` holds, by the names that pick them."""
        raise NotImplementedError


def _find(model):
    if isinstance(model, (str, Path)):
        content = FileContent(model)
        for front_end in _FRONT_ENDS:
            if front_end.takes_file(content):
                return front_end, content
        raise UnsupportedModelError(
            f"{content.path} is not a model ese reads: " + ", ".join(
                f.name for f in _FRONT_ENDS) + " files are")
    for front_end in _FRONT_ENDS:
        if front_end.takes(model):
            return front_end, model
    raise UnsupportedModelError(
        "ese compiles a model of one of " + ", ".join(f.name for f in _FRONT_ENDS)
        + f", not a {type(model).__module__}.{type(model).__name__}")


def read_model(model, submodule=None, node=None, trust_pickle=False):
    """The :class:`ModelDescription` of ``model``: an object of any front end, or a file's
    path (see the module's documentation for ``submodule``, ``node`` and
    ``trust_pickle``)."""
    front_end, found = _find(model)
    if node is not None and not isinstance(front_end, OnnxFrontEnd):
        raise ConfigError(f"node= picks a recurrent node of an ONNX model; this model is a "
                          f"{front_end.name} one (pick its parts with submodule=)")
    if submodule is not None and isinstance(front_end, OnnxFrontEnd):
        raise ConfigError("submodule= picks a submodule of a PyTorch model; an ONNX model's "
                          "nodes are picked with node=")
    return front_end.read(found, submodule=submodule, node=node, trust_pickle=trust_pickle)


def recurrent_parts(model, trust_pickle=False):
    """The recurrent parts a model holds, by the names that pick them: an ONNX model's LSTM
    and GRU nodes (for ``node=``), a PyTorch model's recurrent submodules (for
    ``submodule=``; "" is the model itself)."""
    front_end, found = _find(model)
    return front_end.parts(found, trust_pickle=trust_pickle)


def _names(submodule):
    return [submodule] if isinstance(submodule, str) else list(submodule)


def _chain(descriptions, source):
    """Descriptions one after another as one stack; each one's trained weights' notes renumbered
    to the stack's layers."""
    layers, trained = [], {}
    for description in descriptions:
        for name, grid in description.notes.get("trained_weights", {}).items():
            index, _, matrix = name.partition(".")
            trained[f"layer{int(index[5:]) + len(layers)}.{matrix}"] = grid
        layers += description.layers
    return ModelDescription(layers, source=source,
                            notes={"trained_weights": trained} if trained else {})


# ONNX.

@register_front_end
class OnnxFrontEnd(FrontEnd):
    name = "ONNX"

    def takes(self, model):
        return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")

    def takes_file(self, content):
        return content.container == "other"

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        from .onnx_import import import_onnx
        return import_onnx(model.path if isinstance(model, FileContent) else model, node=node)

    def parts(self, model, trust_pickle=False):
        from .onnx_import import recurrent_nodes
        return recurrent_nodes(model.path if isinstance(model, FileContent) else model)


# Keras.

@register_front_end
class KerasFrontEnd(FrontEnd):
    name = "Keras 3"

    def takes(self, model):
        from .keras_import import is_keras_object
        return is_keras_object(model)

    def takes_file(self, content):
        return content.container == "hdf5" or (
            content.container == "zip" and {"config.json", "model.weights.h5"} <= set(
                content.names))

    def _load(self, model):
        from .keras_import import load_keras_file
        return load_keras_file(model.path) if isinstance(model, FileContent) else model

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        from .keras_import import import_keras
        return import_keras(self._load(model), submodule)

    def parts(self, model, trust_pickle=False):
        from .keras_import import recurrent_layers
        return recurrent_layers(self._load(model))


# PyTorch: parameters by name (state_dict, TorchScript, torch.export).

def _groups(parameters):
    """A flat mapping of qualified parameter names to tensors, grouped by the module that
    holds them: ``{prefix: {local name: tensor}}`` for every prefix that holds a recurrent
    layer's parameters (PyTorch's names, :data:`~.converters.PARAMETER_NAME`)."""
    from .converters import PARAMETER_NAME
    groups = {}
    for name, value in parameters.items():
        prefix, _, local = name.rpartition(".")
        groups.setdefault(prefix, {})[local] = value
    return {prefix: found for prefix, found in groups.items()
            if any(PARAMETER_NAME.match(local) and local.startswith("weight_hh")
                   for local in found)}


def _describe_named(parameters, submodule, what, kinds=None):
    """A description of the recurrent submodule(s) of a flat parameter mapping: the one
    ``submodule`` names (a list: a chain), or the only one there is."""
    from .converters import describe_parameters
    groups = _groups(parameters)
    listed = ", ".join(repr(prefix) for prefix in groups) or "none"
    if not groups:
        raise UnsupportedModelError(
            f"{what} holds no recurrent layer's parameters (weight_ih_l0, weight_hh_l0, ...; "
            f"a cell's weight_ih, weight_hh)")
    if submodule is None:
        others = [name for name in parameters if name.rpartition(".")[0] not in groups]
        if len(groups) > 1 or others:
            raise UnsupportedModelError(
                f"{what} is more than one recurrent module: it holds the recurrent modules "
                f"{listed}" + (f" and other parameters ({', '.join(others[:3])}"
                               f"{', ...' if len(others) > 3 else ''})" if others else "")
                + "; pick one, or a chain of them, with submodule= (--submodule); the rest "
                  "of the model runs on the host")
        chosen = list(groups)
    else:
        chosen = _names(submodule)
        missing = [name for name in chosen if name not in groups]
        if missing:
            raise UnsupportedModelError(
                f"{what} has no recurrent submodule {', '.join(map(repr, missing))}; its "
                f"recurrent submodules are {listed}")
    kinds = kinds or {}
    return _chain([describe_parameters(groups[prefix], f"{what} {prefix}".rstrip(),
                                       kinds.get(prefix)) for prefix in chosen],
                  f"{what} " + ", ".join(chosen) if any(chosen) else what)


def _tensors_only(mapping):
    import torch
    return all(isinstance(key, str) and isinstance(value, torch.Tensor)
               for key, value in mapping.items())


@register_front_end
class TorchScriptFrontEnd(FrontEnd):
    """``torch.jit.save`` archives and scripted or traced modules: their parameters are read
    by name (the kinds from the submodules' original class names), and nothing in the
    archive runs."""

    name = "TorchScript"

    def takes(self, model):
        import sys
        jit = sys.modules.get("torch.jit")
        return jit is not None and isinstance(model, jit.ScriptModule)

    def takes_file(self, content):
        return content.container == "zip" and content.holds("code") and content.holds(
            "constants.pkl")

    def _load(self, model):
        if not isinstance(model, FileContent):
            return model
        import torch
        try:
            return torch.jit.load(str(model.path), map_location="cpu")
        except Exception as error:    # torch.jit.load raises RuntimeError and others
            raise UnsupportedModelError(f"{model.path} is not a TorchScript archive torch "
                                        f"can read ({type(error).__name__}: {error})") from None

    def _kinds(self, scripted, what):
        """The kind of each recurrent submodule, by its class's original name; a submodule
        holding PyTorch's recurrent parameter names under another class (a custom cell, whose
        equations ese cannot know) and an RNN whose nonlinearity is not tanh are refused."""
        kinds = {"LSTM": "lstm", "LSTMCell": "lstm", "GRU": "gru", "GRUCell": "gru",
                 "PeepholeLSTM": "lstm", "RNN": "rnn", "RNNCell": "rnn"}
        modules = dict(scripted.named_modules())
        for prefix in _groups(dict(scripted.named_parameters())):
            module = modules.get(prefix)
            original = getattr(module, "original_name", None)
            if original not in kinds:
                raise UnsupportedModelError(
                    f"{what}: submodule {prefix!r} is a {original}, not one of PyTorch's "
                    f"recurrent modules ({', '.join(kinds)}), so its equations are unknown to "
                    f"ese even where its parameters have their names")
            nonlinearity = getattr(module, "nonlinearity", "tanh")
            if kinds[original] == "rnn" and nonlinearity != "tanh":
                raise UnsupportedModelError(
                    f"{what}: {original} {prefix!r} has nonlinearity={nonlinearity!r}: the cell "
                    f"unit's tables are sigmoid and tanh; use nonlinearity='tanh'")
        return {name: kinds[module.original_name] for name, module in modules.items()
                if getattr(module, "original_name", None) in kinds}

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        scripted = self._load(model)
        what = (f"TorchScript archive {model.path.name}" if isinstance(model, FileContent)
                else f"TorchScript module {scripted.original_name}")
        parameters = dict(scripted.named_parameters())
        return _describe_named(parameters, submodule, what, self._kinds(scripted, what))

    def parts(self, model, trust_pickle=False):
        return list(_groups(dict(self._load(model).named_parameters())))


@register_front_end
class ExportedProgramFrontEnd(FrontEnd):
    """``torch.export`` programs (``.pt2`` archives of ``torch.export.save``): their
    ``state_dict``, read by name."""

    name = "torch.export"

    def takes(self, model):
        import sys
        export = sys.modules.get("torch.export")
        return export is not None and isinstance(model, export.ExportedProgram)

    def takes_file(self, content):
        return content.container == "zip" and content.holds("archive_format")

    def _load(self, model):
        if not isinstance(model, FileContent):
            return model
        import torch
        try:
            return torch.export.load(str(model.path))
        except Exception as error:    # torch.export.load raises many kinds
            raise UnsupportedModelError(f"{model.path} is not a torch.export program torch "
                                        f"can read ({type(error).__name__}: {error})") from None

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        program = self._load(model)
        what = (f"torch.export program {model.path.name}" if isinstance(model, FileContent)
                else "torch.export program")
        relu = [str(node.target) for node in program.graph.nodes
                if "rnn_relu" in str(getattr(node, "target", ""))]
        if relu:
            raise UnsupportedModelError(
                f"{what} runs an RNN with nonlinearity='relu' ({relu[0]}): the cell unit's "
                f"tables are sigmoid and tanh; use nonlinearity='tanh'")
        return _describe_named(dict(program.state_dict), submodule, what)

    def parts(self, model, trust_pickle=False):
        return list(_groups(dict(self._load(model).state_dict)))


def _torch_load(content, trust_pickle):
    """A ``torch.save`` file's object: read with ``weights_only=True`` (tensors and plain
    containers, no code run), or, where that refuses a pickled object, with
    ``weights_only=False`` only if ``trust_pickle``."""
    import pickle

    import torch
    try:
        return torch.load(str(content.path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust_pickle:
            raise UnsupportedModelError(
                f"{content.path} holds a pickled Python object (torch.save(module)), and "
                f"loading it runs code from the file; if you trust it, pass "
                f"trust_pickle=True (ese compile --trust-pickle), or save the weights as a "
                f"state_dict (torch.save(module.state_dict())) ({str(error).splitlines()[0]})"
            ) from None
    except Exception as error:        # torch.load raises many kinds for a file it cannot read
        raise UnsupportedModelError(f"{content.path} is not a file torch.save wrote "
                                    f"({type(error).__name__}: {error})") from None
    try:
        return torch.load(str(content.path), map_location="cpu", weights_only=False)
    except Exception as error:        # the pickle may name classes this process lacks
        raise UnsupportedModelError(f"{content.path}: the pickled object cannot be loaded "
                                    f"({type(error).__name__}: {error}); save the weights as a "
                                    f"state_dict") from None


@register_front_end
class TorchSaveFrontEnd(FrontEnd):
    """Files of ``torch.save``: a ``state_dict`` (read by name), or a pickled module (with
    ``trust_pickle`` only). A state_dict holds weights, not the module's options: a simple
    RNN's is read as PyTorch's default, tanh (a relu RNN's must come as its module)."""

    name = "PyTorch (torch.save)"

    def takes_file(self, content):
        return content.container == "pickle" or (
            content.container == "zip" and content.holds("data.pkl"))

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        loaded = _torch_load(model, trust_pickle)
        return _read_loaded(loaded, model.path.name, submodule)

    def parts(self, model, trust_pickle=False):
        loaded = _torch_load(model, trust_pickle)
        return (list(_groups(_state_dict(loaded, model.path.name))) if isinstance(
            loaded, Mapping) else _module_parts(loaded))


def _state_dict(loaded, what):
    """A loaded mapping as a flat state_dict: itself, or the ``state_dict`` or
    ``model_state_dict`` entry of a training checkpoint."""
    for key in ("state_dict", "model_state_dict", "model"):
        inner = loaded.get(key)
        if isinstance(inner, Mapping) and inner and _tensors_only(inner):
            return inner
    if not _tensors_only(loaded):
        raise UnsupportedModelError(
            f"{what} holds a mapping that is not a state_dict (names to tensors): keys "
            f"{', '.join(map(repr, list(loaded)[:8]))}")
    return loaded


def _read_loaded(loaded, what, submodule):
    import torch
    if isinstance(loaded, Mapping):
        return _describe_named(_state_dict(loaded, what), submodule, f"state_dict {what}")
    if isinstance(loaded, torch.nn.Module):
        return _read_module(loaded, submodule)
    raise UnsupportedModelError(f"{what} holds a {type(loaded).__name__}, not a module or a "
                                f"state_dict")


@register_front_end
class StateDictFrontEnd(FrontEnd):
    """A ``state_dict`` in memory: a mapping of PyTorch's parameter names to tensors."""

    name = "PyTorch state_dict"

    def takes(self, model):
        return isinstance(model, Mapping)

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        return _describe_named(_state_dict(model, "state_dict"), submodule, "state_dict")

    def parts(self, model, trust_pickle=False):
        return list(_groups(_state_dict(model, "state_dict")))


# PyTorch: live modules.

def _module_parts(module):
    """The names of a module's submodules that a converter reads ("" for itself), leaving
    out those inside another one."""
    from .brevitas_import import is_brevitas_recurrent
    from .converters import _REGISTRY
    found = []
    for name, sub in module.named_modules():
        if any(name.startswith(f"{outer}.") or outer == "" for outer in found):
            continue
        if is_brevitas_recurrent(sub) or any(cls in _REGISTRY for cls in type(sub).__mro__):
            found.append(name)
    return found


def _describe_module(module, name=""):
    """A recurrent module's description, its source named (with ``name``, its path)."""
    from .brevitas_import import describe_brevitas, is_brevitas_recurrent
    from .converters import converter_for
    if is_brevitas_recurrent(module):
        return describe_brevitas(module, f"brevitas.nn.{type(module).__name__} {name}".strip())
    converter = converter_for(module)          # refuses what is not supported, by name
    description = converter.describe(module)
    description.source = f"{converter.source(module)} {name}".strip()
    return description


def _read_module(module, submodule):
    from .converters import supported_modules
    if submodule is None:
        parts = _module_parts(module)
        if parts and parts != [""]:
            raise UnsupportedModelError(
                f"{type(module).__name__} is not itself a recurrent layer; its recurrent "
                f"submodules are {', '.join(map(repr, parts))}: pick one, or a chain of them, "
                f"with submodule= (--submodule); the rest of the model runs on the host")
        return _describe_module(module)
    descriptions = []
    for name in _names(submodule):
        try:
            sub = module.get_submodule(name)
        except AttributeError:
            raise UnsupportedModelError(
                f"{type(module).__name__} has no submodule {name!r}; its recurrent submodules "
                f"are {', '.join(map(repr, _module_parts(module))) or 'none'} (ese compiles "
                f"{', '.join(supported_modules())})") from None
        descriptions.append(_describe_module(sub, name))
    if len(descriptions) == 1:
        return descriptions[0]
    return _chain(descriptions, f"{type(module).__name__} " + ", ".join(_names(submodule)))


@register_front_end
class TorchModuleFrontEnd(FrontEnd):
    """A live ``torch.nn.Module``: a recurrent module a converter reads
    (:mod:`.converters`), or a model holding such submodules (picked with ``submodule``)."""

    name = "PyTorch module"

    def takes(self, model):
        import sys
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(model, torch.nn.Module)

    def read(self, model, submodule=None, node=None, trust_pickle=False):
        return _read_module(model, submodule)

    def parts(self, model, trust_pickle=False):
        return _module_parts(model)
