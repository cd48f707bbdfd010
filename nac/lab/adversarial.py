"""Adversarial training: a low-band spectrogram discriminator and its losses.

Per-bin L1 losses reward the median of what the latent leaves uncertain, and
the median of harmonics whose exact place is uncertain is a blur: the decoded
low band's valleys between harmonics come out ~8 dB too high
(tools/diagnose.py). A discriminator that judges patches of the decoded
waveform's log-spectrogram against real speech penalizes a blur that real
speech never has. Least-squares GAN losses plus feature matching (the L1
between the discriminator's features of real and decoded audio), which keeps
the generator's gradient useful while the discriminator is young. Training
only: shipped models never contain the discriminator.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class SpectrogramDiscriminator(nn.Module):
    """Patch logits over (frequency, time) of the lowest ``bins`` log-magnitude bins."""

    def __init__(self, bins: int, channels: int = 16):
        super().__init__()
        self.bins = bins
        self.layers = nn.ModuleList([
            nn.Conv2d(1, channels, (7, 3), padding=(3, 1)),
            nn.Conv2d(channels, channels, (5, 3), stride=(2, 1), padding=(2, 1)),
            nn.Conv2d(channels, channels, (5, 3), stride=(2, 1), padding=(2, 1)),
            nn.Conv2d(channels, channels, 3, padding=1),
        ])
        self.logits = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, log_mag: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, features of every layer) of log-magnitudes (B, bins', T); level-invariant."""
        low = log_mag[:, : self.bins]
        x = (low - low.mean(dim=1, keepdim=True)).unsqueeze(1)
        features = []
        for layer in self.layers:
            x = functional.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.logits(x), features


class Adversary:
    """The discriminator, its optimizer, and the real/decoded pair its next step judges."""

    def __init__(self, bins: int, learning_rate: float = 2e-4):
        self.discriminator = SpectrogramDiscriminator(bins)
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=learning_rate, betas=(0.5, 0.9))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def generator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adversarial, feature matching) losses of decoded log-magnitudes ``fake`` against ``real``.

        Remembers the pair for :meth:`step`; gradients reach only the generator.
        """
        self._pending = (real.detach(), fake.detach())
        self.discriminator.requires_grad_(False)
        try:
            logits, fake_features = self.discriminator(fake)
            with torch.no_grad():
                _, real_features = self.discriminator(real)
        finally:
            self.discriminator.requires_grad_(True)
        adversarial = ((logits - 1.0) ** 2).mean()
        matching = sum((f - r).abs().mean() for f, r in zip(fake_features, real_features)) / len(fake_features)
        return adversarial, matching

    def step(self) -> float:
        """One discriminator update on the last pair the generator was judged on; its loss."""
        if self._pending is None:
            raise RuntimeError("no decoded audio to judge: call generator_losses first")
        real, fake = self._pending
        self._pending = None
        real_logits, _ = self.discriminator(real)
        fake_logits, _ = self.discriminator(fake)
        loss = ((real_logits - 1.0) ** 2).mean() + (fake_logits**2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def to(self, device: torch.device) -> "Adversary":
        self.discriminator.to(device)
        return self

    def state_dict(self) -> dict:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
