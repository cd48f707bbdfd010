"""Peak memory does not grow with the input's length (a reduced-size version of tools/bench.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nac.audio import read_audio, resample, write_audio

# Measured here (one thread), 10 s -> 300 s -> 900 s of speech: encode 277 ->
# 292 -> 295 MB, decode 300 -> 307 -> 301 MB (codec.tune_heap() keeps the
# window arrays on a heap that is reused; chunk records go straight to the
# output). Before that, encoding grew ~0.1 MB per second of audio and
# whole-file decoding added ~150 MB at 300 s. With a residual layer
# (then --residual-hz 2000) the encoder also runs the decoder network: 10 s -> 60 s
# -> 300 s, twice, encode 304 / 302 -> 313 / 325 -> 331 / 333 MB, decode 307 /
# 300 -> 308 / 326 -> 311 / 330 MB (default files in the same runs: decode 298
# / 295 -> 313 / 309 -> 311 / 323 MB). A 10 s file decodes in part-filled
# windows, so its peak sits up to ~35 MB below the steady state that 60 s
# already reaches; growth is judged from 60 s, and the issue's own bound (1.5x
# the 10 s peak, under 500 MB) from 10 s. Peaks vary by some MB from run to run,
# and once in a while by more: in a full local run, with the residual layer,
# encode peaked at 316 MB at 60 s and 361 MB at 300 s, where alone the same
# commands gave 343 / 343 MB (and 332 MB at 900 s); so each peak is the lower
# of two runs.
ALLOWED_GROWTH_MB = {"encode": 40, "decode": 40}
CEILING_MB = 500


# Linux keeps ru_maxrss across execve, so a child forked from this (large)
# pytest process would report at least pytest's own size. A small Python
# process in between forks the real command and reports that child's peak.
REPORT_CHILD_PEAK = (
    "import os, subprocess, sys; child = subprocess.Popen(sys.argv[1:]); "
    "_, status, usage = os.wait4(child.pid, 0); print(usage.ru_maxrss); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def peak_rss_mb(*args: str, stdin=None) -> float:
    result = subprocess.run(
        [sys.executable, "-c", REPORT_CHILD_PEAK, sys.executable, "-m", "nac.cli", *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdin=stdin,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]) / 1024


@pytest.mark.parametrize("options", [[], ["--bitrate", "24k"]], ids=["default", "24k"])
def test_long_input_peak_memory_is_flat(tmp_path: Path, speech, options):
    clip, rate = speech
    peaks = {}
    for seconds in (10, 60, 300):
        source = tmp_path / f"{seconds}.wav"
        write_audio(source, np.tile(clip, seconds // 15 + 1)[:, : seconds * rate], rate)
        encoded, decoded = tmp_path / f"{seconds}.nac", tmp_path / f"{seconds}.out.wav"
        # the lower of two runs: a single peak now and then lands ~30-45 MB above the usual one
        encode = min(peak_rss_mb("encode", str(source), str(encoded), "-f", *options) for _ in range(2))
        decode = min(peak_rss_mb("decode", str(encoded), "-o", str(decoded), "-f") for _ in range(2))
        peaks[seconds] = (encode, decode)
    for command, first, steady, long in zip(("encode", "decode"), peaks[10], peaks[60], peaks[300]):
        assert long <= steady + ALLOWED_GROWTH_MB[command], (command, peaks)
        assert long <= 1.5 * first and long < CEILING_MB, (command, peaks)


def test_pipes_keep_memory_flat(tmp_path: Path, speech):
    """Standard input is spooled to disk, and a WAV to a pipe or device is written as it is decoded."""
    clip, rate = speech
    stereo = np.stack([clip[0], np.roll(clip[0], 800)])
    peaks = {}
    for seconds in (20, 240):
        source = tmp_path / f"{seconds}.wav"
        write_audio(source, np.tile(stereo, seconds // 15 + 1)[:, : seconds * rate], rate)
        write_audio(source, resample(read_audio(source)[0], rate, 48000), 48000)  # the fullband model's path
        encoded = tmp_path / f"{seconds}.nac"
        with source.open("rb") as stdin:
            encode = peak_rss_mb("encode", "-", str(encoded), "-f", stdin=stdin)
        decode = min(peak_rss_mb("decode", str(encoded), "-o", os.devnull) for _ in range(2))
        peaks[seconds] = (encode, decode)
    # gathered in memory (before, commit b7017e1), 240 s added 290 MB to encode and 245 MB to decode
    for command, short, long in zip(("encode", "decode"), peaks[20], peaks[240]):
        assert long <= short + ALLOWED_GROWTH_MB[command] + 20, (command, peaks)
