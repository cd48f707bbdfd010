"""Latent and phase quantizers: pure functions, the formulas of format_spec.md §9.

Latents: per (audio channel, latent channel) max-norm scale ``s`` (float32,
rounded up to 5 significant bits so zstd stores it in few bytes) and integer
codes ``q = clamp(round_half_even(x * L / s), -U, U)`` with
``L = 2**(bits-1) - 1`` and ``U <= L``; dequantized as ``q * (s / L)``.
Phase: uniform over a full turn with ``2**bits`` levels.
Log-magnitude residual (v2+ files): int8 codes ``r`` of step ``d``, one
column every few STFT frames; the decoder interpolates ``r * d`` to every
frame and adds it to the decoded log-magnitude. The writer may code the
upper part of the band as one gain per band (bands a fraction of an octave
wide) instead of per bin (v4+), and the step may grow where the decoded
spectrum is quiet next to its loudest row (v5, :func:`residual_steps`).
The lowest bins may be coded at every frame with a step of their own (v6).
Phase hints (v8): per residual column, a delay and a turn of the low band's
starting phase (:class:`PhaseHints`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .stft import MAX_LOG_MAGNITUDE

CODE_DTYPES = {8: np.int8, 16: np.int16}
PHASE_DTYPES = {8: np.uint8, 16: np.uint16}


def levels(bits: int) -> int:
    """Largest code magnitude L for ``bits``-bit signed codes."""
    if bits not in CODE_DTYPES:
        raise ValueError(f"bits must be 8 or 16, not {bits}")
    return 2 ** (bits - 1) - 1


def quantize(
    latent: np.ndarray, bits: int, code_bits: int | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and scales for ``latent`` shaped (channels, latent_channels, ...).

    Returns (codes with the shape of ``latent``, float32 scales (channels, latent_channels)).
    Non-finite values count as 0; an all-zero channel gets scale 0 and zero codes.
    ``code_bits`` < ``bits`` uses only ``U = levels(code_bits)`` steps each side:
    stored scale ``s``, ``m * (L / U)`` (``m = max |x|``) rounded up by
    :func:`round_up_scale`, and codes ``round(x * L / s)``, so
    :func:`dequantize` (and any v1.0 decoder) needs nothing new, and zstd
    turns the smaller code alphabet into fewer bytes. An array of
    ``code_bits`` gives each latent channel its own.
    """
    limit = levels(bits)
    x = np.nan_to_num(np.asarray(latent, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if code_bits is None:
        used = np.full(x.shape[1], limit, np.float32)
    else:
        per_channel = np.broadcast_to(np.asarray(code_bits), (x.shape[1],))
        used = np.array([levels_within(int(n), bits) for n in per_channel], np.float32)
    reduce_axes = tuple(range(2, x.ndim))
    peaks = np.abs(x).max(axis=reduce_axes) if x.size else np.zeros(x.shape[:2], np.float32)
    scales = round_up_scale((peaks.astype(np.float32) * (np.float32(limit) / used)).astype(np.float32))
    trailing = (1,) * len(reduce_axes)
    safe = np.where(scales > 0, scales, np.float32(1.0)).reshape(scales.shape + trailing)
    bound = used.reshape((1, -1) + trailing)
    codes = np.clip(np.rint(x * (np.float32(limit) / safe)), -bound, bound)
    return codes.astype(CODE_DTYPES[bits]), scales


# Scales keep this many of float32's 23 mantissa bits: the lower bytes of every
# stored scale are then zero, which zstd stores almost for free (about 100
# instead of 190 bytes for 48 scales), while a code step grows by under 6.25 %.
SCALE_MANTISSA_BITS = 4
_LARGEST_SCALE = np.uint32(0x7F7FFFFF & ~((1 << (23 - SCALE_MANTISSA_BITS)) - 1))


def round_up_scale(scales: np.ndarray) -> np.ndarray:
    """The least float32 >= each scale with only :data:`SCALE_MANTISSA_BITS` mantissa bits (capped below inf)."""
    raw = np.ascontiguousarray(scales, dtype=np.float32).view(np.uint32)
    low = np.uint32((1 << (23 - SCALE_MANTISSA_BITS)) - 1)
    rounded = np.where(raw & low, (raw | low) + np.uint32(1), raw).astype(np.uint32)
    return np.minimum(rounded, _LARGEST_SCALE).view(np.float32)


def levels_within(code_bits: int, bits: int) -> int:
    """Steps each side for ``code_bits``-bit codes held in ``bits``-bit integers."""
    if not 2 <= code_bits <= bits:
        raise ValueError(f"code bits must be 2..{bits}, not {code_bits}")
    return 2 ** (code_bits - 1) - 1


def dequantize(codes: np.ndarray, scales: np.ndarray, bits: int) -> np.ndarray:
    """float32 latent from codes and scales made by :func:`quantize`."""
    step = (scales.astype(np.float32) / np.float32(levels(bits))).reshape(scales.shape + (1,) * (codes.ndim - 2))
    return codes.astype(np.float32) * step


def quantize_phase(phase: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes ``floor(phi * P / 2pi + 0.5) mod P`` with ``P = 2**bits``."""
    steps = 2**bits
    codes = np.floor(np.asarray(phase, dtype=np.float64) * (steps / (2 * np.pi)) + 0.5)
    return np.mod(codes, steps).astype(PHASE_DTYPES[bits])


def dequantize_phase(codes: np.ndarray, bits: int) -> np.ndarray:
    """Phase in radians, wrapped to (-pi, pi]."""
    steps = 2**bits
    turns = codes.astype(np.float64) / steps
    turns = np.where(turns > 0.5, turns - 1.0, turns)
    return (turns * 2 * np.pi).astype(np.float32)


RESIDUAL_LIMIT = 127  # int8 residual codes use the symmetric range of 8-bit latent codes
# Encoder choice: log-magnitudes below this (about -60 dB of a full-scale
# sine's peak bin) are not worth bits; where both the decoded and the original
# value lie below it, the residual is 0.
RESIDUAL_FLOOR = -4.0


def quantize_residual(
    original: np.ndarray, decoded: np.ndarray, step: float | np.ndarray, row_edges: list[int] | None = None
) -> np.ndarray:
    """int8 codes ``clamp(round_half_even((max(o, F) - max(d, F)) / step), -127, 127)``, ``F`` the floor.

    ``original`` and ``decoded`` are log-magnitudes shaped (..., bins,
    columns); adding :func:`dequantize_residual` of the codes to ``decoded``
    brings it within ``step / 2`` of ``original`` wherever both lie above the
    floor (and never moves a value that both leave below it).

    With ``row_edges`` (bins ``0 = e0 < e1 < ... = bins``, :meth:`StreamHeader.residual_row_edges`)
    there is one code per row ``[e_i, e_i+1)`` and column instead, shaped
    (..., rows, columns); a row wider than one bin gets the step nearest to
    the gain that gives the decoded band the original's energy,
    ``(log sum exp(2 max(o, F)) - log sum exp(2 max(d, F))) / (2 step)``:
    the spectral envelope the ear and STOI follow is right where fine
    structure would cost far more. ``step`` may then also be one per row and
    column (:func:`residual_steps`).
    """
    floor = np.float32(RESIDUAL_FLOOR)
    target = np.maximum(np.asarray(original, np.float32), floor)
    start = np.maximum(np.asarray(decoded, np.float32), floor)
    if row_edges is None:
        codes = np.rint(np.nan_to_num((target - start) / np.float32(step)))
    else:
        steps = np.broadcast_to(np.asarray(step, np.float64), (*target.shape[:-2], len(row_edges) - 1,
                                                               target.shape[-1]))
        rows = []
        for row, (low, high) in enumerate(zip(row_edges, row_edges[1:])):
            if high - low == 1:
                difference = target[..., low, :] - start[..., low, :]
                rows.append(np.rint(np.nan_to_num(difference / steps[..., row, :].astype(np.float32))))
            else:
                gain = _log_energy(target[..., low:high, :]) - _log_energy(start[..., low:high, :])
                rows.append(np.rint(np.nan_to_num(gain / (2 * steps[..., row, :]))))
        codes = np.stack(rows, axis=-2)
    return np.clip(codes, -RESIDUAL_LIMIT, RESIDUAL_LIMIT).astype(np.int8)


def residual_steps(
    decoded: np.ndarray, step: float, row_edges: list[int], slope: float, span: float
) -> np.ndarray:
    """The step of each residual row and column, (..., rows, columns): ``step * exp(slope * min(span, P - L))``.

    ``decoded`` is the log-magnitude the layer corrects, (..., bins,
    columns), as the decoder predicts it before the correction. ``L`` is a
    row's level there, half the log of its mean power with every bin held at
    the floor first, ``(log sum exp(2 max(d, F)) - log width) / 2``; ``P`` is
    the highest level in the same column. A row far below its column's
    loudest is masked by it, so its errors are heard less and it gets a
    coarser step (format_spec.md section 9). ``slope`` 0 gives ``step``
    everywhere. ``d`` is held to ``[F, MAX_LOG_MAGNITUDE]`` (NaN as ``F``),
    so a hostile stream's overflowing prediction still gives finite steps;
    float64 throughout, from float32 inputs.
    """
    start = np.clip(np.nan_to_num(np.asarray(decoded, np.float32), nan=RESIDUAL_FLOOR), RESIDUAL_FLOOR,
                    MAX_LOG_MAGNITUDE)
    levels = np.stack([
        (_log_energy(start[..., low:high, :]) - np.log(high - low)) / 2
        for low, high in zip(row_edges, row_edges[1:])
    ], axis=-2)
    below = np.minimum(levels.max(axis=-2, keepdims=True) - levels, span)
    return step * np.exp(slope * below)


def _log_energy(log_mag: np.ndarray) -> np.ndarray:
    """``log sum exp(2 x)`` over the bins axis (-2), in float64 and without overflow."""
    return np.logaddexp.reduce(2 * log_mag.astype(np.float64), axis=-2)


# Bands of the residual layer (StreamHeader.residual_row_edges). On 100 dev files (v5, 4-bit
# latents, step 0.5, bands from 500 Hz to 5 kHz), 9 / 10 bands per octave
# gave PESQ-WB 3.81 / 3.85 at 11.30 / 11.72 kbps, where 8 bands from 1 kHz to
# 4 kHz gave 3.75 at 11.76 and 6 gave 3.69 at 11.13. Ten keep the bands
# under about 650 Hz single bins and two bins wide up to about 1.1 kHz.
DEFAULT_BANDS_PER_OCTAVE = 10


def expand_rows(codes: np.ndarray, row_edges: list[int]) -> np.ndarray:
    """Per-bin codes from per-row codes (axis -2): each row's code in each of its bins."""
    return np.repeat(codes, np.diff(row_edges), axis=-2)


def dequantize_residual(codes: np.ndarray, step: float | np.ndarray) -> np.ndarray:
    """float32 log-magnitude correction ``r * step``, ``step`` one, or one per code (:func:`residual_steps`)."""
    return codes.astype(np.float32) * np.asarray(step, np.float32)


def upsample_residual(columns: np.ndarray, stride: int) -> np.ndarray:
    """Corrections for every STFT frame from columns ``stride`` frames apart (last axis).

    Column ``j`` sits at frame ``j * stride``; the frames between two columns
    interpolate linearly, ``c[j] + (c[j+1] - c[j]) * (t mod stride) / stride``
    in float32, and the frames after the last column keep its value.
    """
    if stride == 1 or columns.shape[-1] == 0:
        return columns
    following = np.concatenate([columns[..., 1:], columns[..., -1:]], axis=-1)
    weights = (np.arange(stride, dtype=np.float32) / np.float32(stride)).reshape(1, stride)
    frames = columns[..., None] + (following - columns)[..., None] * weights
    return frames.reshape(*columns.shape[:-1], columns.shape[-1] * stride)


@dataclass(frozen=True)
class ResidualLayer:
    """A stream's residual layer as its header fixes it: what encoder and decoder both compute.

    Arrays are shaped (..., bins, frames) for log-magnitudes (``bins`` the
    layer's lowest STFT bins) and (..., code rows, columns) for codes, with
    one column every ``stride`` frames. The steps depend on the decoded
    log-magnitude only, so the decoder finds the encoder's from its own
    prediction. The lowest ``fine_bins`` bins (v6) are coded at every frame,
    in steps of ``fine_step``: each takes ``stride`` code rows, row ``k``
    holding its frames ``j * stride + k``, ahead of the other rows.
    """

    step: float
    row_edges: tuple[int, ...]
    stride: int
    slope: float = 0.0
    span: float = 0.0
    fine_bins: int = 0
    fine_step: float = 0.0

    @property
    def bins(self) -> int:
        return self.row_edges[-1]

    @property
    def rows(self) -> int:
        """Code rows per column: ``stride`` per fine bin, then one per other row."""
        return self.fine_bins * self.stride + len(self.row_edges) - 1 - self.fine_bins

    @property
    def _coarse_edges(self) -> list[int]:
        """Bin edges of the rows after the fine bins, counted from the first of them."""
        return [edge - self.fine_bins for edge in self.row_edges[self.fine_bins :]]

    def _fine_rows(self, frames: np.ndarray) -> np.ndarray:
        """(..., fine_bins, frames) -> the fine bins' code rows (..., fine_bins * stride, columns)."""
        *lead, bins, count = frames.shape
        split = frames.reshape(*lead, bins, count // self.stride, self.stride)
        return np.swapaxes(split, -1, -2).reshape(*lead, bins * self.stride, count // self.stride)

    def _fine_frames(self, rows: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`_fine_rows`."""
        *lead, count, columns = rows.shape
        split = rows.reshape(*lead, count // self.stride, self.stride, columns)
        return np.swapaxes(split, -1, -2).reshape(*lead, count // self.stride, columns * self.stride)

    def steps(self, decoded: np.ndarray) -> float | np.ndarray:
        """The step, or one per code row and column: grown with a slope (:func:`residual_steps`), and
        ``fine_step`` for the fine bins."""
        if not self.slope and not self.fine_bins:
            return self.step
        edges, fine = list(self.row_edges), self.fine_bins
        if self.slope:
            growth = residual_steps(decoded, 1.0, edges, self.slope, self.span)
        else:
            growth = np.ones((*decoded.shape[:-2], len(edges) - 1, decoded.shape[-1]))
        coarse = self.step * growth[..., fine:, :: self.stride]
        if not fine:
            return coarse
        return np.concatenate([self._fine_rows(self.fine_step * growth[..., :fine, :]), coarse], axis=-2)

    def quantize(self, original: np.ndarray, aimed: np.ndarray, decoded: np.ndarray) -> np.ndarray:
        """Codes taking ``aimed`` towards ``original`` (:func:`quantize_residual`), at the steps ``decoded`` sets."""
        steps, fine = self.steps(decoded), self.fine_bins * self.stride
        columns = slice(None, None, self.stride)
        coarse = quantize_residual(original[..., self.fine_bins :, columns], aimed[..., self.fine_bins :, columns],
                                   steps if np.isscalar(steps) else steps[..., fine:, :], self._coarse_edges)
        if not fine:
            return coarse
        codes = quantize_residual(self._fine_rows(original[..., : self.fine_bins, :]),
                                  self._fine_rows(aimed[..., : self.fine_bins, :]), steps[..., :fine, :])
        return np.concatenate([codes, coarse], axis=-2)

    def correction(self, codes: np.ndarray, decoded: np.ndarray) -> np.ndarray:
        """float32 log-magnitude to add to ``decoded``, every frame, from its ``codes``."""
        return self._every_frame(dequantize_residual(codes, self.steps(decoded)))

    def frame_steps(self, decoded: np.ndarray) -> float | np.ndarray:
        """The step at every bin and frame of ``decoded`` (one number with neither a slope nor fine bins)."""
        steps = self.steps(decoded)
        if np.isscalar(steps):
            return steps
        return self._every_frame(steps)

    def _every_frame(self, rows: np.ndarray) -> np.ndarray:
        """Per code row and column -> per bin and frame: coarse rows spread over their bins and interpolated
        between columns, fine bins' rows put back on their frames."""
        fine = self.fine_bins * self.stride
        coarse = upsample_residual(expand_rows(rows[..., fine:, :], self._coarse_edges), self.stride)
        if not fine:
            return coarse
        return np.concatenate([self._fine_frames(rows[..., :fine, :]), coarse], axis=-2)


# Phase hints (format_spec.md section 9.3). The encoder's choice: delay codes in
# -6..6, the residual stream's symbols without escape. On 30 dev files at the 24
# kbps setting (scratch probe, bins under 1 kHz, a hint every 2 frames) a free
# delay and turn per column gave +0.045 PESQ-WB; delays in steps of 4 samples
# (+-24) with 4 turns +0.038 for about 4.2 bits a column (the codes' entropy).
HINT_DELAY_RANGE = 6


@dataclass(frozen=True)
class PhaseHints:
    """A stream's phase hints as its header fixes them: one (delay, turn) per residual column.

    Codes are shaped (..., 2, columns), a column every ``stride`` STFT frames.
    The decoder adds ``2 pi (turn / turns + b * delay * delay_step / n_fft)``
    to the starting phase of bins ``b < bins`` in the column's frames: a
    delay of the low band's waveform and a turn of its phase, which Griffin-Lim
    does not find by itself from the magnitude.
    """

    bins: int
    delay_step: int  # samples per delay code
    turns: int  # codes per full turn
    n_fft: int
    stride: int

    def _rotation(self, delays: np.ndarray) -> np.ndarray:
        """(..., bins, len(delays)): the phase each delay code adds to each bin."""
        bins = np.arange(self.bins, dtype=np.float64)[:, None]
        return 2 * np.pi * bins * np.asarray(delays, np.float64) * self.delay_step / self.n_fft

    def choose(self, spectrum: np.ndarray, start: np.ndarray) -> np.ndarray:
        """int8 codes (C, 2, columns) that best turn ``start`` (C, >= bins, frames) towards the phase of the
        complex ``spectrum`` (the same shape), each bin weighted by its magnitude; (0, 0) for a column whose
        bins all lie under the residual floor."""
        low, phase = spectrum[:, : self.bins], start[:, : self.bins]
        channels, _, frames = low.shape
        columns = frames // self.stride
        error = np.abs(low) * np.exp(1j * (np.angle(low) - phase))
        error = error.reshape(channels, self.bins, columns, self.stride).sum(-1)  # (C, bins, columns)
        delays = np.arange(-HINT_DELAY_RANGE, HINT_DELAY_RANGE + 1)
        aligned = np.einsum("cbj,bd->cdj", error, np.exp(-1j * self._rotation(delays)))  # (C, delays, columns)
        turns = np.arange(-((self.turns - 1) // 2), self.turns // 2 + 1)
        score = (aligned[:, :, None] * np.exp(-2j * np.pi * turns / self.turns)[None, None, :, None]).real
        best = score.reshape(channels, -1, columns).argmax(axis=1)  # first of equals: ties go to the lower codes
        codes = np.stack([delays[best // len(turns)], turns[best % len(turns)]], axis=1)
        loudest = np.abs(low).reshape(channels, self.bins, columns, self.stride).max(axis=(1, 3))
        codes[np.broadcast_to((loudest < np.exp(RESIDUAL_FLOOR))[:, None], codes.shape)] = 0
        return codes.astype(np.int8)

    def apply(self, codes: np.ndarray, phase: torch.Tensor) -> torch.Tensor:
        """``phase`` (C, bins, frames) with the hints ``codes`` (C, 2, columns) added to its lowest bins."""
        delays, turns = np.asarray(codes, np.float64)[:, 0], np.asarray(codes, np.float64)[:, 1]
        shift = self._rotation(delays.reshape(-1)).reshape(self.bins, *delays.shape)  # (bins, C, columns)
        shift = np.moveaxis(shift, 0, 1) + (2 * np.pi / self.turns) * turns[:, None, :]
        frames = np.repeat(shift, self.stride, axis=-1)[..., : phase.shape[-1]]
        turned = phase.clone()
        turned[:, : self.bins] += torch.from_numpy(frames.astype(np.float32))
        return turned


def quantization_noise(latent: torch.Tensor, code_bits: int) -> torch.Tensor:
    """Training stand-in for quantize+dequantize: uniform noise of one code step.

    The step is the per-(item, channel) max-norm over all but the first two
    axes divided by the code range ``2**(code_bits-1) - 1``, matching what
    :func:`quantize` does at encode time with that many code bits.
    """
    reduce_dims = tuple(range(2, latent.dim()))
    step = latent.detach().abs().amax(dim=reduce_dims, keepdim=True) / (2 ** (code_bits - 1) - 1)
    return latent + (torch.rand_like(latent) - 0.5) * step
