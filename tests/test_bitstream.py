"""Tests for codec/bitstream.py: the .nac container, versions 1.0 to 4.0 (format_spec.md).

Streams are synthetic (seeded random codes); forged files are built here with
``struct`` and the offsets of format_spec.md, independently of the schemas.
"""

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import zstandard

from nac.format import container, rans
from nac.format.legacy import Chunk, StreamHeader, pack, read_header, scan, unpack
from nac.errors import FormatError, ModelError, VersionError
from conftest import load_tool

make_vectors = load_tool("make_vectors")

# format_spec.md section 4: field -> (offset, struct format)
HEADER_LAYOUT = {
    "model_id": (12, "<H"),
    "weights_hash": (14, "8s"),
    "original_sample_rate": (22, "<I"),
    "model_sample_rate": (26, "<I"),
    "channels": (30, "<B"),
    "bits": (31, "<B"),
    "sample_count": (32, "<Q"),
    "model_sample_count": (40, "<Q"),
    "n_fft": (48, "<H"),
    "hop_length": (50, "<H"),
    "time_stride": (52, "<H"),
    "latent_channels": (54, "<H"),
    "latent_height": (56, "<H"),
    "latent_frames": (58, "<I"),
    "chunk_frames": (62, "<I"),
    "chunk_count": (66, "<I"),
}


