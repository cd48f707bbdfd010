"""What stereo costs: each file's size as coded, as its mono downmix, and made near-mono, at ladder points.

    python tools/stereo_cost.py FILE_OR_FOLDER... [--points 24k,32k] [--excerpt 20] [--side 0.1] [--model NAME]

For every two-channel file (the middle ``--excerpt`` seconds): kbps of the file
as it is, of its mono downmix ``M = (L + R) / 2``, and of a near-mono copy
``M +- side * S`` (``S = (L - R) / 2``); then the near-mono copy's cost over the
downmix's, the figure the stereo layer is meant to keep near 1, and whether a
copy with identical channels decodes to identical channels. One table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nac import api  # noqa: E402
from nac.audio import read_audio  # noqa: E402
from nac.audio import AUDIO_SUFFIXES  # noqa: E402


def kbps(audio: np.ndarray, rate: int, point: str, model: str | None) -> float:
    return 8 * len(api.encode(audio, rate, bitrate=point, model=model)) / (audio.shape[1] / rate) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--points", default="24k,32k", help="ladder points, comma-separated")
    parser.add_argument("--excerpt", type=float, default=20.0, help="seconds from the middle of each file")
    parser.add_argument("--side", type=float, default=0.1, help="side signal kept in the near-mono copy")
    parser.add_argument("--model", default=None, help="model [the one nac picks for the input]")
    args = parser.parse_args()
    files = [p for x in args.inputs for p in (sorted(x.rglob("*")) if x.is_dir() else [x])
             if p.suffix.lower() in AUDIO_SUFFIXES]
    print("| file | point | stereo kbps | downmix kbps | near-mono kbps | near-mono / downmix | same channels |")
    print("|---|---|---:|---:|---:|---:|---|")
    ratios: dict[str, list[float]] = {}
    for path in files:
        audio, rate = read_audio(path)
        if audio.shape[0] != 2:
            continue
        length = round(args.excerpt * rate)
        start = max(0, (audio.shape[1] - length) // 2)
        audio = audio[:, start : start + length]
        mid, side = audio.mean(axis=0), (audio[0] - audio[1]) / 2
        near = np.stack([mid + args.side * side, mid - args.side * side])
        for point in args.points.split(","):
            stereo, mono = kbps(audio, rate, point, args.model), kbps(mid[None], rate, point, args.model)
            nearly = kbps(near, rate, point, args.model)
            twin = api.decode(api.encode(np.stack([mid, mid]), rate, bitrate=point, model=args.model))[0]
            ratios.setdefault(point, []).append(nearly / mono)
            print(f"| {path.name} | {point} | {stereo:.2f} | {mono:.2f} | {nearly:.2f} | {nearly / mono:.2f} | "
                  f"{'yes' if np.array_equal(twin[0], twin[1]) else 'no'} |", flush=True)
    for point, values in ratios.items():
        print(f"\n{point}: near-mono / downmix mean {np.mean(values):.2f}, max {np.max(values):.2f} "
              f"over {len(values)} files")


if __name__ == "__main__":
    main()
