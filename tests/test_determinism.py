"""Same input, same bytes; and outputs that cannot be written leave nothing behind.

Encoding must not depend on torch's thread count (oneDNN and MKL split their
sums by thread, so ``api.encode`` runs its model on ``ENCODE_THREADS``).
Decoding is only promised to repeat itself at a given thread count on one
machine: its float results may differ between thread counts.
"""

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nac import api
from nac.audio import write_audio, resample
from nac.cli import app
from nac.settings import EncoderSettings

ROOT = Path(__file__).resolve().parent.parent
ALL_THREADS = max(2, os.cpu_count() or 1)


@pytest.fixture()
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(speech) -> list[tuple[np.ndarray, int, dict]]:
    """1 s mono 16 kHz (8 bits), 0.5 s stereo 44.1 kHz with stored phase (16 bits), and with the residual layer."""
    audio, rate = speech
    stereo = resample(np.concatenate([audio, 0.5 * audio])[:, rate : rate + rate // 2], rate, 44100)
    return [(audio[:, :rate], rate, EncoderSettings()), (stereo, 44100, EncoderSettings(bits=16, store_phase=True)),
            (stereo, 44100, EncoderSettings(residual_hz=2000))]


def test_encoding_is_identical_run_to_run_and_across_thread_counts(inputs, restore_threads):
    for audio, rate, settings in inputs:
        results = {}
        for threads in (1, ALL_THREADS):
            torch.set_num_threads(threads)
            results[threads] = [api.encode(audio, rate, settings) for _ in range(2)]
            assert results[threads][0] == results[threads][1], f"{threads} thread(s): two encodes differ"
            assert torch.get_num_threads() == threads  # encode restores the caller's setting
        assert results[1][0] == results[ALL_THREADS][0], "1 thread and all threads encode differently"


def test_decoding_is_identical_run_to_run(inputs, restore_threads):
    for audio, rate, settings in inputs:
        data = api.encode(audio, rate, settings)
        for threads in (1, ALL_THREADS):
            torch.set_num_threads(threads)
            first, second = api.decode(data)[0], api.decode(data)[0]
            np.testing.assert_array_equal(first, second)


def test_windows_decoded_side_by_side_match_one_thread(speech, restore_threads):
    audio, rate = speech
    data = api.encode(np.tile(audio, 3)[:, : 40 * rate], rate)  # 5 chunks: several windows in flight
    torch.set_num_threads(1)
    alone = api.decode(data)[0]
    torch.set_num_threads(ALL_THREADS)
    side_by_side = api.decode(data)[0]
    assert torch.get_num_threads() == ALL_THREADS  # decode restores the caller's setting
    np.testing.assert_array_equal(alone, side_by_side)


# --------------------------------------------------------------------------
# Outputs that cannot be written
# --------------------------------------------------------------------------


def _small_file_limit():
    """In the child: writes past 4 KiB fail with EFBIG instead of killing it with SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))


def nac_with_small_file_limit(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "nac.cli", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, preexec_fn=_small_file_limit,
    )


def test_full_disk_leaves_no_partial_file(tmp_path: Path, speech):
    audio, rate = speech
    write_audio(tmp_path / "long.wav", audio[:, : 8 * rate], rate)  # its .nac is over 4 KiB (~7 KB)
    (tmp_path / "short.nac").write_bytes(api.encode(audio[:, : rate // 4], rate))  # its .wav is 8 KiB
    before = sorted(p.name for p in tmp_path.iterdir())

    for args in (("encode", tmp_path / "long.wav"), ("decode", tmp_path / "short.nac")):
        result = nac_with_small_file_limit(*args)
        assert result.returncode == 7, result.stderr
        message = result.stderr.strip().splitlines()
        assert len(message) == 1 and "cannot write (File too large)" in message[0], result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file


@pytest.mark.parametrize("where", ["missing-folder", "file-as-folder"])
def test_unwritable_output_path(tmp_path: Path, speech, where):
    """Tests run as root, which chmod cannot stop: use paths no one can create instead."""
    audio, rate = speech
    write_audio(tmp_path / "clip.wav", audio[:, : rate // 4], rate)
    (tmp_path / "clip.nac").write_bytes(api.encode(audio[:, : rate // 4], rate))
    if where == "file-as-folder":
        (tmp_path / "blocker").write_text("a file, not a folder")
        folder = tmp_path / "blocker"
    else:
        folder = tmp_path / "no" / "such"
    before = sorted(p.name for p in tmp_path.iterdir())
    runner = CliRunner()
    for args in (["encode", tmp_path / "clip.wav", folder / "out.nac"],
                 ["decode", tmp_path / "clip.nac", "-o", folder / "out.wav"]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 7, result.output
        assert "cannot write" in result.output and "out." in result.output
        assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("late", [False, True])
def test_a_signal_at_any_point_of_an_atomic_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch, late):
    """SIGTERM raises in nac's handler wherever the main thread is; here it lands just after the temporary
    file is created (``late``: just after its descriptor is wrapped), the window a real signal once hit."""
    from nac import audio
    from nac.cli import Terminated

    real_open, real_fdopen = os.open, os.fdopen

    def open_then_signal(*args, **kwargs):
        real_open(*args, **kwargs)
        raise Terminated(signal.SIGTERM)

    def fdopen_then_signal(*args, **kwargs):
        real_fdopen(*args, **kwargs)
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(os, "fdopen" if late else "open", fdopen_then_signal if late else open_then_signal)
    with pytest.raises(Terminated):
        audio.write_atomic(tmp_path / "out.nac", lambda handle: handle.write(b"data"))
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_write_makes_its_file_as_any_new_file_is_made(tmp_path: Path):
    from nac import audio

    mask = os.umask(0o027)
    try:
        audio.write_atomic(tmp_path / "out.nac", lambda handle: handle.write(b"data"))
    finally:
        os.umask(mask)
    assert (tmp_path / "out.nac").read_bytes() == b"data"
    assert (tmp_path / "out.nac").stat().st_mode & 0o777 == 0o640
