"""Turn a training checkpoint into a shipped model: safetensors + manifest entry.

    python tools/export_model.py results/run/last.pt --name nac-speech-16k-v2 --id 2 \
        --description "..." [--half] [--default]

The weights file carries the JSON config and the model id in its metadata;
the manifest gets the file's sha256 and parameter count. Ids are never reused:
an id already taken by another name is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safetensors.torch import save  # noqa: E402

from nac.model.networks import parameter_count  # noqa: E402
from nac.lab.train import model_from_checkpoint  # noqa: E402
from nac.model.manifest import MODELS_DIR  # noqa: E402


def export(checkpoint: Path, name: str, model_id: int, description: str, half: bool, models_dir: Path,
           make_default: bool, training_data: str = "", quality: dict | None = None,
           retire: str | None = None, phase_iters: int | None = None) -> dict:
    model, state = model_from_checkpoint(checkpoint, phase_iters)
    config = model.config
    tensors = {k: (v.half() if half else v.float()).contiguous() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={"nac_config": config.to_json(), "nac_model_id": str(model_id)})
    manifest_path = models_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"default": name, "models": []}
    for row in manifest["models"] + manifest.get("retired", []):
        if row["id"] == model_id and (row["name"] != name or row in manifest.get("retired", [])):
            raise SystemExit(f"id {model_id} already belongs to {row['name']}; ids are never reused")
    if retire is not None:
        old = [r for r in manifest["models"] if r["name"] == retire]
        if not old:
            raise SystemExit(f"--retire {retire}: no such model in the manifest")
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
        "quality": quality or {},
    }
    manifest["models"] = [r for r in manifest["models"] if r["name"] != name] + [entry]
    manifest["models"].sort(key=lambda r: r["id"])
    if make_default:
        manifest["default"] = name
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / entry["file"]).write_bytes(data)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--id", type=int, required=True, help="explicit model id (1..65535), never reused")
    parser.add_argument("--description", default="")
    parser.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    parser.add_argument("--default", action="store_true", help="make this the default model")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--training-data", default="", help="what the model was trained on")
    parser.add_argument("--quality", default="{}", help="measured quality as a JSON object")
    parser.add_argument("--phase-iters", type=int, default=None, help="Griffin-Lim iterations stored in the config")
    parser.add_argument("--retire", default=None, help="move this model to the manifest's retired list (id kept)")
    args = parser.parse_args()
    if not 1 <= args.id <= 65535:
        raise SystemExit("--id must be in 1..65535 (0 is reserved for models given by path)")
    entry = export(args.checkpoint, args.name, args.id, args.description, args.half, args.models_dir, args.default,
                   args.training_data, json.loads(args.quality), args.retire, args.phase_iters)
    print(json.dumps({k: entry[k] for k in ("id", "name", "file", "sha256", "parameters")}, indent=2))


if __name__ == "__main__":
    main()
