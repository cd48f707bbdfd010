"""The README's set-up commands and CI stay the same commands; the demo prints what the README says."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme_commands = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("python3 -m venv")]
    ci_commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(readme_commands) == 2, "README must open with exactly two set-up commands"
    assert ci_commands == [readme_commands[1]]
    assert "pytest" in readme_commands[1] and "tools/demo.py" in readme_commands[0]


def test_the_demo_numbers_in_the_readme_are_what_nac_makes():
    """The README quotes the demo's size exactly (encoding is deterministic) and its scores to 0.05."""
    from nac import api
    from nac.audio import read_audio
    from nac.lab.metrics import pesq_wb, stoi

    text = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"clip at the default point: ([\d,]+) bytes, ([\d.]+) kbps .*?PESQ-WB (\d\.\d+), STOI (\d\.\d+)", text)
    assert found, "the README quotes the demo's numbers"
    size, kbps, pesq, intelligibility = int(found[1].replace(",", "")), *map(float, found.groups()[1:])
    audio, rate = read_audio(ROOT / "samples" / "speech-en-allison.flac")
    data = api.encode(audio, rate)
    assert len(data) == size and round(len(data) * 8 / (audio.shape[1] / rate) / 1000, 2) == kbps
    if importlib.util.find_spec("pesq") is None:
        pytest.skip("PESQ and STOI need the [eval] extra")
    decoded, _ = api.decode(data)
    assert abs(pesq_wb(audio, decoded, rate) - pesq) < 0.05 and abs(stoi(audio, decoded, rate) - intelligibility) < 0.01
