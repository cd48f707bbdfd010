"""The high-band layer: the band above the core's, rebuilt from the core's top octave and a coded envelope
(format_spec.md section 7.5).

The core codes audio up to ``start`` (about 7.5 kHz at a 16 kHz core). Above
it, up to ``stop``, the layer sends per band and latent frame the band's mean
power in steps of ``step`` dB; the decoder copies the ``width`` bins below
``start`` upwards, again and again (an even shift, so a copied bin's phase
keeps advancing as a real partial's would from one 512-sample hop to the
next), scales each band to its coded power, and fills a band whose copy is
nearly silent with noise instead. Bins from ``stop`` up are zero.

Codes: a chunk's first frame carries each band's level less ``FLOOR_DB``,
later frames the change from the frame before; levels are held within
``MIN_DB .. MAX_DB``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fullband

MIN_DB, MAX_DB = -120.0, 60.0  # band powers are coded within these levels (re the STFT's full scale)
FLOOR_DB = -30.0  # the level a chunk's first frame is coded against (about that of music's high band)
NOISE_BELOW_DB = 40.0  # a band whose copy is this much weaker than its coded power is filled with noise
MAX_BANDS = 64
_NOISE_SEED = 0x6E6163  # the decoder's noise is the same on every run


@dataclass(frozen=True)
class HighBandLayer:
    """The high-band layer as a header describes it (bins of the 48 kHz fullband STFT)."""

    edges: tuple[int, ...]  # band edges: band b holds bins edges[b] .. edges[b + 1] - 1; edges[0] is the start
    width: int  # bins copied from below the start (even)
    step_db: float  # level step in dB

    @property
    def start(self) -> int:
        return self.edges[0]

    @property
    def stop(self) -> int:
        return self.edges[-1]

    @property
    def bands(self) -> int:
        return len(self.edges) - 1

    def problem(self) -> str | None:
        """Why these parameters cannot describe a layer, or None."""
        edges = self.edges
        if not 2 <= len(edges) <= MAX_BANDS + 1 or any(b <= a for a, b in zip(edges, edges[1:])):
            return "high-band edges must rise, with 1 to 64 bands"
        if edges[-1] > fullband.BINS - 1:
            return f"high-band edges must end at most at bin {fullband.BINS - 1}"
        if self.width < 2 or self.width % 2 or self.width > edges[0]:
            return "the high band's copy width must be even, at least 2 and at most its start bin"
        if not 0.25 <= self.step_db <= 12.0:
            return "the high band's level step must be 0.25..12 dB"
        return None

    @classmethod
    def spanning(cls, start_hz: float, stop_hz: float, bands: int, step_db: float) -> HighBandLayer:
        """Log-spaced bands from ``start_hz`` to ``stop_hz``, the copy one octave wide below the start."""
        edges = np.unique(fullband.band_bins(np.geomspace(start_hz, stop_hz, bands + 1)))
        width = int(edges[0]) // 2 // 2 * 2
        return cls(tuple(int(e) for e in edges), width, step_db)

    def floor_level(self) -> int:
        return round(FLOOR_DB / self.step_db)

    def levels(self, spec: np.ndarray, columns_per_frame: int) -> np.ndarray:
        """(C, bands, frames) band levels, in steps, of a fullband spectrum (C, frames * columns_per_frame, BINS)."""
        power = fullband.band_energy(spec, np.array(self.edges), columns_per_frame)
        return np.round(np.clip(10 * np.log10(power + 1e-30), MIN_DB, MAX_DB) / self.step_db).astype(np.int64)

    def codes(self, levels: np.ndarray) -> np.ndarray:
        """One chunk's codes from its frames' :meth:`levels`: the first frame against the floor, then changes.
        A change beyond the code range is followed as closely as it allows."""
        codes = np.empty_like(levels)
        previous = np.full(levels.shape[:-1], self.floor_level())
        for frame in range(levels.shape[-1]):
            codes[..., frame] = np.clip(levels[..., frame] - previous, -127, 127)
            previous = previous + codes[..., frame]
        return codes

    def power(self, codes: np.ndarray) -> np.ndarray:
        """Band powers (C, bands, frames) from a chunk's codes."""
        levels = np.cumsum(codes, axis=-1) + self.floor_level()
        return 10.0 ** (np.clip(levels * self.step_db, MIN_DB, MAX_DB) / 10)

    def apply(self, spec: np.ndarray, power: np.ndarray, columns_per_frame: int) -> np.ndarray:
        """``spec`` (C, columns, BINS) with the high band rebuilt to band powers (C, bands, frames)."""
        out = spec.copy()
        start, stop = self.start, self.stop
        offsets = np.arange(stop - start) % self.width
        out[..., start:stop] = spec[..., start - self.width + offsets]
        out[..., stop:] = 0
        columns = power.shape[-1] * columns_per_frame
        copied = fullband.band_energy(out[:, :columns], np.array(self.edges), columns_per_frame)
        silent = copied * 10 ** (NOISE_BELOW_DB / 10) < power
        if silent.any():
            noise = np.random.default_rng(_NOISE_SEED).standard_normal((2,) + out[:, :columns, start:stop].shape)
            fill = fullband.per_bin(silent, np.array(self.edges), columns_per_frame)
            band = out[:, :columns, start:stop]
            band[fill] = (noise[0] + 1j * noise[1])[fill] / np.sqrt(2)
            copied = fullband.band_energy(out[:, :columns], np.array(self.edges), columns_per_frame)
        out[..., start:stop] *= fullband.per_column(np.sqrt(power / np.maximum(copied, 1e-30)), np.array(self.edges),
                                                    columns_per_frame, out.shape[1])
        return out
