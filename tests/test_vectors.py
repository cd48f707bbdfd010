"""The committed golden vectors in tests/vectors/ (made by tools/make_vectors.py).

Each ``NAME.nac`` is checked against its ``NAME.json``; the container bytes
must survive unpack/pack exactly, the file must decode to its source's shape,
and re-encoding the source (rebuilt by make_vectors' own recipe) with the
shipped model must give the committed bytes. When the shipped model's weights
change, run ``python tools/make_vectors.py`` and commit the new vectors.
"""

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import pytest

from nac import api

from nac.format import container

from nac.model import zoo
from nac.errors import FormatError, VersionError
from conftest import load_tool

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors" / "legacy"


make_vectors = load_tool("make_vectors")
NAMES = [item.name for item in make_vectors.VECTORS]
MADE = [item.name for item in make_vectors.VECTORS if not item.kept_from]  # today's writer makes these
KEPT = [item.name for item in make_vectors.VECTORS if item.kept_from]


def vector_bytes(name: str) -> bytes:
    return (VECTORS / f"{name}.nac").read_bytes()


def vector_json(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


@functools.lru_cache(maxsize=None)
def decoded(name: str):
    return api.decode(vector_bytes(name))


def test_every_recipe_has_committed_files_and_nothing_else_is_there():
    assert sorted(p.stem for p in VECTORS.glob("*.nac")) == sorted(NAMES)
    assert sorted(p.stem for p in VECTORS.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_header_fields_match_the_json(name):
    header = bitstream.read_header(vector_bytes(name))
    recorded = vector_json(name)["header"]
    fields = {f.name for f in dataclasses.fields(bitstream.StreamHeader)}
    assert set(recorded) == fields
    for field in sorted(fields):
        value = getattr(header, field)
        expected = bytes.fromhex(recorded[field]) if isinstance(value, bytes) else recorded[field]
        assert value == expected, field


@pytest.mark.parametrize("name", NAMES)
def test_chunks_and_sha256_match_the_json(name):
    data, recorded = vector_bytes(name), vector_json(name)
    assert hashlib.sha256(data).hexdigest() == recorded["sha256"]
    assert len(data) == recorded["bytes"]
    report = bitstream.scan(data)
    major = report.header.version_major
    assert report.ok and report.header_size == recorded["header_size"] == bitstream.HEADER_SIZES[major]
    assert len(report.chunks) == recorded["chunk_count"] == recorded["header"]["chunk_count"]
    assert [c.payload_size for c in report.chunks] == [c["payload_size"] for c in recorded["chunks"]]
    assert [c.offset for c in report.chunks] == [c["offset"] for c in recorded["chunks"]]


@pytest.mark.parametrize("name", NAMES)
def test_container_bytes_survive_unpack_and_pack(name):
    data = vector_bytes(name)
    header, chunks = api.unpack(data)
    tables = zoo.load_model(header.model_id).tables_for(header) if header.code_range else None
    assert bitstream.pack(header, chunks, tables) == data


@pytest.mark.parametrize("name", NAMES)
def test_decodes_to_the_source_shape_and_rate(name):
    recorded = vector_json(name)["decoded"]
    audio, rate = decoded(name)
    assert rate == recorded["sample_rate"]
    assert audio.shape == (recorded["channels"], recorded["samples"])


@pytest.mark.parametrize("name", MADE)
def test_reencoding_the_source_gives_the_committed_bytes(name):
    item = make_vectors.vector(name)
    source = vector_json(name)["source"]
    assert (source["sample_rate"], source["samples"], source["bits"], source["store_phase"]) == (
        item.rate, item.samples, item.bits, item.store_phase,
    )
    assert make_vectors.encode(item) == vector_bytes(name)


def test_kept_vectors_are_older_versions_that_still_decode():
    """A file an earlier writer made decodes as it always did; today's writer makes a newer version of it."""
    assert KEPT == ["speech-residual-0.25s", "speech-fine-0.25s"]
    kept, remade = (bitstream.read_header(data) for data in remake("speech-residual-0.25s"))
    assert (kept.version_major, remade.version_major) == (2, 4)
    assert kept.residual_rows == remade.residual_rows == kept.residual_bins  # no bands: one row a bin
    kept_data, remade_data = remake("speech-fine-0.25s")
    assert remade_data == vector_bytes("speech-context-0.25s")  # today's writer makes the 7.0 vector of it
    (kept, kept_chunks), (remade, remade_chunks) = api.unpack(kept_data), api.unpack(remade_data)
    assert (kept.version_major, remade.version_major) == (6, 7)
    assert dataclasses.replace(kept, residual_fine_contexts=True) == remade
    for old, new in zip(kept_chunks, remade_chunks):  # the same codes, in fewer bytes
        assert old.residual.tobytes() == new.residual.tobytes()
    assert len(remade_data) < len(kept_data)


def remake(name: str) -> tuple[bytes, bytes]:
    """A kept vector's committed bytes, and what today's writer makes of its recipe."""
    return vector_bytes(name), make_vectors.encode(make_vectors.vector(name))


def test_stereo_vector_keeps_the_half_gain_channel():
    audio, _ = decoded("stereo-44k-0.2s")
    ratio = float((audio[1] ** 2).sum() / (audio[0] ** 2).sum()) ** 0.5
    assert 0.4 < ratio < 0.6


def _single_bit_flips(data: bytes):
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(flipped)


@pytest.mark.parametrize("name", ["empty", "speech-0.25s"])
def test_every_single_bit_flip_is_detected(name):
    """Header, chunk framing, payload, CRCs and end record: each is covered by a CRC."""
    data = vector_bytes(name)
    missed = []
    for bit, flipped in _single_bit_flips(data):
        try:
            bitstream.unpack(flipped)
        except (FormatError, VersionError):
            continue
        missed.append(bit)
    assert missed == []


def test_every_truncation_is_detected():
    data = vector_bytes("speech-0.25s")
    missed = []
    for size in range(len(data)):
        try:
            bitstream.unpack(data[:size])
        except FormatError:
            continue
        missed.append(size)
    assert missed == []
