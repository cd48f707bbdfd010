"""nac as a library: audio arrays and files to ``.nac`` bytes and back, inspection, salvage.

Arrays are float32 shaped (channels, time). Encoding resamples to the model's
rate, runs :class:`nac.codec.Encoder` and writes the container; decoding
checks the whole file first, then decodes window by window and restores the
original rate, length and channels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import codec
from .audio import (as_channels_first, is_stream, read_blocks, refuse_existing, resample_blocks, write_atomic,
                    write_audio_blocks)
from .errors import FormatError, InputError, OutputError, UsageError, naming
from .format import container, rans
from .format.header import MAX_CHANNELS, Companion, StreamInfo
from .format.records import Chunk
from .info import LostSpan, inspect, lost_spans, read_input_bytes
from .layers import fullband
from .model import manifest, zoo
from .settings import EncoderSettings

__all__ = ["Choice", "DecodeReport", "EncodeReport", "LostSpan", "Salvaged", "choose_settings", "decode",
           "decode_blocks", "decode_file", "decode_salvage", "encode", "encode_file", "encode_parts", "inspect",
           "lost_spans", "open_stream", "read_input_bytes", "unpack", "compress", "decompress"]
MIN_RATE, MAX_RATE = 8000, 192000


@dataclass(frozen=True)
class Choice:
    """The settings and model an encode uses, and how they were chosen: a ladder point's name, or None for
    given settings."""

    settings: EncoderSettings
    model: str | None = None  # a name, id or path; None: the default model
    point: str | None = None
    notes: tuple[str, ...] = ()  # what the user should know: the model and point chosen, a target clamped


def parse_kbps(bitrate: str | float) -> float:
    """kbps from ``12k``, ``12 kbps``, ``12.5`` or a number; :class:`UsageError` for anything else."""
    if isinstance(bitrate, (int, float)) and not isinstance(bitrate, bool):
        kbps = float(bitrate)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(?:k|kbps|kbit/s)?\s*", str(bitrate), flags=re.IGNORECASE)
        kbps = float(match.group(1)) if match else 0.0
    if not 0.0 < kbps <= MAX_KBPS:
        hint = f" ({kbps:g} bit/s would be {kbps / 1000:g}k)" if kbps > MAX_KBPS else ""
        raise UsageError(f"bitrate {bitrate!r}: give kbps, like 12k or 12.5{hint}")
    return kbps


MAX_KBPS = 1000.0  # a larger number is taken for bit/s (and refused with a hint)


def choose_settings(settings: EncoderSettings | None = None, bitrate: str | float | None = None,
                    model: str | None = None, channels: int = 1, sample_rate: int = manifest.SPEECH_RATE) -> Choice:
    """What an encode of ``channels`` channels at ``sample_rate`` uses: the model named, or the default model
    for such input (:func:`nac.model.manifest.input_kind`); ``settings`` as given, or the ladder point for a
    whole-file ``bitrate``, or the model's default point.

    The bitrate covers all channels together: channels that a point codes one by one each get their share
    (a point with a stereo layer codes two channels as one). A target below the ladder is refused with its
    range; above it, the top point is used and a note says so. A model without a ladder (one given by path)
    codes with :class:`EncoderSettings`' defaults unless ``settings`` are given.
    """
    if settings is not None:
        if not isinstance(settings, EncoderSettings):
            raise UsageError(f"settings must be EncoderSettings, not {type(settings).__name__}"
                             + (" (for a rate use bitrate=...)" if isinstance(settings, (str, int, float)) else ""))
        if bitrate is not None:
            raise UsageError("give a bitrate or settings, not both")
    kind = manifest.input_kind(sample_rate, channels)
    chosen_for = "" if model is not None or kind == manifest.SPEECH else " (the default for stereo or above-16 kHz input)"
    if settings is not None:  # the input picks the model as without them
        if model is not None:
            return Choice(settings.check(), model)
        name = manifest.find_entry(None, kind=kind).name
        return Choice(settings.check(), name, None, (f"given settings, model {name}{chosen_for}",))
    if model is not None and str(model).endswith(".safetensors"):
        if bitrate is not None:
            raise UsageError("a bitrate needs a model with a rate ladder (nac models); give settings instead")
        return Choice(EncoderSettings(), model)
    entry = manifest.find_entry(model, kind=kind)

    def coded(point: manifest.RatePoint) -> int:
        return 1 if channels == 2 and point.settings.stereo_bands else channels

    def each(point: manifest.RatePoint) -> str:
        return "" if coded(point) == 1 else f" for each of {channels} channels"

    if bitrate is None:
        point = entry.point()
        return Choice(point.settings, model or entry.name, point.name,
                      (f"{point.name} point of {entry.name}{chosen_for}{each(point)}",))
    kbps = parse_kbps(bitrate)
    if not entry.ladder:
        raise UsageError(f"model {entry.name} has no rate ladder: give settings instead of a bitrate")
    low, high = entry.ladder[0], entry.ladder[-1]
    if kbps < low.nominal_kbps * coded(low):
        per_channel = "" if coded(low) == 1 else f" per channel ({low.nominal_kbps * channels:g}-" \
                                                 f"{high.nominal_kbps * channels:g} kbps for {channels} channels)"
        lower = [other for other in manifest.list_models() if other.ladder and model is None
                 and other.ladder[0].nominal_kbps * channels <= kbps < low.nominal_kbps * coded(low)]
        hint = f" (-m {lower[0].name} codes from {lower[0].ladder[0].nominal_kbps * channels:g} kbps, " \
               f"at {lower[0].sample_rate / 1000:g} kHz)" if lower else ""
        raise UsageError(f"bitrate {kbps:g} kbps is below what {entry.name} codes: {low.nominal_kbps:g}-"
                         f"{high.nominal_kbps:g} kbps{per_channel}{hint}")
    point = [p for p in entry.ladder if p.nominal_kbps * coded(p) <= kbps][-1]
    notes = [f"{point.name} point of {entry.name}{chosen_for}{each(point)}"]
    if kbps > high.nominal_kbps * coded(high):
        notes.append(f"bitrate {kbps:g} kbps is above the model's top point, {high.name} (about "
                     f"{high.nominal_kbps * coded(high):g} kbps on typical audio)")
    return Choice(point.settings, model or entry.name, point.name, tuple(notes))


def _check_audio_args(channels: int, sample_rate: int) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise UsageError(f"sample rate {sample_rate!r}: give a whole number of Hz, like 48000")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise UsageError(f"sample rate {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise UsageError(f"{channels} channels: nac codes 1 to {MAX_CHANNELS}")


def encode(audio: np.ndarray, sample_rate: int, settings: EncoderSettings | None = None, *,
           bitrate: str | float | None = None, model: str | None = None) -> bytes:
    """``.nac`` bytes for float audio shaped (time,) or (channels, time) at ``sample_rate``: coded with
    ``settings``, or at the model's ladder point for a whole-file ``bitrate`` (``"12k"``), or at its default
    point (:func:`choose_settings`)."""
    audio = as_channels_first(audio)
    if audio.shape[0] > MAX_CHANNELS >= audio.shape[1]:
        raise UsageError(f"audio shaped {audio.shape}: nac takes (channels, time); transpose it (audio.T)")
    return b"".join(encode_parts(iter([audio]), audio.shape[0], audio.shape[1], sample_rate, settings,
                                 bitrate=bitrate, model=model))


@dataclass
class EncodeNotes:
    """What an encode found worth telling: the choice of settings, and what the model cannot code."""

    choice: Choice | None = None
    lost_above_hz: float = 0.0  # the highest frequency the model codes
    lost_share: float = 0.0  # share of the input's energy above it
    channels: int = 1
    non_finite: int = 0  # NaN or infinite input samples (coded as silence)
    peak: float = 0.0  # the input's largest finite magnitude
    missing: float = 0.0  # seconds the input ended before its header said (coded as silence)

    def lines(self) -> list[str]:
        """One-line notes, then warnings (prefixed ``warning:``)."""
        lines = list(self.choice.notes) if self.choice else []
        if self.missing:
            lines.append(f"warning: the input ended {self.missing:.3f} s before the length its header gives "
                         "(a truncated file?); coded as silence")
        if self.non_finite:
            lines.append(f"warning: {self.non_finite} input samples are NaN or infinite; coded as silence")
        if self.peak > 1.0:
            lines.append(f"warning: the input peaks {20 * np.log10(self.peak):.1f} dB above full scale; decoded "
                         "audio is clipped to [-1, 1]")
        if self.lost_share > LOST_SHARE_WARNING:
            lines.append(f"warning: {100 * self.lost_share:.1f} % of the input's energy lies above "
                         f"{self.lost_above_hz / 1000:.3g} kHz, which this model does not code")
        if self.channels > 1:
            lines.append(f"warning: {self.channels} channels are coded one by one; their stereo image is not "
                         "coded as such")
        return lines


LOST_SHARE_WARNING = 0.001  # energy above the model's band worth a warning (-30 dB)


def encode_parts(
    blocks: Iterable[np.ndarray],
    channels: int,
    samples: int,
    sample_rate: int,
    settings: EncoderSettings | None = None,
    *,
    bitrate: str | float | None = None,
    model: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    notes: EncodeNotes | None = None,
) -> Iterator[bytes]:
    """The ``.nac`` file for ``samples`` samples that arrive as (channels, n) blocks, piece by piece.

    Audio is resampled as it streams and coded one scale group at a time, each
    chunk's record yielded as soon as it is made, so memory does not grow with
    the input's length. The arguments are checked before the first piece;
    ``notes``, if given, is filled in as the encode goes.
    """
    _check_audio_args(channels, sample_rate)
    choice = choose_settings(settings, bitrate, model, channels, sample_rate)
    loaded = zoo.load_model(choice.model)
    info = codec.stream_info(loaded, choice.settings, channels, sample_rate, samples)
    encoder = codec.Encoder(loaded, info, choice.settings)
    notes = EncodeNotes() if notes is None else notes
    band_top = info.high_band.stop * fullband.HZ_PER_BIN if info.high_band else info.decoded_rate / 2
    notes.choice, notes.channels, notes.lost_above_hz = choice, info.coded_channels, band_top
    energy = [0.0, 0.0]  # sum of squares in and at the decoded rate (what resampling drops)

    def measured(stream: Iterable[np.ndarray], which: int) -> Iterator[np.ndarray]:
        for block in stream:
            energy[which] += float(np.square(block, dtype=np.float64).sum())
            yield block

    def cleaned() -> Iterator[np.ndarray]:
        read = 0
        for block in blocks:
            read += block.shape[-1]
            finite = np.isfinite(block)
            if not finite.all():
                notes.non_finite += int(block.size - finite.sum())
                block = np.where(finite, block, 0.0).astype(block.dtype)
            if block.size:
                notes.peak = max(notes.peak, float(np.abs(block).max()))
            yield block
        notes.missing = max(0, samples - read) / sample_rate

    def chunks() -> Iterator[Chunk]:
        decoded_rate = resample_blocks(measured(cleaned(), 0), sample_rate, info.decoded_rate, channels)
        source = codec.SampleWindow(measured(decoded_rate, 1), channels, info.decoded_sample_count)
        for chunk in encoder.chunks(source):
            yield chunk
            if on_progress is not None:
                on_progress(chunk.index + 1, info.chunk_count)
        kept = 1.0  # of the input's energy, at the decoded rate; then the part under the high band's top
        if energy[0] > 0 and sample_rate > info.decoded_rate:
            kept = min(1.0, energy[1] * sample_rate / (energy[0] * info.decoded_rate))
        notes.lost_share = 1 - kept * (1 - encoder.share_above_band)

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
    span = codec.seek_span(info, keep_model_rate, start, duration)
    decoder = _decoder(used, info, keep_model_rate, span, phase_iters)
    return info.channels, *decoder.output(stream.chunk, keep_model_rate, span, on_progress, stream.silent)


def _decoder(used: zoo.StreamModel, info: StreamInfo, keep_model_rate: bool, span: tuple[int, int] | None,
             phase_iters: int | None) -> codec.Decoder:
    """The stream's decoder, on the networks that decode the span (None: all of it) fastest."""
    rate = info.decoded_rate if keep_model_rate else info.original_sample_rate
    first, stop = span if span is not None else (0, info.decoded_sample_count if keep_model_rate else info.sample_count)
    seconds = (stop - first) / rate * info.coded_channels
    if info.residual is not None:
        columns = info.residual.columns(info.chunk_frames * info.time_stride)
        rans.expect(codec.chunks_read(info, keep_model_rate, span) * info.coded_channels * info.residual.code_rows
                    * columns)
    return codec.Decoder(used.loaded.decoding_network(seconds), info, used.phase_init, phase_iters)


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
    """Decode what is intact in a damaged file: lost chunks become silence of their length, up to the last
    chunk recovered (a lost tail is reported, not invented).

    The header must be intact (else :class:`FormatError`, as in :func:`decode`), and the silence to invent
    bounded: a file that would need more than ``MAX_INVENTED_SECONDS`` plus ten times the recovered audio is
    refused (a damaged index can claim hours). For an intact file the audio equals :func:`decode`'s.
    """
    info, _ = container.read_info(data)
    used = zoo.for_stream(info, model)
    result = container.salvage(data, used.tables)
    recovered = sorted(result.chunks)
    last = recovered[-1] if recovered else -1
    chunk_seconds = info.chunk_frames * info.samples_per_frame / info.model_sample_rate
    invented = sum(min(run.last, last) - run.first + 1 for run in result.lost if run.first <= last) * chunk_seconds
    if invented > MAX_INVENTED_SECONDS + 10 * len(recovered) * chunk_seconds:
        raise FormatError(f"too little is left to salvage: {len(recovered)} chunk(s) recovered, {invented:.0f} s "
                          "of silence would be invented between them")
    rate = info.decoded_rate if keep_model_rate else info.original_sample_rate
    length = info.decoded_sample_count if keep_model_rate else info.sample_count
    stop = min(length, -(-info.decoded_chunk_span(last)[1] * rate // info.decoded_rate)) if recovered else 0
    decoder = _decoder(used, info, keep_model_rate, (0, stop), phase_iters)
    silent = frozenset(i for i, chunk in result.chunks.items() if chunk.silent)
    rate, blocks = decoder.output(result.chunks.get, keep_model_rate, (0, stop), silent=silent)
    audio = np.concatenate([np.zeros((info.channels, 0), np.float32), *blocks], axis=1)
    spans = lost_spans(info, result.lost, keep_model_rate)
    for span in spans:
        audio[:, span.start : span.stop] = 0.0
    return Salvaged(audio, rate, tuple(spans), result.problems)


MAX_INVENTED_SECONDS = 3600.0


def compress(audio: np.ndarray, sample_rate: int, store_phase: bool = False, quant_bits: int = 8) -> bytes:
    """The research prototype's name for :func:`encode`."""
    return encode(audio, sample_rate, EncoderSettings(bits=quant_bits, store_phase=store_phase))


def decompress(blob: bytes) -> tuple[np.ndarray, int]:
    """The research prototype's name for :func:`decode`."""
    return decode(blob)


@dataclass(frozen=True)
class EncodeReport:
    """What :func:`encode_file` wrote: file bytes, audio duration, and the notes and warnings of the encode."""

    file_bytes: int
    duration_s: float
    notes: tuple[str, ...] = ()

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
    lost: tuple[LostSpan, ...] = ()  # with salvage: spans lost (silence inside the output; a lost end is cut)
    problems: tuple[str, ...] = ()  # with salvage: every defect found

    @property
    def damaged(self) -> bool:
        return bool(self.lost or self.problems)


def _paths(src, dst) -> tuple[Path, Path]:
    """``src`` and ``dst`` as paths, or :class:`UsageError` (for ``.nac`` bytes, :func:`decode` takes them)."""
    for path in (src, dst):
        if not isinstance(path, (str, os.PathLike)):
            raise UsageError(f"expected a path, not {type(path).__name__}"
                             + (" (for a .nac file's bytes use nac.decode)" if isinstance(path, bytes) else ""))
    return Path(src), Path(dst)


def _check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if not is_stream(dst) and dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: output would overwrite the input")
    refuse_existing(dst, overwrite)


def encode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    settings: EncoderSettings | None = None,
    *,
    bitrate: str | float | None = None,
    overwrite: bool = False,
    model: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EncodeReport:
    """Encode an audio file (``-``: stdin) to ``dst`` (``-``: stdout) atomically, as :func:`encode` does."""
    src, dst = _paths(src, dst)
    _check_paths(src, dst, overwrite)
    samples, rate, channels, blocks = read_blocks(src)
    try:
        _check_audio_args(channels, rate)
    except UsageError as err:  # the file's own rate or channels: a problem of the input, not of the command
        raise InputError(f"{src}: {err}") from None
    written, notes = 0, EncodeNotes()

    def write(handle) -> None:
        nonlocal written
        with naming(src):
            for part in encode_parts(blocks, channels, samples, rate, settings, bitrate=bitrate, model=model,
                                     on_progress=on_progress, notes=notes):
                written += handle.write(part)

    write_atomic(dst, write)
    return EncodeReport(written, samples / rate, tuple(notes.lines()))


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
    src, dst = _paths(src, dst)
    if salvage and (start is not None or duration is not None):
        raise UsageError("salvage decodes the whole file: drop start and duration")
    _check_paths(src, dst, overwrite)
    data = read_input_bytes(src)
    lost, problems = (), ()
    with naming(src):
        if salvage:
            result = decode_salvage(data, keep_model_rate=keep_model_rate, model=model, phase_iters=phase_iters)
            channels, rate, blocks = result.audio.shape[0], result.sample_rate, iter([result.audio])
            lost, problems, frames = result.lost, result.problems, result.audio.shape[1]
        else:
            channels, rate, blocks = decode_blocks(data, keep_model_rate=keep_model_rate, model=model, start=start,
                                                   duration=duration, phase_iters=phase_iters,
                                                   on_progress=on_progress)
            frames = codec.output_frames(container.read_info(data)[0], keep_model_rate, start, duration)
    counts = {"samples": 0, "clipped": 0}

    def clamped() -> Iterator[np.ndarray]:
        with naming(src):  # damage found while decoding (the write is abandoned)
            for block in blocks:
                counts["samples"] += block.shape[1]
                counts["clipped"] += int(np.count_nonzero(np.abs(block) > 1.0))
                yield np.clip(block, -1.0, 1.0)

    write_audio_blocks(dst, clamped(), rate, channels, frames)  # (a pipe gets the audio as it is decoded)
    return DecodeReport(rate, counts["samples"], channels, counts["clipped"], lost, problems)


