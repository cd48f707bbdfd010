"""The spec1d decoder in numpy: latents -> (hidden features, log-magnitude, phase) -> waveform, without torch.

Decoding a file needs only the decoder half of a model, its refiner and
phase initializer, and the phase iterations: a few convolutions per frame.
Importing torch takes longer than decoding a minute of speech, so decoding
runs here, from the same safetensors weights; :mod:`nac.model.networks` stays
the reference (training, encoding) and the two agree to float32 rounding.
Each convolution is one matrix product with its taps stacked, the taps then
shifted into place.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from .config import ModelConfig
from .spectral import Spectral, magnitude_from_log

REFINER_BLOCK = 64  # STFT frames the refiner works on at once
# erf by Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7, float32's rounding at 1)
_ERF_P = np.float32(0.3275911)
_ERF_A = [np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)]


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU, as torch's ``nn.GELU()``: ``x / 2 (1 + erf(x / sqrt 2))``."""
    z = np.abs(x) * np.float32(1 / np.sqrt(2))
    t = 1 / (1 + _ERF_P * z)
    poly = _ERF_A[0]
    for a in _ERF_A[1:]:
        poly = poly * t + a
    erf_abs = 1 - poly * t * np.exp(-z * z)
    return np.float32(0.5) * x * (1 + np.copysign(erf_abs, x))


def _layer(kind, weights: dict, name: str, *args):
    """Layer ``kind`` built from the tensors ``{name}.weight`` and ``{name}.bias``."""
    return kind(weights[f"{name}.weight"], weights[f"{name}.bias"], *args)


class Conv1d:
    """A stride-1 ``nn.Conv1d`` with zero padding that keeps the length (kernel 1 or 3)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, dilation: int = 1):
        out, _, taps = weight.shape
        self.taps, self.dilation, self.out = taps, dilation, out
        self.weight = np.ascontiguousarray(weight.transpose(2, 0, 1).reshape(taps * out, -1))
        self.bias = bias[:, None]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        stacked = np.matmul(self.weight, x)  # (B, taps * out, T)
        if self.taps == 1:
            return stacked + self.bias
        d, o = self.dilation, self.out
        y = stacked[:, o : 2 * o] + self.bias
        y[:, :, d:] += stacked[:, :o, :-d]
        y[:, :, :-d] += stacked[:, 2 * o :, d:]
        return y


class ConvTranspose1d:
    """``nn.ConvTranspose1d(kernel 4, stride 2, padding 1)``: twice the length."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        _, out, taps = weight.shape
        self.out = out
        self.weight = np.ascontiguousarray(weight.transpose(2, 1, 0).reshape(taps * out, -1))
        self.bias = bias[:, None]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch, _, length = x.shape
        o = self.out
        stacked = np.matmul(self.weight, x)  # tap j of input t lands on output 2t + j - 1
        y = np.empty((batch, o, length, 2), np.float32)
        y[..., 0] = stacked[:, o : 2 * o]
        y[:, :, 1:, 0] += stacked[:, 3 * o :, :-1]
        y[..., 1] = stacked[:, 2 * o : 3 * o]
        y[:, :, :-1, 1] += stacked[:, :o, 1:]
        return y.reshape(batch, o, 2 * length) + self.bias


class Conv2d:
    """A stride-1 ``nn.Conv2d`` with zero padding that keeps the size, dilated along the first axis: per tap along
    it, one product over the time taps stacked with the channels."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, dilation: int = 1):
        out, channels, height, width = weight.shape
        self.height, self.width, self.dilation = height, width, dilation
        self.weight = np.ascontiguousarray(weight.transpose(2, 0, 3, 1).reshape(height, out, width * channels))
        self.bias = bias[:, None, None]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch, channels, rows, columns = x.shape
        reach = self.width // 2
        padded = np.pad(x, ((0, 0), (0, 0), (0, 0), (reach, reach)))
        taps = np.concatenate([padded[..., j : j + columns] for j in range(self.width)], axis=1)
        taps = taps.reshape(batch, self.width * channels, rows * columns)
        y = np.broadcast_to(self.bias, (batch, len(self.bias), rows, columns)).copy()
        for i in range(self.height):
            shift = (i - self.height // 2) * self.dilation  # output row r takes input row r + shift
            if abs(shift) >= rows:
                continue  # the tap sees only padding
            part = np.matmul(self.weight[i], taps).reshape(batch, -1, rows, columns)
            y[:, :, max(0, -shift) : rows - max(0, shift)] += part[:, :, max(0, shift) : rows - max(0, -shift)]
        return y


class ResBlock:
    """``x + conv1x1(gelu(conv3(gelu(x))))``."""

    def __init__(self, weights: dict, prefix: str, dilation: int = 1):
        self.conv = _layer(Conv1d, weights, f"{prefix}.body.1", dilation)
        self.mix = _layer(Conv1d, weights, f"{prefix}.body.3")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x + self.mix(gelu(self.conv(gelu(x))))


def _stages(config: ModelConfig, weights: dict) -> list:
    """The decoder's layers before its output layer, as :class:`nac.model.networks.Spec1dCodec` builds them."""
    stages = [_layer(Conv1d, weights, "decoder.0"), ResBlock(weights, "decoder.1")]
    index = 2
    for _ in range(config.downsample):
        stages += [gelu, _layer(ConvTranspose1d, weights, f"decoder.{index + 1}"),
                   ResBlock(weights, f"decoder.{index + 2}", 3)]
        index += 3
    return stages + [gelu]


