"""Weight image files: round trip, and every kind of bad file refused with a clear error."""

import hashlib
import json
import struct

import numpy as np
import pytest
from torch import nn

import ese
from ese.sw.runtime.image import FORMAT_VERSION, MAGIC

from helpers import frames


@pytest.fixture
def program():
    return ese.compile(ese.PeepholeLSTM(7, 12, proj_size=5, num_layers=2), ese.Config(pes=4),
                       density=0.4)


@pytest.fixture
def image_bytes(program, tmp_path):
    path = tmp_path / "model.ese"
    program.save(path)
    return path.read_bytes()


def _write(tmp_path, content, name="bad.ese"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _reseal(content):
    """Recompute the checksum after an edit, as a careless tool would."""
    return content[:-32] + hashlib.sha256(content[:-32]).digest()


def _split(content):
    magic, version, header_length, body_length = struct.unpack_from("<8sIIQ", content)
    header = json.loads(content[24:24 + header_length])
    body = content[24 + header_length:-32]
    return header, body


def _join(header, body, version=FORMAT_VERSION):
    header_bytes = json.dumps(header).encode()
    content = struct.pack("<8sIIQ", MAGIC, version, len(header_bytes), len(body))
    return _reseal(content + header_bytes + body + bytes(32))


def test_save_and_load_round_trip(program, tmp_path):
    path = tmp_path / "model.ese"
    program.save(path)
    loaded = ese.load(path)
    x = frames(20, 7)
    assert np.array_equal(loaded.predict(x), program.predict(x))
    assert loaded.config == program.config
    assert loaded.summary() == program.summary()
    assert loaded.metadata["density"] == 0.4


def test_saving_twice_gives_identical_bytes(program, tmp_path):
    program.save(tmp_path / "a.ese")
    ese.load(tmp_path / "a.ese").save(tmp_path / "b.ese")
    assert (tmp_path / "a.ese").read_bytes() == (tmp_path / "b.ese").read_bytes()


@pytest.mark.parametrize("cut", [1, 32, 100, 1000])
def test_truncated_image_is_refused(image_bytes, tmp_path, cut):
    path = _write(tmp_path, image_bytes[:-cut])
    with pytest.raises(ese.ImageError, match="truncated|too short"):
        ese.load(path)


def test_corrupted_byte_fails_the_checksum(image_bytes, tmp_path):
    content = bytearray(image_bytes)
    content[len(content) // 2] ^= 0x10
    with pytest.raises(ese.ImageError, match="checksum"):
        ese.load(_write(tmp_path, bytes(content)))


def test_wrong_magic_is_not_an_image(tmp_path):
    with pytest.raises(ese.ImageError, match="not an ese weight image"):
        ese.load(_write(tmp_path, b"PK\x03\x04" + bytes(100)))


def test_other_format_version_is_refused(image_bytes, tmp_path):
    content = bytearray(image_bytes)
    content[8:12] = struct.pack("<I", FORMAT_VERSION + 1)
    with pytest.raises(ese.ImageError, match=f"version {FORMAT_VERSION + 1} is not supported"):
        ese.load(_write(tmp_path, _reseal(bytes(content))))


def test_huge_header_length_is_refused_before_reading(image_bytes, tmp_path):
    content = bytearray(image_bytes)
    content[12:16] = struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(ese.ImageError, match="announces"):
        ese.load(_write(tmp_path, bytes(content)))


def test_inconsistent_memories_are_refused_even_with_a_valid_checksum(image_bytes, tmp_path):
    header, body = _split(image_bytes)
    entries = header["sections"]["entries"]
    body = bytearray(body)
    # Zero the first entry's weight, keeping its relative index: the memories then no longer
    # encode a model the way the compiler does.
    offset = entries["offset"]
    word = struct.unpack_from("<I", body, offset)[0]
    body[offset:offset + 4] = struct.pack("<I", word & ~0xFFF)
    with pytest.raises(ese.ImageError, match="not a padding entry|consistent"):
        ese.load(_write(tmp_path, _join(header, bytes(body))))


def test_malformed_header_is_refused(image_bytes, tmp_path):
    header, body = _split(image_bytes)
    del header["config"]["pes"]
    with pytest.raises(ese.ImageError, match="pes"):
        ese.load(_write(tmp_path, _join(header, body)))
    header, body = _split(image_bytes)
    header["sections"]["entries"]["offset"] = len(body)
    with pytest.raises(ese.ImageError, match="past the end"):
        ese.load(_write(tmp_path, _join(header, body)))


def test_image_for_other_hardware_is_refused(program, tmp_path):
    path = tmp_path / "model.ese"
    program.save(path)
    with pytest.raises(ese.ImageError, match="pes: image 4, hardware 8"):
        ese.load(path, config=program.config.replace(pes=8))
    with pytest.raises(ese.ImageError, match="weight_bits"):
        ese.load(path, config=program.config.replace(weight_bits=8, weight_frac_bits=6))
    with pytest.raises(ese.ImageError, match="entry_depth needs"):
        ese.load(path, config=program.config.replace(entry_depth=4))
    larger = program.config.replace(entry_depth=4 * program.config.entry_depth)
    assert ese.load(path, config=larger).config.entry_depth == larger.entry_depth


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ese.ImageError, match="cannot read"):
        ese.load(tmp_path / "absent.ese")


def test_lstmcell_image_round_trips(tmp_path):
    program = ese.compile(nn.LSTMCell(5, 9), ese.Config(pes=2), density=0.5)
    program.save(tmp_path / "cell.ese")
    x = frames(8, 5)
    assert np.array_equal(ese.load(tmp_path / "cell.ese").predict(x), program.predict(x))