def make_header(**changes) -> StreamHeader:
    """A small valid header: 32 model-rate samples per latent frame, 16 kHz model, 48 kHz input."""
    latent_frames = changes.pop("latent_frames", 7)
    chunk_frames = changes.pop("chunk_frames", 3)
    fields = dict(
        version_minor=0,
        store_phase=False,
        model_id=3,
        weights_hash=bytes(range(1, 9)),
        original_sample_rate=48000,
        model_sample_rate=16000,
        channels=2,
        bits=8,
        sample_count=latent_frames * 32 * 3,
        model_sample_count=latent_frames * 32,
        n_fft=64,
        hop_length=16,
        time_stride=2,
        latent_channels=3,
        latent_height=2,
        latent_frames=latent_frames,
        chunk_frames=chunk_frames,
        chunk_count=-(-latent_frames // chunk_frames),
    )
    fields.update(changes)
    return StreamHeader(**fields)


def make_chunks(header: StreamHeader, seed: int = 0) -> list[Chunk]:
    rng = np.random.default_rng(seed)
    limit = header.code_range or 2 ** (header.bits - 1) - 1
    chunks = []
    for index in range(header.chunk_count):
        frames = header.chunk_frames_at(index)
        shape = (header.channels, header.latent_channels, header.latent_height, frames)
        codes = rng.integers(-limit, limit + 1, shape)
        phase = None
        if header.store_phase:
            shape = (header.channels, header.n_fft // 2 + 1, frames * header.time_stride)
            phase = rng.integers(0, 2**header.bits, shape).astype(header.phase_dtype)
        scales = rng.uniform(0, 4, (header.channels, header.latent_channels)).astype(np.float32)
        scales[0, 0] = 0.0
        residual = None
        if header.residual_bins:
            shape = (header.channels, header.residual_rows, frames * header.time_stride // header.residual_stride)
            residual = rng.integers(-127, 128, shape).astype(np.int8)
        chunks.append(Chunk(index, frames, scales, codes.astype(header.code_dtype), phase, residual))
    return chunks


def make_tables(header: StreamHeader, seed: int = 1) -> np.ndarray:
    """Code tables for a v3 header: one per latent channel, from random counts."""
    size = 2 * header.code_range + 1
    return rans.tables_from_counts(np.random.default_rng(seed).integers(1, 50, (header.latent_channels, size, size)))


def make_stream(**changes) -> tuple[StreamHeader, list[Chunk], bytes]:
    header = make_header(**changes)
    chunks = make_chunks(header)
    return header, chunks, pack(header, chunks, make_tables(header) if header.code_range else None)


V3 = {"code_range": 3, "tables_hash": bytes(range(20, 28))}
# 33 residual bins: 8 single rows, then bands 1/4 octave wide (growth 2**0.25 in 16.16)
V4 = {"residual_bins": 33, "residual_stride": 2, "residual_step": 0.5, "residual_band_start": 8,
      "residual_band_growth": 77936}


def chunk_offsets(data: bytes) -> list[int]:
    """Offsets of the chunk records, walked with the sizes of format_spec.md section 6."""
    offsets, pos = [], struct.unpack_from("<H", data, 10)[0]
    while data[pos : pos + 4] == b"NACK":
        offsets.append(pos)
        pos += 24 + struct.unpack_from("<I", data, pos + 16)[0]
    return offsets


def with_header_crc(head: bytes) -> bytes:
    return head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))


def assert_residual_round_trip(header: StreamHeader, chunks: list[Chunk], data: bytes) -> None:
    """``data`` unpacks to ``header`` and the chunks' residual codes, and packs back to the same bytes."""
    decoded_header, decoded = unpack(data)
    assert decoded_header == header
    for original, back in zip(chunks, decoded):
        np.testing.assert_array_equal(back.residual, original.residual)
    assert bitstream.pack(header, decoded) == data


def chunk_payload(data: bytes, index: int) -> bytes:
    offset = chunk_offsets(data)[index]
    return data[offset + 20 : offset + 20 + struct.unpack_from("<I", data, offset + 16)[0]]


def forge_header(data: bytes, major: int = 1, **fields) -> bytes:
    """Change fields of a ``major``.0 header in place (offsets as test_version_*_header_bytes pin them) and
    recompute the header CRC."""
    size, layout = bitstream.HEADER_SIZES[major], bitstream.header_layout(major)
    head = bytearray(data[:size])
    for name, value in fields.items():
        struct.pack_into(layout[name][1], head, layout[name][0], value)
    return with_header_crc(bytes(head)) + data[size:]


def chunk_record(index: int, frames: int, raw_size: int, payload: bytes) -> bytes:
    record = b"NACK" + struct.pack("<IIII", index, frames, raw_size, len(payload)) + payload
    return record + struct.pack("<I", zlib.crc32(record))


def replace_chunk(data: bytes, position: int, record: bytes) -> bytes:
    offsets = chunk_offsets(data)
    start = offsets[position]
    stop = start + 24 + struct.unpack_from("<I", data, start + 16)[0]
    return data[:start] + record + data[stop:]


def raw_body(header: StreamHeader, chunk: Chunk) -> bytes:
    """The decompressed latent part of the body, laid out by hand as format_spec.md section 6 says."""
    parts = []
    for c in range(header.channels):
        parts.append(chunk.scales[c].astype("<f4").tobytes())
        parts.append(chunk.codes[c].astype(header.code_dtype.newbyteorder("<")).tobytes())
        if header.store_phase:
            parts.append(chunk.phase[c].astype(header.phase_dtype.newbyteorder("<")).tobytes())
    return b"".join(parts)


def payload_of(header: StreamHeader, chunk: Chunk) -> bytes:
    """A chunk's payload by hand: one zstd frame, or (v2) u32 size, latent frame, residual frame."""
    latent = zstandard.ZstdCompressor().compress(raw_body(header, chunk))
    if not header.residual_bins:
        return latent
    residual = zstandard.ZstdCompressor().compress(chunk.residual.astype(np.int8).tobytes())
    return struct.pack("<I", len(latent)) + latent + residual


def rejects(data: bytes, error: type, text: str) -> None:
    with pytest.raises(error) as info:
        unpack(data)
    assert type(info.value) is error
    assert text in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("store_phase", [False, True])
@pytest.mark.parametrize("latent_frames,chunk_frames", [(7, 3), (6, 3), (1, 4), (5, 5)])
@pytest.mark.parametrize("residual", [{}, {"residual_bins": 5, "residual_stride": 2, "residual_step": 0.75},
                                      {"residual_bins": 1, "residual_stride": 1, "residual_step": 16.0}])
def test_round_trip(bits, store_phase, latent_frames, chunk_frames, residual):
    header, chunks, data = make_stream(
        bits=bits, store_phase=store_phase, latent_frames=latent_frames, chunk_frames=chunk_frames, **residual
    )
    assert data[8] == (0x20 if residual else 0x10)
    parsed, decoded = unpack(data)
    assert parsed == header
    assert len(decoded) == len(chunks)
    for want, got in zip(chunks, decoded):
        assert (got.index, got.frames) == (want.index, want.frames)
        for name in ("scales", "codes", "phase", "residual"):
            w, g = getattr(want, name), getattr(got, name)
            if w is None:
                assert g is None
                continue
            assert g.dtype == w.dtype and g.dtype.isnative and g.flags.writeable
            np.testing.assert_array_equal(g, w)
    assert decoded[-1].frames == latent_frames - (len(chunks) - 1) * chunk_frames


def test_zero_length_audio():
    header, chunks, data = make_stream(latent_frames=0, sample_count=0, model_sample_count=0)
    assert chunks == [] and header.chunk_count == 0
    assert len(data) == bitstream.HEADER_SIZE + bitstream.END_SIZE
    assert unpack(data) == (header, [])
    report = scan(data)
    assert report.ok and report.chunks == ()


def test_header_bytes_field_by_field():
    header, chunks, data = make_stream(store_phase=True, bits=16)
    assert bitstream.HEADER_SIZE == 74
    assert data[:8] == b"\x89NAC\r\n\x1a\n"
    assert data[8] == 0x10  # major 1, minor 0
    assert data[9] == 0x01  # store_phase
    assert struct.unpack_from("<H", data, 10)[0] == 74
    for name, (offset, fmt) in HEADER_LAYOUT.items():
        assert struct.unpack_from(fmt, data, offset)[0] == getattr(header, name), name
    assert struct.unpack_from("<I", data, 70)[0] == zlib.crc32(data[:70])
    assert read_header(data) == header


def test_header_layout_read_off_the_schema_matches_the_spec():
    layout = bitstream.header_layout()
    expected = {"magic": (0, "8s"), "version": (8, "<B"), "flags": (9, "<B"), "header_size": (10, "<H"),
                **HEADER_LAYOUT}
    assert layout == expected


def test_version_2_header_bytes():
    header, chunks, data = make_stream(residual_bins=6, residual_stride=2, residual_step=0.5)
    assert bitstream.HEADER_SIZES == {1: 74, 2: 82, 3: 92, 4: 98, 5: 102, 6: 108, 7: 108, 8: 114}
    assert data[8] == 0x20  # major 2, minor 0
    assert struct.unpack_from("<H", data, 10)[0] == 82
    for name, (offset, fmt) in HEADER_LAYOUT.items():
        assert struct.unpack_from(fmt, data, offset)[0] == getattr(header, name), name
    assert struct.unpack_from("<HHf", data, 70) == (6, 2, 0.5)
    assert struct.unpack_from("<I", data, 78)[0] == zlib.crc32(data[:78])
    assert bitstream.header_layout(2) == {**bitstream.header_layout(1), "residual_bins": (70, "<H"),
                                          "residual_stride": (72, "<H"), "residual_step": (74, "<f")}
    assert read_header(data) == header and header.version_major == 2


def test_version_3_header_bytes():
    header, chunks, data = make_stream(**V3)
    assert data[8] == 0x30 and struct.unpack_from("<H", data, 10)[0] == 92
    # v2's residual fields stay in place (0 without a layer); code_range and tables_hash follow
    assert struct.unpack_from("<HHfH8s", data, 70) == (0, 0, 0.0, 3, bytes(range(20, 28)))
    assert struct.unpack_from("<I", data, 88)[0] == zlib.crc32(data[:88])
    assert bitstream.header_layout(3) == {**bitstream.header_layout(2), "code_range": (78, "<H"),
                                          "tables_hash": (80, "8s")}
    assert read_header(data) == header and header.version_major == 3


@pytest.mark.parametrize("changes", [{}, {"residual_bins": 5, "residual_stride": 2, "residual_step": 1.0},
                                     {"store_phase": True}])
def test_version_3_round_trip(changes):
    header, chunks, data = make_stream(**V3, **changes)
    tables = make_tables(header)
    decoded_header, decoded = unpack(data, lambda h: tables)
    assert decoded_header == header
    for original, back in zip(chunks, decoded):
        np.testing.assert_array_equal(back.codes, original.codes)
        np.testing.assert_array_equal(back.scales, original.scales)
        for name in ("phase", "residual"):
            if getattr(original, name) is not None:
                np.testing.assert_array_equal(getattr(back, name), getattr(original, name))
    assert bitstream.pack(header, decoded, tables) == data
    salvaged = bitstream.unpack_salvage(data, lambda h: tables)
    assert not salvaged.lost and all(np.array_equal(a.codes, b.codes) for a, b in zip(salvaged.chunks, chunks))


def test_version_3_payload_rules():
    header, chunks, data = make_stream(**V3, residual_bins=4, residual_stride=2, residual_step=1.0)
    tables = make_tables(header)
    payload = chunk_payload(data, 1)
    (first,) = struct.unpack_from("<I", payload)
    (second,) = struct.unpack_from("<I", payload, 4 + first)
    frame, coded, residual = payload[4 : 4 + first], payload[8 + first : 8 + first + second], payload[8 + first + second :]
    size = bitstream.chunk_body_size(header, 3)

    def forged(new_payload: bytes) -> bytes:
        return replace_chunk(data, 1, chunk_record(1, 3, size, new_payload))

    def rejects_v3(new_payload: bytes, text: str) -> None:
        with pytest.raises(FormatError, match=text) as info:
            unpack(forged(new_payload), lambda h: tables)
        assert "\n" not in str(info.value)

    rejects_v3(payload[:3], "payload too short for its latent frame size")
    rejects_v3(struct.pack("<I", len(payload)) + payload[4:], "latent frame size .* runs past the payload")
    rejects_v3(payload[: 4 + first] + b"\x01", "payload too short for its code stream size")
    rejects_v3(payload[: 4 + first] + struct.pack("<I", 10**6) + coded, "code stream size 1000000 runs past")
    truncated = payload[: 4 + first] + struct.pack("<I", second - 2) + coded[:-2] + residual
    rejects_v3(truncated, "chunk 1: code stream")
    rejects_v3(payload[: 8 + first + second] + b"junk", "residual frame is not a zstd frame")
    with pytest.raises(ModelError, match="need the model's code tables"):
        unpack(data)
    wrong = make_tables(dataclasses.replace(header, code_range=2))
    with pytest.raises(ModelError, match="code tables unusable for code_range 3"):
        unpack(data, lambda h: wrong)
    plain_header, _, plain = make_stream(**V3)
    plain_tables = make_tables(plain_header)
    offset = chunk_offsets(plain)[0]
    plain_payload = plain[offset + 20 : offset + 20 + struct.unpack_from("<I", plain, offset + 16)[0]]
    size = bitstream.chunk_body_size(plain_header, 3)
    with pytest.raises(FormatError, match="2 bytes after the code stream"):
        unpack(replace_chunk(plain, 0, chunk_record(0, 3, size, plain_payload + b"\0\0")), lambda h: plain_tables)


def test_version_3_header_rules():
    _, _, data = make_stream(**V3)

    def forged_header(code_range: int, tables_hash: bytes) -> bytes:
        head = bytearray(data[:92])
        struct.pack_into("<H8s", head, 78, code_range, tables_hash)
        struct.pack_into("<I", head, 88, zlib.crc32(bytes(head[:88])))
        return bytes(head) + data[92:]

    rejects(forged_header(0, bytes(8)), FormatError, "code_range 0 in a version 3 header")
    rejects(forged_header(128, bytes(8)), FormatError, "code_range 128 out of range 0..127")
    with pytest.raises(ValueError, match="codes outside the header's code_range 3"):
        header = make_header(**V3)
        chunks = make_chunks(dataclasses.replace(header, code_range=7))
        pack(header, chunks, make_tables(header))
    with pytest.raises(ValueError, match="tables_hash without rANS-coded codes"):
        pack(make_header(tables_hash=bytes(8)), [])


def test_version_4_header_bytes():
    header, chunks, data = make_stream(**V4)
    assert data[8] == 0x40 and struct.unpack_from("<H", data, 10)[0] == 98
    # v3's fields stay in place (code_range 0 and a zero tables_hash without rANS-coded codes), then the bands
    assert struct.unpack_from("<HHfH8sHI", data, 70) == (33, 2, 0.5, 0, bytes(8), 8, 77936)
    assert struct.unpack_from("<I", data, 94)[0] == zlib.crc32(data[:94])
    assert bitstream.header_layout(4) == {**bitstream.header_layout(3), "residual_band_start": (88, "<H"),
                                          "residual_band_growth": (90, "<I")}
    assert read_header(data) == header and header.version_major == 4
    assert bitstream.HEADER_SIZES[4] == 98


def test_residual_rows_are_single_bins_then_bands_widening_by_the_growth():
    header = make_header(**V4)
    # 8 * 77936 / 65536 = 9.51 -> 10; 10 -> 11.89 -> 12; 12 -> 14.27 -> 14; ...
    assert header.residual_row_edges() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20, 24, 29, 33]
    assert header.residual_rows == 16
    assert make_header(**{**V4, "residual_band_growth": 65536}).residual_row_edges() == list(range(34))
    assert make_header(**{**V4, "residual_band_start": 0}).residual_row_edges()[:4] == [0, 1, 2, 3]  # at least a bin
    assert make_header(**{**V4, "residual_band_start": 33}).residual_rows == 33
    older = make_header(residual_bins=5, residual_stride=2, residual_step=1.0)
    assert older.residual_row_edges() == [0, 1, 2, 3, 4, 5] and make_header().residual_rows == 0


