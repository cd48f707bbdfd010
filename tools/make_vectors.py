"""Regenerate the golden format 9 vectors in tests/vectors/ and format_spec.md's Appendix A.

    python tools/make_vectors.py

Every vector is cut from the bundled clip (samples/speech-en-allison.flac) and
encoded with the shipped default model, so the vectors change whenever that
model or its companions change (the header records their hashes). For each
``NAME.nac`` it writes ``NAME.json`` (recipe, header, record offsets, sha256)
and ``NAME.ref.wav``, the audio today's decoder makes of it (32-bit PCM):
tests/test_vectors.py re-encodes each recipe and compares the bytes exactly,
and decodes each vector and compares it with its reference by SNR. The
legacy vectors in tests/vectors/legacy/ are never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# MKL's kernels round by CPU: pinned to SSE4.2, as tests/conftest.py does, so vectors re-encode alike anywhere
os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from construct import VarInt  # noqa: E402

from nac import api  # noqa: E402
from nac.info import describe_info  # noqa: E402
from nac.audio import read_audio, resample  # noqa: E402
from nac.format import container  # noqa: E402
from nac.format.header import Companion, LayerType  # noqa: E402
from nac.layers.residual import GROWTH_ONE  # noqa: E402
from nac.model import manifest, zoo  # noqa: E402
from nac.settings import EncoderSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "speech-en-allison.flac"
VECTORS_DIR = ROOT / "tests" / "vectors"
SPEC = ROOT / "format_spec.md"
APPENDIX_HEADING = "## Appendix A: worked examples"


@dataclass(frozen=True)
class Vector:
    """How one golden vector is made: a slice of the clip, silence after it, and the encoder's settings."""

    name: str  # file stem in tests/vectors/
    description: str
    seconds: float  # speech taken from the clip, at ``rate``
    start: float = 1.0  # seconds into the clip where the slice begins
    silence: float = 0.0  # seconds of digital silence after the speech
    rate: int = 16000  # the rate the encoder is given (the clip is resampled to it)
    gains: tuple[float, ...] = (1.0,)  # one gain per output channel, applied to the mono clip
    settings: dict = field(default_factory=dict)  # EncoderSettings fields

    def encoder_settings(self) -> EncoderSettings:
        return EncoderSettings(**self.settings)


LAYERS = {"code_bits": 4, "residual_hz": 4000.0, "residual_bands_hz": 1000.0, "bands_per_octave": 8.0,
          "residual_slope": 0.25, "residual_fine_hz": 500.0, "residual_fine_step": 0.25, "phase_hint_hz": 500.0}
VECTORS = (
    Vector("empty", "zero-length mono audio at 16 kHz, default settings", 0.0),
    Vector("speech-0.25s", "0.25 s of speech from 1 s into the clip, 16 kHz mono, default settings (5-bit codes, "
           "rANS)", 0.25),
    Vector("speech-layers-1.2s", "1.2 s of speech from 1 s into the clip, 16 kHz mono, 4-bit codes and a residual "
           "layer under 4 kHz: bands of 1/8 octave from 1 kHz, slope 0.25, fine bins under 500 Hz in steps of "
           "0.25, phase hints under 500 Hz", 1.2, settings=LAYERS),
    Vector("stereo-silence-44k", "0.5 s of speech then 1.5 s of digital silence at 44.1 kHz, 2 channels (right "
           "at half gain), default settings", 0.5, silence=1.5, rate=44100, gains=(1.0, 0.5)),
    Vector("speech-phase16-0.1s", "0.1 s of speech, 16 kHz mono, 16-bit codes in zstd and 16-bit stored phase "
           "(the research mode)", 0.1, settings={"bits": 16, "store_phase": True}),
    Vector("fullband-stereo-48k", "0.3 s of speech at 48 kHz, 2 channels (right at 0.7 gain), 4-bit codes, a "
           "residual layer under 2 kHz, the high-band layer (6 bands to 20 kHz) and the stereo layer (8 bands): "
           "format 9.1", 0.3, rate=48000, gains=(1.0, 0.7),
           settings={"code_bits": 4, "residual_hz": 2000.0, "high_band_hz": 20000.0, "high_bands": 6,
                     "stereo_bands": 8}),
)


