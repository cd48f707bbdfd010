"""Encoder settings: how a file is coded, as one frozen record, and its JSON form (``nac encode --settings``).

Users pick a rate (a model's ladder point, :mod:`nac.model.manifest`); experts
pass a settings file whose keys are :class:`EncoderSettings`' fields. The
ladder, a batch, ``nac eval`` and the API all carry the same record, checked
in one place.
"""

from __future__ import annotations

import json
import os
from dataclasses import Field, dataclass, fields

import numpy as np

from .errors import UsageError
from .layers.residual import DEFAULT_BANDS_PER_OCTAVE, SLOPE_ONE, SPAN_ONE
from .layers.residual import MAX_STEP as MAX_RESIDUAL_STEP

BITS_CHOICES = (8, 16)
DEFAULT_CODE_BITS = {8: 5, 16: 16}  # latent code bits when none are named (docs/results.md)
DEFAULT_RESIDUAL_STEP = 0.5  # about 4.3 dB: the knee of quality against residual bits (docs/results.md)
MAX_RESIDUAL_HZ = 96000.0  # half the highest input rate; the layer stops at the model's top bin
DEFAULT_RESIDUAL_SPAN = 4.0
MAX_RESIDUAL_SPAN = 16.0
MAX_BANDS_PER_OCTAVE = 48  # finer than this, bands under 3 kHz (16 kHz model) are single bins
MAX_SETTINGS_BYTES = 64 * 1024
DEFAULT_HIGH_BANDS = 10  # about a seventh of an octave each from 7.5 to 20 kHz
DEFAULT_LEVEL_STEP = 1.5  # dB: level errors of at most 0.75 dB
MAX_LAYER_BANDS = 64


