"""Train a model's phase initializer: the low band's starting phase for Griffin-Lim (nac.lab.phase_init).

    python tools/train_phase.py prepare CORPUS PAIRS [--model NAME] [--minutes 30] [--points 8k,12k,16k,24k]
    python tools/train_phase.py train PAIRS OUT.safetensors [--model NAME] [--minutes 8] [--device cuda] [--record]

``prepare`` codes train-split files at the model's ladder points (in turn, a
file each) with each file's reference beside its ``.nac``; ``train`` fits the
initializer, keeps the weights that score best on the held-out pairs and,
with ``--record``, lists them as the model's phase initializer in the
manifest.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac.lab import evaluate, phase_init  # noqa: E402
from nac.model import manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    first = sub.add_parser("prepare")
    first.add_argument("corpus", type=Path)
    first.add_argument("pairs", type=Path)
    first.add_argument("--minutes", type=float, default=30.0)
    first.add_argument("--points", default="8k,12k,16k,24k", help="the model's ladder points to code at, in turn")
    second = sub.add_parser("train")
    second.add_argument("pairs", type=Path)
    second.add_argument("out", type=Path)
    second.add_argument("--minutes", type=float, default=8.0)
    second.add_argument("--steps", type=int, default=0, help="stop after this many steps, if sooner (0: no limit)")
    second.add_argument("--device", default="cpu")
    second.add_argument("--batch", type=int, default=64)
    second.add_argument("--channels", type=int, default=128, help="the initializer's width")
    second.add_argument("--lr", type=float, default=1e-3)
    second.add_argument("--every", type=int, default=200, help="steps between held-out scores")
    second.add_argument("--record", action="store_true",
                        help="list OUT (in the models folder) as the model's phase initializer in the manifest")
    second.add_argument("--workers", type=int, default=os.cpu_count(), help="processes decoding the pairs")
    for each in (first, second):
        each.add_argument("--model", default=None)
    args = parser.parse_args()
    if args.command == "prepare":
        entry = manifest.find_entry(args.model)
        points = [entry.point(name).settings for name in args.points.split(",")]
        files = evaluate.collect_inputs([args.corpus], "train", "speech_wb")
        count = phase_init.prepare(entry.name, files, args.pairs, points, args.minutes)
        print(f"{count} pairs in {args.pairs}")
        return
    if args.record and args.out.resolve().parent != manifest.MODELS_DIR.resolve():
        parser.error(f"--record needs OUT in the models folder {manifest.MODELS_DIR}")
    score = phase_init.train(args.model, args.pairs, args.out, args.minutes, args.steps, args.device, args.batch,
                             args.channels, args.lr, args.every, args.workers, log=lambda line: print(line, flush=True))
    if score is None:
        print("no step beat the phase head; nothing written")
        return
    print(f"wrote {args.out}: held-out weighted cos {score:.4f}")
    if args.record:
        phase_init.record(args.model, args.out, manifest.MODELS_DIR)
        print(f"listed as the model's phase initializer in {manifest.MODELS_DIR / 'manifest.json'}")


if __name__ == "__main__":
    main()
