"""The residual layer: coded corrections of the decoded log-magnitude, and phase hints (format_spec.md section 7.2).

The layer corrects the lowest ``bins`` STFT bins. Its codes come in columns,
one every ``stride`` STFT frames; each column has one code per row: single
bins up to ``band_start``, then bands that widen by ``band_growth`` (16.16
fixed point) up to ``bins``. The lowest ``fine_bins`` bins are coded at every
frame instead (``stride`` rows each), in steps of ``fine_step``. A row's step
widens where the decoded spectrum lies below its column's loudest row
(``slope`` / 4096, up to ``span`` / 256 log-magnitude units). With phase
hints, every column ends with a delay code and a turn code that turn the
starting phase of the lowest ``hint_bins`` bins. Steps depend only on the
decoded log-magnitude, so the decoder finds the encoder's from its own
prediction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..model.scale import MAX_LOG_MAGNITUDE

# Share of its code step by which a corrected bin's magnitude may move during the phase
# iterations: the truth lies within half a step of the corrected value (docs/results.md).
PHASE_SLACK = 0.5

GROWTH_ONE = 1 << 16  # band_growth's fixed-point 1.0 (every row one bin); it stays under 2.0
SLOPE_ONE = 1 << 12  # slope's fixed-point 1.0, also its maximum
SPAN_ONE = 1 << 8  # span's fixed-point 1.0 (one log-magnitude unit); 16.0 is its maximum
MAX_STEP = 16.0  # steps lie in (0, 16]: a step of e^16 is already absurd
HINT_ROWS = 2  # per column with phase hints: a delay code and a turn code
MAX_HINT_TURNS = 256

RESIDUAL_LIMIT = 127  # residual codes lie in [-127, 127]
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

    With ``row_edges`` (bins ``0 = e0 < e1 < ... = bins``, :attr:`ResidualLayer.row_edges`)
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
        codes = np.stack(rows, axis=-2) if rows else np.zeros((*target.shape[:-2], 0, target.shape[-1]))
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
    coarser step (format_spec.md section 7.2). ``slope`` 0 gives ``step``
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


# Ten bands per octave keep the bands under about 650 Hz single bins (16 kHz model; docs/results.md).
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
    """A stream's residual layer as its header fixes it (integers as stored): what encoder and decoder compute.

    Arrays are shaped (..., bins, frames) for log-magnitudes (``bins`` the
    layer's lowest STFT bins) and (..., code rows, columns) for codes, with
    one column every ``stride`` frames. Code rows: ``stride`` per fine bin
    (row ``k`` of a bin holding its frames ``j * stride + k``), then one per
    other row of :attr:`row_edges`, then (with hints) the delay and turn rows.
    """

    bins: int
    stride: int
    step: float
    band_start: int
    band_growth: int = GROWTH_ONE
    slope: int = 0
    span: int = 0
    fine_bins: int = 0
    fine_step: float = 0.0
    hint_bins: int = 0
    hint_delay: int = 0
    hint_turns: int = 0

    @functools.cached_property
    def row_edges(self) -> tuple[int, ...]:
        """Bin edges of the rows: ``[0, 1, ..., band_start]``, then ``e[i+1] = min(bins, max(e[i] + 1,
        (e[i] * band_growth + 2**15) >> 16))`` up to ``bins``: integers only, so every decoder finds the same."""
        edges = list(range(min(self.band_start, self.bins) + 1))
        while edges[-1] < self.bins:
            grown = (edges[-1] * self.band_growth + (GROWTH_ONE >> 1)) >> 16
            edges.append(min(self.bins, max(edges[-1] + 1, grown)))
        return tuple(edges)

    @property
    def growth_field(self) -> int:
        """``band_growth`` as the header stores it: the u16 ``(g - 1) * 65536``."""
        return self.band_growth - GROWTH_ONE

    @property
    def rows(self) -> int:
        """The layer's own code rows per column: ``stride`` per fine bin, then one per other row."""
        return self.fine_bins * self.stride + len(self.row_edges) - 1 - self.fine_bins

    @property
    def code_rows(self) -> int:
        """Code rows per column, the hints' included."""
        return self.rows + (HINT_ROWS if self.hint_bins else 0)

    def columns(self, frames: int) -> int:
        """Columns of ``frames`` STFT frames."""
        return frames // self.stride

    @property
    def slope_value(self) -> float:
        return self.slope / SLOPE_ONE

    @property
    def span_value(self) -> float:
        return self.span / SPAN_ONE

    def hints(self, n_fft: int) -> PhaseHints | None:
        """The layer's phase hints for an STFT of ``n_fft``, None without them."""
        if not self.hint_bins:
            return None
        return PhaseHints(self.hint_bins, self.hint_delay, self.hint_turns, n_fft, self.stride)

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
            growth = residual_steps(decoded, 1.0, edges, self.slope_value, self.span_value)
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

    def apply(self, codes: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The layer's bins of the decoded log-magnitude (C, bins, frames) with ``codes`` (the layer's rows first)
        applied, and the phase iterations' slack there (:func:`phase_slack`), float32."""
        corrected = decoded + self.correction(codes[:, : self.rows], decoded)
        return corrected.astype(np.float32), phase_slack(self.frame_steps(decoded), decoded.shape)


def phase_slack(steps: float | np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """How far (log units) each corrected bin's magnitude may move in the phase iterations, float32 ``shape``:
    ``PHASE_SLACK`` of its code step (:meth:`ResidualLayer.frame_steps`)."""
    return (PHASE_SLACK * np.broadcast_to(np.asarray(steps, np.float32), shape)).astype(np.float32)


# The encoder's choice of delay codes, -6..6: the residual stream's symbols without escape.
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

    def apply(self, codes: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """``phase`` (C, >= bins, frames) with the hints ``codes`` (C, 2, columns) added to its lowest bins."""
        delays, turns = np.asarray(codes, np.float64)[:, 0], np.asarray(codes, np.float64)[:, 1]
        shift = self._rotation(delays.reshape(-1)).reshape(self.bins, *delays.shape)  # (bins, C, columns)
        shift = np.moveaxis(shift, 0, 1) + (2 * np.pi / self.turns) * turns[:, None, :]
        frames = np.repeat(shift, self.stride, axis=-1)[..., : phase.shape[-1]]
        turned = np.array(phase, np.float32)
        turned[:, : self.bins] += frames.astype(np.float32)
        return turned


