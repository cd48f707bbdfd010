"""nac as a library: audio arrays and files to ``.nac`` bytes and back, inspection, salvage.

Arrays are float32 shaped (channels, time). Encoding resamples to the model's
rate, runs :class:`nac.codec.Encoder` and writes the container; decoding
checks the whole file first, then decodes window by window and restores the
original rate, length and channels.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import codec
from .audio import as_channels_first, is_stdio, read_blocks, resample_blocks, write_atomic, write_audio_blocks
from .errors import InputError, NacError, OutputError, UsageError
from .format import container
from .format.header import MAX_CHANNELS, Companion, StreamInfo
from .format.records import Chunk
from .model import manifest, zoo
from .settings import EncoderSettings

MIN_RATE, MAX_RATE = 8000, 192000


def bitrate_settings(bitrate: str, model: str | None = None) -> EncoderSettings:
    """Encoder settings for a target like ``6k``, ``6 kbps`` or ``12.5`` kbps: the model's measured point with the
    highest rate at or below the target (its lowest if the target is below them all)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(?:k|kbps|kbit/s)?\s*", bitrate, flags=re.IGNORECASE)
    kbps = float(match.group(1)) if match else 0.0
    if not 0.0 < kbps <= 1000.0:
        raise UsageError(f"bitrate {bitrate!r}: give kbps, like 6k or 12.5")
    if model is not None and str(model).endswith(".safetensors"):
        raise UsageError("--bitrate needs a shipped model (its measured rates); use --bits / --code-bits")
    return manifest.rate_point(manifest.find_entry(model), kbps).settings