def vector(name: str) -> Vector:
    """The recipe called ``name``."""
    return next(item for item in VECTORS if item.name == name)


def source(item: Vector) -> np.ndarray:
    """The float32 (channels, time) audio that ``item`` encodes, at ``item.rate``."""
    clip, clip_rate = read_audio(CLIP)
    first, count = round(item.start * item.rate), round(item.seconds * item.rate)
    mono = resample(clip[:1], clip_rate, item.rate)[:, first : first + count]
    mono = np.concatenate([mono, np.zeros((1, round(item.silence * item.rate)), np.float32)], axis=1)
    return np.ascontiguousarray(np.concatenate([mono * np.float32(g) for g in item.gains]), dtype=np.float32)


def encode(item: Vector) -> bytes:
    """The ``.nac`` bytes of ``item`` with the shipped default model (named: settings alone would let stereo
    and fullband input pick the fullband model) and today's writer."""
    return api.encode(source(item), item.rate, item.encoder_settings(), model=manifest.find_entry(None).name)


def describe(item: Vector, data: bytes) -> dict:
    """The JSON record of one vector: recipe, header, records, sha256."""
    report = container.scan(data)
    info = report.header
    model = manifest.find_entry(info.model_id)
    return {
        "file": f"{item.name}.nac",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": {**asdict(item), "clip": CLIP.relative_to(ROOT).as_posix()},
        "model": {"id": model.id, "name": model.name, "sha256": model.sha256},
        "header": describe_info(info),
        "chunks": [{"index": c.index, "offset": c.offset, "size": c.size, "payload": c.payload, "silent": c.silent}
                   for c in report.chunks],
        "decoded": {"channels": len(item.gains), "sample_rate": item.rate, "samples": source(item).shape[1]},
    }


# --------------------------------------------------------------------------
# Appendix A of format_spec.md
# --------------------------------------------------------------------------


def _hex(raw: bytes) -> str:
    return " ".join(f"{b:02X}" for b in raw)


def _row(offset: int, raw: bytes, name: str, value: str) -> str:
    shown = _hex(raw) if len(raw) <= 8 else _hex(raw[:6]) + " .."
    return f"| {offset} | `{shown}` | {name} | {value} |"


def _header_rows(data: bytes, info) -> list[str]:
    """One table row per header field of a format 9 file, with its bytes and meaning."""
    model = manifest.find_entry(info.model_id)
    u = lambda fmt, at: struct.unpack_from(fmt, data, at)[0]  # noqa: E731
    rows = [
        _row(0, data[:8], "magic", "`\\x89NAC\\r\\n\\x1a\\n`"),
        _row(8, data[8:9], "version", f"{data[8] >> 4}.{data[8] & 15}"),
        _row(9, data[9:10], "flags", "0"),
        _row(10, data[10:12], "header_size", str(u("<H", 10))),
        _row(12, data[12:14], "model_id", f"{info.model_id} (`{model.name}`)"),
        _row(14, data[14:22], "weights_hash", "SHA-256 of the weights, first 8 bytes"),
        _row(22, data[22:26], "original_sample_rate", str(info.original_sample_rate)),
        _row(26, data[26:30], "model_sample_rate", str(info.model_sample_rate)),
        _row(30, data[30:31], "channels", str(info.channels)),
        _row(31, data[31:39], "sample_count", str(info.sample_count)),
        _row(39, data[39:41], "n_fft", str(info.n_fft)),
        _row(41, data[41:43], "hop_length", str(info.hop_length)),
        _row(43, data[43:45], "time_stride", str(info.time_stride)),
        _row(45, data[45:47], "chunk_frames", f"{info.chunk_frames} (derived: {info.model_sample_count} model-rate "
             f"samples, {info.latent_frames} latent frames, {info.chunk_count} chunk(s))"),
        _row(47, data[47:48], "group_chunks", str(info.group_chunks)),
        _row(48, data[48:49], "companion_count", str(len(info.companions))),
    ]
    pos = 49
    for role, _ in info.companions:
        rows.append(_row(pos, data[pos : pos + 9], "companion", f"role {role} ({Companion(role).name.lower()}), "
                         "hash"))
        pos += 9
    rows.append(_row(pos, data[pos : pos + 1], "layer_count", str(data[pos])))
    pos += 1
    for kind in info.layer_order:
        size = VarInt.parse(data[pos + 1 :])
        head = 1 + len(VarInt.build(size))
        rows.append(_row(pos, data[pos : pos + head], "layer", f"type {kind} ({LayerType(kind).name.lower()}), "
                         f"critical, {size}-byte body"))
        rows.append(_row(pos + head, data[pos + head : pos + head + size], "body", _body(kind, info)))
        pos += head + size
    rows.append(_row(pos, data[pos : pos + 4], "header_crc", f"CRC-32 of bytes [0, {pos})"))
    return rows


