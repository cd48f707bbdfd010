"""The torch and numpy decoders on the same streams: PESQ-WB of each, and how far apart their outputs are.

    python tools/compare_decoders.py CORPUS [--files 30] [--seconds 20] [--points all]

Codes the first ``--seconds`` of ``--files`` dev ``speech_wb`` files of the
corpus (spread over its MANIFEST.tsv) at each point, decodes each stream with
the torch model and with its numpy copy (:mod:`nac.model.inference`), and
prints a table: mean PESQ-WB of each against the original, their difference,
and the lowest SNR of the numpy decoder's output against torch's.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nac import api  # noqa: E402
from nac.audio import read_audio  # noqa: E402
from nac.lab import metrics  # noqa: E402
from nac.model import manifest, zoo  # noqa: E402


def dev_files(corpus: Path, count: int) -> list[Path]:
    with (corpus / "MANIFEST.tsv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t")
                if row["kind"] == "speech_wb" and row["split"] == "dev"]
    return [corpus / rows[round(i * (len(rows) - 1) / max(1, count - 1))]["file"] for i in range(count)]


def decode_with_numpy(data: bytes) -> np.ndarray:
    """The stream decoded by the numpy decoder, as a process that has not loaded torch decodes it."""
    loaded = zoo.torch_loaded
    zoo.torch_loaded = lambda: False
    try:
        return api.decode(data)[0]
    finally:
        zoo.torch_loaded = loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--points", default="all")
    args = parser.parse_args()
    entry = manifest.find_entry(None)
    points = [point.name for point in entry.ladder] if args.points == "all" else args.points.split(",")
    scores = {point: ([], [], []) for point in points}
    for path in dev_files(args.corpus, args.files):
        audio, rate = read_audio(path)
        audio = audio[:, : int(args.seconds * rate)]
        for point in points:
            data = api.encode(audio, rate, entry.point(point).settings)
            reference = api.decode(data)[0]  # torch is loaded here (the encoder ran it)
            ours = decode_with_numpy(data)
            torch_scores, numpy_scores, apart = scores[point]
            torch_scores.append(metrics.pesq_wb(audio, reference, rate))
            numpy_scores.append(metrics.pesq_wb(audio, ours, rate))
            apart.append(metrics.snr_db(reference, ours))
    print(f"{args.files} dev speech_wb files, first {args.seconds:g} s of each, {entry.name}")
    print("| point | PESQ-WB, torch decoder | PESQ-WB, numpy decoder | difference | numpy vs torch, lowest SNR dB |")
    print("|---|---:|---:|---:|---:|")
    for point, (torch_scores, numpy_scores, apart) in scores.items():
        difference = np.mean(numpy_scores) - np.mean(torch_scores)
        print(f"| {point} | {np.mean(torch_scores):.3f} | {np.mean(numpy_scores):.3f} | {difference:+.3f} | "
              f"{min(apart):.1f} |")


if __name__ == "__main__":
    main()
