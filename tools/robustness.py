"""What damage and silence cost: audio lost per flipped byte, and the rate of digital silence.

    python tools/robustness.py [AUDIO] [--seconds 60] [--flips 200] [--points 6k,12k,24k]

For each ladder point, codes ``--seconds`` of the clip (tiled) and flips one
random byte of the file ``--flips`` times; each damaged copy goes through
salvage, and the audio it loses is counted (the header is left alone: a
damaged header loses the file in any format). Then codes the same length of
digital silence, alone and between two halves of speech. Prints one table.
Works on files of any format version nac writes, so an older checkout can be
measured by the same script.
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
from nac.format import container  # noqa: E402
from nac.model import manifest, zoo  # noqa: E402


def lost_seconds(data: bytes, rng: np.random.Generator, flips: int) -> list[float]:
    """Seconds of audio salvage loses when one byte after the header is flipped, per flip."""
    info, header_size = container.read_info(data)
    tables = zoo.for_stream(info).tables
    seconds = []
    for _ in range(flips):
        damaged = bytearray(data)
        damaged[int(rng.integers(header_size, len(data)))] ^= int(rng.integers(1, 256))
        result = container.salvage(bytes(damaged), tables)
        lost = sum(info.chunk_span(run.last)[1] - info.chunk_span(run.first)[0] for run in result.lost)
        seconds.append(lost / info.model_sample_rate)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path, nargs="?", default=ROOT / "samples" / "speech-en-allison.flac")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--points", default="6k,12k,24k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clip, rate = read_audio(args.audio)
    length = round(args.seconds * rate)
    speech = np.tile(clip, length // clip.shape[1] + 1)[:, :length]
    silence = np.zeros_like(speech)
    middle = np.concatenate([speech[:, : length // 4], silence[:, : length // 2], speech[:, : length - length // 4
                                                                                          - length // 2]], axis=1)
    entry = manifest.find_entry(None)
    rng = np.random.default_rng(args.seed)
    print(f"{args.audio.name} tiled to {args.seconds:g} s; {args.flips} single-byte flips per point")
    print("| point | kbps | lost per flip: mean / median / max s | flips losing > 1.1 s | silence kbps | "
          "speech with half silence kbps |")
    print("|---|---:|---|---:|---:|---:|")
    for name in args.points.split(","):
        settings = entry.point(name).settings
        data = api.encode(speech, rate, settings)
        lost = np.array(lost_seconds(data, rng, args.flips))
        quiet = api.encode(silence, rate, settings)
        mixed = api.encode(middle, rate, settings)
        kbps = lambda coded: len(coded) * 8 / args.seconds / 1000  # noqa: E731
        print(f"| {name} | {kbps(data):.2f} | {lost.mean():.2f} / {np.median(lost):.2f} / {lost.max():.2f} | "
              f"{int((lost > 1.1).sum())} | {kbps(quiet):.3f} | {kbps(mixed):.2f} |", flush=True)


if __name__ == "__main__":
    main()
