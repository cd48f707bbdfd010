"""End-to-end smoke test: encode and decode one input at two settings and score both.

    python tools/smoke_test.py [FILE]

Without FILE a 1 s 440 Hz tone at 16 kHz is used. Settings: near_lossless
(stored phase, 16-bit codes) and degraded (predicted phase, 8-bit codes).
Writes results/smoke_<setting>_recon.wav and _residual.wav (input minus
reconstruction). Exits 1 if a decoded signal has the wrong shape or rate or
is not finite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nac import api  # noqa: E402

from nac.lab import metrics  # noqa: E402
from nac.audio import read_audio, write_audio  # noqa: E402
from nac.errors import NacError  # noqa: E402
from nac.settings import EncoderSettings  # noqa: E402

SETTINGS = {  # name: (store_phase, bits)
    "near_lossless": (True, 16),
    "degraded": (False, 8),
}


def tone(seconds: float = 1.0, rate: int = 16000, hz: float = 440.0) -> np.ndarray:
    """A (1, time) float32 sine at half scale."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None, :]


def run_setting(name: str, audio: np.ndarray, rate: int, out: Path, model: str | None) -> tuple[dict, list[str]]:
    """Encode/decode at one setting, write its wavs; returns (scores, problems found)."""
    store_phase, bits = SETTINGS[name]
    data = api.encode(audio, rate, EncoderSettings(bits=bits, store_phase=store_phase), model=model)
    decoded, decoded_rate = api.decode(data, model=model)
    problems = []
    if decoded.shape != audio.shape or decoded_rate != rate:
        problems.append(f"{name}: decoded {decoded.shape} at {decoded_rate} Hz, input {audio.shape} at {rate} Hz")
    if not np.all(np.isfinite(decoded)):
        problems.append(f"{name}: decoded audio is not finite")
    reference, estimate = metrics.align_lengths(audio, np.nan_to_num(decoded))
    write_audio(out / f"smoke_{name}_recon.wav", np.clip(estimate, -1.0, 1.0), rate)
    write_audio(out / f"smoke_{name}_residual.wav", np.clip(reference - estimate, -1.0, 1.0), rate)
    seconds = audio.shape[1] / rate
    scores = {
        "bytes": len(data),
        "kbps": len(data) * 8 / seconds / 1000 if seconds else float("nan"),
        "snr_db": metrics.snr_db(reference, estimate),
        "si_sdr_db": metrics.si_sdr_db(reference, estimate),
        "lsd_db": metrics.lsd_db(reference, estimate, rate),
    }
    return scores, problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, help="audio file (default: a generated 440 Hz tone)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for the wav outputs")
    parser.add_argument("--model", default=None, help="model name, id or .safetensors path")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        audio, rate = read_audio(args.file) if args.file else (tone(), 16000)
        args.out.mkdir(parents=True, exist_ok=True)
        source = args.file or "1 s 440 Hz tone"
        print(f"input: {source}, {audio.shape[0]} ch, {audio.shape[1] / rate:.2f} s at {rate} Hz")
        print(f"{'setting':<14} {'bytes':>8} {'kbps':>8} {'SNR':>8} {'SI-SDR':>8} {'LSD':>7}")
        problems = []
        for name in SETTINGS:
            s, found = run_setting(name, audio, rate, args.out, args.model)
            problems += found
            scores = f"{s['snr_db']:8.2f} {s['si_sdr_db']:8.2f} {s['lsd_db']:7.2f}"
            print(f"{name:<14} {s['bytes']:8d} {s['kbps']:8.2f} {scores}")
    except NacError as err:
        print(f"smoke_test: error: {err}", file=sys.stderr)
        return err.exit_code
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print(f"wavs in {args.out}/smoke_*_{{recon,residual}}.wav")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