@pytest.mark.parametrize("changes", [{}, V3, {"store_phase": True}, {"residual_band_start": 33}])
def test_version_4_round_trip(changes):
    header, chunks, data = make_stream(**{**V4, **changes})
    assert header.version_major == 4
    tables = make_tables(header) if header.code_range else None
    decoded_header, decoded = unpack(data, lambda h: tables)
    assert decoded_header == header
    for original, back in zip(chunks, decoded):
        assert back.residual.shape == (2, header.residual_rows, back.frames)
        np.testing.assert_array_equal(back.residual, original.residual)
        np.testing.assert_array_equal(back.codes, original.codes)
    assert bitstream.pack(header, decoded, tables) == data
    salvaged = bitstream.unpack_salvage(data, lambda h: tables)
    assert not salvaged.lost and all(np.array_equal(a.residual, b.residual) for a, b in zip(salvaged.chunks, chunks))


def test_version_4_payload_ends_with_the_residual_rows_rans_stream():
    header, chunks, data = make_stream(**V4)
    payload = chunk_payload(data, 1)
    (first,) = struct.unpack_from("<I", payload)
    latent, coded = payload[4 : 4 + first], payload[4 + first :]
    assert zstandard.ZstdDecompressor().decompress(latent) == raw_body(header, chunks[1])
    np.testing.assert_array_equal(rans.decode_residual(coded, chunks[1].residual.shape), chunks[1].residual)
    size = bitstream.chunk_body_size(header, 3)
    assert size == len(raw_body(header, chunks[1])) + chunks[1].residual.size

    def forged(new_payload: bytes) -> bytes:
        return replace_chunk(data, 1, chunk_record(1, 3, size, new_payload))

    rejects(forged(payload[:-2]), FormatError, "chunk 1: residual stream: code stream")
    rejects(forged(payload + b"\0\0"), FormatError, "chunk 1: residual stream: code stream does not end")
    rejects(forged(payload[: 4 + first] + b"\0"), FormatError, "chunk 1: residual stream: code stream of 1 bytes")
    zstd_residual = zstandard.ZstdCompressor().compress(chunks[1].residual.tobytes())
    rejects(forged(payload[: 4 + first] + zstd_residual), FormatError, "chunk 1: residual stream")


