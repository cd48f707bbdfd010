"""STFT analysis/synthesis and Griffin-Lim phase refinement (torch, no learning).

Framing rule shared by the model and the container: a signal of ``T`` samples
is zero-padded at the end to ``frames * hop`` samples where ``frames`` is a
multiple of the model's time stride and leaves at least ``n_fft // 2`` samples
of padding, so every real sample is covered by full window overlap.

Analysis frames the reflect-padded signal (frame ``f`` is centred on sample
``f * hop``) and takes real FFTs; synthesis is the least-squares inverse:
windowed inverse FFTs overlap-added and divided by the summed squared window.
Spectra are (B, bins, frames) views of frame-major storage, so the FFTs run
along contiguous memory and element-wise work streams through it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit

from .config import frame_count
from .scale import LOG_EPS, MAX_LOG_MAGNITUDE
from .spectral import MIN_ENVELOPE


# The caches hold ordinary tensors even when first filled under inference mode,
# so training can use them afterwards.
@functools.lru_cache(maxsize=16)
def _window(n_fft: int) -> torch.Tensor:
    with torch.inference_mode(False):
        return torch.hann_window(n_fft, periodic=True)


@functools.lru_cache(maxsize=64)
def _envelope(n_fft: int, hop: int, frames: int) -> torch.Tensor:
    """Overlap-added squared window of ``frames`` frames, clamped away from 0."""
    with torch.inference_mode(False):
        squared = _window(n_fft).square().expand(1, frames, n_fft)
        return _overlap_add(squared, hop).squeeze(0).clamp_(min=MIN_ENVELOPE)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, F, n) frames placed ``hop`` apart and summed: (B, (F - 1) * hop + n rounded up to hop)."""
    batch, count, size = frames.shape
    pieces = -(-size // hop)
    if pieces * hop != size:
        frames = torch.nn.functional.pad(frames, (0, pieces * hop - size))
    frames = frames.reshape(batch, count, pieces, hop)
    out = frames.new_zeros(batch, count + pieces - 1, hop)
    for piece in range(pieces):
        out[:, piece : piece + count] += frames[:, :, piece]
    return out.reshape(batch, -1)


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
        return frame_count(samples, self.n_fft, self.hop_length, stride)

    def analyze(self, wave: torch.Tensor, frames: int) -> torch.Tensor:
        """Complex spectrum (B, bins, frames) of ``wave`` (B, T), padded per the framing rule."""
        half = self.n_fft // 2
        if wave.shape[-1] != frames * self.hop_length:
            wave = torch.nn.functional.pad(wave, (0, frames * self.hop_length - wave.shape[-1]))
        padded = torch.nn.functional.pad(wave.unsqueeze(1), (half, half), mode="reflect").squeeze(1)
        framed = padded.unfold(-1, self.n_fft, self.hop_length)[:, :frames]
        window = _window(self.n_fft).to(wave.device)
        return torch.fft.rfft(framed * window, dim=-1).transpose(1, 2)

    def synthesize(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Waveform (B, length) from a complex spectrum made by :meth:`analyze`."""
        frames = spec.shape[-1]
        window = _window(self.n_fft).to(spec.device)
        segments = torch.fft.irfft(spec.transpose(1, 2), n=self.n_fft, dim=-1).mul_(window)
        summed = _overlap_add(segments, self.hop_length)
        envelope = _envelope(self.n_fft, self.hop_length, frames).to(spec.device)
        half = self.n_fft // 2
        wave = (summed / envelope)[:, half : half + length]
        if wave.shape[-1] < length:  # only when hop > n_fft / 2
            wave = torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
        return wave


def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    return torch.log(spec.abs() + LOG_EPS)


def magnitude_from_log(log_mag: torch.Tensor) -> torch.Tensor:
    """Linear magnitude from :func:`log_magnitude`'s scale (clamped at the top)."""
    return (torch.exp(log_mag.clamp(max=MAX_LOG_MAGNITUDE)) - LOG_EPS).clamp_min(0.0)


def polar(magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``torch.polar`` in the layout of ``magnitude``, about 3x faster on a CPU."""
    return torch.complex(torch.cos(phase).mul_(magnitude), torch.sin(phase).mul_(magnitude))


def from_log_magnitude(log_mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Complex spectrum from log-magnitude and phase (radians)."""
    return polar(magnitude_from_log(log_mag), phase)


def griffin_lim(
    stft: Stft,
    magnitude: torch.Tensor,
    phase: torch.Tensor,
    length: int,
    iters: int,
    momentum: float = 0.99,
    slack: torch.Tensor | None = None,
) -> torch.Tensor:
    """Refine ``phase`` for ``magnitude`` with fast Griffin-Lim; returns the waveform.

    Each iteration projects onto consistent spectra (iSTFT then STFT) and keeps
    the target magnitude; the momentum term is the "fast" variant of the
    algorithm (Perraudin et al., 2013), which converges in far fewer steps.
    With ``slack`` (log-magnitude, broadcastable to ``magnitude``) each bin
    keeps the rebuilt magnitude where it lies within ``exp(+-slack)`` of the
    target, and the nearer edge otherwise: a coded magnitude only says that
    the truth lies in its quantization cell, and a spectrum free to move
    inside the cells can be more nearly consistent.
    Work runs in the frame-major layout :meth:`Stft.analyze` returns; it is
    differentiable, so training can judge the waveform the decoder will output.
    """
    frames = magnitude.shape[-1]
    length_padded = frames * stft.hop_length
    keep = momentum / (1.0 + momentum)
    magnitude = magnitude.transpose(1, 2).contiguous().transpose(1, 2)
    spec = polar(magnitude, phase.transpose(1, 2).contiguous().transpose(1, 2))
    lowest = highest = magnitude
    if slack is not None:
        lowest, highest = magnitude * torch.exp(-slack), magnitude * torch.exp(slack)
    if torch.is_grad_enabled() and (magnitude.requires_grad or phase.requires_grad):
        return _griffin_lim_tracked(stft, spec, lowest, highest, slack is not None, length, iters, keep)
    # frame-major arrays for the compiled projection
    lowest, highest = (np.ascontiguousarray(x.transpose(1, 2).numpy()) for x in (lowest, highest))
    previous = np.zeros(lowest.shape, np.complex64)
    for i in range(iters):
        rebuilt = stft.analyze(stft.synthesize(spec, length_padded), frames)
        current = rebuilt.transpose(1, 2).numpy()
        projected = np.empty_like(current)
        _project(current.reshape(-1), previous.reshape(-1), lowest.reshape(-1), highest.reshape(-1),
                 keep if i else 0.0, projected.reshape(-1))
        spec, previous = torch.from_numpy(projected).transpose(1, 2), current
    return stft.synthesize(spec, length)


@njit(cache=True)
def _project(rebuilt: np.ndarray, previous: np.ndarray, lowest: np.ndarray, highest: np.ndarray, keep: float,
             out: np.ndarray) -> None:
    """One fast Griffin-Lim step per bin: the direction of ``rebuilt - keep * previous`` at the magnitude
    of ``rebuilt`` held within ``[lowest, highest]`` (0 where the direction is undefined)."""
    for i in range(rebuilt.shape[0]):
        real = rebuilt[i].real - keep * previous[i].real
        imag = rebuilt[i].imag - keep * previous[i].imag
        size = np.sqrt(real * real + imag * imag)
        if size > 0:
            target = np.sqrt(rebuilt[i].real * rebuilt[i].real + rebuilt[i].imag * rebuilt[i].imag)
            scale = min(max(target, lowest[i]), highest[i]) / size
            out[i] = complex(real * scale, imag * scale)
        else:
            out[i] = 0


def _griffin_lim_tracked(stft: Stft, spec: torch.Tensor, lowest: torch.Tensor, highest: torch.Tensor,
                         slack: bool, length: int, iters: int, keep: float) -> torch.Tensor:
    """:func:`griffin_lim`'s iterations in differentiable torch operations, for training."""
    frames = spec.shape[-1]
    previous = None
    for _ in range(iters):
        rebuilt = stft.analyze(stft.synthesize(spec, frames * stft.hop_length), frames)
        direction = torch.sgn(rebuilt if previous is None else torch.sub(rebuilt, previous, alpha=keep))
        spec = direction * (rebuilt.abs().clamp(lowest, highest) if slack else lowest)
        previous = rebuilt
    return stft.synthesize(spec, length)
