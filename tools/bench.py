"""Encode/decode speed of nac as x real time, and peak memory.

    python tools/bench.py [--seconds 60] [--threads 1] [--repeat 3] [--model NAME]

The input is the bundled speech clip repeated to the requested length. Speed
is audio seconds per wall-clock second of ``codec.api.encode`` / ``decode``
(best of ``--repeat`` runs, model already loaded); peak RSS is the process's.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from codec import api, zoo  # noqa: E402
from codec.audio_io import read_audio  # noqa: E402


def best_time(function, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default=None)
    parser.add_argument("--audio", type=Path, default=ROOT / "samples" / "speech-en-allison.flac")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip, rate = read_audio(args.audio)
    reps = int(np.ceil(args.seconds * rate / clip.shape[1]))
    audio = np.tile(clip, reps)[:, : int(args.seconds * rate)]
    zoo.load_model(args.model)
    encode_s, data = best_time(lambda: api.encode(audio, rate, model=args.model), args.repeat)
    decode_s, _ = best_time(lambda: api.decode(data), args.repeat)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    duration = audio.shape[1] / rate
    print(f"input: {duration:.1f} s, {audio.shape[0]} ch, {rate} Hz; threads {args.threads}; "
          f"model {zoo.load_model(args.model).name}")
    print(f"file: {len(data)} bytes, {len(data) * 8 / duration / 1000:.2f} kbps")
    print(f"encode: {encode_s:.3f} s = {duration / encode_s:.1f}x real time")
    print(f"decode: {decode_s:.3f} s = {duration / decode_s:.1f}x real time")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