def test_version_4_header_rules():
    header, _, data = make_stream(**V4)
    assert forge_header(data, 4) == data
    rejects(forge_header(data, 4, residual_band_growth=0), FormatError, "residual_band_growth 0 in a version 4 header")
    for growth in (65535, 131073):
        rejects(forge_header(data, 4, residual_band_growth=growth), FormatError,
                f"residual_band_growth {growth} out of range 65536..131072")
    rejects(forge_header(data, 4, residual_band_start=34), FormatError, "residual_band_start 34 out of range")
    rejects(forge_header(data, 4, residual_bins=0, residual_stride=0, residual_step=0.0), FormatError,
            "residual_band_growth without a residual layer")
    rejects(forge_header(data, 4, tables_hash=b"\1" * 8), FormatError, "tables_hash without rANS-coded codes")
    # the growth and the start size the body: a file claiming others fails on raw_size
    rejects(forge_header(data, 4, residual_band_growth=65536), FormatError, "chunk 0: raw_size")
    rejects(forge_header(data, 4, residual_band_start=9), FormatError, "chunk 0: raw_size")
    with pytest.raises(ValueError, match="residual_band_start 3 out of range 0..residual_bins .0 before version 4."):
        pack(make_header(residual_bins=5, residual_stride=2, residual_step=1.0, residual_band_start=3), [])
    with pytest.raises(ValueError, match="residual_band_growth without a residual layer"):
        pack(make_header(residual_band_growth=65536), [])
    wide = make_chunks(dataclasses.replace(header, residual_band_start=33))
    with pytest.raises(ValueError, match=r"chunk 0: residual shape \(2, 33, 3\), expected \(2, 16, 3\)"):
        pack(header, wide)


V5 = {**V4, "residual_step_slope": 1024, "residual_step_span": 1024}


def test_version_5_header_bytes_and_round_trip():
    header, chunks, data = make_stream(**V5)
    assert data[8] == 0x50 and struct.unpack_from("<H", data, 10)[0] == 102
    # v4's fields stay in place, then the step's slope and span
    assert struct.unpack_from("<HIHH", data, 88) == (8, 77936, 1024, 1024)
    assert struct.unpack_from("<I", data, 98)[0] == zlib.crc32(data[:98])
    assert bitstream.header_layout(5) == {**bitstream.header_layout(4), "residual_step_slope": (94, "<H"),
                                          "residual_step_span": (96, "<H")}
    assert read_header(data) == header and header.version_major == 5
    # the chunk and end records are those of v4, byte for byte
    assert data[102:] == make_stream(**V4)[2][98:]
    assert_residual_round_trip(header, chunks, data)


def test_version_5_header_rules():
    _, _, data = make_stream(**V5)
    assert forge_header(data, 5) == data
    rejects(forge_header(data, 5, residual_step_slope=0), FormatError, "residual_step_slope 0 in a version 5 header")
    rejects(forge_header(data, 5, residual_step_slope=4097), FormatError,
            "residual_step_slope 4097 out of range 0..4096")
    for span in (0, 4097):
        rejects(forge_header(data, 5, residual_step_span=span), FormatError,
                f"residual_step_span {span} out of range 1..4096")
    rejects(forge_header(data, 5, residual_band_growth=0), FormatError, "residual_step_slope without residual bands")
    with pytest.raises(ValueError, match="residual_step_span 5 out of range 1..4096 .0 without residual_step_slope."):
        pack(make_header(**{**V4, "residual_step_span": 5}), [])
    with pytest.raises(ValueError, match="residual_step_slope without residual bands"):
        pack(make_header(residual_step_slope=5, residual_step_span=5), [])


V6 = {**V5, "residual_fine_bins": 5, "residual_fine_step": 0.25}


def test_version_6_header_bytes_and_round_trip():
    header, chunks, data = make_stream(**V6)
    assert data[8] == 0x60 and struct.unpack_from("<H", data, 10)[0] == 108
    # v5's fields stay in place, then the fine bins and their step
    assert struct.unpack_from("<HHHf", data, 94) == (1024, 1024, 5, 0.25)
    assert struct.unpack_from("<I", data, 104)[0] == zlib.crc32(data[:104])
    assert bitstream.header_layout(6) == {**bitstream.header_layout(5), "residual_fine_bins": (98, "<H"),
                                          "residual_fine_step": (100, "<f")}
    assert read_header(data) == header and header.version_major == 6
    # each fine bin adds residual_stride - 1 code rows to every column
    v5 = make_header(**V5)
    assert header.residual_rows == v5.residual_rows + 5
    assert chunks[0].residual.shape == (2, v5.residual_rows + 5, 3)
    assert_residual_round_trip(header, chunks, data)
    # without a slope, a 6.0 header still carries the (zero) slope fields
    flat = make_header(**{**V4, "residual_fine_bins": 5, "residual_fine_step": 0.25})
    assert flat.version_major == 6 and read_header(pack(flat, make_chunks(flat))) == flat


def test_version_6_header_rules():
    _, _, data = make_stream(**V6)
    assert forge_header(data, 6) == data
    rejects(forge_header(data, 6, residual_fine_bins=0), FormatError, "residual_fine_bins 0 in a version 6 header")
    rejects(forge_header(data, 6, residual_fine_bins=9), FormatError,
            "residual_fine_bins 9 out of range 0..residual_band_start (8)")
    for step in (0.0, -1.0, 17.0, float("nan")):
        rejects(forge_header(data, 6, residual_fine_step=step), FormatError, f"residual_fine_step {step} out of range")
    _, _, flat = make_stream(**{**V4, "residual_fine_bins": 5, "residual_fine_step": 0.25})
    # fine bins are rows of one bin each, so a stream without bands (band_start 0) has none
    rejects(forge_header(flat, 6, residual_band_growth=0, residual_band_start=0), FormatError,
            "residual_fine_bins 5 out of range 0..residual_band_start (0)")
    with pytest.raises(ValueError, match="residual_fine_step without fine bins"):
        pack(make_header(**{**V4, "residual_fine_step": 0.25}), [])


V7 = {**V6, "residual_fine_contexts": True}


def test_version_7_is_version_6_with_the_fine_rows_in_contexts_of_their_own():
    header, chunks, data = make_stream(**V7)
    v6_header, _, v6_data = make_stream(**V6)
    assert header.version_major == 7 and data[8] == 0x70 and bitstream.header_layout(7) == bitstream.header_layout(6)
    # the same header fields, byte for byte, apart from the version and the CRC
    assert data[9:104] == v6_data[9:104] and read_header(data) == header
    assert_residual_round_trip(header, chunks, data)
    # the residual stream ends the payload, coded with the fine bins' contexts
    payload = chunk_payload(data, 1)
    fine = (5 * header.residual_stride, header.residual_stride)
    assert payload.endswith(rans.encode_residual(chunks[1].residual, *fine))
    assert not payload.endswith(rans.encode_residual(chunks[1].residual))


