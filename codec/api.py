"""The codec as a library: audio arrays <-> ``.nac`` bytes, and file variants.

Encode: (channels, time) float audio -> resample to the model rate -> model
latents per channel -> per-chunk quantization -> container bytes.
Decode runs the same steps backwards and restores length, rate and channels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

from . import bitstream, zoo
from .audio_io import read_audio, write_atomic, write_audio
from .errors import FormatError, InputError, NacError, OutputError, UsageError
from .quantize import dequantize, dequantize_phase, quantize, quantize_phase

CHUNK_SECONDS = 8.0  # target duration of one container chunk
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 8000, 192000
BITS_CHOICES = (8, 16)


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


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad (channels, time) audio to ``length`` samples."""
    if audio.shape[1] >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[1])))


def _check_encode_args(audio: np.ndarray, sample_rate: int, bits: int) -> None:
    if bits not in BITS_CHOICES:
        raise UsageError(f"bits must be 8 or 16, not {bits}")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise UsageError(f"sample rate {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    if not 1 <= audio.shape[0] <= MAX_CHANNELS:
        raise UsageError(f"{audio.shape[0]} channels: nac codes 1 to {MAX_CHANNELS}")


def encode(
    audio: np.ndarray, sample_rate: int, *, model: str | None = None, bits: int = 8, store_phase: bool = False
) -> bytes:
    """``.nac`` bytes for float audio shaped (time,) or (channels, time) at ``sample_rate``."""
    audio = as_channels_first(audio)
    _check_encode_args(audio, sample_rate, bits)
    loaded = zoo.load_model(model)
    net, config = loaded.net, loaded.net.config
    wave = resample(np.nan_to_num(audio), sample_rate, config.sample_rate)
    chunk_frames = max(1, round(CHUNK_SECONDS * config.sample_rate / (config.hop_length * config.time_stride)))
    latent, phase, latent_frames = None, None, 0
    if wave.shape[1]:
        with torch.inference_mode():
            spec = net.spectrum(torch.from_numpy(wave))
            latent = net.encode_spectrum(spec).numpy()
            phase = torch.angle(spec).numpy() if store_phase else None
        latent_frames = latent.shape[-1]
    chunks = []
    for index, start in enumerate(range(0, latent_frames, chunk_frames)):
        stop = min(start + chunk_frames, latent_frames)
        codes, scales = quantize(latent[..., start:stop], bits)
        phase_codes = None
        if phase is not None:
            span = phase[..., start * config.time_stride : stop * config.time_stride]
            phase_codes = quantize_phase(span, bits)
        chunks.append(bitstream.Chunk(index, stop - start, scales, codes, phase_codes))
    header = bitstream.StreamHeader(
        version_minor=0,
        store_phase=store_phase,
        model_id=loaded.model_id,
        weights_hash=loaded.hash_prefix,
        original_sample_rate=sample_rate,
        model_sample_rate=config.sample_rate,
        channels=audio.shape[0],
        bits=bits,
        sample_count=audio.shape[1],
        model_sample_count=wave.shape[1],
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        time_stride=config.time_stride,
        latent_channels=config.latent_channels,
        latent_height=config.latent_height,
        latent_frames=latent_frames,
        chunk_frames=chunk_frames,
        chunk_count=len(chunks),
    )
    return bitstream.pack(header, chunks)


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


def decode(data: bytes, *, keep_model_rate: bool = False, model: str | None = None) -> tuple[np.ndarray, int]:
    """(float32 (channels, time), sample_rate) from ``.nac`` bytes.

    The original sample rate and length are restored unless ``keep_model_rate``.
    ``model`` overrides the model named in the file (its weights hash must match).
    """
    header, chunks = bitstream.unpack(data)
    loaded = zoo.model_for_stream(header.model_id, header.weights_hash, model)
    net, config = loaded.net, loaded.net.config
    _check_stream_matches_model(header, config)
    if header.latent_frames == 0:
        wave = np.zeros((header.channels, header.model_sample_count), np.float32)
    else:
        latent = np.concatenate([dequantize(c.codes, c.scales, header.bits) for c in chunks], axis=-1)
        phase = None
        if header.store_phase:
            phase = torch.from_numpy(np.concatenate([dequantize_phase(c.phase, header.bits) for c in chunks], -1))
        with torch.inference_mode():
            wave = net.decode(torch.from_numpy(latent), header.model_sample_count, phase).numpy()
    if keep_model_rate:
        return wave, header.model_sample_rate
    restored = resample(wave, header.model_sample_rate, header.original_sample_rate)
    return fit_length(restored, header.sample_count), header.original_sample_rate


def compress(audio: np.ndarray, sample_rate: int, store_phase: bool = False, quant_bits: int = 8) -> bytes:
    """The research prototype's name for :func:`encode`."""
    return encode(audio, sample_rate, bits=quant_bits, store_phase=store_phase)


def decompress(blob: bytes) -> tuple[np.ndarray, int]:
    """The research prototype's name for :func:`decode`."""
    return decode(blob)


@dataclass(frozen=True)
class DecodeReport:
    """What :func:`decode_file` did: output rate, length and how many samples clipped."""

    sample_rate: int
    samples: int
    channels: int
    clipped_samples: int


def _check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if str(dst) != "-" and dst.exists():
        if src.exists() and dst.resolve() == src.resolve():
            raise OutputError(f"{dst}: output would overwrite the input")
        if not overwrite:
            raise OutputError(f"{dst}: already exists (use -f to overwrite)")


def read_input_bytes(src: Path) -> bytes:
    try:
        return src.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{src}: no such file") from None
    except OSError as err:
        raise InputError(f"{src}: cannot read ({err.strerror or err})") from None


def encode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    model: str | None = None,
    bits: int = 8,
    store_phase: bool = False,
) -> int:
    """Encode an audio file to ``dst`` atomically; returns the bytes written."""
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, overwrite)
    audio, rate = read_audio(src)
    try:
        data = encode(audio, rate, model=model, bits=bits, store_phase=store_phase)
    except NacError as err:
        raise type(err)(f"{src}: {err}") from None
    write_atomic(dst, lambda handle: handle.write(data))
    return len(data)


def decode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    keep_model_rate: bool = False,
    model: str | None = None,
) -> DecodeReport:
    """Decode a ``.nac`` file to a WAV/FLAC file atomically; clipping is clamped and counted."""
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, overwrite)
    data = read_input_bytes(src)
    try:
        audio, rate = decode(data, keep_model_rate=keep_model_rate, model=model)
    except NacError as err:
        raise type(err)(f"{src}: {err}") from None
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    write_audio(dst, np.clip(audio, -1.0, 1.0), rate)
    return DecodeReport(rate, audio.shape[1], audio.shape[0], clipped)


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
        "header": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in vars(header).items()},
        "chunks": [vars(chunk) for chunk in report.chunks],
        "end_record_ok": report.end_ok,
        "all_crc_ok": all(chunk.crc_ok for chunk in report.chunks) and report.end_ok,
    }
