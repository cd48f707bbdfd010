"""Training across two processes with torchrun (gloo on CPU): sharding, rank-0 checkpoints, resume."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from nac.audio import write_audio
from nac.lab.train import load_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _torchrun(data: Path, run_dir: Path, steps: int) -> str:
    command = [
        str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "nac.lab.train", str(data),
        "--run-dir", str(run_dir), "--steps", str(steps), "--width", "16", "--model-channels", "4",
        "--crop-seconds", "0.25", "--batch-size", "2", "--threads", "1", "--log-every", "1", "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr  # training progress goes to stderr


def test_two_process_training_and_resume(tmp_path: Path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for index in range(4):
        tone = np.sin(2 * np.pi * (200 + 50 * index) * np.arange(24000) / 16000)
        write_audio(data / f"{index}.wav", (0.3 * tone + 0.01 * rng.standard_normal(24000))[None], 16000)
    run_dir = tmp_path / "run"
    first = _torchrun(data, run_dir, 3)
    assert "2 process(es) on cpu" in first
    assert first.count("step 3 ") == 1  # only rank 0 logs
    assert int(load_checkpoint(run_dir / "last.pt")["step"]) == 3
    second = _torchrun(data, run_dir, 5)
    assert "resumed" in second and int(load_checkpoint(run_dir / "last.pt")["step"]) == 5
