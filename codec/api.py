"""The codec as a library: audio arrays <-> ``.nac`` bytes, and file variants.

Encode: (channels, time) float audio -> resample to the model rate -> model
latents per channel -> per-chunk quantization -> container bytes.
Decode runs the same steps backwards and restores length, rate and channels.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import soxr
import torch

from . import bitstream, streaming, zoo
from .audio_io import is_stdio, read_blocks, write_atomic, write_audio_blocks
from .errors import FormatError, InputError, NacError, OutputError, UsageError
from .model import MAX_PHASE_ITERS
from .quantize import (
    PhaseHints,
    ResidualLayer,
    dequantize,
    dequantize_phase,
    levels_within,
    quantize,
    quantize_phase,
)
from .settings import EncoderSettings

CHUNK_SECONDS = 8.0  # target duration of one container chunk
# The encoder runs on this many torch threads whatever the caller set: oneDNN and
# MKL split convolution sums differently for different thread counts, so latents
# (and, through rounding, codes) would depend on torch.get_num_threads(). One
# thread encodes a minute of 16 kHz audio in about 0.2-0.3 s.
ENCODE_THREADS = 1
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 8000, 192000
# STFT frames per residual column (when it divides the model's time stride):
# on 40 dev files, one column every 2 frames, interpolated, scored as one per
# frame (PESQ-WB 3.38 vs 3.39 at 1 kHz, step 0.5) for half the residual bits;
# every 3 frames lost 0.4.
RESIDUAL_STRIDE = 2
# Griffin-Lim iterations (at least) for files with a residual layer, whose
# magnitude is close enough to the original's that longer refinement pays: on
# 100 dev files (v5, banded layers) 64 instead of 16 raised PESQ-WB by 0.06-0.11
# at 13-23 kbps, ViSQOL within 0.01, for about twice the decoding time; on
# files without the layer it gave +0.02 at 6.92 kbps and cost 3.3 dB of SI-SDR.
RESIDUAL_PHASE_ITERS = 64
# Phase hints (format 8.0): delay codes of 4 samples (16 kHz model: 0.25 ms, up to
# +-1.5 ms) and a quarter turn. Scratch probe on 30 dev files at the 24 kbps
# setting, bins under 1 kHz: steps of 4 samples and 4 turns +0.038 PESQ-WB for
# about 4.2 bits a column, steps of 2 (+-32) and 8 turns +0.036 for 6.
HINT_DELAY = 4
HINT_TURNS = 4


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch intra-op threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if previous == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def as_channels_first(audio: np.ndarray) -> np.ndarray:
    """float32 (channels, time) from a (time,) or (channels, time) array."""
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise UsageError(f"audio must be (time,) or (channels, time), not shape {array.shape}")
    return np.ascontiguousarray(array)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """(channels, time) audio at ``target_rate`` (soxr, high quality)."""
    if source_rate == target_rate or audio.shape[1] == 0:
        return audio
    out = soxr.resample(audio.T, source_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, audio.shape[0]).T)


def resample_blocks(
    blocks: Iterable[np.ndarray], source_rate: int, target_rate: int, channels: int
) -> Iterator[np.ndarray]:
    """Blocks of (channels, n) audio resampled as they stream (same samples as :func:`resample`)."""
    if source_rate == target_rate:
        yield from blocks
        return
    stream = soxr.ResampleStream(source_rate, target_rate, channels, dtype="float32", quality="HQ")
    for block in blocks:
        yield np.ascontiguousarray(stream.resample_chunk(np.ascontiguousarray(block.T)).T)
    yield np.ascontiguousarray(stream.resample_chunk(np.zeros((0, channels), np.float32), last=True).T)


def bitrate_settings(bitrate: str, model: str | None = None) -> EncoderSettings:
    """Encoder settings for a target like ``6k``, ``6 kbps`` or ``12.5`` kbps.

    Picks the model's measured operating point with the highest rate at or
    below the target (its lowest if the target is below them all); a shipped
    model lists its points in ``nac models``.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(?:k|kbps|kbit/s)?\s*", bitrate, flags=re.IGNORECASE)
    kbps = float(match.group(1)) if match else 0.0
    if not 0.0 < kbps <= 1000.0:
        raise UsageError(f"bitrate {bitrate!r}: give kbps, like 6k or 12.5")
    if model is not None and str(model).endswith(".safetensors"):
        raise UsageError("--bitrate needs a shipped model (its measured rates); use --bits / --code-bits")
    return zoo.rate_point(zoo.find_entry(model), kbps).settings


