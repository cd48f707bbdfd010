"""The README's set-up commands and CI stay the same commands."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme_commands = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("python3 -m venv")]
    ci_commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(readme_commands) == 2, "README must open with exactly two set-up commands"
    assert ci_commands == [readme_commands[1]]
    assert "pytest" in readme_commands[1] and "tools/demo.py" in readme_commands[0]
