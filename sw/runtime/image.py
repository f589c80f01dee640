"""The weight image file: a versioned, checksummed container for a compiled program.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic b"ESEWIMG\\0"
    8       4     format version (uint32)
    12      4     header length H in bytes (uint32)
    16      8     body length B in bytes (uint64)
    24      H     header: UTF-8 JSON (hardware parameters, layer descriptors, sections, report)
    24+H    B     body: the sections named in the header, raw little-endian arrays
    24+H+B  32    SHA-256 of everything before it

Reading checks the fixed fields and the file size before it allocates anything a header
field asks for, then the checksum, then the header's schema: every section's type and bounds,
and every layer descriptor against the layer sizes it gives, the sections' shapes, the
hardware's capacities and :data:`MAX_WEIGHTS`, before a matrix is built from it. The loader
(:func:`ese.load`) then accepts the file only if it is byte for byte what this version writes
for the model it decodes to. Everything wrong raises :class:`~ese.sw.contract.errors.ImageError`
naming what is wrong; nothing in a header makes the loader read another file.
"""

import hashlib
import json
import os
import struct
from types import SimpleNamespace

import numpy as np

from ..contract.arithmetic import DeltaThresholds, LayerFormats
from ..contract.config import Config
from ..contract.errors import ConfigError, EseError, ImageError
from ..contract.memory_map import (
    ALIGNMENT_FIELDS,
    CELL_PARAMETERS,
    DELTA_THRESHOLDS,
    FORMAT_VERSION,
)
from ..contract.placement import Placement
from .encoding import HardwareImage, stage_format_problem
from .quantized import DIRECTIONS, StackShape

__all__ = ["MAGIC", "FORMAT_VERSION", "write_image", "read_image", "image_bytes",
           "MAX_HEADER_BYTES", "MAX_WEIGHTS"]

MAGIC = b"ESEWIMG\0"
_PREAMBLE = struct.Struct("<8sIIQ")
_DIGEST_BYTES = 32
MAX_HEADER_BYTES = 16 << 20
#: Most weights (zeros included) the layers of an image may have: 64 Mi, 20 times ESE's
#: model. The loader builds each layer's dense matrices, so it refuses more before it does.
MAX_WEIGHTS = 1 << 26
#: The layer descriptor's fields (see ese.sw.runtime.encoding.layout_model).
_DESCRIPTOR_FIELDS = frozenset((
    "inputs", "recurrent", "cells", "proj", "column_base", "input_base", "recurrent_base",
    "cell_output_base", "cell_base", "last", "gru", "rnn", "delta",
    *(f"theta_{name}" for name in DELTA_THRESHOLDS), *ALIGNMENT_FIELDS))
_SECTION_DTYPES = {"uint32": np.dtype("<u4"), "int32": np.dtype("<i4"),
                   "int16": np.dtype("<i2")}


def _sections(image):
    pes = image.config.pes
    config = image.config
    width = 1 + config.block_columns
    return {
        "pointers": image.pointers.astype("<u4"),
        # Each entry as its run and its weights, signed (16 bits each where they fit).
        "entries": np.concatenate([np.asarray(e).reshape(-1, width) for e in image.entries])
                     .astype("<i2" if config.weight_bits <= 16 else "<i4"),
        "cell_parameters": image.cell_parameters.astype("<i4"),
        "padding": np.asarray(image.padding if image.padding is not None
                              else np.zeros(pes), dtype="<u4"),
    }


def image_bytes(image, metadata):
    """The contents of the image file of ``image`` (a HardwareImage) and ``metadata``."""
    body = bytearray()
    table = {}
    for name, array in _sections(image).items():
        table[name] = {"offset": len(body), "dtype": array.dtype.name.replace("<", ""),
                       "shape": list(array.shape)}
        body += array.tobytes()
    header = {
        "format": "ese-weight-image",
        "config": image.config.to_dict(),
        "layers": image.descriptors,
        "formats": [f.to_dict() for f in image.formats],
        "sections": table,
        "metadata": metadata,
    }
    if image.directions:                # only a model with a bidirectional layer has them
        header["directions"] = list(image.directions)
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    content = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes), len(body))
    content += header_bytes + bytes(body)
    return content + hashlib.sha256(content).digest()


def write_image(path, image, metadata):
    """Write ``image`` (a HardwareImage) and ``metadata`` (JSON-able dict) to ``path``."""
    content = image_bytes(image, metadata)
    temporary = f"{path}.partial"
    with open(temporary, "wb") as file:
        file.write(content)
    os.replace(temporary, path)