def residual_bins(config, residual_hz: float) -> int:
    """STFT bins of the residual layer for ``residual_hz``: those whose centre lies below it."""
    return min(config.n_fft // 2 + 1, math.ceil(residual_hz * config.n_fft / config.sample_rate))


def residual_phase_iters(config) -> int:
    """Griffin-Lim iterations for a file with a residual layer, unless the caller names others."""
    return max(config.phase_iters, RESIDUAL_PHASE_ITERS)


def latent_code_bits(loaded: zoo.LoadedModel, code_bits: int, coarse_channels: int) -> np.ndarray:
    """Code bits of each latent channel: ``code_bits``, one fewer for the ``coarse_channels`` least important."""
    channels = loaded.net.config.latent_channels
    per_channel = np.full(channels, code_bits)
    if not 0 <= coarse_channels <= channels:
        raise UsageError(f"coarse channels must be 0..{channels} for model {loaded.name}, not {coarse_channels}")
    if not coarse_channels:
        return per_channel
    if not loaded.channel_order:
        raise UsageError(f"model {loaded.name} has no measured channel order: --coarse-channels needs one")
    if code_bits <= 2:
        raise UsageError(f"coarse channels need code bits of at least 3, not {code_bits}")
    per_channel[list(loaded.channel_order[:coarse_channels])] = code_bits - 1
    return per_channel


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

    Audio is resampled as it streams and coded one chunk at a time, and each
    chunk's record is yielded as soon as it is made, so memory does not grow
    with the input's length. The arguments are checked before the first piece.
    """
    settings.check()
    _check_audio_args(channels, sample_rate)
    bits, store_phase = settings.bits, settings.store_phase
    code_bits = settings.effective_code_bits
    loaded = zoo.load_model(model)
    net, config = loaded.net, loaded.net.config
    channel_bits = latent_code_bits(loaded, code_bits, settings.coarse_channels)
    # with tables for the code range, the codes are rANS-coded (a 3.0 file); coarse channels use them too
    code_range = levels_within(code_bits, bits)
    code_tables = loaded.code_tables.get(code_range)
    low_bins = residual_bins(config, settings.residual_hz)
    # residual rows: single bins up to the bands' start (all of them without bands), then bands
    band_start = residual_bins(config, settings.residual_bands_hz) if settings.residual_bands_hz else low_bins
    band_growth = round(2 ** (1 / settings.bands_per_octave) * bitstream.GROWTH_ONE)  # 16.16 fixed point
    step = float(np.float32(settings.residual_step)) if low_bins else 0.0  # as the header will hold it
    column_stride = (RESIDUAL_STRIDE if config.time_stride % RESIDUAL_STRIDE == 0 else 1) if low_bins else 0
    slope = round(settings.residual_slope * bitstream.SLOPE_ONE) if low_bins else 0
    span = round(settings.residual_span * bitstream.SPAN_ONE) if slope else 0
    fine_bins = min(residual_bins(config, settings.residual_fine_hz), band_start, low_bins)
    fine_step = float(np.float32(settings.fine_step)) if fine_bins else 0.0
    hint_bins = residual_bins(config, settings.phase_hint_hz) if fine_bins else 0
    model_samples = round(samples * config.sample_rate / sample_rate)
    latent_frames = streaming.latent_frame_count(net, model_samples)
    chunk_frames = max(1, round(CHUNK_SECONDS * config.sample_rate / (config.hop_length * config.time_stride)))
    chunk_count = -(-latent_frames // chunk_frames)
    header = bitstream.StreamHeader(
        version_minor=0,
        store_phase=store_phase,
        model_id=loaded.model_id,
        weights_hash=loaded.hash_prefix,
        original_sample_rate=sample_rate,
        model_sample_rate=config.sample_rate,
        channels=channels,
        bits=bits,
        sample_count=samples,
        model_sample_count=model_samples,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        time_stride=config.time_stride,
        latent_channels=config.latent_channels,
        latent_height=config.latent_height,
        latent_frames=latent_frames,
        chunk_frames=chunk_frames,
        chunk_count=chunk_count,
        residual_bins=low_bins,
        residual_stride=column_stride,
        residual_step=step,
        code_range=code_range if code_tables is not None else 0,
        tables_hash=loaded.tables_hash if code_tables is not None else b"",
        residual_band_start=min(band_start, low_bins),
        residual_band_growth=band_growth if low_bins else 0,
        residual_step_slope=slope,
        residual_step_span=span,
        residual_fine_bins=fine_bins,
        residual_fine_step=fine_step,
        residual_fine_contexts=bool(fine_bins),
        phase_hint_bins=hint_bins,
        phase_hint_delay=HINT_DELAY if hint_bins else 0,
        phase_hint_turns=HINT_TURNS if hint_bins else 0,
    )
    layer, hints = residual_layer(header), phase_hints(header)

    def code_roundtrip(latent: np.ndarray) -> np.ndarray:
        return dequantize(*quantize(latent, bits, channel_bits), bits)

    def chunks() -> Iterator[bitstream.Chunk]:
        clean = (np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0) for block in blocks)
        source = streaming.SampleWindow(resample_blocks(clean, sample_rate, config.sample_rate, channels), channels,
                                        model_samples)
        with torch_threads(ENCODE_THREADS):
            loop = (streaming.ClosedLoop(layer, residual_phase_iters(config))
                    if low_bins and settings.closed_loop else None)
            analyses = streaming.encode_chunks(net, source, chunk_frames, store_phase, layer, code_roundtrip, loop,
                                               hints)
            for index, part in enumerate(analyses):
                codes, scales = quantize(part.latent, bits, channel_bits)
                phase_codes = None if part.phase is None else quantize_phase(part.phase, bits)
                yield bitstream.Chunk(index, part.latent.shape[-1], scales, codes, phase_codes, part.residual)
                if on_progress is not None:
                    on_progress(index + 1, chunk_count)

    return bitstream.pack_parts(header, chunks(), code_tables)


def residual_layer(header: "bitstream.StreamHeader") -> ResidualLayer | None:
    """The stream's residual layer, None without one."""
    if not header.residual_bins:
        return None
    return ResidualLayer(header.residual_step, tuple(header.residual_row_edges()), header.residual_stride,
                         header.residual_step_slope / bitstream.SLOPE_ONE,
                         header.residual_step_span / bitstream.SPAN_ONE, header.residual_fine_bins,
                         header.residual_fine_step)


def phase_hints(header: "bitstream.StreamHeader") -> PhaseHints | None:
    """The stream's phase hints (format 8.0), None without them."""
    if not header.phase_hint_bins:
        return None
    return PhaseHints(header.phase_hint_bins, header.phase_hint_delay, header.phase_hint_turns, header.n_fft,
                      header.residual_stride)


def _check_stream_matches_model(header: "bitstream.StreamHeader", config) -> None:
    expected = {
        "model_sample_rate": config.sample_rate,
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "time_stride": config.time_stride,
        "latent_channels": config.latent_channels,
        "latent_height": config.latent_height,
    }
    wrong = [name for name, value in expected.items() if getattr(header, name) != value]
    if wrong:
        raise FormatError(f"header does not match its model in {', '.join(wrong)}")
    frames = config.stft.frame_count(header.model_sample_count, config.time_stride)
    if header.latent_frames * config.time_stride != frames:
        raise FormatError("latent frame count does not match the sample count")


def _stream_model(header: "bitstream.StreamHeader", model: str | None) -> zoo.LoadedModel:
    """The model that decodes ``header``'s stream, checked against it before any chunk is read.

    Checking first bounds what the chunks may hold by the model's own sizes, so a
    forged header cannot make the reader decompress bodies no model could use.
    """
    loaded = zoo.model_for_stream(header.model_id, header.weights_hash, model)
    _check_stream_matches_model(header, loaded.net.config)
    return loaded


def unpack(data: bytes, model: str | None = None) -> tuple["bitstream.StreamHeader", list["bitstream.Chunk"]]:
    """:func:`bitstream.unpack` with the code tables of the stream's model (``model`` overrides it)."""
    loaded = _stream_model(bitstream.read_header(data), model)
    return bitstream.unpack(data, loaded.tables_for)


def _synthesize(
    net: torch.nn.Module,
    header: "bitstream.StreamHeader",
    chunks: list,
    keep_model_rate: bool,
    span: tuple[int, int] | None = None,
    phase_iters: int | None = None,
) -> tuple[np.ndarray, int]:
    """The whole of :func:`_output_blocks` as one array, and the output rate."""
    rate, blocks = _output_blocks(net, header, chunks, keep_model_rate, span, phase_iters)
    return np.concatenate([np.zeros((header.channels, 0), np.float32), *blocks], axis=1), rate


def _output_blocks(
    net: torch.nn.Module,
    header: "bitstream.StreamHeader",
    chunks: list,
    keep_model_rate: bool,
    span: tuple[int, int] | None = None,
    phase_iters: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, Iterator[np.ndarray]]:
    """(output rate, audio blocks): a stream's chunks decoded one window at a time.

    ``phase_iters`` None: the model's Griffin-Lim iterations, at least
    ``RESIDUAL_PHASE_ITERS`` with a residual layer.
    A ``None`` chunk decodes from zero latents (and zero phase). ``span`` =
    (first, stop) samples at the output rate limits decoding to the chunks
    that cover it, plus one chunk before so resampling starts where both rates
    share a sample. The blocks hold exactly ``stop - first`` samples.
    """
    if phase_iters is not None and not 0 <= phase_iters <= MAX_PHASE_ITERS:
        raise UsageError(f"phase iterations must be in 0..{MAX_PHASE_ITERS}")
    if phase_iters is None and header.residual_bins:
        phase_iters = residual_phase_iters(net.config)
    out_rate = header.model_sample_rate if keep_model_rate else header.original_sample_rate
    out_length = header.model_sample_count if keep_model_rate else header.sample_count
    first, stop = span if span is not None else (0, out_length)
    if header.latent_frames == 0 or stop <= first:
        return out_rate, iter([np.zeros((header.channels, max(0, stop - first)), np.float32)])

    def latent_at(index: int) -> np.ndarray:
        chunk = chunks[index]
        if chunk is None:
            shape = (header.channels, header.latent_channels, header.latent_height, header.chunk_frames_at(index))
            return np.zeros(shape, np.float32)
        return dequantize(chunk.codes, chunk.scales, header.bits)

    def phase_at(index: int) -> np.ndarray:
        chunk = chunks[index]
        if chunk is None:
            return np.zeros((header.channels, header.phase_bins, header.chunk_frames_at(index) * header.time_stride),
                            np.float32)
        return dequantize_phase(chunk.phase, header.bits)

    def residual_at(index: int) -> np.ndarray:
        chunk = chunks[index]
        if chunk is None:
            columns = header.residual_columns(header.chunk_frames_at(index))
            return np.zeros((header.channels, header.residual_rows, columns), np.int8)
        return chunk.residual

    chunk_samples = header.chunk_frames * header.samples_per_frame
    to_model = header.model_sample_rate / out_rate
    first_chunk = max(0, int(first * to_model) // chunk_samples - 1) if span is not None else 0
    last_chunk = min(header.chunk_count - 1, int(np.ceil(stop * to_model)) // chunk_samples + 1)
    model_start = first_chunk * chunk_samples

    def model_rate_blocks() -> Iterator[np.ndarray]:
        remaining = header.model_sample_count - model_start
        pieces = streaming.decode_chunks(
            net, header.chunk_count, header.chunk_frames, latent_at, phase_at if header.store_phase else None,
            first_chunk, last_chunk, phase_iters, on_progress, residual_at if header.residual_bins else None,
            residual_layer(header), phase_hints(header),
        )
        for piece in pieces:
            # Valid but absurd scales (up to 3.4e38) overflow inside the model; the
            # output stays finite (format_spec.md section 10) whatever the file holds.
            piece = np.nan_to_num(piece[:, : max(0, remaining)], nan=0.0, posinf=0.0, neginf=0.0)
            remaining -= piece.shape[1]
            yield piece

    def cut(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        skip, wanted = max(0, first - round(model_start / to_model)), stop - first
        for block in blocks:
            dropped = min(skip, block.shape[1])
            block, skip = block[:, dropped : dropped + wanted], skip - dropped
            wanted -= block.shape[1]
            if block.shape[1]:
                yield block
            if wanted == 0:
                return
        yield np.zeros((header.channels, wanted), np.float32)

    blocks = model_rate_blocks()
    if not keep_model_rate:
        blocks = resample_blocks(blocks, header.model_sample_rate, header.original_sample_rate, header.channels)
    return out_rate, cut(blocks)


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
    that cover it. ``phase_iters`` overrides the Griffin-Lim iterations (the
    model's, at least ``RESIDUAL_PHASE_ITERS`` with a residual layer; fewer is
    faster). Any damage is an error (:class:`FormatError`); see
    :func:`decode_salvage`.
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
    """(channels, sample_rate, blocks): :func:`decode` one chunk window at a time.

    The stream is checked whole (CRCs, sizes) before the first block is made.
    """
    header = bitstream.read_header(data)
    loaded = _stream_model(header, model)
    net = loaded.net
    span = seek_span(header, keep_model_rate, start, duration)
    header, chunks = bitstream.unpack(data, loaded.tables_for)
    rate, blocks = _output_blocks(net, header, chunks, keep_model_rate, span, phase_iters, on_progress)
    return header.channels, rate, blocks


def seek_span(
    header: "bitstream.StreamHeader", keep_model_rate: bool, start: float | None, duration: float | None
) -> tuple[int, int] | None:
    """(first, stop) output samples for ``start`` / ``duration`` seconds; None for the whole stream."""
    if start is None and duration is None:
        return None
    rate = header.model_sample_rate if keep_model_rate else header.original_sample_rate
    total = header.model_sample_count if keep_model_rate else header.sample_count
    start, duration = start or 0.0, duration
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


def lost_spans(header: "bitstream.StreamHeader", lost: dict[int, str], keep_model_rate: bool = False) -> list[LostSpan]:
    """Merge lost chunk indices into time ranges at the output rate.

    A chunk covers its nominal model-rate samples (:func:`bitstream.chunk_span`);
    at the original rate a range becomes ``[floor(start * R_o / R_m),
    ceil(stop * R_o / R_m))``, clipped to ``sample_count``.
    """
    spans: list[LostSpan] = []
    for index in sorted(lost):
        start, stop = bitstream.chunk_span(header, index)
        rate = header.model_sample_rate
        if not keep_model_rate:
            rate, r_m = header.original_sample_rate, header.model_sample_rate
            start = min(start * rate // r_m, header.sample_count)
            stop = min(-(-stop * rate // r_m), header.sample_count)
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
    Lost chunks are decoded from zero latents, then the output is zeroed over
    their spans (:func:`lost_spans`). For an intact file the audio equals
    :func:`decode`'s.
    """
    loaded = _stream_model(bitstream.read_header(data), model)
    net = loaded.net
    result = bitstream.unpack_salvage(data, loaded.tables_for)
    header = result.header
    audio, rate = _synthesize(net, header, result.chunks, keep_model_rate, phase_iters=phase_iters)
    spans = lost_spans(header, result.lost, keep_model_rate)
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
            for part in encode_parts(blocks, channels, samples, rate, settings, model=model,
                                     on_progress=on_progress):
                written += handle.write(part)
        except NacError as err:
            if str(err).startswith(f"{src}:"):
                raise
            raise type(err)(f"{src}: {err}") from None

    write_atomic(dst, write)
    return EncodeReport(written, samples / rate)


@dataclass(frozen=True)
class EncodeReport:
    """What :func:`encode_file` wrote: file bytes and audio duration."""

    file_bytes: int
    duration_s: float

    @property
    def kbps(self) -> float | None:
        return self.file_bytes * 8 / self.duration_s / 1000 if self.duration_s else None


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
    """A JSON-ready description of a stream: header fields, chunks, CRC status, bitrate."""
    report = bitstream.scan(data)
    header = report.header
    duration = header.sample_count / header.original_sample_rate if header.original_sample_rate else 0.0
    try:
        model_name = zoo.find_entry(header.model_id).name
    except NacError:
        model_name = None
    return {
        "file_bytes": len(data),
        "duration_s": duration,
        "kbps": len(data) * 8 / duration / 1000 if duration else None,
        "model_name": model_name,
        "header": {
            "version": f"{header.version_major}.{header.version_minor}",
            **{k: (v.hex() if isinstance(v, bytes) else v) for k, v in vars(header).items()},
        },
        "chunks": [vars(chunk) for chunk in report.chunks],
        "end_record_ok": report.end_ok,
        "all_crc_ok": all(chunk.crc_ok for chunk in report.chunks) and report.end_ok,
        "intact": report.ok,
        "lost": [
            {
                "first_chunk": span.first_chunk,
                "last_chunk": span.last_chunk,
                "start_s": span.start_s,
                "stop_s": span.stop_s,
                "reason": span.reason,
            }
            for span in lost_spans(header, report.lost_chunks())
        ],
        "problems": list(report.problems),
    }
