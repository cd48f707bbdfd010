"""The old evaluation script, kept as a thin wrapper: it runs ``nac eval`` (codec/evaluate.py).

    python tools/eval.py /work/data/corpus --max-files 50 --model my-model

Takes the old flags and passes them on: ``--out DIR`` (``-o``), ``--bits 16``
and ``--store-phase`` (as a preset), ``--keep``, ``--max-files``,
``--manifest-split``, ``--kind``, ``--model``; ``--pesq`` is accepted and
ignored (every installed metric is scored). Other options go to ``nac eval``
as they are. See ``nac eval --help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nac.cli import app  # noqa: E402


def translate(argv: list[str]) -> list[str]:
    """``nac eval`` arguments for the old script's arguments."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8)
    parser.add_argument("--store-phase", action="store_true")
    parser.add_argument("--pesq", action="store_true")
    known, rest = parser.parse_known_args(argv)
    preset = "+".join(["bits16"] * (known.bits == 16) + ["store_phase"] * known.store_phase) or "default"
    args = ["eval", *rest]
    if known.out:
        args += ["-o", known.out]
    if "--presets" not in rest:
        args += ["--presets", preset]
    return args


def main(argv: list[str] | None = None) -> None:
    app(translate(sys.argv[1:] if argv is None else argv), prog_name="tools/eval.py")


if __name__ == "__main__":
    main()