def test_version_7_header_rules():
    _, _, data = make_stream(**V7)
    assert forge_header(data, 7) == data
    rejects(forge_header(data, 7, residual_fine_bins=0), FormatError, "residual_fine_bins 0 in a version 7 header")
    with pytest.raises(ValueError, match="fine-bin contexts without fine bins"):
        pack(make_header(**{**V5, "residual_fine_contexts": True}), [])
    # a 6.0 stream read as 7.0 decodes its fine rows in the wrong contexts
    _, chunks, v6_data = make_stream(**V6)
    relabelled = forge_header(v6_data, 6, version=0x70)
    try:
        _, misread = unpack(relabelled)
    except FormatError as error:
        assert "residual stream" in str(error)
    else:
        assert any(not np.array_equal(a.residual, b.residual) for a, b in zip(misread, chunks))


V8 = {**V7, "phase_hint_bins": 4, "phase_hint_delay": 3, "phase_hint_turns": 4}


def test_version_8_header_bytes_and_round_trip():
    header, chunks, data = make_stream(**V8)
    _, _, v7_data = make_stream(**V7)
    assert header.version_major == 8 and data[8] == 0x80 and struct.unpack_from("<H", data, 10)[0] == 114
    # 7.0's fields stay in place, then the hints' bins, delay and turns
    assert data[12:104] == v7_data[12:104] and struct.unpack_from("<HHH", data, 104) == (4, 3, 4)
    assert struct.unpack_from("<I", data, 110)[0] == zlib.crc32(data[:110])
    assert bitstream.header_layout(8) == {**bitstream.header_layout(7), "phase_hint_bins": (104, "<H"),
                                          "phase_hint_delay": (106, "<H"), "phase_hint_turns": (108, "<H")}
    # every residual column gains two codes, the hints' delay and turn, after the layer's rows
    assert header.residual_rows == make_header(**V7).residual_rows + 2
    assert bitstream.chunk_body_size(header, 3) == bitstream.chunk_body_size(make_header(**V7), 3) + 2 * 2 * 3
    assert_residual_round_trip(header, chunks, data)
    # the residual stream ends the payload; the last two rows are coded in the hints' contexts
    payload = chunk_payload(data, 1)
    fine = (5 * header.residual_stride, header.residual_stride)
    assert payload.endswith(rans.encode_residual(chunks[1].residual, *fine, 2))
    assert not payload.endswith(rans.encode_residual(chunks[1].residual, *fine))


def test_version_8_header_rules():
    _, _, data = make_stream(**V8)
    assert forge_header(data, 8) == data
    rejects(forge_header(data, 8, phase_hint_bins=0), FormatError, "phase_hint_bins 0 in a version 8 header")
    rejects(forge_header(data, 8, phase_hint_bins=34), FormatError, "phase_hint_bins 34 out of range 0..n_fft/2+1 (33)")
    for delay in (0, 65):
        rejects(forge_header(data, 8, phase_hint_delay=delay), FormatError,
                f"phase_hint_delay {delay} out of range 1..64")
    for turns in (0, 257):
        rejects(forge_header(data, 8, phase_hint_turns=turns), FormatError,
                f"phase_hint_turns {turns} out of range 1..256")
    with pytest.raises(ValueError, match="phase hints without fine bins in contexts of their own"):
        pack(make_header(**{**V6, "phase_hint_bins": 4, "phase_hint_delay": 3, "phase_hint_turns": 4}), [])
    with pytest.raises(ValueError, match="phase_hint_turns 4 out of range 0..0"):
        pack(make_header(**{**V7, "phase_hint_turns": 4}), [])


@pytest.mark.parametrize("changes", [{}, {"residual_bins": 33, "residual_stride": 2, "residual_step": 2.0}])
def test_chunk_and_end_record_bytes(changes):
    header, chunks, data = make_stream(**({"store_phase": True} | changes))
    offsets = chunk_offsets(data)
    assert offsets[0] == bitstream.HEADER_SIZES[header.version_major] and len(offsets) == header.chunk_count
    for position, (offset, chunk) in enumerate(zip(offsets, chunks)):
        index, frames, raw_size, payload_size = struct.unpack_from("<IIII", data, offset + 4)
        assert (index, frames) == (position, chunk.frames)
        assert raw_size == bitstream.chunk_body_size(header, frames)
        payload = data[offset + 20 : offset + 20 + payload_size]
        if header.residual_bins:  # u32 size of the latent frame, the latent frame, the residual frame
            (first,) = struct.unpack_from("<I", payload)
            payload, residual = payload[4 : 4 + first], payload[4 + first :]
            assert zstandard.ZstdDecompressor().decompress(residual) == chunk.residual.tobytes()
            raw_size -= len(chunk.residual.tobytes())
        assert zstandard.get_frame_parameters(payload).content_size == raw_size
        assert zstandard.ZstdDecompressor().decompress(payload) == raw_body(header, chunk)
        crc = struct.unpack_from("<I", data, offset + 20 + payload_size)[0]
        assert crc == zlib.crc32(data[offset : offset + 20 + payload_size])
    end = data[-24:]
    assert end[:4] == b"NEND"
    assert struct.unpack_from("<IIQI", end, 4) == (
        header.chunk_count,
        header.latent_frames,
        header.sample_count,
        zlib.crc32(end[:20]),
    )


def test_crc_check_value():
    assert bitstream.crc32(b"123456789") == 0xCBF43926


def test_deterministic():
    header, chunks, data = make_stream(store_phase=True)
    assert pack(header, chunks) == data
    assert pack(header, make_chunks(header)) == data


# ---------------------------------------------------------------- header rejection


def test_bad_magic():
    _, _, data = make_stream()
    rejects(b"RIFF" + data[4:], FormatError, "bad magic")
    rejects(b"", FormatError, "empty file")
    with pytest.raises(FormatError, match="bad magic"):
        read_header(b"hello")


@pytest.mark.parametrize("version", [0x90, 0x91, 0xF0, 0x00])
def test_other_major_version(version):
    _, _, data = make_stream()
    # A different major may lay out everything after the version byte differently.
    for forged in (data[:8] + bytes([version]) + data[9:], data[:8] + bytes([version]) + b"\xff" * 3):
        rejects(forged, VersionError, f"version {version >> 4}.{version & 15}")
        with pytest.raises(VersionError):
            scan(forged)