class Refiner:
    """:class:`nac.model.networks.LowBandRefiner`."""

    def __init__(self, weights: dict, bins: int):
        self.bins = bins
        self.layers = [_layer(Conv2d, weights, "refiner.net.0"),
                       _layer(Conv2d, weights, "refiner.net.2", 1),
                       _layer(Conv2d, weights, "refiner.net.4", 2),
                       _layer(Conv2d, weights, "refiner.net.6")]

    def __call__(self, log_mag: np.ndarray) -> np.ndarray:
        low = log_mag[:, : self.bins]
        centred = low - low.mean(axis=1, keepdims=True)
        position = np.broadcast_to(np.linspace(-1.0, 1.0, self.bins, dtype=np.float32)[None, :, None], low.shape)
        features = np.stack([centred, position], axis=1)
        frames = low.shape[-1]
        correction = np.empty_like(low)
        reach = len(self.layers)  # each layer reaches one frame to either side
        for begin in range(0, frames, REFINER_BLOCK):  # blocks that stay in cache, each with its context
            end = min(frames, begin + REFINER_BLOCK)
            first, last = max(0, begin - reach), min(frames, end + reach)
            x = features[..., first:last]
            for i, layer in enumerate(self.layers):
                x = layer(gelu(x) if i else x)
            correction[..., begin:end] = x[:, 0, :, begin - first : end - first]
        return np.concatenate([low + correction, log_mag[:, self.bins :]], axis=1)


class PhaseInit:
    """:class:`nac.model.networks.LowBandPhase`."""

    def __init__(self, weights: dict, bins: int, magnitude_bins: int):
        self.bins, self.magnitude_bins = bins, magnitude_bins
        self.first = _layer(Conv1d, weights, "net.0")
        self.blocks = [ResBlock(weights, f"net.{i}", 2 ** (i - 1)) for i in (1, 2, 3)]
        self.last = _layer(Conv1d, weights, "net.5")

    def __call__(self, hidden: np.ndarray, log_mag: np.ndarray, phase: np.ndarray) -> np.ndarray:
        low_mag = log_mag[:, : self.magnitude_bins]
        low_phase = phase[:, : self.bins]
        cos, sin = np.cos(low_phase), np.sin(low_phase)
        x = self.first(np.concatenate([hidden, low_mag - low_mag.mean(axis=1, keepdims=True), cos, sin], axis=1))
        for block in self.blocks:
            x = block(x)
        change = self.last(gelu(x))
        turned = np.arctan2(sin + change[:, self.bins :], cos + change[:, : self.bins])
        return np.concatenate([turned, phase[:, self.bins :]], axis=1)


def _quiet(method):
    """``method`` with numpy's floating-point warnings off: valid but absurd latents overflow inside the networks
    (as they do in torch, silently); the decoder's output is made finite after."""

    @functools.wraps(method)
    def quiet(*args, **kwargs):
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)

    return quiet


def _conv(shapes: dict, name: str, out: int, inputs: int, *kernel: int) -> None:
    shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, inputs, *kernel), (out,)


def _block(shapes: dict, name: str, width: int) -> None:
    _conv(shapes, f"{name}.body.1", width, width, 3)
    _conv(shapes, f"{name}.body.3", width, width, 1)


