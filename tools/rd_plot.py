"""Draw one rate-quality plot from several `nac eval` reports of the same files.

    python tools/rd_plot.py results/eval-a/eval.json results/eval-b/eval.json -o docs/rd-speech-dev.png

Runs can be split (several processes, or models added later) and still share
one set of axes. The reports must have scored the same files; a system that
appears in more than one report is drawn from the first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac.lab.evaluate import EvalReport, plot_rd  # noqa: E402


def merged(reports: list[dict]) -> EvalReport:
    """One report holding every system of ``reports`` (which must share their file list)."""
    file_lists = {tuple(sorted({row["file"] for row in report.get("files", [])})) for report in reports}
    if len(file_lists) > 1:
        raise SystemExit("the reports scored different files")
    systems, seen = [], set()
    for report in reports:
        for system in report["systems"]:
            key = (system["codec"], system["setting"])
            if key not in seen:
                seen.add(key)
                systems.append(system)
    first = reports[0]
    settings = dict(first["settings"])
    settings["opus_version"] = next((r["settings"].get("opus_version") for r in reports
                                     if r["settings"].get("opus_version")), None)
    return EvalReport(settings=settings, notes=first.get("notes", []), systems=systems, rows=[], failed=[])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="eval.json files written by nac eval")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    report = merged([json.loads(path.read_text()) for path in args.reports])
    plot_rd(report, args.output)
    print(f"{args.output}: {len(report.systems)} systems")


if __name__ == "__main__":
    main()
