"""Rank a model's latent channels by how little they matter, for the ``coarse_channels`` setting.

    python tools/channel_order.py nac-speech-16k-v5 CORPUS --files 30

Codes ``--files`` files of the corpus's train split (evenly spread) with each
latent channel in turn one bit coarser and writes the order, cheapest first,
to the model's manifest row (:func:`nac.lab.companions.channel_order`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from nac.lab.companions import channel_order  # noqa: E402
from nac.lab.evaluate import collect_inputs, spread  # noqa: E402
from nac.model import manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name in the manifest")
    parser.add_argument("corpus", type=Path, help="corpus folder with MANIFEST.tsv")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--code-bits", type=int, default=4)
    parser.add_argument("--models-dir", type=Path, default=manifest.MODELS_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = spread(collect_inputs([args.corpus], "train", "speech_wb"), args.files)
    order = channel_order(args.model, files, args.models_dir, args.code_bits)
    print(f"wrote the channel order of {args.model}: {order}")


if __name__ == "__main__":
    main()