def spec1d_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a spec1d model of ``config`` and its shape, as :class:`nac.model.networks.Spec1dCodec`
    holds them: what a weights file must hold exactly."""
    bins, width, latent = config.n_fft // 2 + 1, config.width, config.latent_channels
    shapes: dict[str, tuple[int, ...]] = {}
    conv, block = functools.partial(_conv, shapes), functools.partial(_block, shapes, width=width)
    for half, first, last in (("encoder", (width, 3 * bins, 1), (latent, width, 3)),
                              ("decoder", (width, latent, 3), (3 * bins, width, 1))):
        conv(f"{half}.0", *first)
        block(f"{half}.1")
        for stage in range(config.downsample):
            conv(f"{half}.{3 * stage + 3}", width, width, 4)  # a transposed convolution's (in, out) are equal here
            block(f"{half}.{3 * stage + 4}")
        conv(f"{half}.{3 * config.downsample + 3}", *last)
    if config.refine_channels:
        channels = config.refine_channels
        for index, inputs in ((0, 2), (2, channels), (4, channels)):
            conv(f"refiner.net.{index}", channels, inputs, 5, 3)
        conv("refiner.net.6", 1, channels, 3, 3)
    return shapes


def phase_init_shapes(hidden: int, bins: int, magnitude_bins: int, channels: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of a phase initializer of these sizes and its shape (:class:`nac.model.networks.LowBandPhase`)."""
    shapes: dict[str, tuple[int, ...]] = {}
    _conv(shapes, "net.0", channels, hidden + magnitude_bins + 2 * bins, 3)
    for index in (1, 2, 3):
        _block(shapes, f"net.{index}", channels)
    _conv(shapes, "net.5", 2 * bins, channels, 1)
    return shapes


class NumpyDecoder:
    """A spec1d model's decoding stages in numpy, with the interface :class:`nac.codec.Synthesis` drives."""

    def __init__(self, config: ModelConfig, weights: dict, phase_init: tuple[dict, int, int] | None = None):
        """``weights``: the model's tensors by name (float arrays); ``phase_init``: the initializer's tensors,
        bins and magnitude bins."""
        if config.arch != "spec1d":
            raise ValueError("the numpy decoder runs spec1d models only")
        weights = {name: np.asarray(value, np.float32) for name, value in weights.items()}
        self.config = config
        self.bins = config.n_fft // 2 + 1
        self.stages = _stages(config, weights)
        last = 3 * config.downsample + 3
        self.head = _layer(Conv1d, weights, f"decoder.{last}")
        self.refiner = Refiner(weights, config.refine_bins) if config.refine_channels else None
        self.phase_init = None
        if phase_init is not None:
            tensors, bins, magnitude_bins = phase_init
            self.phase_init = _quiet(PhaseInit({k: np.asarray(v, np.float32) for k, v in tensors.items()}, bins,
                                               magnitude_bins))
        self.spectral = Spectral(config.n_fft, config.hop_length)

    @_quiet
    def decode_hidden(self, latent: np.ndarray) -> np.ndarray:
        """Latents (B, C, 1, T') -> the decoder's features (B, width, T' * time_stride)."""
        x = np.ascontiguousarray(latent[:, :, 0], np.float32)
        for stage in self.stages:
            x = stage(x)
        return x

    @_quiet
    def decode_head(self, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log-magnitude, phase), each (B, bins, frames), before the refiner."""
        out = self.head(hidden).reshape(hidden.shape[0], 3, self.bins, hidden.shape[-1])
        return out[:, 0], np.arctan2(out[:, 2], out[:, 1])

    @_quiet
    def spectrum_from_hidden(self, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log-magnitude, phase), each (B, bins, frames), the refiner applied."""
        log_mag, phase = self.decode_head(hidden)
        if self.refiner is not None:
            log_mag = self.refiner(log_mag)
        return log_mag, phase

    @_quiet
    def synthesize(self, log_mag: np.ndarray, phase: np.ndarray, length: int, phase_iters: int,
                   slack: np.ndarray | None = None) -> np.ndarray:
        """Waveform (B, length) after ``phase_iters`` phase iterations from ``phase``."""
        return self.spectral.griffin_lim(magnitude_from_log(log_mag), phase, length, phase_iters, slack=slack)

    @contextlib.contextmanager
    def parallel(self) -> Iterator[int]:
        """Windows to decode at once: ``OMP_NUM_THREADS`` if it is a whole number above 0 (as torch reads it),
        else every core."""
        setting = os.environ.get("OMP_NUM_THREADS", "").strip()
        with threadpool_limits(limits=1, user_api="blas"):  # each window's products on its own thread
            yield int(setting) if setting.isdigit() and int(setting) > 0 else os.cpu_count() or 1