def _body(kind: int, info) -> str:
    if kind == LayerType.LATENT:
        latent = info.latent
        narrower = [k for k, bits in enumerate(latent.code_bits) if bits < max(latent.code_bits)]
        return (f"{latent.latent_channels} channels, height {latent.latent_height}, "
                f"{'rANS' if latent.entropy_coded else 'zstd'}, {max(latent.code_bits)}-bit codes"
                + (f", channels {narrower} one bit fewer" if narrower else ""))
    if kind == LayerType.RESIDUAL:
        r = info.residual
        return (f"bins {r.bins}, stride {r.stride}, step {r.step:g}, band_start {r.band_start}, growth "
                f"{r.band_growth / GROWTH_ONE:.5f}, slope {r.slope}, span {r.span}, fine_bins {r.fine_bins}, "
                f"fine_step {r.fine_step:g}, hints {r.hint_bins} / {r.hint_delay} / {r.hint_turns}")
    return f"{info.stored_phase_bits}-bit phase"


def _record_rows(data: bytes, info, chunk) -> list[str]:
    """Table rows of one chunk record's framing: sync, index, flags, peaks, part sizes, CRC."""
    pos, flags = chunk.offset, data[chunk.offset + 8]
    rows = [_row(pos, data[pos : pos + 4], "sync", "`NACK`"),
            _row(pos + 4, data[pos + 4 : pos + 8], "index", str(chunk.index)),
            _row(pos + 8, data[pos + 8 : pos + 9], "flags", f"peaks {flags & 1}, silent {flags >> 1 & 1}")]
    pos += 9
    if flags & 1:
        shift = struct.unpack_from("<b", data, pos)[0]
        rows.append(_row(pos, data[pos : pos + 1], "peak shift", str(shift)))
        count = info.channels * info.latent.latent_channels
        rows.append(_row(pos + 1, data[pos + 1 : pos + 1 + count], "peak codes", f"{count} bytes"))
        pos += 1 + count
    if not flags & 2:
        for kind in info.parts:
            size = VarInt.parse(data[pos:])
            width = len(VarInt.build(size))
            rows.append(_row(pos, data[pos : pos + width], "part size", f"{size} ({LayerType(kind).name.lower()})"))
            rows.append(_row(pos + width, data[pos + width : pos + width + size], "part", f"{size} bytes"))
            pos += width + size
    rows.append(_row(pos, data[pos : pos + 4], "chunk_crc", f"CRC-32 of the record's {pos - chunk.offset} bytes"))
    return rows


def _end_rows(data: bytes) -> list[str]:
    base = len(data) - 24
    u = lambda fmt, at: struct.unpack_from(fmt, data, base + at)[0]  # noqa: E731
    return [_row(base, data[base : base + 4], "sync", "`NEND`"),
            _row(base + 4, data[base + 4 : base + 8], "chunk_count", str(u("<I", 4))),
            _row(base + 8, data[base + 8 : base + 12], "latent_frames", str(u("<I", 8))),
            _row(base + 12, data[base + 12 : base + 20], "sample_count", str(u("<Q", 12))),
            _row(base + 20, data[base + 20 :], "end_crc", "CRC-32 of the record's 20 bytes")]


TABLE = ["| Offset | Bytes | Field | Value |", "|---|---|---|---|"]