def test_newer_minor_with_appended_fields_is_accepted():
    header, chunks, data = make_stream(store_phase=True)
    extra = b"future"
    head = bytearray(data[:70] + extra + b"\0\0\0\0")
    head[8] = 0x13  # version 1.3
    head[9] |= 0x80  # a flag this decoder does not know
    struct.pack_into("<H", head, 10, 74 + len(extra))
    forged = with_header_crc(bytes(head)) + data[74:]
    parsed, decoded = unpack(forged)
    assert parsed == dataclasses.replace(header, version_minor=3)
    np.testing.assert_array_equal(decoded[1].codes, chunks[1].codes)
    report = scan(forged)
    assert report.ok and report.header_size == 80 and report.chunks[0].offset == 80


def test_version_1_0_rules():
    _, _, data = make_stream()
    rejects(forge_header(data, flags=0x02), FormatError, "reserved flag bits")
    head = data[:70] + b"xxxx" + b"\0\0\0\0"
    forged = with_header_crc(head[:10] + struct.pack("<H", 78) + head[12:]) + data[74:]
    rejects(forged, FormatError, "header_size 78 invalid for version 1.0")
    rejects(forge_header(data, version=0x11, header_size=70), FormatError, "header_size 70 smaller than 74")


def forge_version_2(data: bytes, bins: int, stride: int, step: float, extension: bytes = b"",
                    version: int = 0x20) -> bytes:
    """``data``'s v2 header with other residual fields (and appended bytes), CRC recomputed."""
    head = bytearray(data[:78] + extension + b"\0\0\0\0")
    head[8] = version
    struct.pack_into("<H", head, 10, 82 + len(extension))
    struct.pack_into("<HHf", head, 70, bins, stride, step)
    return with_header_crc(bytes(head)) + data[82:]


def test_version_2_rules():
    header, chunks, data = make_stream(residual_bins=4, residual_stride=2, residual_step=1.0)
    assert forge_version_2(data, 4, 2, 1.0) == data
    rejects(forge_version_2(data, 0, 2, 1.0), FormatError, "residual_bins 0 in a version 2 header")
    rejects(forge_version_2(data, 34, 2, 1.0), FormatError, "residual_bins 34 out of range 0..n_fft/2+1 (33)")
    for step in (0.0, -1.0, 16.5, float("nan"), float("inf")):
        rejects(forge_version_2(data, 4, 2, step), FormatError, "residual_step")
    for stride in (0, 3, 4):  # time_stride is 2
        rejects(forge_version_2(data, 4, stride, 1.0), FormatError, f"residual_stride {stride} does not divide")
    rejects(forge_version_2(data, 4, 2, 1.0, b"xx"), FormatError, "header_size 84 invalid for version 2.0")
    rejects(forge_header(data[:74] + data[82:], version=0x21, header_size=74), FormatError, "smaller than 82")
    newer = forge_version_2(data, 4, 2, 1.0, b"future", version=0x23)
    parsed, decoded = unpack(newer)
    assert parsed == dataclasses.replace(header, version_minor=3)
    np.testing.assert_array_equal(decoded[2].residual, chunks[2].residual)
    # bins and stride size the body: a file claiming others fails on raw_size
    rejects(forge_version_2(data, 5, 2, 1.0), FormatError, "chunk 0: raw_size")
    rejects(forge_version_2(data, 4, 1, 1.0), FormatError, "chunk 0: raw_size")


def test_residual_code_outside_its_range():
    header, chunks, data = make_stream(residual_bins=4, residual_stride=1, residual_step=1.0)
    chunks[1].residual[0, 3, 2] = -128
    payload = payload_of(header, chunks[1])
    forged = replace_chunk(data, 1, chunk_record(1, 3, bitstream.chunk_body_size(header, 3), payload))
    rejects(forged, FormatError, "chunk 1: residual code below -127")


def test_header_crc_mismatch():
    _, _, data = make_stream()
    for offset in (9, 30, 69, 72):
        forged = bytearray(data)
        forged[offset] ^= 0x10
        rejects(bytes(forged), FormatError, "header CRC mismatch")
        with pytest.raises(FormatError, match="header CRC mismatch"):
            scan(bytes(forged))


@pytest.mark.parametrize(
    "fields,text",
    [
        (dict(channels=9), "channels 9 exceeds this decoder's limit 1..8"),
        (dict(channels=0), "channels 0 out of range"),
        (dict(latent_channels=60000), "latent_channels 60000 exceeds"),
        (dict(latent_height=0), "latent_height 0 out of range"),
        (dict(bits=12), "bits 12 must be 8 or 16"),
        (dict(n_fft=96), "n_fft 96 is not a power of two"),
        (dict(n_fft=8192), "n_fft 8192 exceeds"),
        (dict(hop_length=65), "hop_length 65 out of range"),
        (dict(time_stride=65), "time_stride 65 exceeds"),
        (dict(original_sample_rate=800000), "original_sample_rate 800000 out of range"),
        (dict(model_sample_rate=96000), "model_sample_rate 96000 exceeds"),
        (dict(sample_count=2**40), "sample_count 1099511627776 exceeds"),
        (dict(chunk_frames=513), "chunk_frames 513 exceeds"),
        (dict(latent_channels=1024, latent_height=1024, chunk_frames=64), "exceeds this decoder's limit of 67108864"),
        (dict(chunk_count=2), "chunk_count 2, expected 3"),
        (dict(latent_frames=11), "latent_frames 11 too many"),
        (dict(model_sample_count=0), "exactly one is zero"),
        (dict(model_sample_count=7 * 32 + 65), "not covered by 7 latent frames"),
        (dict(sample_count=7 * 32 * 3 + 4), "sample_count 676 not covered"),
    ],
)
def test_header_limits(fields, text):
    """Forged headers with a correct CRC: the limit check, not the CRC, must fail."""
    _, _, data = make_stream()
    forged = forge_header(data, **fields)
    rejects(forged, FormatError, text)
    with pytest.raises(FormatError, match="header: "):
        read_header(forged[:74])


