"""The decoder's STFT synthesis and Griffin-Lim in numpy: what :mod:`nac.model.stft` does in torch, without
importing torch, for the numpy decoder (:mod:`nac.model.inference`).

The framing, window and least-squares synthesis are :mod:`nac.model.stft`'s
exactly; results agree with it to float32 rounding.
"""

from __future__ import annotations

import functools

import numpy as np

from .scale import LOG_EPS, MAX_LOG_MAGNITUDE

# Squared-window sums below this are treated as this (only where no window reaches).
MIN_ENVELOPE = 1e-11


@functools.lru_cache(maxsize=16)
def _window(n_fft: int) -> np.ndarray:
    """The periodic Hann window, computed as torch's ``hann_window`` is."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """(B, F, n) frames placed ``hop`` apart and summed: (B, (F - 1) * hop + n rounded up to hop)."""
    batch, count, size = frames.shape
    pieces = -(-size // hop)
    if pieces * hop != size:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, pieces * hop - size)))
    frames = frames.reshape(batch, count, pieces, hop)
    out = np.zeros((batch, count + pieces - 1, hop), frames.dtype)
    for piece in range(pieces):
        out[:, piece : piece + count] += frames[:, :, piece]
    return out.reshape(batch, -1)


@functools.lru_cache(maxsize=64)
def _envelope(n_fft: int, hop: int, frames: int) -> np.ndarray:
    squared = np.broadcast_to(np.square(_window(n_fft)), (1, frames, n_fft))
    return np.maximum(_overlap_add(squared, hop)[0], np.float32(MIN_ENVELOPE))


def magnitude_from_log(log_mag: np.ndarray) -> np.ndarray:
    return np.maximum(np.exp(np.minimum(log_mag, np.float32(MAX_LOG_MAGNITUDE))) - np.float32(LOG_EPS), 0)


class Spectral:
    """STFT analysis and synthesis on frame-major complex spectra (B, frames, bins)."""

    def __init__(self, n_fft: int, hop: int):
        self.n_fft, self.hop = n_fft, hop
        self.window = _window(n_fft)
        self.scaled_window = self.window * np.float32(n_fft)  # undoes ihfft's 1 / n

    def analyze(self, wave: np.ndarray, frames: int) -> np.ndarray:
        """Frame-major spectrum (B, frames, bins) of ``wave`` (B, frames * hop)."""
        half = self.n_fft // 2
        padded = np.pad(wave, ((0, 0), (half, half)), mode="reflect")
        framed = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=-1)[:, :: self.hop][:, :frames]
        # rfft(x) = conj(ihfft(n x)); numpy's ihfft runs several times faster than its rfft on float32
        spec = np.fft.ihfft(framed * self.scaled_window, axis=-1).astype(np.complex64, copy=False)
        return np.conjugate(spec, out=spec)

    def synthesize(self, spec: np.ndarray, length: int) -> np.ndarray:
        """Waveform (B, length) from a frame-major spectrum."""
        frames = spec.shape[1]
        segments = np.fft.irfft(spec, n=self.n_fft, axis=-1).astype(np.float32, copy=False)
        segments *= self.window
        summed = _overlap_add(segments, self.hop)
        half = self.n_fft // 2
        wave = (summed / _envelope(self.n_fft, self.hop, frames))[:, half : half + length]
        if wave.shape[-1] < length:
            wave = np.pad(wave, ((0, 0), (0, length - wave.shape[-1])))
        return wave

    def griffin_lim(self, magnitude: np.ndarray, phase: np.ndarray, length: int, iters: int,
                    momentum: float = 0.99, slack: np.ndarray | None = None) -> np.ndarray:
        """:func:`nac.model.stft.griffin_lim` on (B, bins, frames) magnitude and phase: the waveform."""
        magnitude = np.ascontiguousarray(magnitude.transpose(0, 2, 1))
        phase = phase.transpose(0, 2, 1)
        spec = np.empty(magnitude.shape, np.complex64)
        spec.real, spec.imag = np.cos(phase) * magnitude, np.sin(phase) * magnitude
        frames = magnitude.shape[1]
        if iters == 0:
            return self.synthesize(spec, length)
        lowest = highest = magnitude
        if slack is not None:
            slack = np.ascontiguousarray(slack.transpose(0, 2, 1))
            lowest, highest = magnitude * np.exp(-slack), magnitude * np.exp(slack)
        free = slack is not None or bool(np.isnan(magnitude).any())  # as nac.model.stft's step does, where it is NaN
        keep = np.float32(momentum / (1.0 + momentum))
        previous = None
        scale = np.empty(magnitude.shape, np.float32)
        for _ in range(iters):
            rebuilt = self.analyze(self.synthesize(spec, frames * self.hop), frames)
            if previous is None:
                direction = rebuilt.copy()
            else:
                direction = np.multiply(previous, -keep, out=previous)
                direction += rebuilt
            target = lowest
            if free:  # the rebuilt magnitude held within [lowest, highest]; a NaN bound holds nothing
                target = np.abs(rebuilt)
                np.fmin(np.fmax(target, lowest, out=target), highest, out=target)
            size = np.abs(direction)
            defined = size > 0  # False for 0 and NaN: such bins become 0, as in nac.model.stft's step
            scale.fill(0)
            np.divide(target, size, out=scale, where=defined)
            direction *= scale
            np.copyto(direction, 0, where=~defined)
            spec, previous = direction, rebuilt
        return self.synthesize(spec, length)
