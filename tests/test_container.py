"""The format 9 container (nac/format): header, layer descriptors, chunk records, end record, walk, salvage.

Streams here are made from random integers (no model), so every byte rule of
format_spec.md is exercised on its own: round trips, the bytes field by
field, and every rejection by the message it raises.
"""

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import zstandard
from construct import VarInt

from nac.errors import FormatError, ModelError, VersionError
from nac.format import container, header, rans, records
from nac.format.container import Tables
from nac.format.header import Companion, LayerType, StreamInfo
from nac.format.records import Chunk
from nac.layers import latent
from nac.layers.latent import LatentParams
from nac.layers.residual import GROWTH_ONE, ResidualLayer

HASH = bytes(range(1, 9))
TABLES_HASH = bytes(range(20, 28))


def make_info(sample_count: int = 7 * 32 * 3, **changes) -> StreamInfo:
    """A small valid description: 32 model-rate samples a latent frame, 16 kHz model, 48 kHz input, 2 channels,
    chunks of 3 frames in groups of 2, 3 latent channels of height 2 (code bits 4, 4, 3)."""
    fields = dict(model_id=3, weights_hash=HASH, original_sample_rate=48000, model_sample_rate=16000, channels=2,
                  sample_count=sample_count, n_fft=64, hop_length=16, time_stride=2, chunk_frames=3,
                  group_chunks=2, latent=LatentParams(3, 2, (4, 4, 3), False))
    fields.update(changes)
    counts = header.derived_counts(fields["sample_count"], fields["original_sample_rate"],
                                   fields["model_sample_rate"], fields["n_fft"], fields["hop_length"],
                                   fields["time_stride"], fields["chunk_frames"])
    return StreamInfo(**fields, **counts)


RESIDUAL = ResidualLayer(bins=20, stride=2, step=0.5, band_start=6, band_growth=round(2**0.25 * GROWTH_ONE),
                         slope=819, span=1024, fine_bins=2, fine_step=0.25, hint_bins=4, hint_delay=4, hint_turns=4)
CODED = {"latent": LatentParams(3, 2, (4, 4, 3), True), "companions": ((Companion.CODE_TABLES, TABLES_HASH),)}


def make_tables(info: StreamInfo, seed: int = 1) -> Tables:
    size = 2 * info.latent.code_range + 1
    counts = np.random.default_rng(seed).integers(1, 50, (info.latent.latent_channels, size, size))
    return Tables({info.latent.code_range: rans.tables_from_counts(counts)})


def make_chunks(info: StreamInfo, seed: int = 0, silent: tuple[int, ...] = ()) -> list[Chunk]:
    """Random codes within their ranges; peaks on their group's grid; ``silent`` chunks without codes."""
    rng = np.random.default_rng(seed)
    params, chunks, peaks = info.latent, [], None
    for index in range(info.chunk_count):
        if index % info.group_chunks == 0:
            peaks = latent.round_peaks(rng.uniform(0.1, 40, (info.channels, params.latent_channels)))
            peaks[0, 0] = 0.0  # a channel all zero: its codes are not coded
        frames = info.chunk_frames_at(index)
        steps = latent.steps(peaks, params)
        if index in silent:
            chunks.append(Chunk(index, frames, steps, None, peaks=peaks))
            continue
        limits = params.limits.reshape(1, -1, 1, 1)
        codes = rng.integers(-limits, limits + 1, (info.channels, params.latent_channels, params.latent_height, frames))
        codes[0, 0] = 0
        phase = residual = None
        if info.stored_phase_bits:
            shape = (info.channels, info.phase_bins, frames * info.time_stride)
            phase = rng.integers(0, 2**info.stored_phase_bits, shape).astype(
                np.uint8 if info.stored_phase_bits == 8 else np.uint16)
        if info.residual is not None:
            shape = (info.channels, info.residual.code_rows, info.residual.columns(frames * info.time_stride))
            residual = np.clip(np.rint(rng.laplace(0, 3, shape)), -127, 127).astype(np.int8)
        chunks.append(Chunk(index, frames, steps, codes.astype(params.code_dtype), phase, residual, peaks))
    return chunks


