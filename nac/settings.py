"""Encoder settings: how a file is coded, as one frozen record.

``nac encode``'s options, a shipped model's measured operating points, a
batch's shared options and an eval preset all name the same few choices;
:class:`EncoderSettings` carries them from one layer to the next and checks
them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import UsageError
from .layers.residual import DEFAULT_BANDS_PER_OCTAVE, SLOPE_ONE, SPAN_ONE
from .layers.residual import MAX_STEP as MAX_RESIDUAL_STEP

BITS_CHOICES = (8, 16)
# Latent code precision used when the caller names none (format_spec.md section 9):
# measured on dev speech, 5-bit codes in 8-bit integers cost 0.01-0.02 PESQ
# against full 8-bit codes and save about 40 % of the bytes.
DEFAULT_CODE_BITS = {8: 5, 16: 16}
# Log-magnitude step of the residual layer when the caller names none (0.5 is
# about 4.3 dB): on 40 dev files (cb4 latents, a column every 2 frames) steps
# 0.7 / 0.5 / 0.35 gave PESQ-WB 3.33 / 3.38 / 3.38 under 1 kHz and 3.61 /
# 3.67 / 3.70 under 2 kHz for 3.7 / 4.5 / 5.3 and 7.4 / 8.9 / 10.6 kbit/s of
# residual: 0.5 is the knee.
DEFAULT_RESIDUAL_STEP = 0.5
MAX_RESIDUAL_HZ = 96000.0  # half the highest input rate (api.MAX_RATE); the layer stops at the model's top bin
# How far below its column's loudest residual row a row's step stops growing
# (format_spec.md section 9), when the caller names none: on 100 dev files
# (12 kbps setting, slope 0.3) spans 4 and 8 gave PESQ-WB within noise of
# each other (3.97 at 10.45 kbps; 3.98 at 10.96 and 3.92 at 10.13).
DEFAULT_RESIDUAL_SPAN = 4.0
MAX_RESIDUAL_SPAN = 16.0
MAX_BANDS_PER_OCTAVE = 48  # finer than this, the banded residual's bands under 3 kHz (16 kHz model) are single bins


@dataclass(frozen=True)
class EncoderSettings:
    """What :func:`nac.api.encode` is asked to make (the defaults: a plain file with 5-bit codes).

    ``code_bits`` (2..bits; None: :data:`DEFAULT_CODE_BITS`) limits the latent
    codes to ``2**(code_bits-1) - 1`` steps each side: smaller files, coarser
    latents. ``coarse_channels`` gives the model's that many least important
    latent channels (its measured ``channel_order``) one code bit fewer.
    ``residual_hz`` > 0 adds the residual layer (a version 4.0 file): the
    log-magnitude of the STFT bins under that frequency, corrected towards the
    original in steps of ``residual_step``. ``residual_bands_hz`` > 0 (below
    ``residual_hz``) codes the layer's bins above it as one gain per band
    ``1/bands_per_octave`` octave wide (the header gives the bands): the
    spectral envelope for far fewer bits than per-bin corrections.
    ``residual_slope`` > 0 (a version 5.0 file) widens the step of rows the
    decoded spectrum puts below their column's loudest, by ``exp(slope * d)``
    for ``d`` up to ``residual_span`` log-magnitude units below it: errors
    there are masked, and coarser steps leave bits for what is heard.
    ``residual_fine_hz`` > 0 (a version 7.0 file; at most ``residual_bands_hz``)
    codes the layer's bins under it at every STFT frame instead of every
    second one, in steps of ``residual_fine_step`` (None: ``residual_step``):
    pitch harmonics move faster than interpolation between columns follows,
    and Griffin-Lim's phase depends on getting them right.
    ``phase_hint_hz`` > 0 (a version 8.0 file; needs the fine bins) codes,
    per residual column, a delay and a turn of the starting phase of the bins
    under it: the decoder's phase iterations start nearer the original's.
    ``closed_loop`` makes the encoder decode each window once (network and
    phase iterations, as the decoder will) and aim the layer's codes at what
    that output still lacks: 3-4 % more bits, -0.01 to +0.09 PESQ-WB but
    -0.06 to -0.17 ViSQOL on 100 dev files, about three times the encoding
    time (the file format is the same).
    """

    bits: int = 8
    store_phase: bool = False
    code_bits: int | None = None
    coarse_channels: int = 0
    residual_hz: float = 0.0
    residual_step: float = DEFAULT_RESIDUAL_STEP
    residual_bands_hz: float = 0.0
    bands_per_octave: float = DEFAULT_BANDS_PER_OCTAVE
    residual_slope: float = 0.0
    residual_span: float = DEFAULT_RESIDUAL_SPAN
    residual_fine_hz: float = 0.0
    residual_fine_step: float | None = None
    phase_hint_hz: float = 0.0
    closed_loop: bool = False

    def check(self) -> EncoderSettings:
        """The settings themselves, or :class:`UsageError` naming the first one out of range."""
        if self.bits not in BITS_CHOICES:
            raise UsageError(f"bits must be 8 or 16, not {self.bits}")
        if self.code_bits is not None and not 2 <= self.code_bits <= self.bits:
            raise UsageError(f"code bits must be 2..{self.bits}, not {self.code_bits}")
        if not 0.0 <= self.residual_hz <= MAX_RESIDUAL_HZ:
            raise UsageError(f"residual band {self.residual_hz:g} Hz is outside 0..{MAX_RESIDUAL_HZ:g} Hz")
        if self.residual_bands_hz and not 0.0 < self.residual_bands_hz < self.residual_hz:
            raise UsageError(f"residual bands from {self.residual_bands_hz:g} Hz need a residual band above it "
                             f"(residual up to {self.residual_hz:g} Hz)")
        if not 1.0 <= self.bands_per_octave <= MAX_BANDS_PER_OCTAVE:
            raise UsageError(f"bands per octave must be 1..{MAX_BANDS_PER_OCTAVE}, not {self.bands_per_octave:g}")
        if self.closed_loop and not self.residual_hz:
            raise UsageError("a closed loop needs the residual layer (residual band above 0 Hz)")
        if not 0.0 < self.residual_step <= MAX_RESIDUAL_STEP:
            raise UsageError(f"residual step {self.residual_step:g} is outside (0, {MAX_RESIDUAL_STEP:g}]")
        if not 0.0 <= self.residual_slope <= 1.0:
            raise UsageError(f"residual slope {self.residual_slope:g} is outside 0..1")
        if self.residual_slope and not self.residual_hz:
            raise UsageError("a residual slope needs the residual layer (residual band above 0 Hz)")
        if self.residual_slope and round(self.residual_slope * SLOPE_ONE) == 0:
            raise UsageError(f"residual slope {self.residual_slope:g} is below the format's resolution 1/{SLOPE_ONE}")
        if not 1 / SPAN_ONE <= self.residual_span <= MAX_RESIDUAL_SPAN:
            raise UsageError(f"residual span {self.residual_span:g} is outside {1 / SPAN_ONE:g}..{MAX_RESIDUAL_SPAN:g}")
        if self.residual_fine_hz and not 0.0 < self.residual_fine_hz <= (self.residual_bands_hz or self.residual_hz):
            raise UsageError(f"fine residual bins under {self.residual_fine_hz:g} Hz need residual bins of one row each "
                             f"up there (residual up to {self.residual_hz:g} Hz, bands from "
                             f"{self.residual_bands_hz:g} Hz)")
        if self.residual_fine_step is not None and not 0.0 < self.residual_fine_step <= MAX_RESIDUAL_STEP:
            raise UsageError(f"residual fine step {self.residual_fine_step:g} is outside (0, {MAX_RESIDUAL_STEP:g}]")
        if self.phase_hint_hz and not (0.0 < self.phase_hint_hz <= MAX_RESIDUAL_HZ and self.residual_fine_hz):
            raise UsageError(f"phase hints under {self.phase_hint_hz:g} Hz need the fine residual bins "
                             f"(--residual-fine-hz) and a band of 0..{MAX_RESIDUAL_HZ:g} Hz")
        return self

    @property
    def fine_step(self) -> float:
        """The fine bins' step: ``residual_fine_step``, or ``residual_step`` when it is None."""
        return self.residual_step if self.residual_fine_step is None else self.residual_fine_step

    @property
    def effective_code_bits(self) -> int:
        """``code_bits``, or the default for ``bits`` when it is None."""
        return DEFAULT_CODE_BITS[self.bits] if self.code_bits is None else self.code_bits

    def to_json(self) -> dict:
        """The settings that matter, by name: ``bits`` always, the rest where set (a residual step and band width
        only with their layer). A manifest's rate point stores this."""
        row: dict = {"bits": self.bits}
        if self.code_bits is not None:
            row["code_bits"] = self.code_bits
        if self.store_phase:
            row["store_phase"] = True
        if self.coarse_channels:
            row["coarse_channels"] = self.coarse_channels
        if self.residual_hz:
            row.update(residual_hz=self.residual_hz, residual_step=self.residual_step)
        if self.residual_bands_hz:
            row.update(residual_bands_hz=self.residual_bands_hz, bands_per_octave=self.bands_per_octave)
        if self.residual_slope:
            row.update(residual_slope=self.residual_slope, residual_span=self.residual_span)
        if self.residual_fine_hz:
            row.update(residual_fine_hz=self.residual_fine_hz, residual_fine_step=self.fine_step)
        if self.phase_hint_hz:
            row["phase_hint_hz"] = self.phase_hint_hz
        if self.closed_loop:
            row["closed_loop"] = True
        return row

    def options(self) -> str:
        """The ``nac encode`` options that ask for these settings (:meth:`to_json`'s, as flags)."""
        return " ".join(f"--{name.replace('_', '-')}" + ("" if value is True else f" {value:g}")
                        for name, value in self.to_json().items())

    @classmethod
    def from_json(cls, row: dict) -> EncoderSettings:
        """Settings from :meth:`to_json`'s keys (other keys ignored), typed; missing ones keep the defaults."""
        types = {"bits": int, "store_phase": bool, "code_bits": int, "coarse_channels": int, "closed_loop": bool}
        return cls(**{f.name: types.get(f.name, float)(row[f.name]) for f in fields(cls)
                      if row.get(f.name) is not None})
