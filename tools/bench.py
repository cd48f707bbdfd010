"""Speed and memory of nac at every ladder point, next to opusenc/opusdec at the same bitrates, in one run.

    python tools/bench.py [--lengths 10,600,3600] [--threads 1,0] [--points all] [--model NAME]
        [--input FILE] [--nac "python -m nac.cli"] [--no-opus] [--seek 5] [--pipes]

Inputs are WAV files of the bundled speech clip (or ``--input``, at its own
rate and channels: music at 44.1 kHz stereo, say) repeated to each length (in
a temporary folder). Every measurement is a whole process as a user runs it,
start-up, imports and model load included, so its peak RSS is its own:
``nac encode IN OUT.nac -r POINT`` and ``nac decode OUT.nac -o X.wav``, then
``opusenc --bitrate KBPS`` and ``opusdec`` on the same input. ``--threads 0``
means all cores (``OMP_NUM_THREADS`` unset); otherwise that many. ``--seek S``
also times decoding S seconds from the middle of each file of 10 minutes or
more (``--start``/``--duration``). ``--nac`` runs another nac command line
(an older checkout, say) with the same arguments. Prints one line per process
as it goes, then a table with x real time and the nac/Opus speed ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nac.audio import audio_info, read_audio, write_audio  # noqa: E402
from nac.model.manifest import find_entry, input_kind  # noqa: E402

SAMPLE = ROOT / "samples" / "speech-en-allison.flac"


@dataclass
class Run:
    seconds: int
    threads: str
    point: str
    tool: str
    wall: float
    peak_mb: float

    @property
    def speed(self) -> float:
        return self.seconds / self.wall


def write_input(path: Path, seconds: int, sample: Path) -> None:
    clip, rate = read_audio(sample)
    reps = int(np.ceil(seconds * rate / clip.shape[1]))
    write_audio(path, np.tile(clip, reps)[:, : seconds * rate], rate)


def make_input(folder: Path, seconds: int, sample: Path = SAMPLE) -> Path:
    """``sample`` repeated to ``seconds``, written by a child process: on Linux a child's peak RSS starts from
    its parent's at exec, so this process must never hold the audio itself."""
    path = folder / f"input-{seconds}s.wav"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(write_input, path, seconds, sample).result()
    return path


def measure(command: list[str], threads: int, stdin: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process (threads 0 = the libraries' default), reading
    ``stdin`` if given; its standard output goes to the null device."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
        if threads:
            env[name] = str(threads)
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        with open(stdin or os.devnull, "rb") as source:
            child = subprocess.Popen(command, env=env, stdin=source, stdout=subprocess.DEVNULL, stderr=errors)
            _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} failed: {errors.read().decode(errors='replace').strip()}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="10,600,3600", help="input lengths in seconds")
    parser.add_argument("--threads", default="1,0", help="thread counts to try; 0 = all cores")
    parser.add_argument("--points", default="all", help="ladder points, comma-separated, or all")
    parser.add_argument("--model", default=None, help="model name [the default model]")
    parser.add_argument("--input", type=Path, default=SAMPLE, help="audio to repeat [the bundled speech clip]")
    parser.add_argument("--nac", default=f"{shlex.quote(sys.executable)} -m nac.cli",
                        help="the nac command line to time")
    parser.add_argument("--no-opus", action="store_true")
    parser.add_argument("--seek", type=float, default=5.0, help="seconds to decode from the middle (0: none)")
    parser.add_argument("--pipes", action="store_true", help="nac encodes from standard input and decodes to "
                                                              "standard output (opus as always)")
    args = parser.parse_args()
    _, rate, channels = audio_info(args.input)
    entry = find_entry(args.model, kind=input_kind(rate, channels))  # the model nac picks for such input
    points = [p.name for p in entry.ladder] if args.points == "all" else args.points.split(",")
    default = entry.point().name
    nac = shlex.split(args.nac)
    opus = not args.no_opus and shutil.which("opusenc") and shutil.which("opusdec")
    model = ["--model", args.model] if args.model else []
    runs: list[Run] = []

    def timed(seconds: int, label: str, point: str, tool: str, command: list[str], threads: int,
              stdin: Path | None = None) -> None:
        wall, peak = measure(command, threads, stdin)
        runs.append(Run(seconds, label, point, tool, wall, peak))
        print(f"{seconds:>6} s  threads {label:<8} {point:<10} {tool:<12} {wall:8.2f} s  "
              f"{seconds / wall:8.1f}x real time  peak RSS {peak:6.0f} MB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seconds in [int(x) for x in args.lengths.split(",")]:
            source = make_input(folder, seconds, args.input)
            for threads in [int(x) for x in args.threads.split(",")]:
                label = str(threads) if threads else f"all ({os.cpu_count()})"
                for point in points:
                    coded, decoded = folder / f"{point}.nac", folder / f"{point}.wav"
                    shown = f"{point} (default)" if point == default else point
                    timed(seconds, label, shown, "nac encode",
                          nac + ["encode", "-" if args.pipes else str(source), str(coded), "--bitrate", point, "-f",
                                 *model], threads, source if args.pipes else None)
                    timed(seconds, label, shown, "nac decode",
                          nac + ["decode", str(coded), "-o", "-" if args.pipes else str(decoded), "-f", *model],
                          threads)
                    if args.seek and seconds >= 600:
                        timed(seconds, label, shown, f"nac seek {args.seek:g} s",
                              nac + ["decode", str(coded), "-o", str(folder / "part.wav"), "-f", "--start",
                                     str(seconds / 2), "--duration", str(args.seek), *model], threads)
                    if opus:
                        kbps = point.rstrip("k")
                        timed(seconds, label, shown, "opusenc",
                              ["opusenc", "--quiet", "--bitrate", kbps, str(source), str(folder / "x.opus")], threads)
                        timed(seconds, label, shown, "opusdec",
                              ["opusdec", "--quiet", str(folder / "x.opus"), str(folder / "y.wav")], threads)
    print_table(runs)


def print_table(runs: list[Run]) -> None:
    """Markdown: per input, threads and point, nac and Opus speeds (x real time), their ratios and nac's memory."""
    by = {(r.seconds, r.threads, r.point, r.tool): r for r in runs}
    print("\n| input | threads | point | nac encode x | opusenc x | ratio | nac decode x | opusdec x | ratio "
          "| nac peak RSS MB (enc/dec) | seek wall s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for seconds, threads, point in dict.fromkeys((r.seconds, r.threads, r.point) for r in runs):
        row = {tool: by.get((seconds, threads, point, tool)) for tool in ("nac encode", "nac decode", "opusenc",
                                                                            "opusdec")}
        seek = next((r for (s, t, p, tool), r in by.items()
                     if (s, t, p) == (seconds, threads, point) and tool.startswith("nac seek")), None)

        def speed(tool: str) -> str:
            return f"{row[tool].speed:.1f}" if row[tool] else "-"

        def ratio(ours: str, theirs: str) -> str:
            return f"{row[ours].speed / row[theirs].speed:.2f}" if row[ours] and row[theirs] else "-"

        memory = "/".join(f"{row[t].peak_mb:.0f}" for t in ("nac encode", "nac decode") if row[t])
        length = f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"
        print(f"| {length} | {threads} | {point} | {speed('nac encode')} | {speed('opusenc')} | "
              f"{ratio('nac encode', 'opusenc')} | {speed('nac decode')} | {speed('opusdec')} | "
              f"{ratio('nac decode', 'opusdec')} | {memory} | {f'{seek.wall:.2f}' if seek else '-'} |")


if __name__ == "__main__":
    main()
