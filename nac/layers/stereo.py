"""The stereo layer: two channels as their mid signal plus per-band level difference and correlation
(format_spec.md section 7.5).

The encoder mixes left and right to ``M = (L + R) / 2`` in the 48 kHz
fullband STFT, each band scaled so that its power is the mean of the two
channels' (at most ``MAX_MIX_GAIN``), and the core codes ``M`` alone. Per band
and latent frame the layer sends the level difference ``ILD = 10 log10(E_L /
E_R)`` in steps of ``step`` dB and the normalized correlation ``ICC = Re(sum L
R*) / sqrt(E_L E_R)`` as the nearest of :data:`ICC_LEVELS`. The decoder makes
a decorrelated copy ``D`` of the decoded mid (:meth:`StereoLayer.decorrelated`; each bin turned by a fixed
phase) and mixes

    L = c1 (cos(a + b) M + sin(a + b) D),   R = c2 (cos(b - a) M + sin(b - a) D)

with ``c1 = sqrt(2 r / (1 + r))``, ``c2 = sqrt(2 / (1 + r))``, ``r =
10^(ILD / 10)``, ``a = arccos(ICC) / 2`` and ``b = atan(tan(a) (c2 - c1) / (c2 +
c1))``: the channels get their levels and correlation back, and a file with
identical channels (ILD 0, ICC 1) decodes to identical channels.

Codes: rows ``0 .. bands - 1`` the ILD codes, rows ``bands .. 2 bands - 1`` the
index into :data:`ICC_LEVELS` (0: fully correlated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fullband

ICC_LEVELS = np.array([1.0, 0.937, 0.84118, 0.60092, 0.36764, 0.0, -0.589, -1.0])
MAX_ILD_DB = 30.0  # level differences beyond this are coded as this
MAX_MIX_GAIN = 2.0  # the mid's band gain towards the channels' mean power (anti-phase bands stay quieter)
MAX_BANDS = 64
MAX_DECORRELATOR_GAIN = 4.0  # the decorrelated copy's per-bin gain towards the mid's power (12 dB)
# the decorrelator: a unit complex number per bin, the same in every decoder
_DECORRELATING_PHASES = np.exp(2j * np.pi * np.random.default_rng(0x73746572).random(fullband.BINS))


@dataclass(frozen=True)
class StereoLayer:
    """The stereo layer as a header describes it (bins of the 48 kHz fullband STFT)."""

    edges: tuple[int, ...]  # band b holds bins edges[b] .. edges[b + 1] - 1, from bin 0 to the last bin
    step_db: float  # ILD step in dB

    @property
    def bands(self) -> int:
        return len(self.edges) - 1

    @property
    def code_rows(self) -> int:
        return 2 * self.bands

    def problem(self) -> str | None:
        """Why these parameters cannot describe a layer, or None."""
        edges = self.edges
        if not 2 <= len(edges) <= MAX_BANDS + 1 or any(b <= a for a, b in zip(edges, edges[1:])):
            return "stereo band edges must rise, with 1 to 64 bands"
        if edges[0] != 0 or edges[-1] != fullband.BINS:
            return f"stereo bands must cover bins 0 to {fullband.BINS}"
        if not 0.25 <= self.step_db <= 6.0:
            return "the stereo level step must be 0.25..6 dB"
        return None

    @classmethod
    def with_bands(cls, bands: int, step_db: float) -> StereoLayer:
        """Bands about equally wide on a log scale above 400 Hz, 200 Hz wide below."""
        edges_hz = np.concatenate([[0.0, 200.0], np.geomspace(400.0, fullband.RATE / 2, bands - 1)[:-1]])
        edges = np.unique(np.concatenate([fullband.band_bins(edges_hz), [fullband.BINS]]))
        return cls(tuple(int(e) for e in edges), step_db)

    def max_ild_code(self) -> int:
        return round(MAX_ILD_DB / self.step_db)

    def codes(self, left: np.ndarray, right: np.ndarray, columns_per_frame: int) -> np.ndarray:
        """(1, 2 bands, frames) codes of a chunk's two spectra (1, frames * columns_per_frame, BINS) each."""
        bins = np.array(self.edges)
        power_left = fullband.band_energy(left, bins, columns_per_frame)[0]
        power_right = fullband.band_energy(right, bins, columns_per_frame)[0]
        cross = fullband.band_cross(left, right, bins, columns_per_frame)[0]
        ild = 10 * np.log10((power_left + 1e-30) / (power_right + 1e-30))
        limit = self.max_ild_code()
        ild_codes = np.clip(np.round(ild / self.step_db), -limit, limit)
        icc = np.where(power_left * power_right > 0, cross / np.sqrt(power_left * power_right + 1e-60), 1.0)
        icc_codes = np.abs(icc[..., None] - ICC_LEVELS).argmin(axis=-1)
        return np.concatenate([ild_codes, icc_codes]).astype(np.int64)[None]

    def downmix(self, left: np.ndarray, right: np.ndarray, columns_per_frame: int) -> np.ndarray:
        """The mid spectrum (1, columns, BINS) of two spectra, each band at the channels' mean power."""
        bins = np.array(self.edges)
        mid = (left + right) / 2
        mean = (fullband.band_energy(left, bins, columns_per_frame) + fullband.band_energy(right, bins,
                                                                                            columns_per_frame)) / 2
        gain = np.clip(np.sqrt(mean / np.maximum(fullband.band_energy(mid, bins, columns_per_frame), 1e-30)),
                       1.0, MAX_MIX_GAIN)
        mid *= fullband.per_column(gain, bins, columns_per_frame, mid.shape[1])
        return mid.astype(np.complex64)

    def upmix(self, mid: np.ndarray, codes: np.ndarray, columns_per_frame: int) -> np.ndarray:
        """Left and right spectra (2, columns, BINS) from the decoded mid (1, columns, BINS) and a chunk's codes
        (1, 2 bands, frames)."""
        bands = self.bands
        ratio = 10.0 ** (codes[0, :bands] * self.step_db / 10)
        c1, c2 = np.sqrt(2 * ratio / (1 + ratio)), np.sqrt(2 / (1 + ratio))
        half = np.arccos(ICC_LEVELS[codes[0, bands:]]) / 2
        turn = np.arctan(np.tan(half) * (c2 - c1) / (c2 + c1))
        bins = np.array(self.edges)
        weights = [fullband.per_column(value, bins, columns_per_frame, mid.shape[1]) for value in (
            c1 * np.cos(half + turn), c1 * np.sin(half + turn), c2 * np.cos(turn - half), c2 * np.sin(turn - half))]
        turned = self.decorrelated(mid, columns_per_frame)[0]
        left = weights[0] * mid[0] + weights[1] * turned
        right = weights[2] * mid[0] + weights[3] * turned
        return np.stack([left, right]).astype(np.complex64)

    def decorrelated(self, mid: np.ndarray, columns_per_frame: int) -> np.ndarray:
        """The decorrelated copy ``D`` (1, columns, BINS) of the mid: each bin turned by a fixed phase, made a
        waveform and analysed again (turning alone loses about 40 % of the power in synthesis), its part along the
        mid removed per band and frame, and its power set to the mid's per bin and frame."""
        bins = np.array(self.edges)
        columns = mid.shape[1]
        copy = fullband.analyze(fullband.synthesize(mid * _DECORRELATING_PHASES))[:, :columns]
        power = fullband.band_energy(mid, bins, columns_per_frame)
        along = fullband.band_cross(copy, mid, bins, columns_per_frame) / np.maximum(power, 1e-30)
        copy -= fullband.per_column(along, bins, columns_per_frame, columns) * mid
        every_bin = np.arange(fullband.BINS + 1)  # power matched bin by bin, so the copy keeps the mid's spectrum
        mid_power, copy_power = (fullband.band_energy(x, every_bin, columns_per_frame) for x in (mid, copy))
        gain = np.where(copy_power > 0, np.minimum(np.sqrt(mid_power / np.maximum(copy_power, 1e-30)),
                                                   MAX_DECORRELATOR_GAIN), 0.0)
        return (copy * fullband.per_column(gain, every_bin, columns_per_frame, columns)).astype(np.complex64)