def read_image(path, with_content=False):
    """Read and check an image file; returns ``(HardwareImage, metadata)``, and the file's
    bytes too when ``with_content``."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            start = file.read(len(MAGIC))
            if start != MAGIC[:len(start)] or not start:
                raise ImageError(f"{path}: not an ese weight image (it starts with {start!r})")
            if size < _PREAMBLE.size + _DIGEST_BYTES:
                raise ImageError(f"{path}: {size} bytes is too short to be a weight image "
                                 f"(truncated)")
            file.seek(0)
            magic, version, header_length, body_length = _PREAMBLE.unpack(
                file.read(_PREAMBLE.size))
            if version != FORMAT_VERSION:
                raise ImageError(
                    f"{path}: image format version {version} is not supported; this ese reads "
                    f"version {FORMAT_VERSION}. Recompile the model with this version of ese")
            expected = _PREAMBLE.size + header_length + body_length + _DIGEST_BYTES
            if header_length > MAX_HEADER_BYTES or expected != size:
                raise ImageError(
                    f"{path}: the header announces {expected} bytes but the file has {size} "
                    f"(truncated or corrupted)")
            file.seek(0)
            content = file.read(size - _DIGEST_BYTES)
            digest = file.read(_DIGEST_BYTES)
            if len(content) + len(digest) != size or file.read(1):
                raise ImageError(f"{path}: the file changed while it was read")
    except OSError as error:
        raise ImageError(f"cannot read weight image {path}: {error.strerror or error}") from None
    if hashlib.sha256(content).digest() != digest:
        raise ImageError(f"{path}: checksum mismatch; the image is corrupted")
    header_bytes = content[_PREAMBLE.size:_PREAMBLE.size + header_length]
    body = content[_PREAMBLE.size + header_length:]
    try:
        header = json.loads(header_bytes.decode(), parse_constant=_refuse_constant)
        image, metadata = _parse(header, body, path)
    except ImageError:
        raise
    except (ConfigError, EseError) as error:
        raise ImageError(f"{path}: {error}") from None
    except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError,
            UnicodeDecodeError) as error:
        raise ImageError(f"{path}: malformed header ({type(error).__name__}: {error})") from None
    return (image, metadata, content + digest) if with_content else (image, metadata)


def _refuse_constant(name):
    raise ImageError(f"the header holds {name}, which is not a number an image may hold")


def _count(value, what, path, limit=1 << 40):
    """A non-negative integer field of the header (JSON integers only)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ImageError(f"{path}: {what} must be an integer from 0 to {limit}, not {value!r}")
    return value


def _parse(header, body, path):
    if not isinstance(header, dict) or header.get("format") != "ese-weight-image":
        raise ImageError(f"{path}: the header does not describe an ese weight image")
    config = Config.from_dict(header["config"])
    config.require_sized()
    sections = {}
    table = header["sections"]
    if not isinstance(table, dict):
        raise ImageError(f"{path}: the section table is malformed")
    for name in ("pointers", "entries", "cell_parameters", "padding"):
        entry = table[name]
        dtype = _SECTION_DTYPES.get(entry["dtype"])
        if dtype is None or not isinstance(entry["shape"], list):
            raise ImageError(f"{path}: section {name} has a bad type or shape")
        shape = tuple(_count(n, f"a dimension of section {name}", path)
                      for n in entry["shape"])
        offset = _count(entry["offset"], f"the offset of section {name}", path)
        count = 1
        for n in shape:
            count *= n          # Python integers: no overflow
        if offset + count * dtype.itemsize > len(body):
            raise ImageError(f"{path}: section {name} runs past the end of the body")
        sections[name] = np.frombuffer(body, dtype=dtype, count=count,
                                       offset=offset).reshape(shape).astype(np.int64)
    pointers = sections["pointers"]
    if pointers.ndim != 2 or pointers.shape[0] != config.pes:
        raise ImageError(f"{path}: column pointers do not match {config.pes} PEs")
    counts = pointers[:, -1] if pointers.shape[1] else np.zeros(config.pes, dtype=np.int64)
    if sections["entries"].shape[1:] != (1 + config.block_columns,):
        raise ImageError(f"{path}: the entries are not (run, {config.block_columns} weights) "
                         f"records, as Config.block_columns says")
    if counts.sum() != len(sections["entries"]) or np.any(counts < 0):
        raise ImageError(f"{path}: the column pointers do not account for the entries")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    entries = [sections["entries"][bounds[k]:bounds[k + 1]] for k in range(config.pes)]
    directions = _check_directions(header.get("directions"), header["layers"], path)
    if directions and config.streamed:
        raise ImageError(f"{path}: a bidirectional model's image for hardware that streams its "
                         f"weights, which runs no passes")
    formats = _check_formats(header["formats"], header["layers"], config, path, directions)
    descriptors = _check_layers(header["layers"], formats, config, sections, path, directions)
    image = HardwareImage(config, pointers, entries, sections["cell_parameters"], descriptors,
                          sections["padding"], formats, directions)
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ImageError(f"{path}: metadata is malformed")
    return image, metadata


