"""STFT analysis/synthesis and Griffin-Lim phase refinement (torch, no learning).

Framing rule shared by the model and the container: a signal of ``T`` samples
is zero-padded at the end to ``frames * hop`` samples where ``frames`` is a
multiple of the model's time stride and leaves at least ``n_fft // 2`` samples
of padding, so every real sample is covered by full window overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_EPS = 1e-5
# A Hann-window STFT of a full-scale signal stays below n_fft / 2 in magnitude;
# log-magnitudes above this bound (exp(7) ~ 1100) are clamped before use.
MAX_LOG_MAGNITUDE = 7.0


@dataclass(frozen=True)
class Stft:
    """A Hann-window STFT with ``n_fft`` bins and ``hop_length`` samples per frame."""

    n_fft: int = 512
    hop_length: int = 128

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def frame_count(self, samples: int, stride: int) -> int:
        """STFT frames used for ``samples`` samples: a multiple of ``stride`` (0 for 0)."""
        if samples <= 0:
            return 0
        block = self.hop_length * stride
        return math.ceil((samples + self.n_fft // 2) / block) * stride

    def _window(self, device: torch.device) -> torch.Tensor:
        return torch.hann_window(self.n_fft, periodic=True, device=device)

    def analyze(self, wave: torch.Tensor, frames: int) -> torch.Tensor:
        """Complex spectrum (B, bins, frames) of ``wave`` (B, T), padded per the framing rule."""
        padded = frames * self.hop_length
        wave = torch.nn.functional.pad(wave, (0, padded - wave.shape[-1]))
        spec = torch.stft(
            wave,
            self.n_fft,
            self.hop_length,
            window=self._window(wave.device),
            center=True,
            return_complex=True,
        )
        return spec[..., :frames]

    def synthesize(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Waveform (B, length) from a complex spectrum made by :meth:`analyze`."""
        frames = spec.shape[-1]
        # one zero frame stands in for the frame analyze() dropped at the end
        spec = torch.nn.functional.pad(spec, (0, 1))
        wave = torch.istft(
            spec,
            self.n_fft,
            self.hop_length,
            window=self._window(spec.device),
            center=True,
            length=frames * self.hop_length,
        )
        return wave[..., :length]


def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    return torch.log(spec.abs() + LOG_EPS)


def magnitude_from_log(log_mag: torch.Tensor) -> torch.Tensor:
    """Linear magnitude from :func:`log_magnitude`'s scale (clamped at the top)."""
    return (torch.exp(log_mag.clamp(max=MAX_LOG_MAGNITUDE)) - LOG_EPS).clamp_min(0.0)


def from_log_magnitude(log_mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Complex spectrum from log-magnitude and phase (radians)."""
    return torch.polar(magnitude_from_log(log_mag), phase)


def griffin_lim(
    stft: Stft, magnitude: torch.Tensor, phase: torch.Tensor, length: int, iters: int, momentum: float = 0.99
) -> torch.Tensor:
    """Refine ``phase`` for ``magnitude`` with fast Griffin-Lim; returns the waveform.

    Each iteration projects onto consistent spectra (iSTFT then STFT) and keeps
    the target magnitude; the momentum term is the "fast" variant of the
    algorithm (Perraudin et al., 2013), which converges in far fewer steps.
    """
    frames = magnitude.shape[-1]
    length_padded = frames * stft.hop_length
    keep = momentum / (1.0 + momentum)
    angles = torch.polar(torch.ones_like(magnitude), phase)
    previous = None
    for _ in range(iters):
        rebuilt = stft.analyze(stft.synthesize(angles.mul_(magnitude), length_padded), frames)
        angles = rebuilt.clone() if previous is None else torch.sub(rebuilt, previous, alpha=keep)
        angles.div_(angles.abs().clamp_(min=1e-12))
        previous = rebuilt
    return stft.synthesize(angles.mul_(magnitude), length)
