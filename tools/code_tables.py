"""Count a model's entropy tables on the corpus's train split and list them as its companions.

    python tools/code_tables.py latent nac-speech-16k-v5 CORPUS [--files 300] [--dev-files 100] [--code-bits 3,4,5]
    python tools/code_tables.py residual nac-speech-16k-v5 CORPUS [--points 8k,12k,16k,24k]

``latent`` writes the latent codes' rANS tables (one per code width),
``residual`` the residual coder's starting counts, counted at the model's
ladder points; each prints what the tables give on the dev split
(:mod:`nac.lab.companions`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from nac.lab import companions  # noqa: E402
from nac.lab.evaluate import collect_inputs, spread  # noqa: E402
from nac.model import manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("latent", "residual"))
    parser.add_argument("model", help="model name in the manifest")
    parser.add_argument("corpus", type=Path, help="corpus folder with MANIFEST.tsv")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--dev-files", type=int, default=100)
    parser.add_argument("--code-bits", default="3,4,5", help="latent: comma-separated code bits to build tables for")
    parser.add_argument("--points", default="8k,12k,16k,24k", help="residual: the ladder points to count codes at")
    parser.add_argument("--models-dir", type=Path, default=manifest.MODELS_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = spread(collect_inputs([args.corpus], "train", "speech_wb"), args.files)
    dev = spread(collect_inputs([args.corpus], "dev", "speech_wb"), args.dev_files)
    if args.kind == "latent":
        coded = companions.latent_tables(args.model, train, dev, args.models_dir,
                                         tuple(int(b) for b in args.code_bits.split(",")))
        for bits, size in coded.items():
            print(f"code bits {bits}: {size} bytes of codes on {len(dev)} dev files")
    else:
        entry = manifest.find_entry(args.model, args.models_dir)
        points = [entry.point(name).settings for name in args.points.split(",")]
        before, after = companions.residual_tables(args.model, train, dev, points, args.models_dir)
        print(f"residual codes on {len(dev)} dev files at {args.points}: {before} bytes from the default counts, "
              f"{after} from these tables ({100 * (after / before - 1):+.2f} %)")


if __name__ == "__main__":
    main()