def appendix(made: dict[str, bytes]) -> str:
    """Appendix A: the vectors' bytes, field by field."""
    empty, speech, layers, stereo = (made[name] for name in ("empty", "speech-0.25s", "speech-layers-1.2s",
                                                             "stereo-silence-44k"))
    lines = ["The files are in `tests/vectors/`, made by `python tools/make_vectors.py` with the default model; "
             "offsets are from the start of the file.", ""]
    info = container.scan(empty).header
    lines += [f"### A.1 `empty.nac`: zero-length audio ({len(empty)} bytes)", "", *TABLE,
              *_header_rows(empty, info), *_end_rows(empty), ""]
    report = container.scan(speech)
    lines += [f"### A.2 `speech-0.25s.nac`: one chunk ({len(speech)} bytes)", "",
              f"The header is A.1's but for `sample_count` ({report.header.sample_count}). Its chunk record:", "",
              *TABLE, *_record_rows(speech, report.header, report.chunks[0]), ""]
    report = container.scan(layers)
    rows = [row for row in _header_rows(layers, report.header) if "layer" in row or "body" in row]
    lines += [f"### A.3 `speech-layers-1.2s.nac`: the residual layer, two chunks ({len(layers)} bytes)", "",
              "Its layer descriptors, then the second chunk's record (it carries the group's peaks again):", "",
              *TABLE, *rows, *_record_rows(layers, report.header, report.chunks[1]), ""]
    report = container.scan(stereo)
    silent = next(chunk for chunk in report.chunks if chunk.silent and not chunk.index % report.header.group_chunks > 1)
    quiet = next(chunk for chunk in report.chunks if chunk.silent and chunk.index % report.header.group_chunks > 1)
    lines += [f"### A.4 `stereo-silence-44k.nac`: digital silence ({len(stereo)} bytes for 2 s)", "",
              f"{sum(c.silent for c in report.chunks)} of its {len(report.chunks)} chunks are silent. A silent "
              f"chunk that carries its group's peaks (chunk {silent.index}) and one that does not (chunk "
              f"{quiet.index}):", "",
              *TABLE, *_record_rows(stereo, report.header, silent), *_record_rows(stereo, report.header, quiet), ""]
    return "\n".join(lines)


def replace_section(text: str, heading: str, body: str) -> str:
    """``text`` with the lines between ``heading`` and the next ``## `` heading replaced by ``body``."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == heading]
    if len(starts) != 1:
        raise SystemExit(f"{SPEC.name}: expected one line {heading!r}, found {len(starts)}")
    start = starts[0] + 1
    stop = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[stop:])
    return "".join(lines[:start]) + "\n" + body.rstrip("\n") + ("\n\n" + rest if rest else "\n")


def main() -> None:
    made = {}
    for item in VECTORS:
        data = encode(item)
        info, chunks = api.unpack(data)
        if container.pack(info, chunks, zoo.for_stream(info).tables) != data:
            raise SystemExit(f"{item.name}: the container does not round-trip through unpack/pack")
        audio, rate = api.decode(data)
        if audio.shape != source(item).shape or rate != item.rate:
            raise SystemExit(f"{item.name}: decodes to {audio.shape} at {rate} Hz")
        (VECTORS_DIR / f"{item.name}.nac").write_bytes(data)
        (VECTORS_DIR / f"{item.name}.json").write_text(json.dumps(describe(item, data), indent=2) + "\n")
        # 32-bit PCM: float WAVs carry a time-stamped PEAK chunk, so they would change at every run
        sf.write(VECTORS_DIR / f"{item.name}.ref.wav", audio.T, rate, subtype="PCM_32")
        made[item.name] = data
        print(f"{item.name}.nac: {len(data)} bytes, {info.chunk_count} chunk(s), "
              f"{hashlib.sha256(data).hexdigest()[:16]}")
    SPEC.write_text(replace_section(SPEC.read_text(), APPENDIX_HEADING, appendix(made)))
    print(f"rewrote {SPEC.name}: {APPENDIX_HEADING[3:]}")


if __name__ == "__main__":
    main()
