"""A model's frozen config: everything needed to rebuild it, stored as JSON next to its weights (torch-free, so
decoding and reading files need not import torch)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

ARCHITECTURES = ("seed2d", "spec1d")
MAX_PHASE_ITERS = 256  # Griffin-Lim iterations a config (or a decode) may ask for


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored as JSON next to its weights."""

    arch: str = "spec1d"
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    width: int = 160
    latent_channels: int = 48  # the seed's MODEL_CHANNELS: smaller compresses harder
    downsample: int = 2  # stride-2 stages over time; time_stride = 2 ** downsample
    phase_iters: int = 16
    refine_channels: int = 0  # width of the low-band refiner; 0 = none
    refine_bins: int = 0  # lowest STFT bins the refiner corrects

    def __post_init__(self) -> None:
        wrong_type = [
            f.name
            for f in fields(self)
            if not isinstance(getattr(self, f.name), str if f.name == "arch" else int)
            or isinstance(getattr(self, f.name), bool)
        ]
        if wrong_type:
            raise ValueError(f"model config field(s) of the wrong type: {', '.join(wrong_type)}")
        checks = {
            "arch": self.arch in ARCHITECTURES,
            "sample_rate": 8000 <= self.sample_rate <= 48000,
            "n_fft": self.n_fft in (128, 256, 512, 1024, 2048),
            "hop_length": 1 <= self.hop_length <= self.n_fft,
            "width": 1 <= self.width <= 1024,
            "latent_channels": 1 <= self.latent_channels <= 1024,
            "downsample": 0 <= self.downsample <= 5,
            "phase_iters": 0 <= self.phase_iters <= MAX_PHASE_ITERS,
            "refine_channels": 0 <= self.refine_channels <= 64,
            "refine_bins": 0 <= self.refine_bins <= self.n_fft // 2 + 1
            and (self.refine_bins > 0) == (self.refine_channels > 0),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid model config field(s): {', '.join(bad)}")

    @property
    def time_stride(self) -> int:
        return 2**self.downsample

    @property
    def stft(self):
        """The model's :class:`nac.model.stft.Stft` (torch)."""
        from .stft import Stft

        return Stft(self.n_fft, self.hop_length)

    def frame_count(self, samples: int) -> int:
        """STFT frames used for ``samples`` samples (:meth:`nac.model.stft.Stft.frame_count`)."""
        return frame_count(samples, self.n_fft, self.hop_length, self.time_stride)

    @property
    def latent_height(self) -> int:
        """Latent size along frequency (1 for ``spec1d``)."""
        if self.arch == "spec1d":
            return 1
        height = self.n_fft // 2 + 1
        for _ in range(self.downsample + 1):
            height = math.ceil(height / 2)
        return height

    def to_json(self) -> str:
        """Sorted JSON; a model without a refiner keeps the config it had before refiners existed."""
        data = asdict(self)
        if not self.refine_channels:
            del data["refine_channels"], data["refine_bins"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError("model config has unknown or malformed fields")
        return cls(**data)


def frame_count(samples: int, n_fft: int, hop: int, stride: int) -> int:
    """STFT frames used for ``samples`` samples: a multiple of ``stride`` (0 for 0), per the framing rule in
    :mod:`nac.model.stft`."""
    if samples <= 0:
        return 0
    block = hop * stride
    return math.ceil((samples + n_fft // 2) / block) * stride