def make_stream(silent: tuple[int, ...] = (), **changes) -> tuple[StreamInfo, list[Chunk], bytes, Tables]:
    info = make_info(**changes)
    chunks = make_chunks(info, silent=silent)
    tables = make_tables(info) if info.latent.entropy_coded else Tables()
    return info, chunks, container.pack(info, chunks, tables), tables


def unpack(data: bytes, tables: Tables = Tables()):
    return container.unpack(data, tables)


def rejects(data: bytes, error: type, text: str, tables: Tables = Tables()) -> None:
    with pytest.raises(error) as raised:
        unpack(data, tables)
    assert type(raised.value) is error
    assert text in str(raised.value), str(raised.value)
    assert "\n" not in str(raised.value)


def with_header_crc(head: bytes) -> bytes:
    return head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))


def header_size(data: bytes) -> int:
    return struct.unpack_from("<H", data, 10)[0]


def forge_header(data: bytes, **fields) -> bytes:
    """Change fixed fields of a 9.0 header in place (offsets of format_spec.md section 3) and recompute its CRC."""
    size = header_size(data)
    head = bytearray(data[:size])
    for name, value in fields.items():
        offset, fmt = FIXED_FIELDS[name]
        struct.pack_into(fmt, head, offset, value)
    return with_header_crc(bytes(head)) + data[size:]


