"""Training recipes: everything that makes a model, as a JSON file (``recipes/*.json``).

A recipe names the data (corpus kinds and splits), the network, each training
stage (until which step, learning rates, losses, seed, the refiner it adds),
the companions (how many files the channel order and the entropy tables are
counted on, how the phase initializer is trained) and the rate ladder's
settings. ``nac train --recipe FILE CORPUS -o OUT`` runs it
(:mod:`nac.lab.pipeline`); the manifest names each shipped model's recipe.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..settings import EncoderSettings
from .train import SYNTHESIS_PHASES

RECIPES_DIR = Path(__file__).resolve().parent.parent.parent / "recipes"


@dataclass(frozen=True)
class Stage:
    """One training run, started from the stage before (or a fresh network)."""

    name: str
    until_step: int = 0  # train until the model has this many steps in all; 0: for ``epochs`` or ``minutes``
    epochs: int = 0  # passes over the training audio (in crops of ``crop_seconds``)
    minutes: float = 0.0
    lr: float = 1e-3
    lr_final: float | None = None  # cosine decay to this over the stage
    batch_size: int = 16
    crop_seconds: float = 1.0
    seed: int = 0
    code_bits: int = 5  # the quantization noise trained with
    mel_weight: float = 1.0
    phase_weight: float = 1.0
    low_band_weight: float = 1.0
    low_band_hz: float = 1000.0
    waveform_weight: float = 10.0
    synthesis_phase: str = "true"
    phase_iters: int | None = None  # the model's Griffin-Lim iterations from this stage on
    refine_channels: int = 0  # adds a low-band refiner of this width (and ``refine_hz``) at this stage
    refine_hz: float = 0.0
    refiner_lr_scale: float = 1.0


@dataclass(frozen=True)
class PhaseInit:
    """How the phase initializer is trained: pairs coded at the ladder points, then a fit."""

    pair_minutes: float = 75.0
    points: tuple[str, ...] = ("8k", "12k", "16k", "24k")
    minutes: float = 8.0
    steps: int = 0
    batch: int = 64
    lr: float = 1e-3


@dataclass(frozen=True)
class Recipe:
    name: str
    model_id: int
    description: str = ""
    base: str = ""  # a shipped model the first stage starts from (made by its own recipe first); "": a fresh one
    kinds: tuple[str, ...] = ("speech_wb",)  # corpus MANIFEST kinds trained on (train split) and measured (dev)
    network: dict = field(default_factory=dict)  # ModelConfig fields of a fresh network
    stages: tuple[Stage, ...] = ()
    channel_order_files: int = 30
    table_files: int = 300
    table_dev_files: int = 60
    table_points: tuple[str, ...] = ("8k", "12k", "16k", "24k")  # where the residual tables are counted
    phase_init: PhaseInit | None = None
    ladder: dict = field(default_factory=dict)  # point name -> EncoderSettings JSON
    default_point: str = ""
    dev_files: int = 100  # ladder measured on this many dev files of each kind

    def ladder_settings(self) -> dict[str, EncoderSettings]:
        return {name: EncoderSettings.from_json(row, f"{self.name} ladder point {name}")
                for name, row in self.ladder.items()}


def load(path: str | Path) -> Recipe:
    """A recipe file, checked: unknown keys, bad stages and settings are a :class:`UsageError`."""
    path = Path(path)
    try:
        row = json.loads(path.read_text())
    except OSError as err:
        raise UsageError(f"{path}: cannot read the recipe ({err.strerror or err})") from None
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err})") from None
    try:
        stages = tuple(_build(Stage, stage) for stage in row.pop("stages", []))
        phase = row.pop("phase_init", None)
        recipe = _build(Recipe, row, stages=stages, phase_init=None if phase is None else _build(PhaseInit, phase))
    except (TypeError, ValueError) as err:
        raise UsageError(f"{path}: {err}") from None
    for stage in recipe.stages:
        if stage.synthesis_phase not in SYNTHESIS_PHASES:
            raise UsageError(f"{path}: stage {stage.name}: synthesis_phase must be one of {SYNTHESIS_PHASES}")
        if not (stage.until_step or stage.epochs or stage.minutes):
            raise UsageError(f"{path}: stage {stage.name} needs until_step, epochs or minutes")
    recipe.ladder_settings()
    if recipe.ladder and recipe.default_point not in recipe.ladder:
        raise UsageError(f"{path}: default point {recipe.default_point!r} is not on the ladder")
    return recipe


def _build(kind, row: dict, **given):
    """``kind`` from a JSON object whose keys must be its fields (lists become tuples)."""
    if not isinstance(row, dict):
        raise ValueError(f"{kind.__name__.lower()} must be a JSON object")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(row) - known)
    if unknown:
        raise ValueError(f"unknown {kind.__name__.lower()} key(s) {', '.join(unknown)}")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in row.items()}
    return kind(**{**values, **given})
