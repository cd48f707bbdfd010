"""A training checkpoint as a model in a models folder: safetensors weights and a manifest entry.

The weights file carries the JSON config and the model id in its metadata;
the manifest gets the file's sha256 and parameter count. Ids are never
reused: an id already taken by another name is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import save

from ..errors import ModelError
from ..model.networks import parameter_count
from .train import model_from_checkpoint


def canonical(data: bytes) -> bytes:
    """safetensors bytes with their JSON header's keys sorted: the same tensors and metadata always make the
    same file, so its hash names them (the writer's key order changes from one process to the next)."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    encoded = header.encode()
    if len(encoded) > size:
        raise ValueError("a safetensors header grew when its keys were sorted")
    return data[:8] + encoded.ljust(size) + data[8 + size :]


def export(checkpoint: Path, name: str, model_id: int, models_dir: Path, *, description: str = "",
           training_data: str = "", half: bool = False, make_default: bool = False, retire: str | None = None,
           phase_iters: int | None = None, extra: dict | None = None) -> dict:
    """Write ``checkpoint``'s model as ``name`` (id ``model_id``) into ``models_dir`` and its manifest (made if
    missing); ``extra`` fields join its manifest row (a recipe's name, say). Returns the row."""
    if not 0 <= model_id <= 65535:
        raise ModelError(f"model id {model_id} out of range 0..65535")
    model, state = model_from_checkpoint(checkpoint, phase_iters)
    config = model.config
    tensors = {k: (v.half() if half else v.float()).contiguous() for k, v in model.state_dict().items()}
    data = canonical(save(tensors, metadata={"nac_config": config.to_json(), "nac_model_id": str(model_id)}))
    manifest_path = models_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"default": name, "models": []}
    for row in manifest["models"] + manifest.get("retired", []):
        if row["id"] == model_id and (row["name"] != name or row in manifest.get("retired", [])):
            raise ModelError(f"id {model_id} already belongs to {row['name']}; ids are never reused")
    if retire is not None:
        old = [r for r in manifest["models"] if r["name"] == retire]
        if not old:
            raise ModelError(f"retire {retire}: no such model in the manifest")
        manifest["models"].remove(old[0])
        manifest.setdefault("retired", []).append({k: old[0][k] for k in ("id", "name", "sha256")})
        (models_dir / old[0]["file"]).unlink(missing_ok=True)
    entry = {
        "id": model_id,
        "name": name,
        "file": f"{name}.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "sample_rate": config.sample_rate,
        "parameters": parameter_count(model),
        "description": description,
        "config": json.loads(config.to_json()),
        "trained_steps": int(state["step"]),
        "training_data": training_data,
        **(extra or {}),
    }
    manifest["models"] = [r for r in manifest["models"] if r["name"] != name] + [entry]
    manifest["models"].sort(key=lambda r: r["id"])
    if make_default:
        manifest["default"] = name
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / entry["file"]).write_bytes(data)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry
