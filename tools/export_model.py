"""Turn a training checkpoint into a shipped model: safetensors + manifest entry (nac.lab.export).

    python tools/export_model.py results/run/last.pt --name nac-speech-16k-v2 --id 2 \
        --description "..." [--half] [--default]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac.errors import ModelError  # noqa: E402
from nac.lab.export import export  # noqa: E402
from nac.model.manifest import MODELS_DIR  # noqa: E402


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
    parser.add_argument("--phase-iters", type=int, default=None, help="Griffin-Lim iterations stored in the config")
    parser.add_argument("--retire", default=None, help="move this model to the manifest's retired list (id kept)")
    args = parser.parse_args()
    if not 1 <= args.id <= 65535:
        raise SystemExit("--id must be in 1..65535 (0 is reserved for models given by path)")
    try:
        entry = export(args.checkpoint, args.name, args.id, args.models_dir, description=args.description,
                       training_data=args.training_data, half=args.half, make_default=args.default,
                       retire=args.retire, phase_iters=args.phase_iters)
    except ModelError as err:
        raise SystemExit(str(err)) from None
    print(json.dumps({k: entry[k] for k in ("id", "name", "file", "sha256", "parameters")}, indent=2))


if __name__ == "__main__":
    main()
