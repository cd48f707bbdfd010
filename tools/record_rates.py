"""Record a model's measured ladder in models/manifest.json from a `nac eval` report.

    nac eval CORPUS --manifest-split dev --kind speech_wb --max-files 100 -m NAME --points all \
        --against opus -o results/ladder-dev
    python tools/record_rates.py NAME results/ladder-dev/eval.json

Each ladder point of the model that the report scored gets its measured kbps
(whole file, all channels) and PESQ-WB / ViSQOL / STOI; the points' settings
are not touched. A point the report did not score keeps its old numbers, and
the tool says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac.errors import ModelError  # noqa: E402
from nac.model.manifest import MODELS_DIR, update_manifest_row  # noqa: E402

SCORES = ("pesq_wb", "visqol", "stoi", "visqol_audio", "bandwidth_khz")  # speech and music modes


def measured_ladder(name: str, ladder: list[dict], report: dict) -> tuple[list[dict], list[str]]:
    """(the ladder with the report's numbers, the names of points the report did not score)."""
    scored = {}
    for system in report["systems"]:
        model, _, point = system["setting"].partition(" ")
        if system["codec"] == "nac" and model == name:
            scored[point] = system
    points, missing = [], []
    for point in ladder:
        system = scored.get(point["name"])
        if system is None:
            missing.append(point["name"])
            points.append(point)
            continue
        points.append({**point, "kbps": round(system["kbps"], 2),
                       "scores": {key: round(system[key], 3) for key in SCORES if system.get(key) is not None},
                       "measured_on": f"{system['files']} files, nac eval"})
    return points, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name in the manifest")
    parser.add_argument("report", type=Path, help="eval.json written by nac eval --points all")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args()
    manifest = json.loads((args.models_dir / "manifest.json").read_text())
    row = next((row for row in manifest["models"] if row["name"] == args.model), None)
    if row is None or not row.get("ladder"):
        raise SystemExit(f"{args.model}: no such model with a ladder in {args.models_dir / 'manifest.json'}")
    ladder, missing = measured_ladder(args.model, row["ladder"], json.loads(args.report.read_text()))
    if len(missing) == len(ladder):
        raise SystemExit(f"{args.report}: no ladder point of {args.model} scored")
    try:
        update_manifest_row(args.model, {"ladder": ladder}, args.models_dir)
    except ModelError as err:
        raise SystemExit(str(err)) from None
    for point in ladder:
        print(point["name"], point["kbps"], point["scores"])
    if missing:
        print(f"not in the report, kept as they were: {', '.join(missing)}")


if __name__ == "__main__":
    main()