def _check_directions(directions, layers, path):
    """Each layer's direction where the header names them (a bidirectional model), else
    None."""
    if directions is None:
        return None
    if (not isinstance(directions, list) or not isinstance(layers, list)
            or len(directions) != len(layers) or "backward" not in directions
            or not all(d in DIRECTIONS for d in directions)):
        raise ImageError(f"{path}: the layers' directions are malformed (one per layer, each "
                         f"one of {', '.join(DIRECTIONS)}, given only for a model with a "
                         f"backward layer)")
    return directions


def _stages(directions, count):
    stack = StackShape()
    stack.layers = [SimpleNamespace(direction=d)
                    for d in (directions or ["forward"] * count)]
    return stack.stages()


def _check_formats(formats, layers, config, path, directions=None):
    """Each layer's formats: a mapping of counts the hardware's alignment shifts hold, the
    input of each stage the output of the one before."""
    if (not isinstance(formats, list) or not isinstance(layers, list)
            or len(formats) != len(layers)
            or not all(isinstance(f, dict) and set(f) == set(LayerFormats.NAMES)
                       for f in formats)):
        raise ImageError(f"{path}: the layer formats are malformed (one per layer, each with "
                         f"the fields {', '.join(LayerFormats.NAMES)})")
    checked = []
    for index, values in enumerate(formats):
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or not -64 <= value <= 64:
                raise ImageError(f"{path}: layer {index}'s {name} format shift must be an "
                                 f"integer from -64 to 64, not {value!r}")
        chosen = LayerFormats.from_dict(values)
        proj = layers[index].get("proj") if isinstance(layers[index], dict) else None
        try:
            chosen.check(config, bool(proj), f"layer {index}")
        except ValueError as error:
            raise ImageError(f"{path}: {error}") from None
        checked.append(chosen)
    problem = stage_format_problem([SimpleNamespace(formats=f) for f in checked],
                                   _stages(directions, len(checked)))
    if problem:
        raise ImageError(f"{path}: {problem}")
    return checked


def _check_layers(layers, formats, config, sections, path, directions=None):
    """The layer descriptors, checked against the sizes they give, the sections and the
    hardware before anything is allocated from them."""
    from .encoding import layout_model
    if (not isinstance(layers, list) or not layers or len(layers) > config.max_layers
            or not all(isinstance(d, dict) and set(d) == _DESCRIPTOR_FIELDS for d in layers)):
        raise ImageError(f"{path}: the layer descriptors are malformed (1 to "
                         f"{config.max_layers} layers, each with the fields "
                         f"{', '.join(sorted(_DESCRIPTOR_FIELDS))})")
    for index, d in enumerate(layers):
        for name, value in d.items():
            _count(value, f"layer {index}'s {name}", path, limit=1 << 24)
    shapes = [SimpleNamespace(inputs=d["inputs"], recurrent=d["recurrent"], cells=d["cells"],
                              proj=d["proj"], formats=f,
                              kind="rnn" if d["rnn"] else "gru" if d["gru"] else "lstm",
                              direction=direction,
                              delta=DeltaThresholds.from_descriptor(d))
              for d, f, direction in zip(layers, formats,
                                         directions or ["forward"] * len(layers))]
    for index, shape in enumerate(shapes):
        if shape.delta is not None:
            try:
                shape.delta.check(config, f"{path}: layer {index}")
            except ValueError as error:
                raise ImageError(str(error)) from None
    if any(s.cells == 0 or s.inputs == 0 for s in shapes):
        raise ImageError(f"{path}: a layer descriptor has no cells or no inputs")
    weights = sum(s.cells * (4 * (s.inputs + s.recurrent) + s.proj) for s in shapes)
    if weights > MAX_WEIGHTS:
        raise ImageError(f"{path}: the layers describe {weights} weights, more than the "
                         f"{MAX_WEIGHTS} an image may hold")
    layout = layout_model(shapes, Placement.of(config))
    if layout.descriptors != layers:
        raise ImageError(f"{path}: the layer descriptors do not place the layers they describe "
                         f"(bases, last-layer flag or alignment shifts inconsistent with the "
                         f"sizes and formats)")
    if sections["pointers"].shape != (config.pes, layout.columns + 1):
        raise ImageError(f"{path}: column pointers have shape {sections['pointers'].shape}; "
                         f"the layers need ({config.pes}, {layout.columns + 1})")
    if sections["cell_parameters"].shape != (layout.cell_count, CELL_PARAMETERS):
        raise ImageError(f"{path}: cell parameters have shape "
                         f"{sections['cell_parameters'].shape}; the layers need "
                         f"({layout.cell_count}, {CELL_PARAMETERS})")
    return [dict(d) for d in layers]
