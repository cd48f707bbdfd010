"""The golden format 9 vectors in tests/vectors/ (made by tools/make_vectors.py).

Integer layers are judged by bytes: re-encoding each recipe with the shipped
model must give the committed file exactly, and the container must survive
unpack and pack. Decoding is float work, so decoded audio is judged against
the committed reference decode by SNR. When the shipped model or its
companions change, run ``python tools/make_vectors.py`` and commit the result.
"""

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nac import api
from nac.info import describe_info
from nac.errors import FormatError, ModelError, VersionError
from nac.format import container
from nac.model import zoo

from conftest import load_tool

VECTORS = Path(__file__).resolve().parent / "vectors"
make_vectors = load_tool("make_vectors")
NAMES = [item.name for item in make_vectors.VECTORS]
MIN_SNR_DB = 60.0  # measured: bit for bit on the machine that made them


def vector_bytes(name: str) -> bytes:
    return (VECTORS / f"{name}.nac").read_bytes()


def vector_json(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


@functools.lru_cache(maxsize=None)
def decoded(name: str):
    return api.decode(vector_bytes(name))


def test_every_recipe_has_committed_files_and_nothing_else_is_there():
    for suffix in (".nac", ".json", ".ref.wav"):
        assert sorted(p.name.removesuffix(suffix) for p in VECTORS.glob(f"*{suffix}")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bytes_header_and_records_match_the_json(name):
    data, recorded = vector_bytes(name), vector_json(name)
    assert hashlib.sha256(data).hexdigest() == recorded["sha256"] and len(data) == recorded["bytes"]
    report = container.scan(data)
    assert report.ok and describe_info(report.header) == recorded["header"]
    assert [(c.offset, c.size, c.payload, c.silent) for c in report.chunks] == [
        (c["offset"], c["size"], c["payload"], c["silent"]) for c in recorded["chunks"]]


@pytest.mark.parametrize("name", NAMES)
def test_reencoding_the_source_gives_the_committed_bytes(name):
    assert make_vectors.encode(make_vectors.vector(name)) == vector_bytes(name)


@pytest.mark.parametrize("name", NAMES)
def test_container_bytes_survive_unpack_and_pack(name):
    info, chunks = api.unpack(vector_bytes(name))
    assert container.pack(info, chunks, zoo.for_stream(info).tables) == vector_bytes(name)


@pytest.mark.parametrize("name", NAMES)
def test_decodes_like_its_reference(name):
    audio, rate = decoded(name)
    reference, reference_rate = sf.read(VECTORS / f"{name}.ref.wav", dtype="float32", always_2d=True)
    reference = reference.T
    recorded = vector_json(name)["decoded"]
    assert rate == reference_rate == recorded["sample_rate"]
    assert audio.shape == reference.shape == (recorded["channels"], recorded["samples"])
    if reference.any():
        error = float(((audio - reference) ** 2).sum())
        assert error == 0 or 10 * np.log10(float((reference**2).sum()) / error) >= MIN_SNR_DB


def test_silence_is_coded_as_silent_chunks_and_decodes_to_zeros():
    info, chunks = api.unpack(vector_bytes("stereo-silence-44k"))
    assert [chunk.silent for chunk in chunks] == [False, True, True]
    audio, rate = decoded("stereo-silence-44k")
    start = -(-info.chunk_span(1)[0] * rate // info.model_sample_rate)
    assert not audio[:, start:].any() and audio[:, :start].any()
    ratio = float((audio[1] ** 2).sum() / (audio[0] ** 2).sum()) ** 0.5
    assert 0.4 < ratio < 0.6  # the right channel at half gain


def _single_bit_flips(data: bytes):
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(flipped)


@pytest.mark.parametrize("name", ["empty", "speech-0.25s", "stereo-silence-44k"])
def test_every_single_bit_flip_is_detected(name):
    """Header, records, parts, CRCs and end record: each is covered by a CRC."""
    missed = []
    for bit, flipped in _single_bit_flips(vector_bytes(name)):
        try:
            api.unpack(flipped)
        except (FormatError, VersionError, ModelError):
            continue
        missed.append(bit)
    assert missed == []


@pytest.mark.parametrize("name", ["speech-0.25s", "speech-layers-1.2s"])
def test_every_truncation_is_detected(name):
    data = vector_bytes(name)
    for size in range(len(data)):
        with pytest.raises(FormatError):
            api.unpack(data[:size])
