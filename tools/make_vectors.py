"""Regenerate the golden ``.nac`` vectors in tests/vectors/ and format_spec.md's Appendix A.

    python tools/make_vectors.py

Every vector is cut from the bundled clip (samples/speech-en-allison.flac)
and encoded with the shipped default model, so the vectors change whenever
that model's weights change (the header records their hash). For each
``NAME.nac`` a ``NAME.json`` records its header fields, chunk sizes, sha256
and source. tests/test_vectors.py rebuilds the sources with :func:`source`
and checks the bytes; keep the recipes here, in one place. A vector marked
``kept_from`` was made by an earlier writer that no longer exists: its bytes
stay as committed (this script only rewrites its JSON) to show that such
files still decode.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# MKL's kernels round by CPU: pinned to SSE4.2, as tests/conftest.py does, so vectors re-encode alike anywhere
os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")

import numpy as np  # noqa: E402

from nac import api  # noqa: E402

from nac.format import container  # noqa: E402

from nac.model import zoo  # noqa: E402
from nac.audio import read_audio  # noqa: E402
from nac.settings import EncoderSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "speech-en-allison.flac"
VECTORS_DIR = ROOT / "tests" / "vectors" / "legacy"
SPEC = ROOT / "format_spec.md"
APPENDIX_HEADING = "## Appendix A: worked example"


@dataclass(frozen=True)
class Vector:
    """How one golden vector is made: a slice of the clip and the encoder options."""

    name: str  # file stem in tests/vectors/
    description: str
    seconds: float  # length taken from the clip, at ``rate``
    rate: int = 16000  # the rate the encoder is given (the clip is resampled to it)
    gains: tuple[float, ...] = (1.0,)  # one gain per output channel, applied to the mono clip
    bits: int = 8
    store_phase: bool = False
    residual_hz: float = 0.0  # > 0: the residual layer (a version 4.0 file)
    residual_bands_hz: float = 0.0  # > 0: residual bands from here up
    bands_per_octave: float = 8.0
    residual_slope: float = 0.0  # > 0: level-adaptive residual steps (a version 5.0 file)
    residual_fine_hz: float = 0.0  # > 0: residual bins under it coded at every frame (a version 7.0 file)
    residual_fine_step: float | None = None  # their step (None: the residual step)
    phase_hint_hz: float = 0.0  # > 0: phase hints for the bins under it (a version 8.0 file)
    code_bits: int | None = None  # None: the default; the default model has rANS tables for 3-5 bits only
    kept_from: str = ""  # the earlier writer that made a kept vector ("" for one this script makes)
    start: float = 0.0  # seconds into the clip where the slice begins

    @property
    def first_sample(self) -> int:
        return round(self.start * self.rate)

    @property
    def samples(self) -> int:
        return round(self.seconds * self.rate)


VECTORS = (
    Vector("empty", "zero-length mono audio at 16 kHz, 6-bit codes (format 1.0)", 0.0, code_bits=6),
    Vector("speech-0.25s", "first 0.25 s of the clip, 16 kHz mono, 8 bits, 6-bit codes in zstd (format 1.0)", 0.25,
           code_bits=6),
    Vector(
        "speech-phase16-0.1s", "first 0.1 s of the clip, 16 kHz mono, store_phase, 16 bits", 0.1,
        bits=16, store_phase=True,
    ),
    Vector(
        "stereo-44k-0.2s",
        "the clip resampled to 44100 Hz (soxr HQ, whole clip), first 0.2 s, as 2 channels: "
        "left unchanged, right at half gain; default mode (5-bit codes, rANS: format 3.0)",
        0.2, rate=44100, gains=(1.0, 0.5),
    ),
    Vector(
        "speech-residual-0.25s",
        "first 0.25 s of the clip, 16 kHz mono, residual layer under 1000 Hz, 6-bit codes (format 2.0, "
        "kept from the writer of 2026-11-24)",
        0.25, residual_hz=1000.0, code_bits=6, kept_from="format 2.0 writer",
    ),
    Vector(
        "speech-rans-0.25s",
        "first 0.25 s of the clip, 16 kHz mono, default mode (5-bit codes, rANS: format 3.0)", 0.25,
    ),
    Vector(
        "speech-bands-0.25s",
        "0.25 s of speech from 1 s into the clip, 16 kHz mono, 5-bit codes, residual layer under 4000 Hz in "
        "bands of 1/8 octave from 1000 Hz (format 4.0)", 0.25, residual_hz=4000.0, residual_bands_hz=1000.0,
        start=1.0,
    ),
    Vector(
        "speech-slope-0.25s",
        "the audio and layer of speech-bands-0.25s with level-adaptive residual steps: slope 0.25, span 4 "
        "(format 5.0)", 0.25, residual_hz=4000.0, residual_bands_hz=1000.0, residual_slope=0.25, start=1.0,
    ),
    Vector(
        "speech-fine-0.25s",
        "the audio and layer of speech-slope-0.25s with the bins under 500 Hz coded at every frame in steps of "
        "0.25 (format 6.0, kept from the writer of 2026-11-26)", 0.25, residual_hz=4000.0,
        residual_bands_hz=1000.0, residual_slope=0.25, residual_fine_hz=500.0, residual_fine_step=0.25, start=1.0,
        kept_from="format 6.0 writer",
    ),
    Vector(
        "speech-context-0.25s",
        "the audio and layer of speech-fine-0.25s, its fine bins' codes in contexts of their own (format 7.0)",
        0.25, residual_hz=4000.0, residual_bands_hz=1000.0, residual_slope=0.25, residual_fine_hz=500.0,
        residual_fine_step=0.25, start=1.0,
    ),
    Vector(
        "speech-hint-0.25s",
        "the audio and layer of speech-context-0.25s with phase hints for the bins under 500 Hz (format 8.0)",
        0.25, residual_hz=4000.0, residual_bands_hz=1000.0, residual_slope=0.25, residual_fine_hz=500.0,
        residual_fine_step=0.25, phase_hint_hz=500.0, start=1.0,
    ),
)


def vector(name: str) -> Vector:
    """The recipe called ``name``."""
    for item in VECTORS:
        if item.name == name:
            return item
    raise KeyError(name)


def source(item: Vector) -> np.ndarray:
    """The float32 (channels, time) audio that ``item`` encodes, at ``item.rate``."""
    clip, clip_rate = read_audio(CLIP)
    mono = api.resample(clip[:1], clip_rate, item.rate)[:, item.first_sample : item.first_sample + item.samples]
    if mono.shape[1] != item.samples:
        raise ValueError(f"{item.name}: the clip is shorter than {item.start + item.seconds} s")
    return np.ascontiguousarray(np.concatenate([mono * np.float32(g) for g in item.gains]), dtype=np.float32)


def encode(item: Vector) -> bytes:
    """The ``.nac`` bytes of ``item`` with the shipped default model and today's writer."""
    settings = EncoderSettings(bits=item.bits, store_phase=item.store_phase, residual_hz=item.residual_hz,
                               code_bits=item.code_bits, residual_bands_hz=item.residual_bands_hz,
                               bands_per_octave=item.bands_per_octave, residual_slope=item.residual_slope,
                               residual_fine_hz=item.residual_fine_hz, residual_fine_step=item.residual_fine_step,
                               phase_hint_hz=item.phase_hint_hz)
    return api.encode(source(item), item.rate, settings)


