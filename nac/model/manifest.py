"""The shipped models' manifest: ids, names, files and hashes, and each model's measured rate ladder.

Torch-free, so ``nac models`` and ``nac inspect`` answer without loading a
network. Every model has an explicit numeric id that is never reused; retired
ids stay listed so their files are refused by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..settings import EncoderSettings

MODELS_DIR = Path(os.environ.get("NAC_MODELS_DIR", Path(__file__).resolve().parent.parent / "models"))
CUSTOM_MODEL_ID = 0  # a model given by path, not in the manifest


SPEECH, FULLBAND = "speech", "fullband"  # kinds of input, each with a default model
SPEECH_RATE = 16000  # mono input up to this rate goes to the speech model


@dataclass(frozen=True)
class RatePoint:
    """One point of a model's rate ladder: a name users ask for (``--bitrate 12k``), its encoder settings, and
    what ``nac eval`` measured of it on the corpus's dev speech (``tools/record_rates.py`` writes it)."""

    name: str
    settings: EncoderSettings
    kbps: float  # measured on mono speech, per channel
    scores: tuple[tuple[str, float], ...] = ()

    @property
    def nominal_kbps(self) -> float:
        """The rate the name promises (``12k``: 12): the measured rate stays at or below it."""
        return float(self.name.rstrip("k"))

    def describe(self) -> str:
        """One line: name, measured kbps, scores."""
        scores = "  ".join(f"{name} {value:.2f}" for name, value in self.scores)
        return f"{self.name:>4}  {self.kbps:5.2f} kbps  {scores}".rstrip()


@dataclass(frozen=True)
class ModelEntry:
    """One manifest row: what a user sees in ``nac models`` and what a decoder checks."""

    id: int
    name: str
    file: str
    sha256: str
    sample_rate: int
    parameters: int
    description: str = ""
    training_data: str = ""
    ladder: tuple[RatePoint, ...] = ()  # named points by rising rate; none for a model kept only to decode
    default_point: str = ""  # the point plain ``nac encode`` uses
    channel_order: tuple[int, ...] = ()  # latent channels, least important first (tools/channel_order.py)
    code_tables: str = ""  # file of the rANS code tables (tools/code_tables.py), "" if none
    code_tables_sha256: str = ""
    phase_init: str = ""  # file of the decoder's phase initializer (tools/train_phase.py), "" if none
    phase_init_sha256: str = ""
    residual_tables: str = ""  # file of the residual coder's starting counts (tools/code_tables.py), "" if none
    residual_tables_sha256: str = ""
    recipe: str = ""  # the recipe that makes it (recipes/NAME.json in the repository), "" for a fine-tune

    @property
    def hash_prefix(self) -> bytes:
        return bytes.fromhex(self.sha256)[:8]

    def point(self, name: str | None = None) -> RatePoint:
        """The ladder point called ``name`` (the default point for None)."""
        name = self.default_point if name is None else name
        for point in self.ladder:
            if point.name == name:
                return point
        if not self.ladder:
            raise ModelError(f"model {self.name} has no rate ladder: name its settings (--settings FILE)")
        raise ModelError(f"model {self.name} has no point {name!r} (its points: "
                         f"{', '.join(p.name for p in self.ladder)})")


def _manifest(models_dir: Path) -> tuple[dict[str, str], list[ModelEntry], dict[int, str]]:
    """(default model name by input kind, entries, retired id -> name) from ``manifest.json``."""
    path = models_dir / "manifest.json"
    try:
        data = json.loads(path.read_text())
        entries = [_entry(row) for row in data["models"]]
        retired = {int(row["id"]): str(row["name"]) for row in data.get("retired", [])}
        defaults = {SPEECH: str(data["default"]), FULLBAND: str(data.get("default_fullband", data["default"]))}
        return defaults, entries, retired
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{path}: unreadable model manifest ({err})") from None


def _entry(row: dict) -> ModelEntry:
    fields = {k: row[k] for k in ModelEntry.__dataclass_fields__
              if k in row and k not in ("ladder", "channel_order")}
    ladder = sorted(
        (RatePoint(str(point["name"]), EncoderSettings.from_json(point["settings"]), float(point["kbps"]),
                   tuple((str(k), float(v)) for k, v in dict(point.get("scores", {})).items()))
         for point in row.get("ladder", [])),
        key=lambda point: point.kbps,
    )
    order = tuple(int(k) for k in row.get("channel_order", ()))
    return ModelEntry(**fields, ladder=tuple(ladder), channel_order=order)


def update_manifest_row(name: str, fields: dict, models_dir: Path = MODELS_DIR) -> Path:
    """Set ``fields`` in model ``name``'s row of the manifest (the tools that measure models write this way)."""
    path = models_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    row = next((row for row in manifest["models"] if row["name"] == name), None)
    if row is None:
        raise ModelError(f"{name}: no such model in {path}")
    row.update(fields)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def list_models(models_dir: Path = MODELS_DIR) -> list[ModelEntry]:
    return _manifest(models_dir)[1]


def input_kind(sample_rate: int, channels: int) -> str:
    """Which default model serves an input: :data:`FULLBAND` above 16 kHz or for two channels (its stereo
    layer codes them jointly), else :data:`SPEECH` (mono, or three channels or more coded one by one)."""
    return FULLBAND if sample_rate > SPEECH_RATE or channels == 2 else SPEECH


def models_folder(key: str | int | None, models_dir: Path = MODELS_DIR) -> tuple[str | int | None, Path]:
    """(key, folder): a key naming a models folder (one with a manifest.json), or a ``nac train`` run folder
    (whose ``models`` is one), stands for that folder's default model."""
    if isinstance(key, (str, Path)):
        for folder in (Path(key), Path(key) / "models"):
            if (folder / "manifest.json").is_file():
                return None, folder
    return key, models_dir


def label(model_id: int, models_dir: Path = MODELS_DIR) -> str:
    """How a header's model id reads in a listing: the model's name, a retired one's name, or the bare id."""
    _, entries, retired = _manifest(models_dir)
    names = {entry.id: entry.name for entry in entries}
    if model_id in names:
        return names[model_id]
    return f"{retired[model_id]} (retired)" if model_id in retired else f"id {model_id}"


def find_entry(key: str | int | None, models_dir: Path = MODELS_DIR, kind: str = "speech") -> ModelEntry:
    """The manifest entry named ``key`` (a name, an id, or a models folder for its default model); for None,
    the default model for inputs of ``kind`` (:func:`input_kind`)."""
    key, models_dir = models_folder(key, models_dir)
    defaults, entries, retired = _manifest(models_dir)
    key = defaults[kind] if key is None else key
    for entry in entries:
        if entry.name == key or str(entry.id) == str(key):
            return entry
    if str(key) == str(CUSTOM_MODEL_ID):
        raise ModelError("the file was made by a custom model: pass it with --model PATH")
    for model_id, name in retired.items():
        if key == name or str(key) == str(model_id):
            raise ModelError(f"model {name} (id {model_id}) was retired: no shipped weights decode its files")
    known = ", ".join(e.name for e in entries)
    raise ModelError(f"unknown model {key!r} (known: {known})")
