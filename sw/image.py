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
field asks for, then the checksum, then the header's schema and every section's bounds.
Everything wrong raises :class:`~ese.sw.errors.ImageError` naming what is wrong.
"""

import hashlib
import json
import os
import struct

import numpy as np

from .config import Config
from .encoding import HardwareImage
from .errors import ConfigError, EseError, ImageError

__all__ = ["MAGIC", "FORMAT_VERSION", "write_image", "read_image", "MAX_HEADER_BYTES"]

MAGIC = b"ESEWIMG\0"
#: 1: first release. 2: the gate matrix's rows are interleaved cell by cell across the PEs
#: (see ese.sw.encoding), so a version 1 image's per-PE entries mean other rows. 3: the
#: hardware parameters include ``stream_window``, and the load stream may hold STREAMS and
#: PADDING records (weights streamed from off-chip memory).
FORMAT_VERSION = 3
_PREAMBLE = struct.Struct("<8sIIQ")
_DIGEST_BYTES = 32
MAX_HEADER_BYTES = 16 << 20
_SECTION_DTYPES = {"uint32": np.dtype("<u4"), "int32": np.dtype("<i4")}


def _sections(image):
    pes = image.config.pes
    return {
        "pointers": image.pointers.astype("<u4"),
        "entries": (np.concatenate(image.entries) if sum(map(len, image.entries))
                    else np.zeros(0)).astype("<u4"),
        "cell_parameters": image.cell_parameters.astype("<i4"),
        "padding": np.asarray(image.padding if image.padding is not None
                              else np.zeros(pes), dtype="<u4"),
    }


def write_image(path, image, metadata):
    """Write ``image`` (a HardwareImage) and ``metadata`` (JSON-able dict) to ``path``."""
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
        "sections": table,
        "metadata": metadata,
    }
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    content = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes), len(body))
    content += header_bytes + bytes(body)
    content += hashlib.sha256(content).digest()
    temporary = f"{path}.partial"
    with open(temporary, "wb") as file:
        file.write(content)
    os.replace(temporary, path)


def read_image(path):
    """Read and check an image file; returns ``(HardwareImage, metadata)``."""
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
    except OSError as error:
        raise ImageError(f"cannot read weight image {path}: {error.strerror or error}") from None
    if hashlib.sha256(content).digest() != digest:
        raise ImageError(f"{path}: checksum mismatch; the image is corrupted")
    header_bytes = content[_PREAMBLE.size:_PREAMBLE.size + header_length]
    body = content[_PREAMBLE.size + header_length:]
    try:
        header = json.loads(header_bytes.decode())
        return _parse(header, body, path)
    except ImageError:
        raise
    except (ConfigError, EseError) as error:
        raise ImageError(f"{path}: {error}") from None
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as error:
        raise ImageError(f"{path}: malformed header ({type(error).__name__}: {error})") from None


def _parse(header, body, path):
    if not isinstance(header, dict) or header.get("format") != "ese-weight-image":
        raise ImageError(f"{path}: the header does not describe an ese weight image")
    config = Config.from_dict(header["config"])
    config.require_sized()
    sections = {}
    for name in ("pointers", "entries", "cell_parameters", "padding"):
        entry = header["sections"][name]
        dtype = _SECTION_DTYPES.get(entry["dtype"])
        shape = tuple(int(n) for n in entry["shape"])
        offset = int(entry["offset"])
        if dtype is None or any(n < 0 for n in shape) or offset < 0:
            raise ImageError(f"{path}: section {name} has a bad type or shape")
        length = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + length > len(body):
            raise ImageError(f"{path}: section {name} runs past the end of the body")
        sections[name] = np.frombuffer(body, dtype=dtype, count=int(np.prod(shape)),
                                       offset=offset).reshape(shape).astype(np.int64)
    pointers = sections["pointers"]
    if pointers.ndim != 2 or pointers.shape[0] != config.pes:
        raise ImageError(f"{path}: column pointers do not match {config.pes} PEs")
    counts = pointers[:, -1] if pointers.shape[1] else np.zeros(config.pes, dtype=np.int64)
    if counts.sum() != len(sections["entries"]) or np.any(counts < 0):
        raise ImageError(f"{path}: the column pointers do not account for the entries")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    entries = [sections["entries"][bounds[k]:bounds[k + 1]] for k in range(config.pes)]
    layers = header["layers"]
    if not isinstance(layers, list) or not all(isinstance(d, dict) for d in layers):
        raise ImageError(f"{path}: layer descriptors are malformed")
    descriptors = [{str(k): int(v) for k, v in d.items()} for d in layers]
    image = HardwareImage(config, pointers, entries, sections["cell_parameters"], descriptors,
                          sections["padding"])
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ImageError(f"{path}: metadata is malformed")
    return image, metadata