@pytest.mark.parametrize(
    "n_fft,hop_length,time_stride",
    [(512, 128, 4), (512, 128, 1), (1024, 256, 2), (64, 64, 1)],
)
@pytest.mark.parametrize("rates", [(44100, 16000), (8000, 16000), (16000, 16000), (192000, 48000)])
def test_length_rules_accept_usual_framings(n_fft, hop_length, time_stride, rates):
    """Floor, round or ceil resampling; padded (nac's stft) or centered (torch.stft) framing."""
    original_rate, model_rate = rates
    step = hop_length * time_stride
    for sample_count in (1, 2, 3, 100, 12345, 480000):
        exact = sample_count * model_rate / original_rate
        for model_count in {int(np.floor(exact)), int(np.rint(exact)), int(np.ceil(exact))}:
            padded = -(-(model_count + n_fft // 2) // step)
            centered = -(-(model_count // hop_length + 1) // time_stride)
            for latent_frames in {padded, centered} if model_count else {0}:
                header = make_header(
                    original_sample_rate=original_rate,
                    model_sample_rate=model_rate,
                    sample_count=sample_count,
                    model_sample_count=model_count,
                    n_fft=n_fft,
                    hop_length=hop_length,
                    time_stride=time_stride,
                    latent_frames=latent_frames,
                    chunk_frames=4,
                    latent_channels=1,
                    latent_height=1,
                    channels=1,
                )
                assert bitstream._header_problem(header) is None, (sample_count, model_count, latent_frames)


# ---------------------------------------------------------------- chunk and end rejection


def test_chunk_crc_mismatch():
    _, _, data = make_stream()
    offsets = chunk_offsets(data)
    for offset, text in [(offsets[1] + 30, "chunk 1: CRC mismatch"), (offsets[2] + 5, "chunk 2: CRC mismatch")]:
        forged = bytearray(data)
        forged[offset] ^= 0x01
        rejects(bytes(forged), FormatError, text)


def test_truncation_at_every_offset():
    _, _, data = make_stream(store_phase=True, latent_frames=3, chunk_frames=2, channels=1, n_fft=64)
    assert len(data) < 1000
    for size in range(1, len(data)):
        with pytest.raises(FormatError) as info:
            unpack(data[:size])
        assert type(info.value) is FormatError and "truncated" in str(info.value), (size, info.value)
    offsets = chunk_offsets(data)
    rejects(data[: offsets[1] + 25], FormatError, "truncated in chunk 1 payload")
    rejects(data[: offsets[1] + 8], FormatError, "truncated in chunk 1")
    rejects(data[:-24], FormatError, "truncated in end record")


def test_trailing_bytes():
    _, _, data = make_stream()
    rejects(data + b"\0", FormatError, "trailing data after end record")
    rejects(data + data, FormatError, "trailing data")


def test_missing_extra_and_reordered_chunks():
    header, _, data = make_stream(latent_frames=6, chunk_frames=3)
    first, second = chunk_offsets(data)
    end = len(data) - 24
    rejects(data[:second] + data[end:], FormatError, "chunk 1: missing")
    rejects(data[:end] + data[second:end] + data[end:], FormatError, "more chunks than the header's chunk_count")
    swapped = data[:first] + data[second:end] + data[first:second] + data[end:]
    rejects(swapped, FormatError, "chunk 0: index 1, expected 0")


def test_end_record_must_agree_with_header():
    header, _, data = make_stream()
    record = b"NEND" + struct.pack("<IIQ", header.chunk_count, header.latent_frames, header.sample_count + 1)
    forged = data[:-24] + record + struct.pack("<I", zlib.crc32(record))
    rejects(forged, FormatError, "end record: sample_count")
    flipped = bytearray(data)
    flipped[-10] ^= 1
    rejects(bytes(flipped), FormatError, "end record: CRC mismatch")


def test_chunk_size_fields_checked_before_decompression():
    header, chunks, data = make_stream()
    body = raw_body(header, chunks[1])
    payload = zstandard.ZstdCompressor().compress(body)
    assert unpack(replace_chunk(data, 1, chunk_record(1, 3, len(body), payload)))[0] == header
    rejects(replace_chunk(data, 1, chunk_record(1, 3, len(body) + 1, payload)), FormatError, "chunk 1: raw_size")
    rejects(replace_chunk(data, 1, chunk_record(1, 2, len(body), payload)), FormatError, "chunk 1: frames 2, expected 3")


def test_payload_expanding_past_raw_size():
    header, chunks, data = make_stream()
    body = raw_body(header, chunks[1])
    bigger = body + bytes(4096)
    with_size = zstandard.ZstdCompressor().compress(bigger)
    rejects(replace_chunk(data, 1, chunk_record(1, 3, len(body), with_size)), FormatError, "zstd frame declares")
    without_size = zstandard.ZstdCompressor(write_content_size=False).compress(bigger)
    assert zstandard.get_frame_parameters(without_size).content_size == zstandard.CONTENTSIZE_UNKNOWN
    rejects(replace_chunk(data, 1, chunk_record(1, 3, len(body), without_size)), FormatError, "chunk 1: bad zstd")
    shorter = zstandard.ZstdCompressor(write_content_size=False).compress(body[:-1])
    rejects(replace_chunk(data, 1, chunk_record(1, 3, len(body), shorter)), FormatError, "decompressed to")
    two_frames = zstandard.ZstdCompressor().compress(body[:10]) + zstandard.ZstdCompressor().compress(body[10:])
    rejects(replace_chunk(data, 1, chunk_record(1, 3, len(body), two_frames)), FormatError,
            "chunk 1: payload: zstd frame declares 10 bytes")
    rejects(replace_chunk(data, 1, chunk_record(1, 3, len(body), body)), FormatError, "not a zstd frame")


@pytest.mark.parametrize("channels", [1, 2])
def test_writer_puts_each_channels_scales_in_a_block_of_their_own(channels):
    header, chunks, data = make_stream(channels=channels)
    unpacked = unpack(data)[1]
    offset = chunk_offsets(data)[0]
    frame = data[offset + 20 : offset + 20 + struct.unpack_from("<I", data, offset + 16)[0]]
    blocks = make_vectors.zstd_blocks(frame)
    assert len(blocks) == 2 * channels
    assert blocks[0::2] == [("raw", 4 * header.latent_channels)] * channels  # a few floats do not compress
    np.testing.assert_array_equal(unpacked[0].scales, chunks[0].scales)


def test_version_2_payload_rules():
    header, chunks, data = make_stream(residual_bins=4, residual_stride=2, residual_step=1.0)
    chunk = chunks[1]
    size = bitstream.chunk_body_size(header, 3)
    by_hand = unpack(replace_chunk(data, 1, chunk_record(1, 3, size, payload_of(header, chunk))))[1][1]
    np.testing.assert_array_equal(by_hand.codes, chunk.codes)
    np.testing.assert_array_equal(by_hand.residual, chunk.residual)
    latent = zstandard.ZstdCompressor().compress(raw_body(header, chunk))
    residual = zstandard.ZstdCompressor().compress(chunk.residual.tobytes())

    def forged(payload: bytes) -> bytes:
        return replace_chunk(data, 1, chunk_record(1, 3, size, payload))

    rejects(forged(b"\x01\x00"), FormatError, "chunk 1: payload too short")
    rejects(forged(struct.pack("<I", len(latent) + len(residual) + 1) + latent + residual), FormatError,
            "runs past the payload")
    rejects(forged(struct.pack("<I", len(latent)) + latent), FormatError, "chunk 1: residual frame is not a zstd frame")
    rejects(forged(struct.pack("<I", len(latent)) + latent + residual + b"x"), FormatError,
            "chunk 1: bad zstd residual frame")
    rejects(forged(struct.pack("<I", len(residual)) + residual + latent), FormatError,
            "chunk 1: latent frame: zstd frame declares")
    one_frame = zstandard.ZstdCompressor().compress(raw_body(header, chunk) + chunk.residual.tobytes())
    rejects(forged(one_frame), FormatError, "chunk 1:")


@pytest.mark.parametrize("scale", [np.nan, np.inf, -1.0])
def test_bad_scale(scale):
    header, chunks, data = make_stream()
    chunks[2].scales[1, 2] = scale
    payload = zstandard.ZstdCompressor().compress(raw_body(header, chunks[2]))
    forged = replace_chunk(data, 2, chunk_record(2, 1, bitstream.chunk_body_size(header, 1), payload))
    rejects(forged, FormatError, "chunk 2: scale not finite or negative")


def test_code_outside_quantizer_range():
    header, chunks, data = make_stream()
    chunks[0].codes[1, 0, 0, 0] = -128
    payload = zstandard.ZstdCompressor().compress(raw_body(header, chunks[0]))
    forged = replace_chunk(data, 0, chunk_record(0, 3, bitstream.chunk_body_size(header, 3), payload))
    rejects(forged, FormatError, "chunk 0: latent code below -127")


# ---------------------------------------------------------------- scan


def test_scan_clean_stream():
    header, chunks, data = make_stream(store_phase=True)
    report = scan(data)
    assert report.ok and report.end_present and report.end_ok
    assert report.header == header and report.file_size == len(data)
    assert [c.offset for c in report.chunks] == chunk_offsets(data)
    assert [c.frames for c in report.chunks] == [3, 3, 1]
    assert [(c.sample_start, c.sample_stop) for c in report.chunks] == [(0, 96), (96, 192), (192, 224)]
    assert all(c.raw_size == bitstream.chunk_body_size(header, c.frames) for c in report.chunks)


def test_scan_reports_damaged_chunk():
    _, _, data = make_stream()
    forged = bytearray(data)
    forged[chunk_offsets(data)[1] + 24] ^= 0xFF
    report = scan(bytes(forged))
    assert [c.crc_ok for c in report.chunks] == [True, False, True]
    assert report.chunks[1].problem == "CRC mismatch"
    assert report.end_ok and not report.ok


def test_scan_resyncs_after_damaged_length_and_truncation():
    _, _, data = make_stream()
    offsets = chunk_offsets(data)
    forged = bytearray(data)
    struct.pack_into("<I", forged, offsets[1] + 16, 5)  # payload_size damaged
    report = scan(bytes(forged))
    assert [c.crc_ok for c in report.chunks] == [True, False, True]
    assert report.chunks[2].offset == offsets[2]  # resynchronized on the next sync word
    assert report.end_ok and report.problems == ()

    report = scan(data[: offsets[2] + 10])
    assert len(report.chunks) == 2 and all(c.crc_ok for c in report.chunks)
    assert not report.end_present and not report.ok
    assert any("truncated in chunk 2" in p for p in report.problems)
    assert any("end record missing" in p for p in report.problems)

    report = scan(data + b"junk")
    assert report.end_present and not report.end_ok
    assert report.problems == ("4 bytes of trailing data after end record",)


# ---------------------------------------------------------------- pack misuse


def test_pack_rejects_inconsistent_input():
    header, chunks, _ = make_stream(store_phase=True)
    with pytest.raises(ValueError, match="chunk_count"):
        pack(header, chunks[:2])
    with pytest.raises(ValueError, match="invalid header: channels 9"):
        pack(dataclasses.replace(header, channels=9), chunks)
    with pytest.raises(ValueError, match="writes minor version 0"):
        pack(dataclasses.replace(header, version_minor=1), chunks)
    bad = [dataclasses.replace(c) for c in chunks]
    bad[1] = dataclasses.replace(bad[1], codes=bad[1].codes.astype(np.int16))
    with pytest.raises(ValueError, match="chunk 1: codes dtype int16, expected int8"):
        pack(header, bad)
    bad[1] = dataclasses.replace(chunks[1], phase=None)
    with pytest.raises(ValueError, match="chunk 1: phase"):
        pack(header, bad)
    bad[1] = dataclasses.replace(chunks[1], scales=np.full_like(chunks[1].scales, np.nan))
    with pytest.raises(ValueError, match="finite"):
        pack(header, bad)
    bad[1] = dataclasses.replace(chunks[1], frames=2, codes=chunks[1].codes[..., :2])
    with pytest.raises(ValueError, match="frames"):
        pack(header, bad)


def test_pack_rejects_inconsistent_residual():
    header, chunks, _ = make_stream(residual_bins=4, residual_stride=2, residual_step=1.0)
    with pytest.raises(ValueError, match="chunk 0: residual"):
        pack(header, [dataclasses.replace(chunks[0], residual=None), *chunks[1:]])
    wide = dataclasses.replace(chunks[0], residual=chunks[0].residual.astype(np.int16))
    with pytest.raises(ValueError, match="chunk 0: residual dtype int16, expected int8"):
        pack(header, [wide, *chunks[1:]])
    low = dataclasses.replace(chunks[0], residual=np.full_like(chunks[0].residual, -128))
    with pytest.raises(ValueError, match="residual codes below -127"):
        pack(header, [low, *chunks[1:]])
    plain = make_header()
    with pytest.raises(ValueError, match="residual given but header.residual_bins is 0"):
        pack(plain, [dataclasses.replace(c, residual=r.residual) for c, r in zip(make_chunks(plain), chunks)])
    for field in ("residual_step", "residual_stride"):
        with pytest.raises(ValueError, match="residual_step and residual_stride without a residual layer"):
            pack(dataclasses.replace(plain, **{field: 2}), make_chunks(plain))


# ---------------------------------------------------------------- fuzz


def test_random_damage_raises_only_format_errors():
    """Byte flips, truncations and insertions: FormatError or a clean parse, nothing else."""
    _, _, data = make_stream(store_phase=True, bits=16)
    rng = np.random.default_rng(1)
    for _ in range(1500):
        damaged = bytearray(data)
        kind = rng.integers(0, 3)
        if kind == 0:
            for _ in range(rng.integers(1, 4)):
                damaged[rng.integers(0, len(damaged))] = rng.integers(0, 256)
        elif kind == 1:
            del damaged[rng.integers(0, len(damaged)) :]
        else:
            at = rng.integers(0, len(damaged))
            damaged[at:at] = rng.bytes(rng.integers(1, 30))
        damaged = bytes(damaged)
        try:
            unpack(damaged)
        except FormatError:
            pass
        else:
            assert damaged == data
        try:
            scan(damaged)
        except FormatError:
            pass