def describe(item: Vector, data: bytes) -> dict:
    """The JSON record of one vector: source, header fields, chunks, sha256."""
    header = bitstream.read_header(data)
    report = bitstream.scan(data)
    model = zoo.find_entry(header.model_id)
    return {
        "file": f"{item.name}.nac",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": {
            "description": item.description,
            "clip": CLIP.relative_to(ROOT).as_posix(),
            "clip_sample_rate": read_audio(CLIP)[1],
            "sample_rate": item.rate,
            "samples": item.samples,
            "first_sample": item.first_sample,
            "channel_gains": list(item.gains),
            "bits": item.bits,
            "store_phase": item.store_phase,
            "residual_hz": item.residual_hz,
            "residual_bands_hz": item.residual_bands_hz,
            "bands_per_octave": item.bands_per_octave,
            "residual_slope": item.residual_slope,
            "residual_fine_hz": item.residual_fine_hz,
            "residual_fine_step": item.residual_fine_step,
            "phase_hint_hz": item.phase_hint_hz,
            "kept_from": item.kept_from,
        },
        "model": {"id": model.id, "name": model.name, "sha256": model.sha256},
        "header": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in asdict(header).items()},
        "header_size": report.header_size,
        "chunk_count": len(report.chunks),
        "chunks": [
            {"index": c.index, "offset": c.offset, "frames": c.frames, "raw_size": c.raw_size,
             "payload_size": c.payload_size}
            for c in report.chunks
        ],
        "decoded": {"channels": len(item.gains), "sample_rate": item.rate, "samples": item.samples},
    }


# --------------------------------------------------------------------------
# Appendix A of format_spec.md
# --------------------------------------------------------------------------

# (offset, size, struct format or None for raw bytes, field) of format_spec.md sections 4, 6, 7;
# the header's offsets and formats are read off the schema
HEADER_FIELDS = tuple(
    (offset, struct.calcsize(fmt), fmt, name) for name, (offset, fmt) in bitstream.header_layout().items()
) + ((bitstream.HEADER_SIZE - 4, 4, "<I", "header_crc"),)
CHUNK_FRAMING = ((0, 4, None, "sync"), (4, 4, "<I", "index"), (8, 4, "<I", "frames"),
                 (12, 4, "<I", "raw_size"), (16, 4, "<I", "payload_size"))
