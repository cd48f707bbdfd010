"""Peak memory does not grow with the input's length (a reduced-size version of tools/bench.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codec.audio_io import write_audio

# Measured here (one thread), 10 s -> 300 s -> 900 s of speech: encode 277 ->
# 292 -> 295 MB, decode 300 -> 307 -> 301 MB (streaming.tune_heap() keeps the
# window arrays on a heap that is reused; chunk records go straight to the
# output). Before that, encoding grew ~0.1 MB per second of audio and
# whole-file decoding added ~150 MB at 300 s. Peaks vary by some MB from run
# to run, so the bounds leave room (the issue's own bound is 1.5x of the 10 s
# run and under 500 MB). With the residual layer (--residual-hz 2000), 10 s ->
# 300 s -> 900 s: encode 308 -> 334 -> 329 MB (the encoder also runs the
# decoder network), decode 302 -> 307 -> 329 MB (default files in the same
# run: decode 298 -> 329 -> 317 MB):
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


def peak_rss_mb(*args: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", REPORT_CHILD_PEAK, sys.executable, "-m", "codec.cli", *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]) / 1024


@pytest.mark.parametrize("options", [[], ["--residual-hz", "2000"]], ids=["default", "residual"])
def test_long_input_peak_memory_is_flat(tmp_path: Path, speech, options):
    clip, rate = speech
    peaks = {}
    for seconds in (10, 300):
        source = tmp_path / f"{seconds}.wav"
        write_audio(source, np.tile(clip, seconds // 15 + 1)[:, : seconds * rate], rate)
        encode = peak_rss_mb("encode", str(source), str(tmp_path / f"{seconds}.nac"), *options)
        decode = peak_rss_mb("decode", str(tmp_path / f"{seconds}.nac"), "-o", str(tmp_path / f"{seconds}.out.wav"))
        peaks[seconds] = (encode, decode)
    for command, short, long in zip(("encode", "decode"), peaks[10], peaks[300]):
        assert long <= short + ALLOWED_GROWTH_MB[command] and long < CEILING_MB, (command, peaks)
