"""Write a model's measured bitrates into models/manifest.json from `nac eval` reports.

    nac eval CORPUS --manifest-split dev --kind speech_wb --models NAME \
        --presets cb2,cb3,cb4,cb5,cb6,cb8,bits16+cb10,bits16 -o results/eval-rates
    python tools/record_rates.py NAME results/eval-rates/eval.json [more eval.json ...]

Reports go newest first: where two measured the same settings (a format
change made the same preset cheaper, say), the first one's point counts.

Each nac preset of that model (store-phase presets aside) becomes one
operating point: bits, code bits, residual layer, the measured kbps and
PESQ-WB / ViSQOL / STOI. A point that a cheaper one matches or beats on
PESQ-WB is left out, so `nac encode --bitrate K` (which takes the point with
the most kbps at or below K) never picks a worse setting for a higher
target; `nac models` lists the points. The default preset's scores also
become the model's "quality". With ``--keep-others`` the manifest's points
that no report measured stay (reports of earlier runs may be gone).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac.lab.evaluate import parse_preset  # noqa: E402
from nac.errors import ModelError  # noqa: E402
from nac.model.manifest import MODELS_DIR, update_manifest_row  # noqa: E402

SCORES = ("pesq_wb", "visqol", "stoi")


def setting_key(point: dict) -> tuple:
    """What makes two operating points the same setting: everything but the measurements."""
    return tuple((key, value) for key, value in point.items() if key not in ("kbps", "scores"))


def rate_points(name: str, reports: list[dict], older: list[dict] = ()) -> tuple[list[dict], dict | None]:
    """(operating points by rising kbps, the default preset's system) of model ``name``; ``older`` points (the
    manifest's) count where no report measured their settings."""
    points, default = {}, None
    for report in reports:
        for system in report["systems"]:
            model, _, preset = system["setting"].partition(" ")
            if system["codec"] != "nac" or model != name:
                continue
            settings, phase_iters = parse_preset(preset)
            if settings.store_phase or phase_iters is not None:
                continue  # not an encoder setting --bitrate can pick (or decoded unlike a plain decode)
            point = replace(settings, code_bits=settings.effective_code_bits).to_json()
            if setting_key(point) in points:
                continue  # the same settings in two reports: the first counts (newest first, as rd_plot merges)
            point.update(kbps=round(system["kbps"], 2),
                         scores={key: round(system[key], 3) for key in SCORES if system.get(key) is not None})
            points[setting_key(point)] = point
            if preset == "default":
                default = system
    for point in older:
        points.setdefault(setting_key(point), point)
    # at equal kbps the better point comes first, so the others count as matched by it
    by_rate = sorted(points.values(), key=lambda point: (point["kbps"], -point["scores"].get("pesq_wb", 0.0)))
    return undominated(by_rate), default


def undominated(points: list[dict]) -> list[dict]:
    """The points (by rising kbps) whose PESQ-WB beats every cheaper point's (all kept without PESQ)."""
    kept, best = [], float("-inf")
    for point in points:
        pesq = point["scores"].get("pesq_wb")
        if pesq is None or pesq > best:
            kept.append(point)
            best = best if pesq is None else pesq
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name in the manifest")
    parser.add_argument("reports", nargs="+", type=Path, help="eval.json files written by nac eval")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the manifest's points whose settings the reports did not measure")
    args = parser.parse_args()
    reports = [json.loads(path.read_text()) for path in args.reports]
    older = []
    if args.keep_others:
        manifest = json.loads((args.models_dir / "manifest.json").read_text())
        older = next((row.get("rates", []) for row in manifest["models"] if row["name"] == args.model), [])
    points, default = rate_points(args.model, reports, older)
    if not points:
        raise SystemExit(f"no nac rows of {args.model} in the reports")
    fields = {"rates": points}
    if default is not None:
        fields["quality"] = {
            "dev_kbps": round(default["kbps"], 2),
            **{key: round(default[key], 3) for key in (*SCORES, "lsd_db") if default.get(key) is not None},
            "measured_on": f"{default['files']} dev files, nac eval",
        }
    try:
        update_manifest_row(args.model, fields, args.models_dir)
    except ModelError as err:
        raise SystemExit(str(err)) from None
    for point in points:
        print(point)


if __name__ == "__main__":
    main()
