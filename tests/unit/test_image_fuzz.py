"""The weight image loader under fuzzing (hypothesis): mutated, truncated, extended and
re-sealed files, and headers whose fields hold anything JSON can.

Whatever the bytes, ``ese.load`` either raises ``ese.ImageError`` with a message naming the
file, or accepts a file that is byte for byte what ``Program.save`` writes for the model it
loaded; it never raises anything else, and a header asking for huge sizes is refused before
anything of that size is allocated.
"""

import hashlib
import json
import struct
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ese
from ese.sw.runtime.image import FORMAT_VERSION, MAGIC

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
_WORK = Path(tempfile.mkdtemp(prefix="ese-fuzz-"))


def _valid_image():
    program = ese.compile(ese.PeepholeLSTM(5, 8, proj_size=4, num_layers=2), ese.Config(pes=2),
                          density=0.5)
    path = _WORK / "valid.ese"
    program.save(path)
    return path.read_bytes()


VALID = _valid_image()


def _reseal(content):
    return content[:-32] + hashlib.sha256(content[:-32]).digest()


def _split(content):
    _, _, header_length, _ = struct.unpack_from("<8sIIQ", content)
    return json.loads(content[24:24 + header_length]), content[24 + header_length:-32]


def _join(header, body):
    """An image with a well-formed container (canonical JSON, right lengths, valid checksum)
    around ``header`` and ``body``: only the loader's checks of their meaning stand between
    it and acceptance."""
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    content = struct.pack("<8sIIQ", MAGIC, FORMAT_VERSION, len(header_bytes), len(body))
    return _reseal(content + header_bytes + body + bytes(32))


def _load(content):
    """Load ``content``: 'refused' (an ImageError naming the file) or 'accepted' (and then
    the file is exactly what saving the loaded program writes)."""
    path = _WORK / "fuzzed.ese"
    path.write_bytes(content)
    try:
        program = ese.load(path)
    except ese.ImageError as error:
        assert str(path) in str(error), error
        return "refused"
    program.save(_WORK / "again.ese")
    assert (_WORK / "again.ese").read_bytes() == content
    return "accepted"


def _flips(first, last, most):
    """Byte positions in [first, last] with non-zero XOR masks."""
    return st.lists(st.tuples(st.integers(first, last), st.integers(1, 255)), min_size=1,
                    max_size=most)


def _flipped(flips):
    content = bytearray(VALID)
    for position, mask in flips:
        content[position] ^= mask
    return bytes(content)


@FUZZ
@given(_flips(0, len(VALID) - 1, 8))
def test_flipped_bytes_are_refused(flips):
    content = _flipped(flips)
    if content != VALID:
        assert _load(content) == "refused"


@FUZZ
@given(_flips(24, len(VALID) - 33, 4))
def test_resealed_mutations_are_refused_or_exactly_canonical(flips):
    # A checksum recomputed after the edit: every other check must catch what matters.
    _load(_reseal(_flipped(flips)))


@FUZZ
@given(st.integers(0, len(VALID) - 1))
def test_truncated_files_are_refused(length):
    assert _load(VALID[:length]) == "refused"


@FUZZ
@given(st.binary(min_size=1, max_size=4096), st.booleans())
def test_extended_files_are_refused(tail, reseal):
    content = VALID + tail
    assert _load(_reseal(content) if reseal else content) == "refused"


def _leaves(value, path=()):
    """Every path into a JSON value: its containers and leaves."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))


HEADER, BODY = _split(VALID)
PATHS = [p for p in _leaves(HEADER) if p]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.text(max_size=8)
    | st.integers(-(1 << 70), 1 << 70) | st.sampled_from([0, 1, 2, -1, 1 << 24, 1 << 31, 1 << 63])
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)


def _replace(header, path, value):
    header = json.loads(json.dumps(header))
    target = header
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return header


_DELETE = object()


@FUZZ
@given(st.sampled_from(PATHS), JSON_VALUES | st.just(_DELETE))
def test_any_header_field_holding_anything_is_refused_or_exactly_canonical(path, value):
    _load(_join(_replace(HEADER, path, value), BODY))


@FUZZ
@given(st.sampled_from(PATHS), st.integers(-3, 3))
def test_header_numbers_off_by_a_little_are_refused(path, delta):
    # Near misses are the likeliest corruptions of a well-formed header.
    value = HEADER
    for key in path:
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int) or delta == 0:
        return
    if path[0] not in ("layers", "sections"):
        # A hardware parameter one off can be other valid hardware (checked against the
        # device when loaded onto it), and metadata is free-form.
        return
    assert _load(_join(_replace(HEADER, path, value + delta), BODY)) == "refused"


@pytest.mark.parametrize("huge", [1 << 24, 1 << 31, 1 << 40])
def test_huge_sizes_in_the_header_allocate_nothing(huge):
    # Every numeric field of the layers, sections and hardware set to a huge value: loading
    # never holds more than a few MB (the image itself is ~2 kB).
    fields = []
    for path in PATHS:
        value = HEADER
        for key in path:
            value = value[key]
        if isinstance(value, int) and not isinstance(value, bool) and path[0] != "metadata":
            fields.append(path)
    assert len(fields) > 30
    tracemalloc.start()
    try:
        for path in fields:
            tracemalloc.reset_peak()
            outcome = _load(_join(_replace(HEADER, path, huge), BODY))
            # A capacity of the hardware may be large (the image then needs that hardware);
            # a layer size or a section bound is refused.
            assert outcome == "refused" or path[0] == "config", path
            assert tracemalloc.get_traced_memory()[1] < 16 << 20, path
    finally:
        tracemalloc.stop()
