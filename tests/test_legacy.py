"""Files of formats 1.0 to 8.0 (tests/vectors/legacy) decode as the 8.0 decoder decoded them.

Each vector's audio is compared with the reference decode the 8.0 decoder
made of it before format 9 existed (``NAME.ref.wav``, never regenerated), by
SNR; the legacy reader's header, walk, salvage and rejections are checked
on the same files.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nac import api
from nac.errors import FormatError, ModelError, VersionError
from nac.format import container, legacy
from nac.format.header import Companion

LEGACY = Path(__file__).resolve().parent / "vectors" / "legacy"
NAMES = sorted(path.stem for path in LEGACY.glob("*.nac"))
# Decoding is float work: the same file decodes to the same audio up to rounding. Measured: every mono
# vector decodes bit for bit as before, the stereo one at 99 dB.
MIN_SNR_DB = 60.0


def vector(name: str) -> bytes:
    return (LEGACY / f"{name}.nac").read_bytes()


def recorded(name: str) -> dict:
    return json.loads((LEGACY / f"{name}.json").read_text())


def test_the_vectors_cover_every_legacy_version():
    majors = {legacy.read_header(vector(name)).version_major for name in NAMES}
    assert majors == set(legacy.VERSION_MAJORS)


@pytest.mark.parametrize("name", NAMES)
def test_a_legacy_vector_decodes_as_the_8_0_decoder_decoded_it(name):
    audio, rate = api.decode(vector(name))
    reference, reference_rate = sf.read(LEGACY / f"{name}.ref.wav", dtype="float32", always_2d=True)
    reference = reference.T
    assert rate == reference_rate and audio.shape == reference.shape
    if reference.size:
        error = float(((audio - reference) ** 2).sum())
        snr = 10 * np.log10(float((reference**2).sum()) / error) if error else np.inf
        assert snr >= MIN_SNR_DB


@pytest.mark.parametrize("name", NAMES)
def test_a_legacy_header_maps_onto_todays_description(name):
    header = legacy.read_header(vector(name))
    fields = recorded(name)["header"]
    assert fields["residual_bins"] == header.residual_bins and fields["sample_count"] == header.sample_count
    info, size = container.read_info(vector(name))
    assert size == legacy.HEADER_SIZES[header.version_major] == recorded(name)["header_size"]
    assert info.version == (header.version_major, 0) and info.group_chunks == 1
    assert (info.sample_count, info.model_sample_count, info.latent_frames, info.chunk_count) == (
        header.sample_count, header.model_sample_count, header.latent_frames, header.chunk_count)
    assert info.latent.entropy_coded == bool(header.code_range)
    assert (info.residual is None) == (not header.residual_bins)
    if info.residual is not None:
        assert info.residual.rows == header.residual_rows - (2 if header.phase_hint_bins else 0)
        assert list(info.residual.row_edges) == header.residual_row_edges()
    assert info.companion(Companion.PHASE_INIT) == (True, None)  # the model's initializer, as the 8.0 decoder used it
    assert info.companion(Companion.CODE_TABLES) == ((True, header.tables_hash) if header.code_range else (False, None))


@pytest.mark.parametrize("name", NAMES)
def test_a_legacy_file_walks_and_salvages_whole(name):
    report = container.scan(vector(name))
    assert report.ok and len(report.chunks) == recorded(name)["chunk_count"]
    assert [chunk.offset for chunk in report.chunks] == [chunk["offset"] for chunk in recorded(name)["chunks"]]
    assert api.decode_salvage(vector(name)).damaged is False


def _single_bit_flips(data: bytes):
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(flipped)


@pytest.mark.parametrize("name", ["empty", "speech-0.25s", "speech-hint-0.25s"])
def test_every_single_bit_flip_of_a_legacy_file_is_detected(name):
    missed = []
    for bit, flipped in _single_bit_flips(vector(name)):
        try:
            api.unpack(flipped)
        except (FormatError, VersionError, ModelError):
            continue
        missed.append(bit)
    assert missed == []


def test_every_truncation_of_a_legacy_file_is_detected():
    data = vector("speech-rans-0.25s")
    for size in range(len(data)):
        with pytest.raises(FormatError):
            api.unpack(data[:size])


def test_a_damaged_legacy_chunk_is_salvaged_as_silence():
    data = bytearray(vector("stereo-44k-0.2s"))
    data[-40] ^= 0x10  # in the last chunk's payload
    with pytest.raises(FormatError, match="chunk 0: CRC mismatch"):
        api.decode(bytes(data))
    salvaged = api.decode_salvage(bytes(data))
    assert salvaged.damaged and [span.first_chunk for span in salvaged.lost] == [0]
    assert not salvaged.audio.any()


def test_a_newer_major_version_is_refused():
    data = bytearray(vector("empty"))
    data[8] = 0xA0  # 10.0
    with pytest.raises(VersionError, match="unsupported format version 10.0"):
        api.decode(bytes(data))
