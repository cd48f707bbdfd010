"""Speed and memory of nac against opusenc/opusdec, as x real time and peak RSS.

    python tools/bench.py [--lengths 10,600,3600] [--threads 1,0] [--model NAME] [--no-opus]
        [--phase-iters N] [--encode-options "--residual-hz 1000 --residual-step 0.7"]

Inputs are WAV files of the bundled speech clip repeated to each length (in a
temporary folder). Every measurement is a separate process, so its peak RSS
is its own: ``nac encode`` / ``nac decode`` as a user runs them (import and
model load included), and ``opusenc --bitrate 12`` / ``opusdec`` on the same
file. ``--threads 0`` means all cores. Prints a table and the nac/opus ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nac.audio import read_audio, write_audio  # noqa: E402

SAMPLE = ROOT / "samples" / "speech-en-allison.flac"


def make_input(folder: Path, seconds: int) -> Path:
    clip, rate = read_audio(SAMPLE)
    path = folder / f"speech-{seconds}s.wav"
    reps = int(np.ceil(seconds * rate / clip.shape[1]))
    write_audio(path, np.tile(clip, reps)[:, : seconds * rate], rate)
    return path


def measure(command: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process (threads 0 = library default)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {child.returncode}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="10,600,3600", help="input lengths in seconds")
    parser.add_argument("--threads", default="1,0", help="thread counts to try; 0 = all cores")
    parser.add_argument("--model", default=None)
    parser.add_argument("--phase-iters", type=int, default=None, help="nac decode --phase-iters [the model's]")
    parser.add_argument("--encode-options", default="",
                        help="extra nac encode options, e.g. '--residual-hz 1000 --residual-step 0.7'")
    parser.add_argument("--no-opus", action="store_true")
    args = parser.parse_args()
    nac = [sys.executable, "-m", "codec.cli"]
    opus = not args.no_opus and shutil.which("opusenc") and shutil.which("opusdec")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seconds in [int(x) for x in args.lengths.split(",")]:
            source = make_input(folder, seconds)
            for threads in [int(x) for x in args.threads.split(",")]:
                label = str(threads) if threads else f"all ({os.cpu_count()})"
                model = ["--model", args.model] if args.model else []
                iters = ["--phase-iters", str(args.phase_iters)] if args.phase_iters is not None else []
                jobs = [
                    ("nac encode", nac + ["encode", str(source), str(folder / "x.nac"), "-f", *model,
                                          *args.encode_options.split()]),
                    ("nac decode", nac + ["decode", str(folder / "x.nac"), "-o", str(folder / "x.wav"), "-f",
                                          *model, *iters]),
                ]
                if opus:
                    jobs += [
                        ("opusenc 12k", ["opusenc", "--quiet", "--bitrate", "12", str(source), str(folder / "x.opus")]),
                        ("opusdec", ["opusdec", "--quiet", str(folder / "x.opus"), str(folder / "y.wav")]),
                    ]
                for name, command in jobs:
                    wall, peak = measure(command, threads)
                    rows.append((seconds, label, name, wall, seconds / wall, peak))
                    print(f"{seconds:>6} s  threads {label:<8} {name:<12} {wall:8.2f} s  "
                          f"{seconds / wall:8.1f}x real time  peak RSS {peak:7.0f} MB", flush=True)
    print("\n| input | threads | tool | wall s | x real time | peak RSS MB |\n|---|---|---|---|---|---|")
    for seconds, label, name, wall, speed, peak in rows:
        print(f"| {seconds} s | {label} | {name} | {wall:.2f} | {speed:.1f} | {peak:.0f} |")
    speeds = {(seconds, label, name): speed for seconds, label, name, _, speed, _ in rows}
    for (seconds, label, name), speed in speeds.items():
        opus_name = {"nac encode": "opusenc 12k", "nac decode": "opusdec"}.get(name)
        if (seconds, label, opus_name) in speeds:
            ratio = speed / speeds[(seconds, label, opus_name)]
            print(f"{seconds} s, threads {label}: {name} speed / {opus_name} speed = {ratio:.2f}")


if __name__ == "__main__":
    main()
