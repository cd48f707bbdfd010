"""The latent layer: the model's latents as integer codes, with one peak per scale group and channel
(format_spec.md section 7.1).

Each latent channel ``k`` has a code width ``b_k`` (2..16 bits): its codes lie
in ``[-U_k, U_k]``, ``U_k = 2**(b_k - 1) - 1``. Per scale group (several
chunks) the encoder sends a shift ``s`` and, per audio and latent channel,
one byte ``c``: the channel's peak is ``p = 0`` for ``c = 0``, else
``(16 + (c - 1) % 16) * 2**((c - 1) // 16 + s)``, a grid of 16 steps per
octave over the 16 octaves below the group's largest peak. A code ``q``
stands for ``q * (p / U_k)``, the step computed in float32 (every grid value
is exact in float32), so every machine dequantizes alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_CODE_BITS = 16
MIN_SHIFT, MAX_SHIFT = -120, 100  # every grid value stays a normal float32
_GRID = np.array([(16 + c % 16) * 2.0 ** (c // 16) for c in range(255)], np.float64)  # peak codes 1..255, s = 0


def code_limit(code_bits: int) -> int:
    """``U = 2**(b - 1) - 1``: codes of ``code_bits`` bits lie in [-U, U]."""
    if not 2 <= code_bits <= MAX_CODE_BITS:
        raise ValueError(f"code bits must be 2..{MAX_CODE_BITS}, not {code_bits}")
    return 2 ** (code_bits - 1) - 1


@dataclass(frozen=True)
class LatentParams:
    """The latent layer as a header describes it."""

    latent_channels: int
    latent_height: int  # latent size along frequency (1 for 1-D models)
    code_bits: tuple[int, ...]  # per latent channel
    entropy_coded: bool  # codes rANS-coded with the model's tables for code_range (else zstd)

    @property
    def code_range(self) -> int:
        """The largest ``U_k``: the tables' range."""
        return code_limit(max(self.code_bits))

    @property
    def limits(self) -> np.ndarray:
        """``U_k`` per latent channel, int64."""
        return np.array([code_limit(bits) for bits in self.code_bits], np.int64)

    @property
    def code_dtype(self) -> np.dtype:
        """int8 when every code fits, else int16."""
        return np.dtype(np.int8 if max(self.code_bits) <= 8 else np.int16)


def peak_shift(largest: float) -> int:
    """The grid's shift for a group whose largest peak is ``largest``: the least that reaches it."""
    if not largest > 0:
        return 0
    return min(MAX_SHIFT, max(MIN_SHIFT, math.ceil(math.log2(largest / _GRID[-1]) - 1e-12)))


def decode_peaks(shift: int, codes: np.ndarray) -> np.ndarray:
    """float32 peaks ``p`` from a group's shift and peak codes."""
    codes = np.asarray(codes, np.intp)
    values = np.where(codes > 0, _GRID[np.maximum(codes - 1, 0)] * 2.0**shift, 0.0)
    return values.astype(np.float32)


def encode_peaks(peaks: np.ndarray) -> tuple[int, np.ndarray]:
    """(shift, uint8 codes) of peaks on a group's grid (:func:`round_peaks`); ValueError off the grid."""
    peaks = np.asarray(peaks, np.float32)
    shift = peak_shift(float(peaks.max(initial=0.0)))
    codes = np.searchsorted(_GRID * 2.0**shift, peaks.astype(np.float64), side="left") + 1
    codes = np.where(peaks > 0, codes, 0)
    if codes.max(initial=0) > 255 or not np.array_equal(decode_peaks(shift, codes), peaks):
        raise ValueError("peaks off their group's grid")
    return shift, codes.astype(np.uint8)


def round_peaks(peaks: np.ndarray) -> np.ndarray:
    """The least grid values >= ``peaks`` on the grid the largest of them sets (0 stays 0; a peak more than 16
    octaves below the largest becomes the grid's least value)."""
    peaks = np.nan_to_num(np.asarray(peaks, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    grid = _GRID * 2.0 ** peak_shift(float(peaks.max(initial=0.0)))
    codes = np.minimum(np.searchsorted(grid, peaks, side="left"), len(grid) - 1)
    return np.where(peaks > 0, grid[codes], 0.0).astype(np.float32)


def steps(peaks: np.ndarray, params: LatentParams) -> np.ndarray:
    """float32 code steps ``p / U_k``, shaped (channels, latent_channels) like ``peaks``."""
    return np.asarray(peaks, np.float32) / params.limits.astype(np.float32)


def quantize(latent: np.ndarray, params: LatentParams) -> tuple[np.ndarray, np.ndarray]:
    """(codes, peaks) of ``latent`` (channels, latent_channels, height, frames), peaks on their grid.

    Non-finite values count as 0. Peaks are over every axis after the first two,
    so call this once per scale group. Codes are ``clamp(round_half_even(x / step), -U_k, U_k)``.
    """
    x = np.nan_to_num(np.asarray(latent, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    axes = tuple(range(2, x.ndim))
    peaks = round_peaks(np.abs(x).max(axis=axes) if x.size else np.zeros(x.shape[:2], np.float32))
    step = steps(peaks, params)
    trailing = (1,) * len(axes)
    safe = np.where(step > 0, step, np.float32(1.0)).reshape(step.shape + trailing)
    bound = params.limits.reshape((1, -1) + trailing)
    codes = np.clip(np.rint(x / safe), -bound, bound)
    return codes.astype(params.code_dtype), peaks


def dequantize(codes: np.ndarray, step: np.ndarray) -> np.ndarray:
    """float32 latent ``q * step`` from codes (channels, latent_channels, ...) and the steps (:func:`steps`)."""
    return codes.astype(np.float32) * step.reshape(step.shape + (1,) * (codes.ndim - 2))


def channel_code_bits(code_bits: int, latent_channels: int, channel_order: tuple[int, ...],
                      coarse_channels: int) -> tuple[int, ...]:
    """Code bits per latent channel: ``code_bits``, one fewer for the ``coarse_channels`` least important
    (``channel_order`` lists the channels least important first)."""
    bits = [code_bits] * latent_channels
    for channel in channel_order[:coarse_channels]:
        bits[channel] = code_bits - 1
    return tuple(bits)
