"""Encode, decode and score audio files; writes eval.json and a few reconstructions.

    python tools/eval.py /work/data/corpus --max-files 50 --pesq

INPUTS are files or folders. A folder with a corpus MANIFEST.tsv contributes
the rows of --manifest-split and --kind; any other folder contributes every
audio file below it. Each file is encoded with nac, decoded back to its own
rate and scored against the original: SNR, SI-SDR, LSD (and PESQ-WB, STOI
with --pesq). Sizes count the whole .nac file: kbps = bytes * 8 / seconds /
1000; ratios compare it with 16-bit PCM and with the float32 latent.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec import api, bitstream, metrics, zoo  # noqa: E402
from codec.audio_io import read_audio, write_atomic, write_audio  # noqa: E402
from codec.errors import NacError, UsageError  # noqa: E402

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
MEAN_KEYS = (
    "duration_s", "nac_bytes", "kbps", "ratio_vs_pcm16", "ratio_vs_latent_f32", "input_to_latent_values",
    "snr_db", "si_sdr_db", "lsd_db", "pesq_wb", "stoi", "encode_s", "decode_s",
)
TABLE_COLUMNS = [  # (json key, heading, format)
    ("duration_s", "sec", "{:6.2f}"),
    ("kbps", "kbps", "{:7.2f}"),
    ("ratio_vs_pcm16", "xPCM", "{:6.1f}"),
    ("snr_db", "SNR", "{:7.2f}"),
    ("si_sdr_db", "SI-SDR", "{:7.2f}"),
    ("lsd_db", "LSD", "{:6.2f}"),
    ("pesq_wb", "PESQ", "{:5.2f}"),
    ("stoi", "STOI", "{:5.3f}"),
]


def collect_inputs(inputs: list[Path], split: str, kind: str) -> list[Path]:
    """Files named directly, MANIFEST rows of ``split``/``kind``, or audio found under folders."""
    files: list[Path] = []
    for item in inputs:
        if item.is_file():
            files.append(item)
        elif (item / "MANIFEST.tsv").is_file():
            with (item / "MANIFEST.tsv").open(newline="") as handle:
                rows = csv.DictReader(handle, delimiter="\t")
                files += [item / r["file"] for r in rows if r.get("split") == split and r.get("kind") == kind]
        elif item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        else:
            raise UsageError(f"{item}: no such file or folder")
    return files


def evaluate_file(path: Path, args: argparse.Namespace) -> tuple[dict, np.ndarray, int]:
    """Scores and sizes for one file, plus the decoded audio and its rate."""
    audio, rate = read_audio(path)
    start = time.perf_counter()
    data = api.encode(audio, rate, model=args.model, bits=args.bits, store_phase=args.store_phase)
    encoded = time.perf_counter()
    decoded, decoded_rate = api.decode(data, model=args.model)
    finished = time.perf_counter()
    if decoded_rate != rate or decoded.shape != audio.shape:
        print(f"warning: {path}: decoded {decoded.shape} at {decoded_rate} Hz, input {audio.shape} at {rate} Hz")
    header = bitstream.read_header(data)
    channels, samples = audio.shape
    duration = samples / rate
    latent_bytes = 4 * header.channels * header.latent_channels * header.latent_height * header.latent_frames
    row = {
        "file": str(path),
        "sample_rate": rate,
        "channels": channels,
        "duration_s": duration,
        "nac_bytes": len(data),
        "kbps": len(data) * 8 / duration / 1000 if duration else None,
        "pcm16_bytes": 2 * channels * samples,
        "ratio_vs_pcm16": 2 * channels * samples / len(data),
        "latent_f32_bytes": latent_bytes,
        "ratio_vs_latent_f32": latent_bytes / len(data),
        "input_to_latent_values": channels * samples / (latent_bytes / 4) if latent_bytes else None,
        "snr_db": metrics.snr_db(audio, decoded),
        "si_sdr_db": metrics.si_sdr_db(audio, decoded),
        "lsd_db": metrics.lsd_db(audio, decoded, rate),
        "encode_s": encoded - start,
        "decode_s": finished - encoded,
    }
    if args.pesq:
        row["pesq_wb"] = metrics.pesq_wb(audio, decoded, rate)
        row["stoi"] = metrics.stoi(audio, decoded, rate)
    return row, decoded, decoded_rate


def means(rows: list[dict]) -> dict:
    """Per-file means of the sizes, scores and timings (None values left out), plus the overall bitrate."""
    result: dict = {"files": len(rows)}
    for key in MEAN_KEYS:
        values = [r[key] for r in rows if r.get(key) is not None]
        result[key] = float(np.mean(values)) if values else None
    total_seconds = sum(r["duration_s"] for r in rows)
    result["overall_kbps"] = sum(r["nac_bytes"] for r in rows) * 8 / total_seconds / 1000 if total_seconds else None
    return result


def recon_name(path: Path, taken: set[str]) -> str:
    """``recon_<stem>.wav``, with a counter added when that stem was already written."""
    name, count = f"recon_{path.stem}.wav", 1
    while name in taken:
        count += 1
        name = f"recon_{path.stem}_{count}.wav"
    taken.add(name)
    return name


def format_row(label: str, row: dict, columns: list[tuple[str, str, str]]) -> str:
    cells = []
    for key, _, fmt in columns:
        value = row.get(key)
        width = len(fmt.format(0.0))
        cells.append(fmt.format(value) if value is not None else "-".rjust(width))
    return f"{label[:28]:<28} " + " ".join(cells)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files, corpus folders or folders of audio")
    parser.add_argument("--manifest-split", default="dev", help="MANIFEST.tsv split to use")
    parser.add_argument("--kind", default="speech_wb", help="MANIFEST.tsv kind to use")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8, help="latent (and phase) code width")
    parser.add_argument("--store-phase", action="store_true", help="store the STFT phase (near-lossless)")
    parser.add_argument("--model", default=None, help="model name, id or .safetensors path (default model if unset)")
    parser.add_argument("--out", type=Path, default=Path("results/eval"), help="folder for eval.json and recon_*.wav")
    parser.add_argument("--max-files", type=int, default=0, help="score at most this many files, 0 = all")
    parser.add_argument("--keep", type=int, default=5, help="write recon_<stem>.wav for this many files")
    parser.add_argument("--pesq", action="store_true", help="also compute PESQ-WB and STOI")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    files = collect_inputs(args.inputs, args.manifest_split, args.kind)
    if args.max_files > 0:
        files = files[: args.max_files]
    if not files:
        raise UsageError("no input files (check the paths, --manifest-split and --kind)")
    loaded = zoo.load_model(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    columns = [c for c in TABLE_COLUMNS if args.pesq or c[0] not in ("pesq_wb", "stoi")]
    print(f"{'file':<28} " + " ".join(h.rjust(len(f.format(0.0))) for _, h, f in columns))
    rows, failed, taken = [], [], set()
    for path in files:
        try:
            row, decoded, rate = evaluate_file(path, args)
        except NacError as err:
            print(f"{path.name[:28]:<28} failed: {err}")
            failed.append({"file": str(path), "error": str(err)})
            continue
        if len(rows) < args.keep:
            row["recon"] = recon_name(path, taken)
            write_audio(args.out / row["recon"], np.clip(decoded, -1.0, 1.0), rate)
        rows.append(row)
        print(format_row(path.name, row, columns))
    summary = means(rows) if rows else {}
    if rows:
        print(format_row(f"mean of {len(rows)}", summary, columns))
        print(f"overall {summary['overall_kbps']:.2f} kbps; results in {args.out / 'eval.json'}")
    settings = {
        "model": loaded.name,
        "model_id": loaded.model_id,
        "bits": args.bits,
        "store_phase": args.store_phase,
        "manifest_split": args.manifest_split,
        "kind": args.kind,
        "inputs": [str(p) for p in args.inputs],
    }
    report = {"settings": settings, "files": rows, "failed": failed, "mean": summary}
    text = json.dumps(report, indent=2) + "\n"
    write_atomic(args.out / "eval.json", lambda handle: handle.write(text.encode()))
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except NacError as err:
        print(f"eval: error: {err}", file=sys.stderr)
        return err.exit_code
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