def _check_audio_args(channels: int, sample_rate: int) -> None:
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise UsageError(f"sample rate {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise UsageError(f"{channels} channels: nac codes 1 to {MAX_CHANNELS}")


def encode(
    audio: np.ndarray, sample_rate: int, settings: EncoderSettings = EncoderSettings(), *, model: str | None = None
) -> bytes:
    """``.nac`` bytes for float audio shaped (time,) or (channels, time) at ``sample_rate``, coded as ``settings`` say."""
    audio = as_channels_first(audio)
    return b"".join(encode_parts(iter([audio]), audio.shape[0], audio.shape[1], sample_rate, settings, model=model))


def encode_parts(
    blocks: Iterable[np.ndarray],
    channels: int,
    samples: int,
    sample_rate: int,
    settings: EncoderSettings = EncoderSettings(),
    *,
    model: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[bytes]:
    """The ``.nac`` file for ``samples`` samples that arrive as (channels, n) blocks, piece by piece.

    Audio is resampled as it streams and coded one scale group at a time, each
    chunk's record yielded as soon as it is made, so memory does not grow with
    the input's length. The arguments are checked before the first piece.
    """
    settings.check()
    _check_audio_args(channels, sample_rate)
    loaded = zoo.load_model(model)
    info = codec.stream_info(loaded, settings, channels, sample_rate, samples)
    encoder = codec.Encoder(loaded, info, settings)

    def chunks() -> Iterator[Chunk]:
        clean = (np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0) for block in blocks)
        model_rate = resample_blocks(clean, sample_rate, info.model_sample_rate, channels)
        for chunk in encoder.chunks(codec.SampleWindow(model_rate, channels, info.model_sample_count)):
            yield chunk
            if on_progress is not None:
                on_progress(chunk.index + 1, info.chunk_count)

    return container.pack_parts(info, chunks(), container.Tables(loaded.code_tables, _counts(loaded, info)))


def _counts(loaded: zoo.LoadedModel, info: StreamInfo) -> np.ndarray | None:
    """The residual starting counts the stream lists (None: the format's defaults)."""
    return loaded.residual_counts if info.companion(Companion.RESIDUAL_TABLES)[0] else None


def open_stream(data: bytes, model: str | None = None):
    """(stream, its model): a file checked whole and ready to decode chunk by chunk."""
    info, _ = container.read_info(data)
    used = zoo.for_stream(info, model)
    return container.open_stream(data, used.tables), used


def unpack(data: bytes, model: str | None = None) -> tuple[StreamInfo, list[Chunk]]:
    """The stream's description and every chunk, checked strictly."""
    stream, _ = open_stream(data, model)
    return stream.info, [stream.chunk(i) for i in range(stream.info.chunk_count)]


def decode(
    data: bytes,
    *,
    keep_model_rate: bool = False,
    model: str | None = None,
    start: float | None = None,
    duration: float | None = None,
    phase_iters: int | None = None,
) -> tuple[np.ndarray, int]:
    """(float32 (channels, time), sample_rate) from ``.nac`` bytes.

    The original sample rate and length are restored unless ``keep_model_rate``.
    ``model`` overrides the model named in the file (its weights hash must match).
    ``start`` / ``duration`` (seconds) decode only that span, from the chunks
    that cover it. ``phase_iters`` overrides the phase iterations (fewer is
    faster). Any damage is an error (:class:`FormatError`); see :func:`decode_salvage`.
    """
    channels, rate, blocks = decode_blocks(data, keep_model_rate=keep_model_rate, model=model, start=start,
                                           duration=duration, phase_iters=phase_iters)
    return np.concatenate([np.zeros((channels, 0), np.float32), *blocks], axis=1), rate


def decode_blocks(
    data: bytes,
    *,
    keep_model_rate: bool = False,
    model: str | None = None,
    start: float | None = None,
    duration: float | None = None,
    phase_iters: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, Iterator[np.ndarray]]:
    """(channels, sample_rate, blocks): :func:`decode` one window at a time.

    The file is checked whole (framing, CRCs, end record) before the first
    block is made; only the chunks that cover the span are decoded.
    """
    stream, used = open_stream(data, model)
    info = stream.info
    span = seek_span(info, keep_model_rate, start, duration)
    decoder = codec.Decoder(used.loaded.net, info, used.phase_init, phase_iters)
    return info.channels, *_output_blocks(decoder, info, stream.chunk, keep_model_rate, span, on_progress,
                                          stream.silent)


def _output_blocks(
    decoder: codec.Decoder,
    info: StreamInfo,
    chunk_at: Callable[[int], Chunk | None],
    keep_model_rate: bool,
    span: tuple[int, int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    silent: frozenset[int] = frozenset(),
) -> tuple[int, Iterator[np.ndarray]]:
    """(output rate, audio blocks) of the stream's chunks; ``span`` = (first, stop) samples at the output rate
    decodes only the chunks that cover it, plus one before so resampling starts where both rates share a sample.
    The spans of ``silent`` chunks come out as exact zeros at the output rate too."""
    out_rate = info.model_sample_rate if keep_model_rate else info.original_sample_rate
    out_length = info.model_sample_count if keep_model_rate else info.sample_count
    first, stop = span if span is not None else (0, out_length)
    if info.latent_frames == 0 or stop <= first:
        return out_rate, iter([np.zeros((info.channels, max(0, stop - first)), np.float32)])
    rm = info.model_sample_rate
    chunk_samples = info.chunk_frames * info.samples_per_frame
    to_model = rm / out_rate
    # Output starts a chunk before the span, at a model-rate sample that falls on an output sample too, so
    # the resampler runs in step with a whole-file decode.
    shared = rm // math.gcd(rm, out_rate)
    model_start = max(0, int(first * to_model) - chunk_samples) // shared * shared if span is not None else 0
    first_chunk = model_start // chunk_samples
    last_chunk = min(info.chunk_count - 1, int(np.ceil(stop * to_model)) // chunk_samples + 1)

    def model_rate_blocks() -> Iterator[np.ndarray]:
        remaining = info.model_sample_count - model_start
        skip = model_start - first_chunk * chunk_samples
        for piece in decoder.blocks(chunk_at, first_chunk, last_chunk, on_progress):
            dropped = min(skip, piece.shape[1])
            piece, skip = piece[:, dropped:], skip - dropped
            # Valid but absurd latents overflow inside the model; the output stays finite whatever the file holds.
            piece = np.nan_to_num(piece[:, : max(0, remaining)], nan=0.0, posinf=0.0, neginf=0.0)
            remaining -= piece.shape[1]
            yield piece

    quiet = [(-(-start * out_rate // rm), stop * out_rate // rm) for start, stop in map(info.chunk_span, sorted(silent))]

    def cut(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        skip, wanted = max(0, first - model_start * out_rate // rm), stop - first
        position = first
        for block in blocks:
            dropped = min(skip, block.shape[1])
            block, skip = block[:, dropped : dropped + wanted], skip - dropped
            wanted -= block.shape[1]
            for low, high in quiet:  # a resampler's ringing may reach into silence
                low, high = max(low, position), min(high, position + block.shape[1])
                if low < high:
                    block[:, low - position : high - position] = 0.0
            position += block.shape[1]
            if block.shape[1]:
                yield block
            if wanted == 0:
                return
        yield np.zeros((info.channels, wanted), np.float32)

    blocks = model_rate_blocks()
    if not keep_model_rate:
        blocks = resample_blocks(blocks, info.model_sample_rate, info.original_sample_rate, info.channels)
    return out_rate, cut(blocks)


def seek_span(
    info: StreamInfo, keep_model_rate: bool, start: float | None, duration: float | None
) -> tuple[int, int] | None:
    """(first, stop) output samples for ``start`` / ``duration`` seconds; None for the whole stream."""
    if start is None and duration is None:
        return None
    rate = info.model_sample_rate if keep_model_rate else info.original_sample_rate
    total = info.model_sample_count if keep_model_rate else info.sample_count
    start = start or 0.0
    if not np.isfinite(start) or start < 0 or (duration is not None and not (np.isfinite(duration) and duration >= 0)):
        raise UsageError("--start and --duration must be finite and >= 0")
    first = round(start * rate)
    if first > total:
        raise UsageError(f"--start {start:g} s is past the end ({total / rate:.3f} s)")
    stop = total if duration is None else min(total, first + round(duration * rate))
    return first, stop


@dataclass(frozen=True)
class LostSpan:
    """Consecutive lost chunks of a damaged file, as a time range of the output."""

    first_chunk: int
    last_chunk: int  # inclusive
    start: int  # output samples [start, stop) at ``sample_rate``
    stop: int
    sample_rate: int
    reason: str  # why each chunk was lost, "; "-joined when they differ

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def stop_s(self) -> float:
        return self.stop / self.sample_rate

    def describe(self) -> str:
        """One line: ``1.024-2.048 s (chunk 1: CRC mismatch)``; seconds with 3 decimals."""
        chunks = f"chunk {self.first_chunk}"
        if self.last_chunk != self.first_chunk:
            chunks = f"chunks {self.first_chunk}-{self.last_chunk}"
        return f"{self.start_s:.3f}-{self.stop_s:.3f} s ({chunks}: {self.reason})"


def lost_spans(info: StreamInfo, lost: dict[int, str], keep_model_rate: bool = False) -> list[LostSpan]:
    """Merge lost chunk indices into time ranges at the output rate.

    A chunk covers its nominal model-rate samples (:meth:`StreamInfo.chunk_span`);
    at the original rate a range becomes ``[floor(start * R_o / R_m),
    ceil(stop * R_o / R_m))``, clipped to ``sample_count``.
    """
    spans: list[LostSpan] = []
    for index in sorted(lost):
        start, stop = info.chunk_span(index)
        rate = info.model_sample_rate
        if not keep_model_rate:
            rate, r_m = info.original_sample_rate, info.model_sample_rate
            start = min(start * rate // r_m, info.sample_count)
            stop = min(-(-stop * rate // r_m), info.sample_count)
        if spans and spans[-1].last_chunk == index - 1:
            previous = spans[-1]
            reasons = previous.reason.split("; ")
            reason = previous.reason if lost[index] in reasons else f"{previous.reason}; {lost[index]}"
            spans[-1] = LostSpan(previous.first_chunk, index, previous.start, stop, rate, reason)
        else:
            spans.append(LostSpan(index, index, start, stop, rate, lost[index]))
    return spans


@dataclass(frozen=True)
class Salvaged:
    """What :func:`decode_salvage` recovered from a possibly damaged file."""

    audio: np.ndarray  # float32 (channels, time), silence over every lost span
    sample_rate: int
    lost: tuple[LostSpan, ...]  # empty when every chunk was intact
    problems: tuple[str, ...]  # every defect found, including ones that lost no audio

    @property
    def damaged(self) -> bool:
        return bool(self.lost or self.problems)


def decode_salvage(
    data: bytes, *, keep_model_rate: bool = False, model: str | None = None, phase_iters: int | None = None
) -> Salvaged:
    """Decode what is intact in a damaged file; lost chunks become silence of their length.

    The header must be intact (else :class:`FormatError`, as in :func:`decode`).
    For an intact file the audio equals :func:`decode`'s.
    """
    info, _ = container.read_info(data)
    used = zoo.for_stream(info, model)
    result = container.salvage(data, used.tables)
    decoder = codec.Decoder(used.loaded.net, info, used.phase_init, phase_iters)
    silent = frozenset(i for i, chunk in enumerate(result.chunks) if chunk is not None and chunk.silent)
    rate, blocks = _output_blocks(decoder, info, lambda index: result.chunks[index], keep_model_rate, silent=silent)
    audio = np.concatenate([np.zeros((info.channels, 0), np.float32), *blocks], axis=1)
    spans = lost_spans(info, result.lost, keep_model_rate)
    for span in spans:
        audio[:, span.start : span.stop] = 0.0
    return Salvaged(audio, rate, tuple(spans), result.problems)


def compress(audio: np.ndarray, sample_rate: int, store_phase: bool = False, quant_bits: int = 8) -> bytes:
    """The research prototype's name for :func:`encode`."""
    return encode(audio, sample_rate, EncoderSettings(bits=quant_bits, store_phase=store_phase))


def decompress(blob: bytes) -> tuple[np.ndarray, int]:
    """The research prototype's name for :func:`decode`."""
    return decode(blob)


@dataclass(frozen=True)
class EncodeReport:
    """What :func:`encode_file` wrote: file bytes and audio duration."""

    file_bytes: int
    duration_s: float

    @property
    def kbps(self) -> float | None:
        return self.file_bytes * 8 / self.duration_s / 1000 if self.duration_s else None


@dataclass(frozen=True)
class DecodeReport:
    """What :func:`decode_file` did: output rate, length, samples clipped, damage salvaged."""

    sample_rate: int
    samples: int
    channels: int
    clipped_samples: int
    lost: tuple[LostSpan, ...] = ()  # with salvage: spans written as silence
    problems: tuple[str, ...] = ()  # with salvage: every defect found

    @property
    def damaged(self) -> bool:
        return bool(self.lost or self.problems)


def _check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if not is_stdio(dst) and dst.exists():
        if src.exists() and dst.resolve() == src.resolve():
            raise OutputError(f"{dst}: output would overwrite the input")
        if not overwrite:
            raise OutputError(f"{dst}: already exists (use -f to overwrite)")


def read_input_bytes(src: Path) -> bytes:
    """The bytes of ``src`` (``-``: standard input)."""
    try:
        return sys.stdin.buffer.read() if is_stdio(src) else src.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{src}: no such file") from None
    except OSError as err:
        raise InputError(f"{src}: cannot read ({err.strerror or err})") from None


def encode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    settings: EncoderSettings = EncoderSettings(),
    *,
    overwrite: bool = False,
    model: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EncodeReport:
    """Encode an audio file (``-``: stdin) to ``dst`` (``-``: stdout) atomically."""
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, overwrite)
    samples, rate, channels, blocks = read_blocks(src)
    written = 0

    def write(handle) -> None:
        nonlocal written
        try:
            for part in encode_parts(blocks, channels, samples, rate, settings, model=model, on_progress=on_progress):
                written += handle.write(part)
        except NacError as err:
            if str(err).startswith(f"{src}:"):
                raise
            raise type(err)(f"{src}: {err}") from None

    write_atomic(dst, write)
    return EncodeReport(written, samples / rate)


def decode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    keep_model_rate: bool = False,
    model: str | None = None,
    salvage: bool = False,
    start: float | None = None,
    duration: float | None = None,
    phase_iters: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> DecodeReport:
    """Decode a ``.nac`` file to a WAV/FLAC file atomically; clipping is clamped and counted.

    Damage is a :class:`FormatError` and nothing is written, unless ``salvage``:
    then the intact audio is written with silence over the lost spans, which
    the report lists (the caller decides how to signal them).
    """
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, overwrite)
    data = read_input_bytes(src)
    lost, problems = (), ()
    try:
        if salvage:
            result = decode_salvage(data, keep_model_rate=keep_model_rate, model=model, phase_iters=phase_iters)
            channels, rate, blocks = result.audio.shape[0], result.sample_rate, iter([result.audio])
            lost, problems = result.lost, result.problems
        else:
            channels, rate, blocks = decode_blocks(data, keep_model_rate=keep_model_rate, model=model, start=start,
                                                   duration=duration, phase_iters=phase_iters,
                                                   on_progress=on_progress)
    except NacError as err:
        raise type(err)(f"{src}: {err}") from None
    counts = {"samples": 0, "clipped": 0}

    def clamped() -> Iterator[np.ndarray]:
        for block in blocks:
            counts["samples"] += block.shape[1]
            counts["clipped"] += int(np.count_nonzero(np.abs(block) > 1.0))
            yield np.clip(block, -1.0, 1.0)

    write_audio_blocks(dst, clamped(), rate, channels)
    return DecodeReport(rate, counts["samples"], channels, counts["clipped"], lost, problems)


def inspect(data: bytes) -> dict:
    """A JSON-ready description of a stream: header fields, layers, chunks, CRC status, bitrate."""
    report = container.scan(data)
    info = report.header
    duration = info.sample_count / info.original_sample_rate if info.original_sample_rate else 0.0
    try:
        model_name = manifest.find_entry(info.model_id).name
    except NacError:
        model_name = None
    return {
        "file_bytes": len(data),
        "duration_s": duration,
        "kbps": len(data) * 8 / duration / 1000 if duration else None,
        "model_name": model_name,
        "header": describe_info(info),
        "chunks": [vars(chunk) for chunk in report.chunks],
        "end_record_ok": report.end_ok,
        "all_crc_ok": all(chunk.crc_ok for chunk in report.chunks) and report.end_ok,
        "intact": report.ok,
        "lost": [
            {"first_chunk": span.first_chunk, "last_chunk": span.last_chunk, "start_s": span.start_s,
             "stop_s": span.stop_s, "reason": span.reason}
            for span in lost_spans(info, report.lost_chunks())
        ],
        "problems": list(report.problems),
    }


def describe_info(info: StreamInfo) -> dict:
    """The header's fields as JSON-ready values: hashes in hex, layers by name."""
    fields = {name: value for name, value in vars(info).items()
              if name not in ("latent", "residual", "companions", "layer_order", "version")}
    fields["weights_hash"] = info.weights_hash.hex()
    return {
        "version": f"{info.version[0]}.{info.version[1]}",
        **fields,
        "companions": {Companion(role).name.lower(): (digest.hex() if digest else "the model's")
                       for role, digest in info.companions},
        "latent": {"code_bits": list(info.latent.code_bits), "entropy_coded": info.latent.entropy_coded,
                   "latent_channels": info.latent.latent_channels, "latent_height": info.latent.latent_height},
        "residual": None if info.residual is None else {
            name: getattr(info.residual, name) for name in info.residual.__dataclass_fields__},
    }