def records_of(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every chunk record of a sound file, from a walk."""
    return [(chunk.offset, chunk.size) for chunk in container.scan(data).chunks]


def rebuild_record(record: bytes, change) -> bytes:
    """A chunk record with ``change(body)`` applied to the bytes before its CRC, the CRC recomputed."""
    body = change(bytearray(record[:-4]))
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def replace_record(data: bytes, position: int, record: bytes) -> bytes:
    offset, size = records_of(data)[position]
    return data[:offset] + record + data[offset + size :]


def record(data: bytes, position: int) -> bytes:
    offset, size = records_of(data)[position]
    return data[offset : offset + size]


FIXED_FIELDS = {  # format_spec.md section 3
    "magic": (0, "8s"),
    "version": (8, "<B"),
    "flags": (9, "<B"),
    "header_size": (10, "<H"),
    "model_id": (12, "<H"),
    "weights_hash": (14, "8s"),
    "original_sample_rate": (22, "<I"),
    "model_sample_rate": (26, "<I"),
    "channels": (30, "<B"),
    "sample_count": (31, "<Q"),
    "n_fft": (39, "<H"),
    "hop_length": (41, "<H"),
    "time_stride": (43, "<H"),
    "chunk_frames": (45, "<H"),
    "group_chunks": (47, "<B"),
}


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("changes", [
    {},
    CODED,
    {**CODED, "residual": RESIDUAL, "companions": CODED["companions"] + ((Companion.RESIDUAL_TABLES, HASH),)},
    {"stored_phase_bits": 8},
    {"stored_phase_bits": 16, "latent": LatentParams(3, 2, (16, 15, 16), False)},
    {"sample_count": 3},  # one frame, one chunk
    {"chunk_frames": 1, "group_chunks": 1},
])
@pytest.mark.parametrize("silent", [(), (1,)])
def test_round_trip(changes, silent):
    info, chunks, data, tables = make_stream(silent=silent if make_info(**changes).chunk_count > 1 else (), **changes)
    parsed, decoded = unpack(data, tables)
    assert dataclasses.replace(parsed, header_size=0, layer_order=()) == info
    assert len(decoded) == len(chunks) == info.chunk_count
    for want, got in zip(chunks, decoded):
        assert (got.index, got.frames, got.silent) == (want.index, want.frames, want.silent)
        for name in ("steps", "peaks", "codes", "phase", "residual"):
            w, g = getattr(want, name), getattr(got, name)
            if w is None:
                assert g is None, name
                continue
            assert g.dtype == w.dtype and g.dtype.isnative, name
            np.testing.assert_array_equal(g, w)
    assert container.pack(parsed, decoded, tables) == data


def test_zero_length_audio():
    info, chunks, data, _ = make_stream(sample_count=0)
    assert chunks == [] and (info.latent_frames, info.chunk_count) == (0, 0)
    assert len(data) == header_size(data) + records.END_SIZE
    assert container.scan(data).ok and unpack(data)[1] == []


def test_counts_follow_from_the_header():
    counts = header.derived_counts(44101, 44100, 16000, 512, 128, 4, 31)
    assert counts == {"model_sample_count": 16000, "latent_frames": 32, "chunk_count": 2}  # round half up
    assert header.derived_counts(1, 48000, 16000, 64, 16, 2, 3)["model_sample_count"] == 0
    assert header.derived_counts(2, 48000, 16000, 64, 16, 2, 3)["model_sample_count"] == 1
    assert header.derived_counts(0, 48000, 16000, 64, 16, 2, 3) == {"model_sample_count": 0, "latent_frames": 0,
                                                                    "chunk_count": 0}


# ---------------------------------------------------------------- the bytes


def test_header_bytes_field_by_field():
    info, _, data, _ = make_stream(**CODED, residual=RESIDUAL, stored_phase_bits=8)
    assert data[:8] == b"\x89NAC\r\n\x1a\n" and data[8] == 0x90 and data[9] == 0
    for name, (offset, fmt) in FIXED_FIELDS.items():
        if name not in ("magic", "version", "flags", "header_size"):
            assert struct.unpack_from(fmt, data, offset)[0] == getattr(info, name), name
    pos = 48
    assert data[pos] == 1 and data[pos + 1 : pos + 10] == bytes([Companion.CODE_TABLES]) + TABLES_HASH
    pos += 10
    assert data[pos] == 3  # layers: latent, residual, stored phase, each critical (bit 7) with a sized body
    pos += 1
    assert data[pos : pos + 2] == bytes([0x81, 7])
    assert struct.unpack_from("<HHBB", data, pos + 2) == (3, 2, 1, 4) and data[pos + 8] == 0b100  # channel 2 narrower
    pos += 9
    assert data[pos : pos + 2] == bytes([0x82, 26])
    fields = struct.unpack_from("<HBfHHHHHfHHB", data, pos + 2)
    r = RESIDUAL
    assert fields == (r.bins, r.stride, r.step, r.band_start, r.band_growth - GROWTH_ONE, r.slope, r.span,
                      r.fine_bins, r.fine_step, r.hint_bins, r.hint_delay, r.hint_turns)
    pos += 28
    assert data[pos : pos + 3] == bytes([0x83, 1, 8])
    pos += 3
    assert header_size(data) == pos + 4 and struct.unpack_from("<I", data, pos)[0] == zlib.crc32(data[:pos])


def test_chunk_record_and_end_record_bytes():
    info, chunks, data, tables = make_stream(**CODED, residual=RESIDUAL, stored_phase_bits=8, silent=(3,))
    assert [offset for offset, _ in records_of(data)][0] == header_size(data)
    for position, ((offset, size), chunk) in enumerate(zip(records_of(data), chunks)):
        body = data[offset : offset + size - 4]
        assert body[:4] == b"NACK" and struct.unpack_from("<I", body, 4)[0] == position
        flags = body[8]
        assert flags == (1 if position % 2 == 0 or position % 2 == 1 else 0) | (2 if position == 3 else 0)
        pos = 9
        shift, codes = latent.encode_peaks(chunk.peaks)
        assert body[pos] == shift & 0xFF and body[pos + 1 : pos + 7] == codes.tobytes()
        pos += 7
        parts = []
        while pos < len(body):
            length = VarInt.parse(body[pos:])
            pos += len(VarInt.build(length))
            parts.append(body[pos : pos + length])
            pos += length
        assert pos == len(body) and len(parts) == (0 if chunk.silent else 3)
        if parts:
            latent_part, residual_part, phase_part = parts
            rows = [r for r in range(12) if chunk.peaks.reshape(-1)[r // 2] != 0]  # 2 x 3 channels, height 2
            tables_of = np.array(rows) // 2 % 3
            assert latent_part == rans.encode(chunk.codes.reshape(-1, chunk.frames)[rows], tables_of,
                                              tables.code_tables[7])
            assert residual_part == rans.encode_residual(chunk.residual, 4, 2, 2)
            assert zstandard.ZstdDecompressor().decompress(phase_part) == chunk.phase.tobytes()
        assert struct.unpack_from("<I", data, offset + size - 4)[0] == zlib.crc32(body)
    end = data[-24:]
    assert end[:4] == b"NEND"
    assert struct.unpack_from("<IIQI", end, 4) == (info.chunk_count, info.latent_frames, info.sample_count,
                                                   zlib.crc32(end[:20]))


def test_crc_check_value_and_determinism():
    assert records.crc32(b"123456789") == 0xCBF43926
    info, chunks, data, tables = make_stream(**CODED, residual=RESIDUAL)
    assert container.pack(info, make_chunks(info), tables) == data


# ---------------------------------------------------------------- header rejection


def test_bad_magic_and_empty_files():
    _, _, data, _ = make_stream()
    rejects(b"RIFF" + data[4:], FormatError, "bad magic")
    rejects(b"", FormatError, "empty file")
    rejects(data[:5], FormatError, "truncated in header")


@pytest.mark.parametrize("version", [0xA0, 0xF3, 0x00])
def test_other_major_versions_are_refused(version):
    _, _, data, _ = make_stream()
    forged = data[:8] + bytes([version]) + data[9:]
    rejects(forged, VersionError, f"unsupported format version {version >> 4}.{version & 15}")
    with pytest.raises(VersionError):
        container.scan(forged)


def test_newer_minor_with_appended_fields_and_an_unknown_optional_layer_is_read():
    """A writer of a newer minor (9.2) may append header fields, descriptor fields and non-critical layers: this
    reader skips them, and the unknown layer's part in every chunk."""
    info, chunks, data, _ = make_stream(silent=(2,))
    size = header_size(data)
    latent_end = 48 + 1 + 1 + 2 + 7  # companions, layer count, latent descriptor
    head = bytearray(data[: latent_end] + b"\x99" + data[latent_end : size - 4])
    head[8], head[9] = 0x92, 0x40  # version 9.2, a flag this reader does not know
    head[49] = 2  # two layers
    head[51] = 8  # the latent descriptor grows a byte
    head += bytes([100, 3]) + b"new" + b"appended"  # layer type 100, not critical, then appended header fields
    struct.pack_into("<H", head, 10, len(head) + 4)
    forged = with_header_crc(bytes(head) + b"\0\0\0\0")
    for position, (offset, length) in enumerate(records_of(data)):
        old = data[offset : offset + length]
        extra = b"" if chunks[position].silent else VarInt.build(5) + b"later"
        forged += rebuild_record(old, lambda body: body + extra)
    forged += data[-24:]
    parsed, decoded = unpack(forged)
    assert parsed.version == (9, 2) and parsed.layer_order == (1, 100)
    np.testing.assert_array_equal(decoded[1].codes, chunks[1].codes)
    assert container.scan(forged).ok


def test_an_unknown_critical_layer_or_companion_is_refused():
    _, _, data, _ = make_stream()
    size = header_size(data)
    head = bytearray(data[: size - 4])
    head[49] = 2
    head += bytes([0x80 | 100, 0])  # layer type 100, critical
    struct.pack_into("<H", head, 10, len(head) + 4)
    rejects(with_header_crc(bytes(head) + b"\0" * 4) + data[size:], VersionError, "unsupported critical layer type 100")
    head = bytearray(data[:48] + bytes([1, 9]) + HASH + data[49 : size - 4])
    struct.pack_into("<H", head, 10, len(head) + 4)
    rejects(with_header_crc(bytes(head) + b"\0" * 4) + data[size:], VersionError, "unsupported companion role 9")


@pytest.mark.parametrize("fields, message", [
    ({"flags": 1}, "reserved flags"),
    ({"channels": 9}, "channels 9 exceeds this decoder's limit 1..8"),
    ({"channels": 0}, "channels 0 out of range 1..255"),
    ({"n_fft": 96}, "n_fft 96 is not a power of two"),
    ({"hop_length": 65}, "hop_length 65 out of range 1..n_fft (64)"),
    ({"model_sample_rate": 100}, "model_sample_rate 100 out of range"),
    ({"chunk_frames": 0}, "chunk_frames 0 out of range"),
    ({"group_chunks": 65}, "group_chunks 65 exceeds this decoder's limit"),
    ({"sample_count": 2**40}, "sample_count"),
])
def test_header_limits(fields, message):
    _, _, data, _ = make_stream()
    rejects(forge_header(data, **fields), FormatError, message)


def test_header_crc_and_layer_rules():
    info, _, data, tables = make_stream(**CODED, residual=RESIDUAL)
    size = header_size(data)
    damaged = bytearray(data)
    damaged[20] ^= 1
    rejects(bytes(damaged), FormatError, "header CRC mismatch")
    residual_at = 48 + 10 + 1 + 9 + 2  # the residual descriptor's body
    for offset, fmt, value, message in (
        (residual_at, "<H", 500, "residual bins 500 out of range"),
        (residual_at + 2, "<B", 3, "residual stride 3 does not divide time_stride 2"),
        (residual_at + 3, "<f", float("nan"), "residual step nan out of range"),
        (residual_at + 11, "<H", 5000, "residual slope 5000 out of range"),
        (residual_at + 15, "<H", 9, "residual fine_bins 9 out of range"),
        (residual_at + 23, "<H", 0, "phase hint delay 0 out of range"),
    ):
        head = bytearray(data[:size])
        struct.pack_into(fmt, head, offset, value)
        rejects(with_header_crc(bytes(head)) + data[size:], FormatError, message, tables)
    head = bytearray(data[:size])
    head[48] = 0  # no companions: rANS-coded codes without their tables
    head = head[:49] + head[58:]
    struct.pack_into("<H", head, 10, len(head))
    rejects(with_header_crc(bytes(head)) + data[size:], FormatError, "without code tables")


def test_tables_must_fit_the_stream():
    _, _, data, tables = make_stream(**CODED)
    with pytest.raises(ModelError, match="need the model's code tables"):
        unpack(data)
    with pytest.raises(ModelError, match="code tables for 2 latent channels"):
        unpack(data, Tables({7: tables.code_tables[7][:2]}))


# ---------------------------------------------------------------- chunk rejection


def test_chunk_crc_mismatch_and_truncation_at_every_offset():
    _, _, data, _ = make_stream(residual=RESIDUAL)
    damaged = bytearray(data)
    damaged[records_of(data)[1][0] + 12] ^= 1
    rejects(bytes(damaged), FormatError, "chunk 1: CRC mismatch")
    for size in range(len(data)):
        with pytest.raises(FormatError):
            unpack(data[:size])


def test_trailing_missing_extra_and_reordered_chunks():
    _, _, data, _ = make_stream()
    rejects(data + b"\0", FormatError, "trailing data after end record")
    first, second = record(data, 0), record(data, 1)
    rejects(data.replace(second, b""), FormatError, "chunk 1: index 2, expected 1")
    rejects(data.replace(first + second, second + first), FormatError, "chunk 0: index 1, expected 0")
    end = data[-24:]
    rejects(data[:-24] + record(data, 2) + end, FormatError, "beyond the header's chunk_count")


def test_end_record_must_agree_with_the_header():
    info, _, data, _ = make_stream()
    end = bytearray(data[-24:])
    struct.pack_into("<I", end, 4, info.chunk_count + 1)
    end[-4:] = struct.pack("<I", zlib.crc32(bytes(end[:-4])))
    rejects(data[:-24] + bytes(end), FormatError, "end record: chunk_count")


def test_peaks_must_be_where_the_groups_need_them_and_agree():
    info, chunks, data, _ = make_stream()
    no_peaks = rebuild_record(record(data, 1), lambda body: body[:8] + bytes([0]) + body[16:])
    rejects(replace_record(data, 1, no_peaks), FormatError, "chunk 1: peak codes present where they must not be")
    flagged = rebuild_record(record(data, 1), lambda body: body[:8] + bytes([0x05]) + body[9:])
    rejects(replace_record(data, 1, flagged), FormatError, "chunk 1: reserved flag bits set")
    other = rebuild_record(record(data, 1), lambda body: body[:10] + bytes([body[10] ^ 1]) + body[11:])
    with pytest.raises(FormatError, match="two copies of its peak codes differ"):
        unpack(replace_record(data, 1, other))
    shifted = rebuild_record(record(data, 0), lambda body: body[:9] + bytes([0x7F]) + body[10:])
    with pytest.raises(FormatError, match="peak shift 127 out of range"):
        unpack(replace_record(data, 0, shifted))


def test_payload_rules():
    info, chunks, data, tables = make_stream(**CODED, residual=RESIDUAL)
    head = 9 + 7  # sync, index, flags, peaks

    def with_part(position: int, part_index: int, new: bytes) -> bytes:
        def change(body):
            pos, parts = head, []
            while pos < len(body):
                length = VarInt.parse(bytes(body[pos:]))
                pos += len(VarInt.build(length))
                parts.append(bytes(body[pos : pos + length]))
                pos += length
            parts[part_index] = new
            return body[:head] + b"".join(VarInt.build(len(p)) + p for p in parts)
        return replace_record(data, position, rebuild_record(record(data, position), change))

    rejects(with_part(0, 0, b"\0\0\0\0"), FormatError, "chunk 0: latent codes: code stream", tables)
    rejects(with_part(0, 1, b"\0" * 6), FormatError, "chunk 0: residual codes", tables)
    rejects(with_part(0, 1, b"\0" * 100000), FormatError, "implausibly large", tables)
    # latent codes beyond their channel's range: coded with the tables of a wider channel
    wide = chunks[0].codes.copy()
    wide[1, 2, 0, 0] = 6  # channel 2 has 3 bits: U = 3
    rows = [r for r in range(12) if chunks[0].peaks.reshape(-1)[r // 2] != 0]
    part = rans.encode(wide.reshape(-1, wide.shape[-1])[rows].astype(np.int64), np.array(rows) // 2 % 3,
                       tables.code_tables[7])
    rejects(with_part(0, 0, part), FormatError, "latent code outside its channel's range", tables)


def test_zstd_parts_are_bounded():
    info, chunks, data, _ = make_stream(stored_phase_bits=8)
    big = zstandard.ZstdCompressor().compress(bytes(10**6))

    def change(body):
        return body[:16] + VarInt.build(len(big)) + big
    forged = replace_record(data, 0, rebuild_record(record(data, 0), change))
    rejects(forged, FormatError, "chunk 0:")


# ---------------------------------------------------------------- walk and salvage


def test_scan_reports_a_damaged_chunk_and_resynchronizes():
    info, _, data, _ = make_stream()
    report = container.scan(data)
    assert report.ok and [c.index for c in report.chunks] == list(range(info.chunk_count))
    assert all(c.crc_ok and c.sound for c in report.chunks)
    damaged = bytearray(data)
    offset, _ = records_of(data)[1]
    damaged[offset + 9] ^= 0x40  # a peak byte
    report = container.scan(bytes(damaged))
    assert not report.ok and report.chunks[1].problem == "CRC mismatch" and [(r.first, r.last, r.reason) for r in report.lost_runs()] == [(1, 1, "CRC mismatch")]
    damaged = bytearray(data)
    damaged[offset + 17] ^= 0x7F  # the first part's size: the walk resynchronizes on the next sync word
    report = container.scan(bytes(damaged))
    assert [(r.first, r.last) for r in report.lost_runs()] == [(1, 1)] and report.end_ok


def test_salvage_loses_only_the_damaged_chunk():
    info, chunks, data, _ = make_stream(sample_count=12 * 32 * 3, residual=RESIDUAL)
    damaged = bytearray(data)
    damaged[records_of(data)[2][0] + 20] ^= 1
    result = container.salvage(bytes(damaged))
    assert [(r.first, r.last, r.reason) for r in result.lost] == [(2, 2, "CRC mismatch")] and 2 not in result.chunks
    for index in (0, 1, 3):
        np.testing.assert_array_equal(result.chunks[index].codes, chunks[index].codes)


def test_salvage_takes_a_groups_peaks_from_the_second_copy():
    info, chunks, data, _ = make_stream(sample_count=12 * 32 * 3, group_chunks=3)
    damaged = bytearray(data)
    damaged[records_of(data)[0][0] + 5] ^= 1  # chunk 0, the group's first carrier
    result = container.salvage(bytes(damaged))
    assert [(r.first, r.last) for r in result.lost] == [(0, 0)]
    np.testing.assert_array_equal(result.chunks[2].steps, chunks[2].steps)
    damaged[records_of(data)[1][0] + 5] ^= 1  # both carriers: the whole group is lost
    result = container.salvage(bytes(damaged))
    assert [(r.first, r.last) for r in result.lost] == [(0, 2)] and "peak codes were lost" in result.lost[0].reason
    assert 3 in result.chunks


def test_random_damage_raises_only_format_errors():
    _, _, data, tables = make_stream(**CODED, residual=RESIDUAL, stored_phase_bits=8)
    rng = np.random.default_rng(0)
    for _ in range(300):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 4)):
            damaged[position] = rng.integers(0, 256)
        try:
            unpack(bytes(damaged), tables)
        except (FormatError, ModelError):
            pass
        if bytes(damaged[: header_size(data)]) == data[: header_size(data)]:
            container.salvage(bytes(damaged), tables)


# ---------------------------------------------------------------- the writer


def test_pack_rejects_inconsistent_input():
    info, chunks, _, _ = make_stream(residual=RESIDUAL)
    for change, message in (
        (lambda c: dataclasses.replace(c[1], index=5), "chunk 1: index 5"),
        (lambda c: dataclasses.replace(c[0], peaks=c[0].peaks * 1.01), "off their group's grid"),
        (lambda c: dataclasses.replace(c[0], codes=c[0].codes * 3), "outside their channels' ranges"),
        (lambda c: dataclasses.replace(c[0], residual=c[0].residual[:, :-1]), "residual codes must be"),
    ):
        broken = list(chunks)
        broken[int(message[6]) if message.startswith("chunk") else 0] = change(broken)
        with pytest.raises(ValueError, match=message):
            container.pack(info, broken)
    with pytest.raises(ValueError, match="chunks, chunk_count is"):
        container.pack(info, chunks[:-1])
    with pytest.raises(ValueError, match="do not follow from the header's fields"):
        container.pack(dataclasses.replace(info, latent_frames=info.latent_frames + 1), chunks)
    with pytest.raises(ValueError, match="one width and one bit fewer"):
        container.pack(dataclasses.replace(info, latent=LatentParams(3, 2, (5, 4, 3), False)), chunks)
    assert LayerType.LATENT in info.parts