@dataclass(frozen=True)
class EncoderSettings:
    """What :func:`nac.api.encode` is asked to make. The defaults make a plain file of 5-bit latent codes; users
    get a model's ladder point instead (:func:`nac.api.choose_settings`).

    - ``bits``: 8, or 16 for the research mode's 16-bit codes (and stored phase).
    - ``code_bits`` (2..bits; None: 5 for 8 bits): the latent codes' width.
      ``coarse_channels``: the model's that many least important latent
      channels get one bit fewer.
    - ``residual_hz`` > 0 adds the residual layer: corrections of the decoded
      log-magnitude under that frequency in steps of ``residual_step``;
      above ``residual_bands_hz`` one gain per band ``1/bands_per_octave``
      octave wide; ``residual_slope`` widens the step of rows far below their
      column's loudest (up to ``residual_span`` log units), where errors are
      masked; bins under ``residual_fine_hz`` are coded at every STFT frame in
      steps of ``residual_fine_step`` (None: ``residual_step``);
      ``phase_hint_hz`` codes a delay and a turn of the starting phase under it.
    - ``closed_loop``: the encoder decodes each window as the decoder will and
      aims the residual codes at what that output lacks (slower to encode).
    - ``high_band_hz`` > 0 adds the high-band layer for input above the core's
      band: ``high_bands`` bands up to that frequency (or the input's
      Nyquist), levels in steps of ``high_band_step`` dB.
    - ``stereo_bands`` > 0 codes a two-channel input as its mid and the stereo
      layer: level difference (steps of ``stereo_step`` dB) and correlation in
      that many bands; 0 codes each channel alone.
    - ``store_phase``: the research prototype's mode, the STFT phase stored.
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
    high_band_hz: float = 0.0
    high_bands: int = DEFAULT_HIGH_BANDS
    high_band_step: float = DEFAULT_LEVEL_STEP
    stereo_bands: int = 0
    stereo_step: float = DEFAULT_LEVEL_STEP

    def check(self) -> EncoderSettings:
        """The settings themselves, or :class:`UsageError` naming the first one of a wrong type or out of
        range."""
        for setting in fields(self):
            _typed(setting, getattr(self, setting.name))
        if self.coarse_channels < 0:
            raise UsageError(f"coarse channels must be 0 or more, not {self.coarse_channels}")
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
        if not 0.0 <= self.high_band_hz <= MAX_RESIDUAL_HZ:
            raise UsageError(f"high band {self.high_band_hz:g} Hz is outside 0..{MAX_RESIDUAL_HZ:g} Hz")
        if not 1 <= self.high_bands <= MAX_LAYER_BANDS or not 0 <= self.stereo_bands <= MAX_LAYER_BANDS:
            raise UsageError(f"high bands and stereo bands must be 1..{MAX_LAYER_BANDS} (stereo: 0 for none)")
        if not 0.25 <= self.high_band_step <= 12.0 or not 0.25 <= self.stereo_step <= 6.0:
            raise UsageError("the high band's step must be 0.25..12 dB and the stereo step 0.25..6 dB")
        if self.phase_hint_hz and not (0.0 < self.phase_hint_hz <= MAX_RESIDUAL_HZ and self.residual_fine_hz):
            raise UsageError(f"phase hints under {self.phase_hint_hz:g} Hz need the fine residual bins "
                             f"(residual_fine_hz) and a band of 0..{MAX_RESIDUAL_HZ:g} Hz")
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
        only with their layer). A ladder point and a settings file store this."""
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
        if self.high_band_hz:
            row.update(high_band_hz=self.high_band_hz, high_bands=self.high_bands, high_band_step=self.high_band_step)
        if self.stereo_bands:
            row.update(stereo_bands=self.stereo_bands, stereo_step=self.stereo_step)
        return row

    @classmethod
    def from_json(cls, row: dict, source: str = "settings") -> EncoderSettings:
        """Settings from :meth:`to_json`'s keys, typed and checked; :class:`UsageError` (naming ``source``) for an
        unknown key, a wrong type or a value out of range. Missing keys keep the defaults."""
        if not isinstance(row, dict):
            raise UsageError(f"{source}: settings must be a JSON object of encoder settings")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(row) - set(known))
        if unknown:
            raise UsageError(f"{source}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(known)})")
        try:
            values = {name: _typed(known[name], value) for name, value in row.items()}
            return cls(**values).check()
        except UsageError as err:
            raise UsageError(f"{source}: {err}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> EncoderSettings:
        """Settings from a JSON file (``nac encode --settings FILE``)."""
        try:
            with open(path, "rb") as handle:
                text = handle.read(MAX_SETTINGS_BYTES + 1)
            if len(text) > MAX_SETTINGS_BYTES:
                raise UsageError(f"{path}: settings file larger than {MAX_SETTINGS_BYTES} bytes")
            row = json.loads(text)
        except OSError as err:
            raise UsageError(f"{path}: cannot read settings ({err.strerror or err})") from None
        except ValueError as err:
            raise UsageError(f"{path}: not JSON ({err})") from None
        except RecursionError:
            raise UsageError(f"{path}: not JSON settings (nested too deeply)") from None
        return cls.from_json(row, str(path))


def is_number(value) -> bool:
    """A real number, Python's or numpy's, and not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _typed(setting: Field, value):
    """``value`` as ``setting`` holds it, by its annotation (an integer given for a float becomes a float; None
    only where the annotation allows it), or :class:`UsageError` for a wrong type or a number beyond any range."""
    if value is None and setting.type.endswith("| None"):
        return None
    kind = {"int": int, "bool": bool, "float": float}[setting.type.removesuffix(" | None")]
    if kind is bool:
        fits = isinstance(value, (bool, np.bool_))
    else:
        try:
            fits = is_number(value) and (kind is float or float(value).is_integer())
            typed = kind(value) if fits else None
        except OverflowError:
            raise UsageError(f"{setting.name} is out of range") from None
    if not fits:
        wanted = "true or false" if kind is bool else "a whole number" if kind is int else "a number"
        raise UsageError(f"{setting.name} must be {wanted}, not {value!r}")
    return bool(value) if kind is bool else typed
