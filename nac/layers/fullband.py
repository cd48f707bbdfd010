"""The STFT the fullband layers work in (format_spec.md section 7.5): 48 kHz, 1024-point, hop 512.

A window of ``n`` samples at 48 kHz has columns ``j = 0 .. n / 512``, column
``j`` centred on sample ``512 j`` (zeros outside the window); a square-root
Hann window analyses and synthesizes, so synthesis of an unchanged spectrum
gives the signal back. With a 16 kHz core whose latent frame is 512 samples,
one latent frame is three columns: the layers send their parameters per
latent frame and apply them to its three columns.
"""

from __future__ import annotations

import numpy as np

RATE = 48000
N_FFT = 1024
HOP = 512
BINS = N_FFT // 2 + 1
HZ_PER_BIN = RATE / N_FFT
_WINDOW = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def analyze(wave: np.ndarray) -> np.ndarray:
    """(C, n) samples, ``n`` a multiple of the hop -> (C, n / HOP + 1, BINS) complex64 columns."""
    channels, length = wave.shape
    padded = np.zeros((channels, length + N_FFT), np.float32)
    padded[:, HOP : HOP + length] = wave
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::HOP]
    return np.fft.rfft(frames * _WINDOW, axis=-1).astype(np.complex64)


def synthesize(spec: np.ndarray) -> np.ndarray:
    """The (C, (columns - 1) * HOP) samples whose :func:`analyze` gives ``spec`` (overlap-add)."""
    channels, columns, _ = spec.shape
    frames = np.fft.irfft(spec, n=N_FFT, axis=-1).astype(np.float32) * _WINDOW
    out = np.zeros((channels, (columns + 1) * HOP), np.float32)
    out[:, : columns * HOP] += frames[:, :, :HOP].reshape(channels, -1)
    out[:, HOP:] += frames[:, :, HOP:].reshape(channels, -1)
    return out[:, HOP : columns * HOP]


def band_bins(edges_hz: np.ndarray) -> np.ndarray:
    """Bin edges (int) of bands with these frequency edges (Hz): band ``b`` holds bins ``[e[b], e[b + 1])``."""
    return np.clip(np.round(np.asarray(edges_hz) / HZ_PER_BIN).astype(np.int64), 0, BINS)


def band_energy(spec: np.ndarray, bins: np.ndarray, columns_per_frame: int) -> np.ndarray:
    """Mean power of each band over each frame's columns: (C, columns, BINS) -> (C, bands, frames)."""
    return band_mean(np.square(np.abs(spec), dtype=np.float64), bins, columns_per_frame)


def band_cross(left: np.ndarray, right: np.ndarray, bins: np.ndarray, columns_per_frame: int) -> np.ndarray:
    """Mean of ``Re(left * conj(right))`` over each band and frame: (C, bands, frames)."""
    product = left.real.astype(np.float64) * right.real + left.imag.astype(np.float64) * right.imag
    return band_mean(product, bins, columns_per_frame)


def band_mean(values: np.ndarray, bins: np.ndarray, columns_per_frame: int) -> np.ndarray:
    """Mean of real per-bin values over each band's bins and each whole frame's columns: (C, columns, BINS) ->
    (C, bands, frames); columns past the last whole frame are left out."""
    channels, columns, _ = values.shape
    frames = columns // columns_per_frame
    values = values[:, : frames * columns_per_frame].reshape(channels, frames, columns_per_frame, -1).mean(axis=2)
    # sums per band, not differences of a running sum: a quiet band beside a loud one keeps its own precision
    widths = bins[1:] - bins[:-1]
    sums = np.zeros((channels, frames, len(widths)))
    if (filled := widths > 0).any():
        sums[..., filled] = np.add.reduceat(values[..., : bins[-1]], bins[:-1][filled], axis=-1)
    return (sums / np.maximum(widths, 1)).transpose(0, 2, 1)


def per_bin(values: np.ndarray, bins: np.ndarray, columns_per_frame: int) -> np.ndarray:
    """Per-band, per-frame values (..., bands, frames) spread over each band's bins and each frame's columns:
    (..., frames * columns_per_frame, bins[-1] - bins[0])."""
    widths = bins[1:] - bins[:-1]
    spread = np.repeat(values, widths, axis=-2)
    return np.repeat(spread, columns_per_frame, axis=-1).swapaxes(-1, -2)


def per_column(values: np.ndarray, bins: np.ndarray, columns_per_frame: int, columns: int) -> np.ndarray:
    """:func:`per_bin` over ``columns`` columns: those past the last whole frame take the last frame's values."""
    spread = per_bin(values, bins, columns_per_frame)
    return np.concatenate([spread, np.repeat(spread[..., -1:, :], columns - spread.shape[-2], axis=-2)], axis=-2)
