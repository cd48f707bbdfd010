"""The nac networks: tensors only (spectra in, latents out, and back), no coding and no bytes.

Two architectures share one interface and one frozen config:

* ``seed2d``: the research prototype's design. The STFT as a two-channel image
  [log-magnitude, phase] -> Conv2d stride-2 stack + bottleneck ResBlock ->
  latent (C, F', T'); mirrored ConvTranspose2d decoder predicting magnitude
  and phase.
* ``spec1d``: frequency bins as channels, 1-D convolutions over time only.
  Far cheaper per step on a CPU, so it trains further in the same time.

Both decoders predict log-magnitude and phase (as a unit vector). An optional
refiner (``refine_channels`` > 0) then corrects the low band's log-magnitude
with small 2-D convolutions over (frequency, time). At decode time the
predicted phase starts a few fast Griffin-Lim iterations (``phase_iters``; 0
keeps the network's phase as it is). :mod:`nac.codec` runs the decoding stages in order.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .stft import from_log_magnitude, griffin_lim, log_magnitude, magnitude_from_log


class ResBlock(nn.Module):
    """x + conv1x1(gelu(conv_k(gelu(x)))): the bottleneck block, 1-D or 2-D."""

    def __init__(self, channels: int, dims: int, dilation: int = 1):
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.body = nn.Sequential(
            nn.GELU(),
            conv(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.GELU(),
            conv(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LowBandRefiner(nn.Module):
    """Residual correction of the lowest ``bins`` log-magnitude bins by 2-D convolutions.

    A spec1d frame's spectrum is a linear mix of ``width`` learned shapes, which
    cannot place narrow harmonics at every pitch: under ~1 kHz the decoded
    harmonics come out blurred (valleys ~8 dB too high; tools/diagnose.py). A
    convolution along frequency is the same at every bin, so one small kernel
    can sharpen harmonics wherever they lie. It sees each frame's low band less
    its mean (so it is level-invariant) and the bins' position; its last layer
    starts at zero, so a trained model gains it as an identity.
    """

    def __init__(self, bins: int, channels: int):
        super().__init__()
        self.bins = bins
        layers: list[nn.Module] = [nn.Conv2d(2, channels, (5, 3), padding=(2, 1))]
        for dilation in (1, 2):
            layers += [nn.GELU(), nn.Conv2d(channels, channels, (5, 3), padding=(2 * dilation, 1),
                                            dilation=(dilation, 1))]
        layers += [nn.GELU(), nn.Conv2d(channels, 1, 3, padding=1)]
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, log_mag: torch.Tensor) -> torch.Tensor:
        low = log_mag[:, : self.bins]
        centred = low - low.mean(dim=1, keepdim=True)
        position = torch.linspace(-1.0, 1.0, self.bins, device=low.device, dtype=low.dtype)
        position = position.view(1, self.bins, 1).expand_as(low)
        # channels-last input: oneDNN's fast path for few channels (2.5x faster on a CPU)
        features = torch.stack([centred, position], dim=1).contiguous(memory_format=torch.channels_last)
        correction = self.net(features).squeeze(1)
        return torch.cat([low + correction, log_mag[:, self.bins :]], dim=1)


class LowBandPhase(nn.Module):
    """A better starting phase for the phase iterations in the lowest ``bins`` bins.

    Griffin-Lim started from the phase head's estimate settles on a wrong
    phase most often under ~1 kHz, and there the start matters most: started
    from the original phase under 1 kHz (noisy, even) it gains ~0.1 PESQ-WB at
    24 kbps. This net sees what the decoder knows: its network's last hidden
    features, the synthesized log-magnitude of the lowest ``magnitude_bins``
    bins (less each frame's mean, so it is level-invariant) and the head's
    phase as (cos, sin); it adds to that (cos, sin). Its last layer starts at
    zero, so it starts as the identity. A model gains one from a companion
    weights file, so that streams coded before it decode better unchanged.
    """

    def __init__(self, hidden: int, bins: int, magnitude_bins: int, channels: int):
        super().__init__()
        self.bins, self.magnitude_bins = bins, magnitude_bins
        self.net = nn.Sequential(
            nn.Conv1d(hidden + magnitude_bins + 2 * bins, channels, 3, padding=1),
            ResBlock(channels, 1), ResBlock(channels, 1, 2), ResBlock(channels, 1, 4),
            nn.GELU(), nn.Conv1d(channels, 2 * bins, 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, hidden: torch.Tensor, log_mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """The phase (B, bins, T) with its lowest ``bins`` bins replaced."""
        low_mag = log_mag[:, : self.magnitude_bins]
        cos, sin = torch.cos(phase[:, : self.bins]), torch.sin(phase[:, : self.bins])
        features = torch.cat([hidden, low_mag - low_mag.mean(dim=1, keepdim=True), cos, sin], dim=1)
        change_cos, change_sin = self.net(features).chunk(2, dim=1)
        return torch.cat([torch.atan2(sin + change_sin, cos + change_cos), phase[:, self.bins :]], dim=1)


class _Codec(nn.Module):
    """Shared STFT front end, latent interface, low-band refiner, phase initializer and synthesis."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.stft = config.stft
        self.refiner = (
            LowBandRefiner(config.refine_bins, config.refine_channels) if config.refine_channels else None
        )
        self.phase_init: LowBandPhase | None = None  # set from a companion file (nac.model.zoo)

    def spectrum(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex STFT (B, bins, frames) framed for this model's stride."""
        frames = self.stft.frame_count(wave.shape[-1], self.config.time_stride)
        return self.stft.analyze(wave, frames)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Latent (B, C, H, T') of ``wave`` (B, T); T' = frames / time_stride."""
        spec = self.spectrum(wave)
        return self.encode_spectrum(spec)

    def decode_spectrum(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted (log-magnitude, phase), each (B, bins, T' * time_stride)."""
        return self.spectrum_from_hidden(self.decode_hidden(latent))

    def spectrum_from_hidden(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`decode_spectrum` from the decoder network's features (:meth:`decode_hidden`)."""
        log_mag, phase = self.decode_head(hidden)
        if self.refiner is not None:
            log_mag = self.refiner(log_mag)
        return log_mag, phase

    def decode_hidden(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoder network's features before its output layer."""
        raise NotImplementedError

    def decode_head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder network's (log-magnitude, phase) from its features, before the refiner."""
        raise NotImplementedError

    def encode_spectrum(self, spec: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def synthesize(
        self,
        log_mag: torch.Tensor,
        phase: torch.Tensor,
        length: int,
        phase_iters: int | None = None,
        slack: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Waveform (B, length) from log-magnitude and a phase estimate; ``slack`` as :func:`griffin_lim`'s."""
        iters = self.config.phase_iters if phase_iters is None else phase_iters
        if iters == 0:
            return self.stft.synthesize(from_log_magnitude(log_mag, phase), length)
        return griffin_lim(self.stft, magnitude_from_log(log_mag), phase, length, iters, slack=slack)


def _split_prediction(out: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, bins, T) or (B, 3 * bins, T) -> log-magnitude and phase, each (B, bins, T)."""
    log_mag, cos, sin = out.reshape(out.shape[0], 3, bins, out.shape[-1]).unbind(1)
    return log_mag, torch.atan2(sin, cos)


class Spec1dCodec(_Codec):
    """Frequency bins as channels; Conv1d over time with stride-2 stages."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        bins, width = self.stft.bins, config.width
        encoder = [nn.Conv1d(3 * bins, width, 1), ResBlock(width, 1)]
        decoder = [nn.Conv1d(config.latent_channels, width, 3, padding=1), ResBlock(width, 1)]
        for stage in range(config.downsample):
            encoder += [nn.GELU(), nn.Conv1d(width, width, 4, stride=2, padding=1), ResBlock(width, 1, 3)]
            decoder += [nn.GELU(), nn.ConvTranspose1d(width, width, 4, stride=2, padding=1), ResBlock(width, 1, 3)]
        encoder += [nn.GELU(), nn.Conv1d(width, config.latent_channels, 3, padding=1)]
        decoder += [nn.GELU(), nn.Conv1d(width, 3 * bins, 1)]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def encode_spectrum(self, spec: torch.Tensor) -> torch.Tensor:
        phase = torch.angle(spec)
        features = torch.cat([log_magnitude(spec), torch.cos(phase), torch.sin(phase)], dim=1)
        return self.encoder(features).unsqueeze(2)

    def decode_hidden(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder[:-1](latent.squeeze(2))

    def decode_head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _split_prediction(self.decoder[-1](hidden), self.stft.bins)


class Seed2dCodec(_Codec):
    """The prototype: [log-magnitude, phase] image, Conv2d stride 2 on both axes.

    Frequency is halved once more than time (an extra stride (2, 1) stage) so
    the latent is compact along frequency, where the STFT is most redundant.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        width, latent = config.width, config.latent_channels
        encoder: list[nn.Module] = [nn.Conv2d(2, width, 3, stride=(2, 1), padding=1)]
        decoder: list[nn.Module] = [nn.Conv2d(latent, width, 1), ResBlock(width, 2)]
        for _ in range(config.downsample):
            encoder += [nn.GELU(), nn.Conv2d(width, width, 3, stride=2, padding=1)]
            decoder += [nn.GELU(), nn.ConvTranspose2d(width, width, 4, stride=2, padding=1)]
        encoder += [ResBlock(width, 2), nn.GELU(), nn.Conv2d(width, latent, 1)]
        decoder += [nn.GELU(), nn.ConvTranspose2d(width, 3, (4, 3), stride=(2, 1), padding=1)]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def encode_spectrum(self, spec: torch.Tensor) -> torch.Tensor:
        image = torch.stack([log_magnitude(spec), torch.angle(spec) / math.pi], dim=1)
        return self.encoder(image)

    def decode_hidden(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder[:-1](latent)

    def decode_head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.decoder[-1](hidden)[:, :, : self.stft.bins]
        return _split_prediction(out, self.stft.bins)


def build_model(config: ModelConfig) -> _Codec:
    """A fresh (untrained) model for ``config``."""
    return {"seed2d": Seed2dCodec, "spec1d": Spec1dCodec}[config.arch](config)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class TorchDecoder:
    """A torch model's decoding stages on numpy arrays: the interface :class:`nac.codec.Synthesis` drives, as
    :class:`nac.model.inference.NumpyDecoder`'s."""

    def __init__(self, net: _Codec):
        self.net, self.config = net, net.config
        self.phase_init = self._phase_init if net.phase_init is not None else None

    @torch.inference_mode()
    def decode_hidden(self, latent: np.ndarray) -> np.ndarray:
        return self.net.decode_hidden(torch.from_numpy(latent)).numpy()

    @torch.inference_mode()
    def spectrum_from_hidden(self, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_mag, phase = self.net.spectrum_from_hidden(torch.from_numpy(hidden))
        return log_mag.numpy(), phase.numpy()

    @torch.inference_mode()
    def _phase_init(self, hidden: np.ndarray, log_mag: np.ndarray, phase: np.ndarray) -> np.ndarray:
        return self.net.phase_init(*map(torch.from_numpy, (hidden, log_mag, phase))).numpy()

    @torch.inference_mode()
    def synthesize(self, log_mag: np.ndarray, phase: np.ndarray, length: int, phase_iters: int,
                   slack: np.ndarray | None = None) -> np.ndarray:
        return self.net.synthesize(torch.from_numpy(log_mag), torch.from_numpy(phase), length, phase_iters,
                                   None if slack is None else torch.from_numpy(slack)).numpy()

    @contextlib.contextmanager
    def parallel(self) -> Iterator[int]:
        """Windows to decode at once (torch's threads), each on one torch thread while the block runs."""
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield previous
        finally:
            torch.set_num_threads(previous)