END_FIELDS = ((0, 4, None, "sync"), (4, 4, "<I", "chunk_count"), (8, 4, "<I", "latent_frames"),
              (12, 8, "<Q", "sample_count"), (20, 4, "<I", "end_crc"))


def _hex(raw: bytes) -> str:
    return " ".join(f"{b:02X}" for b in raw)


def hexdump(data: bytes, base: int = 0) -> str:
    """xxd-style lines: offset, 16 hex bytes, printable ASCII."""
    lines = []
    for start in range(0, len(data), 16):
        row = data[start : start + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{base + start:08x}  {_hex(row):<47}  {text}")
    return "\n".join(lines)


def _fields(data: bytes, layout, base: int) -> dict[str, tuple[int, bytes, object]]:
    """field -> (file offset, raw bytes, value) for a record starting at ``base``."""
    out = {}
    for offset, size, fmt, name in layout:
        raw = data[base + offset : base + offset + size]
        out[name] = (base + offset, raw, struct.unpack(fmt, raw)[0] if fmt else raw)
    return out


def _header_meanings(h: dict, model: zoo.ModelEntry) -> dict[str, tuple[str, str]]:
    """field -> (value as shown, meaning) for the header of a file."""
    v = {name: value for name, (_, _, value) in h.items()}
    spf = v["hop_length"] * v["time_stride"]
    return {
        "magic": ("`\\x89NAC\\r\\n\\x1a\\n`", "file signature"),
        "version": (f"0x{v['version']:02X}", f"major {v['version'] >> 4}, minor {v['version'] & 15}"),
        "flags": (f"0x{v['flags']:02X}", f"bit 0 store_phase = {v['flags'] & 1}; reserved bits 0"),
        "header_size": (str(v["header_size"]), "bytes from magic through header_crc"),
        "model_id": (str(v["model_id"]), f"`{model.name}` in models/manifest.json"),
        "weights_hash": (v["weights_hash"].hex(), f"first 8 bytes of SHA-256 of `{model.file}`"),
        "original_sample_rate": (str(v["original_sample_rate"]), "Hz, rate of the encoder's input"),
        "model_sample_rate": (str(v["model_sample_rate"]), "Hz, rate the model runs at"),
        "channels": (str(v["channels"]), "audio channels"),
        "bits": (str(v["bits"]), "bits per latent code"),
        "sample_count": (str(v["sample_count"]), "samples per channel at the original rate"),
        "model_sample_count": (str(v["model_sample_count"]), "samples per channel at the model rate"),
        "n_fft": (str(v["n_fft"]), "STFT size"),
        "hop_length": (str(v["hop_length"]), "STFT hop"),
        "time_stride": (str(v["time_stride"]), f"STFT frames per latent frame: {spf} samples per latent frame"),
        "latent_channels": (str(v["latent_channels"]), "latent channels, one scale each per chunk"),
        "latent_height": (str(v["latent_height"]), "latent size along frequency (1-D model)"),
        "latent_frames": (str(v["latent_frames"]), "latent frames in the stream"),
        "chunk_frames": (
            str(v["chunk_frames"]),
            f"latent frames per chunk: {v['chunk_frames'] * spf / v['model_sample_rate']:g} s at the model rate",
        ),
        "chunk_count": (str(v["chunk_count"]), "`ceil(latent_frames / chunk_frames)`"),
        "header_crc": (f"0x{v['header_crc']:08X}", f"CRC-32 of bytes [0, {v['header_size'] - 4})"),
        **({
            "residual_bins": (str(v["residual_bins"]), "STFT bins 0 .. residual_bins - 1 carry residual codes"),
            "residual_stride": (str(v["residual_stride"]), "STFT frames per residual column"),
            "residual_step": (f"{v['residual_step']:g}", "log-magnitude step of one residual code (f32)"),
        } if "residual_bins" in v else {}),
        **({
            "code_range": (str(v["code_range"]), f"U: latent codes in [-{v['code_range']}, {v['code_range']}], "
                           "rANS-coded"),
            "tables_hash": (v["tables_hash"].hex(), f"first 8 bytes of SHA-256 of `{model.code_tables}`"),
        } if "code_range" in v else {}),
        **({
            "residual_band_start": (str(v["residual_band_start"]), "residual bins below it are rows of one bin"),
            "residual_band_growth": (str(v["residual_band_growth"]),
                                     f"bands widen by {v['residual_band_growth'] / 65536:.5f} (16.16 fixed point)"),
        } if "residual_band_start" in v else {}),
        **({
            "residual_step_slope": (str(v["residual_step_slope"]),
                                    f"steps widen by exp({v['residual_step_slope'] / bitstream.SLOPE_ONE:g} per "
                                    f"log-magnitude unit below the column's loudest row) (/ {bitstream.SLOPE_ONE})"),
            "residual_step_span": (str(v["residual_step_span"]),
                                   f"for at most {v['residual_step_span'] / bitstream.SPAN_ONE:g} units "
                                   f"(/ {bitstream.SPAN_ONE})"),
        } if "residual_step_slope" in v else {}),
        **({
            "residual_fine_bins": (str(v["residual_fine_bins"]), f"bins 0 .. {v['residual_fine_bins'] - 1} are "
                                   "coded at every STFT frame"),
            "residual_fine_step": (f"{v['residual_fine_step']:g}", "log-magnitude step of their codes (f32)"),
        } if "residual_fine_bins" in v else {}),
        **({
            "phase_hint_bins": (str(v["phase_hint_bins"]), f"bins 0 .. {v['phase_hint_bins'] - 1} take the hints"),
            "phase_hint_delay": (str(v["phase_hint_delay"]), "samples of delay per delay code"),
            "phase_hint_turns": (str(v["phase_hint_turns"]), f"a turn code is 1/{v['phase_hint_turns']} turn"),
        } if "phase_hint_bins" in v else {}),
    }


def _zstd_frame_start(payload: bytes, raw_size: int, count: int) -> list[tuple[int, bytes, str, str]]:
    """(offset in payload, bytes, value, meaning) for the first ``count`` payload bytes (RFC 8878)."""
    rows = [(0, payload[:4], "`28 B5 2F FD`", "zstd frame magic")]
    fhd = payload[4]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    rows.append((4, payload[4:5], f"0x{fhd:02X}", f"frame header descriptor: content-size flag {fcs_flag}, "
                 f"single segment {single}, checksum {checksum}, dictionary-id flag {dict_flag}"))
    pos = 5
    if not single:
        rows.append((pos, payload[pos : pos + 1], f"0x{payload[pos]:02X}", "window descriptor"))
        pos += 1
    dict_size = (0, 1, 2, 4)[dict_flag]
    if dict_size:
        rows.append((pos, payload[pos : pos + dict_size], "", "dictionary id"))
        pos += dict_size
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if fcs_size:
        content = int.from_bytes(payload[pos : pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
        if content != raw_size:
            raise ValueError(f"zstd frame declares {content} bytes, raw_size is {raw_size}")
        rows.append((pos, payload[pos : pos + fcs_size], str(content), "frame content size (equals raw_size)"))
        pos += fcs_size
    block = int.from_bytes(payload[pos : pos + 3], "little")
    kind = ("raw", "RLE", "compressed", "reserved")[(block >> 1) & 3]
    rows.append((pos, payload[pos : pos + 3], f"0x{block:06X}",
                 f"block header: last block {block & 1}, {kind}, block size {block >> 3}"))
    pos += 3
    if kind == "raw" and pos + 4 <= count:  # the body as is: it starts with channel 0's f32 scales
        (scale,) = struct.unpack("<f", payload[pos : pos + 4])
        rows.append((pos, payload[pos : pos + 4], f"{scale:.6g}", "body bytes 0-3: scales[0] of channel 0 (f32)"))
        pos += 4
    if pos < count:
        what = "next bytes of the body" if kind == "raw" else "first bytes of the compressed block"
        rows.append((pos, payload[pos:count], "", what))
    return [row for row in rows if row[0] < count]


def zstd_blocks(payload: bytes) -> list[tuple[str, int]]:
    """(kind, stored size) of each block of the zstd frame ``payload`` (RFC 8878 section 3.1.1.2)."""
    fhd = payload[4]
    single = (fhd >> 5) & 1
    pos = 5 + (not single) + (0, 1, 2, 4)[fhd & 3] + (single, 2, 4, 8)[fhd >> 6]
    blocks, last = [], 0
    while not last:
        block = int.from_bytes(payload[pos : pos + 3], "little")
        last, kind, size = block & 1, ("raw", "RLE", "compressed", "reserved")[(block >> 1) & 3], block >> 3
        blocks.append((kind, size))
        pos += 3 + (1 if kind == "RLE" else size)
    return blocks


def _table(rows) -> list[str]:
    lines = ["| Offset | Bytes | Field | Value | Meaning |", "|---|---|---|---|---|"]
    lines += [f"| {o} | `{_hex(raw)}` | {field} | {value} | {meaning} |" for o, raw, field, value, meaning in rows]
    return lines


def _changed_header_rows(data: bytes, model: zoo.ModelEntry, major: int, changed: tuple[str, ...]) -> list:
    """Table rows of the ``changed`` fields of a ``major``.0 header (and its CRC)."""
    size = bitstream.HEADER_SIZES[major]
    layout = [(offset, struct.calcsize(fmt), fmt, name)
              for name, (offset, fmt) in bitstream.header_layout(major).items()]
    fields = _fields(data, (*layout, (size - 4, 4, "<I", "header_crc")), 0)
    meanings = _header_meanings(fields, model)
    return [(fields[name][0], fields[name][1], name, *meanings[name]) for name in (*changed, "header_crc")]


def _header_block(data: bytes, model: zoo.ModelEntry, changed: tuple[str, ...]) -> list[str]:
    """A file's whole header as a hexdump, then the table of its ``changed`` fields (and its CRC)."""
    major = bitstream.read_header(data).version_major
    return ["```", hexdump(data[: bitstream.HEADER_SIZES[major]]), "```", "",
            *_table(_changed_header_rows(data, model, major, changed))]


def appendix(vectors: dict[str, bytes]) -> str:
    """The text of Appendix A (without its heading) for the given vector bytes."""
    empty, speech, residual = vectors["empty"], vectors["speech-0.25s"], vectors["speech-residual-0.25s"]
    rans, bands, slope = vectors["speech-rans-0.25s"], vectors["speech-bands-0.25s"], vectors["speech-slope-0.25s"]
    fine, context, hint = vectors["speech-fine-0.25s"], vectors["speech-context-0.25s"], vectors["speech-hint-0.25s"]
    model = zoo.find_entry(bitstream.read_header(empty).model_id)

    header = _fields(empty, HEADER_FIELDS, 0)
    meanings = _header_meanings(header, model)
    header_rows = [(o, raw, name, *meanings[name]) for name, (o, raw, _) in header.items()]
    end = _fields(empty, END_FIELDS, bitstream.HEADER_SIZE)
    end_rows = [
        (end["sync"][0], end["sync"][1], "sync", "`NEND`", "end record"),
        (end["chunk_count"][0], end["chunk_count"][1], "chunk_count", str(end["chunk_count"][2]), "as in the header"),
        (end["latent_frames"][0], end["latent_frames"][1], "latent_frames", str(end["latent_frames"][2]),
         "as in the header"),
        (end["sample_count"][0], end["sample_count"][1], "sample_count", str(end["sample_count"][2]),
         "as in the header"),
        (end["end_crc"][0], end["end_crc"][1], "end_crc", f"0x{end['end_crc'][2]:08X}",
         f"CRC-32 of bytes [{bitstream.HEADER_SIZE}, {bitstream.HEADER_SIZE + 20}) of the file"),
    ]

    sh, rh = bitstream.read_header(speech), bitstream.read_header(residual)
    rbase = bitstream.HEADER_SIZES[2]
    (rsize,) = struct.unpack_from("<I", residual, rbase + 16)
    (first,) = struct.unpack_from("<I", residual, rbase + 20)
    base = bitstream.HEADER_SIZE  # a v1.0 header; the first chunk record follows it
    chunk = _fields(speech, CHUNK_FRAMING, base)
    size = chunk["payload_size"][2]
    payload = speech[base + 20 : base + 20 + size]
    crc_at = base + 20 + size
    (crc,) = struct.unpack("<I", speech[crc_at : crc_at + 4])
    chunk_rows = [
        (chunk["sync"][0], chunk["sync"][1], "sync", "`NACK`", "chunk record"),
        (chunk["index"][0], chunk["index"][1], "index", str(chunk["index"][2]), "first chunk"),
        (chunk["frames"][0], chunk["frames"][1], "frames", str(chunk["frames"][2]),
         f"all {sh.latent_frames} latent frames of the stream"),
        (chunk["raw_size"][0], chunk["raw_size"][1], "raw_size", str(chunk["raw_size"][2]),
         f"body: {sh.channels} x (4 x {sh.latent_channels} scale bytes + {sh.latent_channels} x "
         f"{sh.latent_height} x {chunk['frames'][2]} codes of {sh.bits // 8} byte(s))"),
        (chunk["payload_size"][0], chunk["payload_size"][1], "payload_size", str(size), "zstd bytes that follow"),
    ]
    chunk_rows += [
        (base + 20 + o, raw, f"payload[{o}:{o + len(raw)}]", value, meaning)
        for o, raw, value, meaning in _zstd_frame_start(payload, chunk["raw_size"][2], 16)
    ]
    chunk_rows.append((crc_at, speech[crc_at : crc_at + 4], "chunk_crc", f"0x{crc:08X}",
                       f"CRC-32 of bytes [{base}, {crc_at}) of the file: framing and payload"))

    blocks = ", ".join(f"{kind} ({size} bytes)" for kind, size in zstd_blocks(payload))
    blocks_note = (
        f" The frame's blocks: {blocks}. nac's writer ends a block after each audio channel's scales, so its "
        "codes get a block, and an entropy table, of their own (section 6)."
    )
    listing = "\n".join(
        f"| `{name}.nac` | {len(data)} | {vector(name).description} | `{hashlib.sha256(data).hexdigest()[:16]}` |"
        for name, data in vectors.items()
    )
    lines = [
        "",
        "The files in `tests/vectors/` are made by the shipped default model "
        f"(`{model.name}`, id {model.id}, weights SHA-256 `{model.sha256[:16]}...`) from the bundled clip "
        "`samples/speech-en-allison.flac`; each `NAME.nac` has a `NAME.json` with its header fields, chunk "
        "sizes, SHA-256 and source. `python tools/make_vectors.py` regenerates them and this appendix; they "
        "change whenever the shipped model's weights change, because the header records their hash.",
        "",
        "| File | Bytes | Source | SHA-256 (first 8 bytes) |",
        "|---|---|---|---|",
        listing,
        "",
        f"### A.1 `empty.nac`: zero-length audio ({len(empty)} bytes)",
        "",
        "No audio, so no chunks: the header, then the end record.",
        "",
        "```",
        hexdump(empty),
        "```",
        "",
        f"Header (bytes 0 to {bitstream.HEADER_SIZE - 1}; offsets are from the start of the file, values "
        "little-endian):",
        "",
        *_table(header_rows),
        "",
        f"End record (bytes {bitstream.HEADER_SIZE} to {len(empty) - 1}):",
        "",
        *_table(end_rows),
        "",
        f"### A.2 `speech-0.25s.nac`: its chunk record ({len(speech)} bytes in all)",
        "",
        f"The header has the layout of A.1 with `sample_count` {sh.sample_count}, `latent_frames` "
        f"{sh.latent_frames} and `chunk_count` {sh.chunk_count}. The single chunk record starts at offset "
        f"{base}: 20 bytes of framing, the zstd payload ({size} bytes, the first 16 shown), the CRC."
        + blocks_note,
        "",
        "```",
        hexdump(speech[base : base + 36], base),
        "...",
        hexdump(speech[crc_at : crc_at + 4], crc_at),
        "```",
        "",
        *_table(chunk_rows),
        "",
        f"The end record follows at offset {crc_at + 4}, laid out as in A.1 with counts "
        f"{sh.chunk_count}, {sh.latent_frames} and {sh.sample_count}.",
        "",
        f"### A.3 `speech-residual-0.25s.nac`: a version 2.0 header ({len(residual)} bytes in all)",
        "",
        f"The same audio as A.2 with the residual layer under 1000 Hz. The header grows to "
        f"{bitstream.HEADER_SIZES[2]} bytes; bytes 0 to 69 keep A.1's layout (with this file's counts) except "
        "these:",
        "",
        *_header_block(residual, model, ("version", "header_size", "residual_bins", "residual_stride",
                                         "residual_step")),
        "",
        f"The chunk record starts at offset {rbase}; its body adds, as a second part, "
        f"{rh.residual_bins} x {rh.residual_columns(rh.latent_frames)} `i8` residual codes (one column every "
        f"{rh.residual_stride} STFT frames): `raw_size` {bitstream.chunk_body_size(rh, rh.latent_frames)}. "
        f"Its payload ({rsize} bytes) starts with `latent_frame_size` {first} "
        f"(`{_hex(residual[rbase + 20 : rbase + 24])}`): "
        f"the latent part's zstd frame at offset {rbase + 24}, then the residual part's at {rbase + 24 + first}, "
        f"{rsize - 4 - first} bytes.",
        "",
        *_rans_section(rans, model),
        *_bands_section(bands, model),
        *_slope_section(slope, bands, model),
        *_fine_section(fine, slope, model),
        *_context_section(context, fine, model),
        *_hint_section(hint, context, model),
    ]
    return "\n".join(lines)


def _rans_payload(data: bytes) -> tuple[int, int, int, int]:
    """(payload_size, latent_frame_size, code_stream_size, code stream offset) of a one-chunk v3 / v4 file."""
    base = bitstream.HEADER_SIZES[bitstream.read_header(data).version_major]
    (payload_size,) = struct.unpack_from("<I", data, base + 16)
    (frame_size,) = struct.unpack_from("<I", data, base + 20)
    (stream_size,) = struct.unpack_from("<I", data, base + 24 + frame_size)
    return payload_size, frame_size, stream_size, base + 28 + frame_size


def _first_state(data: bytes, at: int) -> int:
    """The rANS decoder's first state from the stream at offset ``at``: ``w0 << 16 | w1``."""
    return struct.unpack_from("<H", data, at)[0] << 16 | struct.unpack_from("<H", data, at + 2)[0]


def _rans_section(data: bytes, model: zoo.ModelEntry) -> list[str]:
    """Appendix A.4: a version 3.0 header and a payload with an rANS code stream."""
    h = bitstream.read_header(data)
    base = bitstream.HEADER_SIZES[3]
    payload_size, frame_size, stream_size, stream_at = _rans_payload(data)
    rows = h.channels * h.latent_channels * h.latent_height
    state = _first_state(data, stream_at)
    return [
        f"### A.4 `speech-rans-0.25s.nac`: a version 3.0 file ({len(data)} bytes in all)",
        "",
        f"The same audio as A.2 coded the default way: 5-bit codes, rANS-coded with the model's tables. The "
        f"header grows to {base} bytes: bytes 70 to 77 hold A.3's residual fields (all 0: no layer), then:",
        "",
        *_header_block(data, model, ("version", "header_size", "code_range", "tables_hash")),
        "",
        f"The chunk record starts at offset {base}. Its payload ({payload_size} bytes) holds `latent_frame_size` "
        f"{frame_size} and a zstd frame of the scales alone ({h.latent_channels} x f32: the codes are not in "
        f"it), then `code_stream_size` {stream_size} (`{_hex(data[base + 24 + frame_size : stream_at])}`) and "
        f"the rANS stream at offset {stream_at}: {stream_size // 2} 16-bit words for {rows} rows of "
        f"{h.latent_frames} codes, starting `{_hex(data[stream_at : stream_at + 4])}` (the decoder's first "
        f"state is 0x{state:08X}). "
        f"`raw_size` is {bitstream.chunk_body_size(h, h.latent_frames)}, the body as in A.2.",
        "",
    ]


def _bands_section(data: bytes, model: zoo.ModelEntry) -> list[str]:
    """Appendix A.5: a version 4.0 header and a payload ending with the residual rows' rANS stream."""
    h = bitstream.read_header(data)
    base = bitstream.HEADER_SIZES[4]
    payload_size, frame_size, stream_size, stream_at = _rans_payload(data)
    residual_at = stream_at + stream_size
    residual_size = base + 20 + payload_size - residual_at
    edges = h.residual_row_edges()
    columns = h.residual_columns(h.latent_frames)
    state = _first_state(data, residual_at)
    changed = ("version", "header_size", "residual_bins", "residual_stride", "residual_step", "code_range",
               "residual_band_start", "residual_band_growth")
    return [
        f"### A.5 `speech-bands-0.25s.nac`: a version 4.0 file ({len(data)} bytes in all)",
        "",
        f"0.25 s of speech from 1 s into the clip, coded with 5-bit rANS-coded codes (as A.4) and a residual "
        f"layer under 4000 Hz in bands from 1000 Hz. The header grows to {base} bytes; A.4's fields keep their "
        "places:",
        "",
        *_header_block(data, model, changed),
        "",
        f"The rows (section 9): bins 0 to {h.residual_band_start - 1} one each, then bands with edges "
        f"{', '.join(map(str, edges[h.residual_band_start:]))}: {h.residual_rows} rows in all. The chunk record "
        f"starts at offset {base}; its payload ({payload_size} bytes) holds the latent frame and the code "
        f"stream laid out as in A.4 (`latent_frame_size` {frame_size}, `code_stream_size` {stream_size}), then the "
        f"residual stream from offset {residual_at} to the payload's end: {residual_size // 2} 16-bit words for "
        f"{h.residual_rows} x {columns} codes, starting `{_hex(data[residual_at : residual_at + 4])}` (first "
        f"state 0x{state:08X}). `raw_size` is {bitstream.chunk_body_size(h, h.latent_frames)}: the latent part "
        f"as in A.4 plus {h.residual_rows * columns} `i8` residual codes.",
        "",
    ]


def _slope_section(data: bytes, bands: bytes, model: zoo.ModelEntry) -> list[str]:
    """Appendix A.6: a version 5.0 header, the residual steps' two fields."""
    base = bitstream.HEADER_SIZES[5]
    codes, band_codes = (api.unpack(stream)[1][0].residual for stream in (data, bands))
    return [
        f"### A.6 `speech-slope-0.25s.nac`: a version 5.0 file ({len(data)} bytes in all)",
        "",
        f"The audio and settings of A.5 with level-adaptive residual steps (section 9). The header grows to "
        f"{base} bytes; A.5's fields keep their places:",
        "",
        *_header_block(data, model, ("version", "header_size", "residual_step_slope", "residual_step_span")),
        "",
        f"The chunk record at offset {base} is laid out as in A.5"
        + (" with as many residual codes" if codes.shape == band_codes.shape else "")
        + f"; rows a decoder finds quiet next to their column's loudest have wider steps, so they hold smaller "
        f"codes ({int(np.abs(codes).sum())} in absolute sum, against {int(np.abs(band_codes).sum())} in A.5).",
        "",
    ]


def _fine_section(data: bytes, slope: bytes, model: zoo.ModelEntry) -> list[str]:
    """Appendix A.7: a version 6.0 header, the fine bins' two fields and their extra code rows."""
    h, base = bitstream.read_header(data), bitstream.HEADER_SIZES[6]
    columns = h.residual_columns(h.latent_frames)
    coarse_rows = len(h.residual_row_edges()) - 1
    return [
        f"### A.7 `speech-fine-0.25s.nac`: a version 6.0 file ({len(data)} bytes in all)",
        "",
        f"The audio and settings of A.6 with the bins under 500 Hz coded at every STFT frame (section 9). The "
        f"header grows to {base} bytes; A.6's fields keep their places:",
        "",
        *_header_block(data, model, ("version", "header_size", "residual_fine_bins", "residual_fine_step")),
        "",
        f"The chunk record at offset {base} is laid out as in A.6. Each column now holds {h.residual_rows} codes: "
        f"{h.residual_stride} rows for each of the {h.residual_fine_bins} fine bins (row `k` of bin `b` its "
        f"frames `j * {h.residual_stride} + k`), then the other {coarse_rows - h.residual_fine_bins} rows; "
        f"`raw_size` is {bitstream.chunk_body_size(h, h.latent_frames)}, with {h.residual_rows * columns} `i8` "
        f"residual codes against A.6's {coarse_rows * columns}.",
        "",
    ]


def _context_section(data: bytes, fine: bytes, model: zoo.ModelEntry) -> list[str]:
    """Appendix A.8: a version 7.0 file, A.7's header and codes with the fine rows in their own contexts."""
    h, base = bitstream.read_header(data), bitstream.HEADER_SIZES[7]
    sizes = []
    for stream in (data, fine):
        payload_size, _, stream_size, stream_at = _rans_payload(stream)
        sizes.append(base + 20 + payload_size - stream_at - stream_size)
    same = all(np.array_equal(a.residual, b.residual) for a, b in zip(api.unpack(data)[1], api.unpack(fine)[1]))
    return [
        f"### A.8 `speech-context-0.25s.nac`: a version 7.0 file ({len(data)} bytes in all)",
        "",
        f"A.7's audio, settings and {'codes' if same else 'layout'}, written by today's encoder: the header is "
        f"A.7's but for the version and the CRC:",
        "",
        *_header_block(data, model, ("version",)),
        "",
        f"The chunk record at offset {base} is laid out as in A.7. Its residual stream codes the "
        f"{h.residual_fine_bins * h.residual_stride} fine rows in their own contexts (section 9.2): "
        f"{sizes[0]} bytes against A.7's {sizes[1]}.",
        "",
    ]


def _hint_section(data: bytes, context: bytes, model: zoo.ModelEntry) -> list[str]:
    """Appendix A.9: a version 8.0 header, the phase hints' three fields and their two code rows."""
    h, base = bitstream.read_header(data), bitstream.HEADER_SIZES[8]
    codes = api.unpack(data)[1][0].residual
    layer = codes[:, : bitstream.read_header(context).residual_rows]
    same = np.array_equal(layer, api.unpack(context)[1][0].residual)
    delays, turns = (" ".join(str(int(v)) for v in row) for row in codes[0, -2:])
    return [
        f"### A.9 `speech-hint-0.25s.nac`: a version 8.0 file ({len(data)} bytes in all)",
        "",
        f"The audio and settings of A.8 with phase hints for the bins under 500 Hz (section 9.3). The header "
        f"grows to {base} bytes; A.8's fields keep their places:",
        "",
        *_header_block(data, model, ("version", "header_size", "phase_hint_bins", "phase_hint_delay",
                                     "phase_hint_turns")),
        "",
        f"The chunk record at offset {base} is laid out as in A.8. Each column holds {h.residual_rows} codes: "
        f"A.8's {h.residual_rows - 2}{' (the same codes)' if same else ''}, then the delay code and the turn "
        f"code. The {codes.shape[-1]} columns' delay codes are {delays}; their turn codes {turns}. `raw_size` "
        f"is {bitstream.chunk_body_size(h, h.latent_frames)}.",
        "",
    ]


def replace_section(text: str, heading: str, body: str) -> str:
    """``text`` with the lines between ``heading`` and the next ``## `` heading replaced by ``body``."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == heading]
    if len(starts) != 1:
        raise SystemExit(f"{SPEC.name}: expected one line {heading!r}, found {len(starts)}")
    start = starts[0] + 1
    stop = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "".join(lines[:start]) + body.rstrip("\n") + "\n\n" + "".join(lines[stop:])


def main() -> None:
    VECTORS_DIR.mkdir(parents=True, exist_ok=True)
    made = {}
    for item in VECTORS:
        data = (VECTORS_DIR / f"{item.name}.nac").read_bytes() if item.kept_from else encode(item)
        header, chunks = api.unpack(data)
        tables = zoo.load_model(header.model_id).tables_for(header) if header.code_range else None
        if bitstream.pack(header, chunks, tables) != data:
            raise SystemExit(f"{item.name}: the container does not round-trip through unpack/pack")
        audio, rate = api.decode(data)
        if audio.shape != (len(item.gains), item.samples) or rate != item.rate:
            raise SystemExit(f"{item.name}: decodes to {audio.shape} at {rate} Hz")
        (VECTORS_DIR / f"{item.name}.nac").write_bytes(data)
        record = describe(item, data)
        (VECTORS_DIR / f"{item.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        made[item.name] = data
        print(f"{item.name}.nac: {len(data)} bytes, {record['chunk_count']} chunk(s), {record['sha256'][:16]}")
    SPEC.write_text(replace_section(SPEC.read_text(), APPENDIX_HEADING, appendix(made)))
    print(f"rewrote {SPEC.name}: {APPENDIX_HEADING[3:]}")


if __name__ == "__main__":
    main()
