"""Damaged files: detection, salvage, ``decode --salvage`` and ``inspect``'s lost ranges, with the real model.

test_vectors.py flips every bit of three vectors and truncates two everywhere;
here the same is done for the others. The salvage tests use a 1 s file coded
in chunks of 0.256 s, two to a scale group, so it has four chunks and two groups.
"""

import struct
import time
from pathlib import Path

import numpy as np
import pytest
from test_vectors import _single_bit_flips, vector_bytes
from typer.testing import CliRunner

from nac import api, codec
from nac.audio import read_audio, resample
from nac.cli import app
from nac.errors import FormatError, ModelError, NacError, SalvagedError, UsageError
from nac.format import container
from nac.model import zoo
from nac.settings import EncoderSettings

runner = CliRunner()
CHUNK_SECONDS = 0.25  # 8 latent frames of 512 samples at 16 kHz: 0.256 s per chunk
RATE = 44100  # the original rate: lost ranges are converted from the model's 16 kHz
REACH = int(0.12 * RATE)  # how far from a lost span salvaged audio may differ from the intact decode
LOCAL_PHASE_ITERS = 16  # ... with this many Griffin-Lim iterations


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one torch thread is faster, and immune to other work on the machine."""
    with codec.torch_threads(1):
        yield


def tables_of(data: bytes):
    return zoo.for_stream(container.read_info(data)[0]).tables


def detected(data: bytes) -> bool:
    """True when the strict reader rejects ``data`` and salvage does not call it intact."""
    try:
        api.unpack(data)
    except (FormatError, ModelError):
        pass
    else:
        return False
    try:
        return not container.salvage(data, tables_of(data)).intact
    except (FormatError, ModelError):  # a damaged header is fatal for salvage too
        return True


@pytest.mark.parametrize("name", ["speech-layers-1.2s", "speech-phase16-0.1s"])
def test_bit_flips_are_detected(name):
    """One bit per byte of the layered and phase vectors (a CRC-32 catches every
    single-bit error by construction; the sample shows every byte is covered)."""
    data = vector_bytes(name)
    every_bit = len(data) < 1000
    missed = [bit for bit, flipped in _single_bit_flips(data)
              if (every_bit or bit % 8 == (bit // 8) % 8) and not detected(flipped)]
    assert missed == []


@pytest.mark.parametrize("name", ["stereo-silence-44k", "speech-phase16-0.1s"])
def test_truncations_are_detected(name):
    data = vector_bytes(name)
    assert [size for size in range(len(data)) if not detected(data[:size])] == []


# --------------------------------------------------------------------------
# A four-chunk file
# --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[(0.0, 6), (1000.0, None)], ids=["zstd-codes", "residual"])
def four_chunks(speech, request) -> bytes:
    residual_hz, code_bits = request.param  # 6-bit codes have no rANS tables: zstd
    audio, rate = speech
    source = resample(audio[:, :rate], rate, RATE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "CHUNK_SECONDS", CHUNK_SECONDS)
        patch.setattr(codec, "GROUP_CHUNKS", 2)
        data = api.encode(source, RATE, EncoderSettings(residual_hz=residual_hz, code_bits=code_bits))
    info = container.read_info(data)[0]
    assert (info.chunk_count, info.group_chunks) == (4, 2) and info.latent.entropy_coded == (code_bits is None)
    return data


@pytest.fixture(scope="module")
def intact_audio(four_chunks) -> np.ndarray:
    return api.decode(four_chunks)[0]


@pytest.fixture(scope="module")
def intact_audio_16(four_chunks) -> np.ndarray:
    """Decoded with 16 Griffin-Lim iterations (64, a residual file's default, carry a change up to ~0.4 s)."""
    return api.decode(four_chunks, phase_iters=LOCAL_PHASE_ITERS)[0]


def records(data: bytes) -> list[tuple[int, int]]:
    return [(c.offset, c.size) for c in container.scan(data).chunks]


def corrupt_chunk(data: bytes, index: int) -> bytes:
    offset, size = records(data)[index]
    damaged = bytearray(data)
    damaged[offset + size - 10] ^= 0x40  # in its last part
    return bytes(damaged)


def drop_chunk(data: bytes, index: int) -> bytes:
    offset, size = records(data)[index]
    return data[:offset] + data[offset + size :]


def seconds(index: int) -> tuple[float, float]:
    """The nominal time range of chunk ``index`` of the four-chunk file (1 s in all)."""
    return min(index * 0.256, 1.0), min((index + 1) * 0.256, 1.0)


def test_intact_file_salvages_to_the_strict_result(four_chunks, intact_audio):
    info, chunks = api.unpack(four_chunks)
    result = container.salvage(four_chunks, tables_of(four_chunks))
    assert result.intact and result.header == info and result.lost == []
    assert sorted(result.chunks) == [c.index for c in chunks]
    for want in chunks:
        np.testing.assert_array_equal(want.codes, result.chunks[want.index].codes)
    salvaged = api.decode_salvage(four_chunks)
    assert not salvaged.damaged and salvaged.sample_rate == RATE
    np.testing.assert_array_equal(salvaged.audio, intact_audio)


def test_salvage_decodes_with_the_phase_iterations_asked_for(four_chunks, intact_audio_16):
    np.testing.assert_array_equal(api.decode_salvage(four_chunks, phase_iters=LOCAL_PHASE_ITERS).audio,
                                  intact_audio_16)
    with pytest.raises(UsageError, match="phase iterations must be in 0..256"):
        api.decode_salvage(four_chunks, phase_iters=257)


@pytest.mark.parametrize(
    "damage,lost,reason",
    [
        (lambda d: corrupt_chunk(d, 1), [(1, 1, "CRC mismatch")], "CRC mismatch"),
        (lambda d: drop_chunk(d, 2), [(2, 2, "missing")], "missing"),
        (lambda d: corrupt_chunk(drop_chunk(d, 0), 1), [(0, 0, "missing"), (2, 2, "CRC mismatch")], None),
    ],
    ids=["crc", "missing", "missing-and-crc"],
)
def test_salvage_fills_lost_chunks_with_silence(four_chunks, intact_audio_16, damage, lost, reason):
    data = damage(four_chunks)
    with pytest.raises(FormatError):
        api.decode(data)
    parsed = container.salvage(data, tables_of(data))
    assert [(r.first, r.last, r.reason) for r in parsed.lost] == lost and not parsed.intact
    assert sorted(set(range(4)) - set(parsed.chunks)) == [first for first, _, _ in lost]
    result = api.decode_salvage(data, phase_iters=LOCAL_PHASE_ITERS)
    assert result.audio.shape == intact_audio_16.shape and result.sample_rate == RATE
    assert [(s.first_chunk, s.last_chunk) for s in result.lost] == [(first, last) for first, last, _ in lost]
    keep = np.ones(intact_audio_16.shape[1], bool)
    for span in result.lost:
        start, stop = seconds(span.first_chunk)
        assert (round(span.start_s, 3), round(span.stop_s, 3)) == (round(start, 3), round(stop, 3))
        assert span.start == int(start * RATE) and span.stop == min(int(np.ceil(stop * RATE)), RATE)
        assert not result.audio[:, span.start : span.stop].any()
        keep[max(0, span.start - REACH) : span.stop + REACH] = False
        if reason:
            assert span.reason == reason
    # Away from the lost spans the audio is the intact decode (the decoder's convolutions
    # and Griffin-Lim carry the change about 0.1 s across each edge).
    error = result.audio[:, keep] - intact_audio_16[:, keep]
    assert keep.sum() > 0.1 * RATE
    assert np.sqrt(np.mean(error**2)) < 0.05 * np.sqrt(np.mean(intact_audio_16[:, keep] ** 2))


def test_truncated_file_loses_its_tail_as_one_range(four_chunks):
    offset, _ = records(four_chunks)[2]
    result = api.decode_salvage(four_chunks[: offset + 30])
    assert [(s.first_chunk, s.last_chunk, s.reason) for s in result.lost] == [(2, 3, "missing")]
    assert result.lost[0].describe() == "0.512-1.000 s (chunks 2-3: missing)"
    assert any("end record missing" in p for p in result.problems)


def test_damaged_end_record_loses_no_audio_but_is_reported(four_chunks, intact_audio):
    damaged = bytearray(four_chunks)
    damaged[-6] ^= 1
    result = api.decode_salvage(bytes(damaged))
    assert result.lost == () and result.damaged
    np.testing.assert_array_equal(result.audio, intact_audio)


def test_salvage_says_no_audio_was_lost_when_only_the_end_record_is_damaged(four_chunks, tmp_path: Path):
    damaged = bytearray(four_chunks)
    damaged[-6] ^= 1
    source = tmp_path / "end.nac"
    source.write_bytes(bytes(damaged))
    result = runner.invoke(app, ["decode", str(source), "--salvage", "-q"])
    assert result.exit_code == SalvagedError.exit_code
    assert result.output.strip().endswith("no audio lost") and "0 range(s)" not in result.output


def test_damaged_header_is_fatal_even_for_salvage(four_chunks):
    damaged = bytearray(four_chunks)
    damaged[40] ^= 1
    for function in (api.decode_salvage, container.salvage):
        with pytest.raises(FormatError, match="header CRC mismatch"):
            function(bytes(damaged))


def test_salvage_at_the_model_rate(four_chunks):
    result = api.decode_salvage(corrupt_chunk(four_chunks, 3), keep_model_rate=True)
    # the lost last chunk is a lost tail: reported, not invented
    assert result.sample_rate == 16000 and result.audio.shape == (1, 3 * 4096)
    assert [(s.start, s.stop) for s in result.lost] == [(3 * 4096, 16000)]


def test_inspect_reports_lost_ranges_without_decoding(four_chunks, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("inspect must not load or run a model")

    monkeypatch.setattr(zoo, "load_model", no_model)
    info = api.inspect(drop_chunk(corrupt_chunk(four_chunks, 1), 3))
    assert not info["intact"]
    assert [(s["first_chunk"], s["last_chunk"], s["reason"]) for s in info["lost"]] == [
        (1, 1, "CRC mismatch"),
        (3, 3, "missing"),
    ]
    assert info["lost"][0]["start_s"] == pytest.approx(0.256, abs=1e-4)
    assert info["lost"][1]["stop_s"] == pytest.approx(1.0)
    assert api.inspect(four_chunks)["lost"] == []


def test_scan_stays_linear_on_sprayed_sync_words(four_chunks):
    """Regression (fuzzing): 20,000 stray sync words took seconds; quadratic in the file size."""
    stray = (b"NACK" + bytes(5) + b"\x28" * 4) * 20000
    for junk in (stray, b"NEND" * 20000, b"NACK" * 50000):
        data = four_chunks[:-24] + junk + four_chunks[-24:]
        start = time.perf_counter()
        result = container.salvage(data, tables_of(data))
        assert time.perf_counter() - start < 1.0
        assert result.lost == [] and not result.intact


def test_foreign_record_before_the_sound_one(four_chunks):
    """A CRC-valid record of the same index from another file ahead of the sound one: salvage tries the next."""
    offset, size = records(four_chunks)[1]
    foreign = bytearray(four_chunks[offset : offset + size - 4])
    foreign[-3:] = b"\xff\xff\xff"  # its last part no longer decodes
    foreign += struct.pack("<I", container.records.crc32(bytes(foreign)))
    data = four_chunks[:offset] + bytes(foreign) + four_chunks[offset:]
    result = container.salvage(data, tables_of(data))
    assert result.lost == [] and not result.intact
    np.testing.assert_array_equal(result.chunks[1].codes, api.unpack(four_chunks)[1][1].codes)


def test_a_group_survives_the_loss_of_one_peak_carrier(four_chunks):
    """Chunks 2 and 3 form the second group and both carry its peaks: losing chunk 2 costs only chunk 2."""
    result = container.salvage(corrupt_chunk(four_chunks, 2), tables_of(four_chunks))
    assert [(r.first, r.last) for r in result.lost] == [(2, 2)] and 3 in result.chunks


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_salvage(tmp_path: Path, four_chunks):
    src = tmp_path / "damaged.nac"
    src.write_bytes(drop_chunk(corrupt_chunk(four_chunks, 1), 2))
    out = tmp_path / "out.wav"

    result = run("decode", src, "-o", out)
    assert result.exit_code == 4 and "CRC" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.nac"]  # no output, no temporary file

    result = run("decode", src, "-o", out, "--salvage")
    assert result.exit_code == SalvagedError.exit_code == 8, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("nac: lost ")]
    assert lines == ["nac: lost 0.256-0.768 s (chunks 1-2: CRC mismatch; missing)"]
    assert "0.512 s lost in 1 range(s), silence written for 0.512 s" in result.output
    assert "early" not in result.output
    audio, rate = read_audio(out)
    assert rate == RATE and audio.shape == (1, RATE)
    assert not audio[:, int(0.256 * RATE) + 1 : int(0.768 * RATE)].any()

    result = run("inspect", src)
    assert result.exit_code == 4
    assert "0.256-0.768 s (chunks 1-2: CRC mismatch; missing)" in result.output


def test_cli_salvage_says_a_lost_end_is_cut_not_silenced(tmp_path: Path, four_chunks):
    offset, _ = records(four_chunks)[3]
    src = tmp_path / "cut.nac"
    src.write_bytes(corrupt_chunk(four_chunks, 1)[: offset + 30])  # chunk 1 lost inside, chunk 3 at the end
    out = tmp_path / "out.wav"
    result = run("decode", src, "-o", out, "--salvage")
    assert result.exit_code == 8, result.output
    assert ("0.488 s lost in 2 range(s), silence written for 0.256 s, the output ends 0.232 s early, at 0.768 s"
            in result.output)
    audio, rate = read_audio(out)
    assert audio.shape[1] == round(0.768 * rate) and not audio[:, round(0.256 * rate) + 1 : round(0.512 * rate)].any()


def test_cli_salvage_of_an_intact_file_exits_0(tmp_path: Path, four_chunks):
    src = tmp_path / "intact.nac"
    src.write_bytes(four_chunks)
    result = run("decode", src, "--salvage")
    assert result.exit_code == 0 and "lost" not in result.output


def test_cli_salvage_with_a_bad_header_writes_nothing(tmp_path: Path, four_chunks):
    src = tmp_path / "bad.nac"
    src.write_bytes(b"\x89NAC" + four_chunks[4:40] + bytes(10) + four_chunks[50:])
    result = run("decode", src, "--salvage")
    assert result.exit_code == 4 and "header" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nac"]


def test_salvaged_error_is_a_nac_error():
    assert issubclass(SalvagedError, NacError) and not issubclass(SalvagedError, FormatError)


def test_wav_written_by_salvage_matches_api(tmp_path: Path, four_chunks):
    src = tmp_path / "d.nac"
    src.write_bytes(corrupt_chunk(four_chunks, 0))
    report = api.decode_file(src, tmp_path / "d.wav", salvage=True)
    assert report.damaged and [(s.first_chunk, s.last_chunk) for s in report.lost] == [(0, 0)]
    expected = api.decode_salvage(src.read_bytes()).audio
    written, _ = read_audio(tmp_path / "d.wav")
    assert np.abs(written - np.clip(expected, -1, 1)).max() < 2 / 32768
