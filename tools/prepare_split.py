"""Split a folder of audio into train/ and test/ folders of symlinks (no copies).

    python tools/prepare_split.py --source LibriSpeech/test-clean --train-ratio 0.5 --seed 42

Audio files (wav, flac, ogg, mp3) are found recursively under --source and
sorted by path; a shuffle seeded with --seed picks round(ratio * count) of
them for train/, the rest go to test/. Links keep the path below --source and
point at absolute targets. Symlinks left in train/ and test/ by an earlier run
are replaced or removed; any other existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nac.audio import AUDIO_SUFFIXES  # noqa: E402
from nac.errors import NacError, OutputError, UsageError  # noqa: E402

SPLITS = ("train", "test")


def find_audio(source: Path, exclude: list[Path]) -> list[Path]:
    """Audio files under ``source``, relative to it and sorted, skipping anything under ``exclude``."""
    found = []
    for path in source.rglob("*"):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            continue
        if any(path.absolute().is_relative_to(folder) for folder in exclude):
            continue
        found.append(path.relative_to(source))
    return sorted(found, key=lambda p: p.as_posix())


def split_files(files: list[Path], train_ratio: float, seed: int) -> dict[str, list[Path]]:
    """{"train": [...], "test": [...]} from a shuffle of ``files`` seeded with ``seed``."""
    if not 0.0 <= train_ratio <= 1.0:
        raise UsageError(f"--train-ratio must lie in 0..1, not {train_ratio}")
    order = list(files)
    random.Random(seed).shuffle(order)
    cut = round(train_ratio * len(order))
    return {"train": sorted(order[:cut]), "test": sorted(order[cut:])}


def make_links(source: Path, out: Path, split: dict[str, list[Path]]) -> None:
    """Create the planned symlinks under ``out``; checks every target for conflicts first."""
    source = source.resolve()
    planned = {out / name / rel: source / rel for name, rels in split.items() for rel in rels}
    blocked = [link for link in planned if (link.exists() and not link.is_symlink()) or _has_file_parent(link, out)]
    if blocked:
        raise OutputError(f"{blocked[0]}: exists and is not a symlink; refusing to overwrite ({len(blocked)} such)")
    for name in SPLITS:
        folder = out / name
        if folder.is_dir():
            for old in folder.rglob("*"):
                if old.is_symlink() and old not in planned:
                    old.unlink()
    for link, target in planned.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        os.symlink(target, link)


def _has_file_parent(link: Path, out: Path) -> bool:
    """True if a folder the link needs exists as something other than a folder."""
    return any(parent.exists() and not parent.is_dir() for parent in link.parents if parent.is_relative_to(out))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder searched recursively for audio")
    parser.add_argument("--train-ratio", type=float, default=0.5, help="share of files that go to train/")
    parser.add_argument("--seed", type=int, default=42, help="seed of the shuffle")
    parser.add_argument("--out", type=Path, default=Path("results/split"), help="train/ and test/ are made here")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, list[Path]]:
    if not args.source.is_dir():
        raise UsageError(f"{args.source}: not a folder")
    out = args.out.absolute()
    files = find_audio(args.source, [out / name for name in SPLITS])
    if not files:
        raise UsageError(f"{args.source}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    split = split_files(files, args.train_ratio, args.seed)
    make_links(args.source, out, split)
    return split


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        split = run(args)
    except NacError as err:
        print(f"prepare_split: error: {err}", file=sys.stderr)
        return err.exit_code
    total = sum(len(v) for v in split.values())
    for name in SPLITS:
        print(f"{name}: {len(split[name])} files -> {args.out / name}")
    print(f"total: {total} files (seed {args.seed}, train ratio {args.train_ratio})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
