"""The README's first command: encode, inspect and decode the bundled clip with
the ``nac`` CLI, then print size and quality.

    python tools/demo.py [AUDIO] [--out results/demo]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nac.audio import read_audio  # noqa: E402
from nac.lab.metrics import lsd_db, pesq_wb, si_sdr_db, snr_db, stoi  # noqa: E402


def nac(*args: object) -> None:
    command = [sys.executable, "-m", "nac.cli", *map(str, args)]
    print("$ nac " + " ".join(map(str, args)), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path, nargs="?", default=ROOT / "samples" / "speech-en-allison.flac")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "demo")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    encoded = args.out / f"{args.audio.stem}.nac"
    decoded = args.out / f"{args.audio.stem}.decoded.wav"
    nac("encode", args.audio, encoded, "-f")
    nac("inspect", encoded)
    nac("decode", encoded, "-o", decoded, "-f")

    original, rate = read_audio(args.audio)
    restored, _ = read_audio(decoded)
    seconds = original.shape[1] / rate
    size = encoded.stat().st_size
    print(f"\n{args.audio.name}: {seconds:.2f} s, {original.shape[0]} ch, {rate} Hz")
    print(f"  original file {args.audio.stat().st_size} bytes; 16-bit PCM {original.size * 2} bytes")
    print(f"  .nac {size} bytes = {size * 8 / seconds / 1000:.2f} kbps, {original.size * 2 / size:.1f}x smaller than PCM")
    print(f"  SNR {snr_db(original, restored):.2f} dB, SI-SDR {si_sdr_db(original, restored):.2f} dB, "
          f"LSD {lsd_db(original, restored, rate):.2f} dB")
    perceptual = {"PESQ-WB": pesq_wb(original, restored, rate), "STOI": stoi(original, restored, rate)}
    shown = [f"{name} {value:.2f}" for name, value in perceptual.items() if value is not None]
    print("  " + (", ".join(shown) if shown else "PESQ/STOI: install the [eval] extra to see them"))
    print(f"  decoded audio: {decoded}")


if __name__ == "__main__":
    main()
