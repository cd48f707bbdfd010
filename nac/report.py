"""The size report: ``.nac`` files described from their headers alone, optionally next to the originals they
came from and with quality scores (``nac report``, and the end of ``nac batch``).

Sizes need no networks, so this module does not import torch: a report over a
folder starts in a fraction of a second.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from .audio import AUDIO_SUFFIXES, read_audio
from .errors import InputError, NacError, naming
from .format import container
from .info import read_input_bytes
from .model import manifest


@dataclass
class ReportRow:
    """Sizes (and optionally scores) of one ``.nac`` file."""

    file: str
    duration_s: float
    sample_rate: int
    channels: int
    pcm16_bytes: int
    nac_bytes: int
    kbps: float | None
    overhead_bytes: int
    model: str
    code_bits: int  # the latent layer's widest codes
    layers: str  # the stream's layers beyond the latent one, "+"-joined
    original: str | None = None
    original_bytes: int | None = None
    ratio_vs_original: float | None = None
    ratio_vs_pcm16: float | None = None
    scores: dict = field(default_factory=dict)


def nac_files(paths: Iterable[Path]) -> list[Path]:
    """``.nac`` files named directly or found under folders, sorted per argument."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() == ".nac" and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return found


def find_original(nac_path: Path, root: Path | None, originals: Path | None) -> Path | None:
    """The audio file that ``nac_path`` mirrors under ``originals`` (same relative path, any audio suffix)."""
    if originals is None:
        return None
    relative = nac_path.relative_to(root) if root is not None else Path(nac_path.name)
    for suffix in AUDIO_SUFFIXES:
        candidate = originals / relative.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def report_row(path: Path, original: Path | None = None, with_metrics: bool = False,
               model: str | None = None) -> ReportRow:
    data = read_input_bytes(path)
    with naming(path):
        scan = container.scan(data)
    h = scan.header
    duration = h.sample_count / h.original_sample_rate
    try:  # the model column: the header's model, or the one given to decode files of a model given by path
        label = manifest.label(h.model_id) if model is None else manifest.find_entry(model).name
    except NacError:
        label = f"id {h.model_id}"
    pcm = 2 * h.channels * h.sample_count
    row = ReportRow(
        file=str(path),
        duration_s=duration,
        sample_rate=h.original_sample_rate,
        channels=h.channels,
        pcm16_bytes=pcm,
        nac_bytes=len(data),
        kbps=len(data) * 8 / duration / 1000 if duration else None,
        overhead_bytes=len(data) - sum(chunk.payload for chunk in scan.chunks),
        model=label,
        code_bits=max(h.latent.code_bits),
        layers="+".join(name for name, present in (("residual", h.residual), ("phase", h.stored_phase_bits))
                        if present),
        ratio_vs_pcm16=pcm / len(data),
    )
    if original is not None:
        row.original = str(original)
        row.original_bytes = original.stat().st_size
        row.ratio_vs_original = row.original_bytes / len(data)
        if with_metrics:
            with naming(path):
                row.scores = score(original, data, model)
    if not scan.ok:
        row.layers = "+".join(filter(None, [row.layers, "DAMAGED"]))
    return row


def score(original: Path, data: bytes, model: str | None = None) -> dict:
    """Quality of decoded ``data`` against the original file (PESQ/STOI when installed)."""
    from . import api  # decoding loads the networks (torch); a report of sizes alone does not
    from .lab import metrics  # the runtime path does not import the lab

    reference, rate = read_audio(original)
    decoded, _ = api.decode(data, model=model)
    scores = {
        "snr_db": metrics.snr_db(reference, decoded),
        "si_sdr_db": metrics.si_sdr_db(reference, decoded),
        "lsd_db": metrics.lsd_db(reference, decoded, rate),
        "pesq_wb": metrics.pesq_wb(reference, decoded, rate),
        "stoi": metrics.stoi(reference, decoded, rate),
    }
    return {name: value for name, value in scores.items() if value is not None}


def size_report(
    paths: list[Path], originals: Path | None = None, with_metrics: bool = False, model: str | None = None
) -> tuple[list[ReportRow], dict, list[str]]:
    """Rows for every ``.nac`` under ``paths`` (each once) plus totals and means, and a line for each file that
    could not be described (not a nac file, or its scores failed); ``model`` decodes files of a custom model."""
    if originals is not None and not originals.is_dir():
        raise InputError(f"{originals}: {'not a folder' if originals.exists() else 'no such folder'} (--originals)")
    rows, failures, seen = [], [], set()
    for path in paths:
        root = path if path.is_dir() else None
        for nac in nac_files([path]):
            if nac.resolve() in seen:
                continue
            seen.add(nac.resolve())
            try:
                rows.append(report_row(nac, find_original(nac, root, originals), with_metrics, model))
            except NacError as err:
                failures.append(str(err))
    if not rows and not failures:
        raise InputError(f"{', '.join(map(str, paths))}: no .nac files")
    return rows, summarize(rows), failures


def summarize(rows: list[ReportRow]) -> dict:
    seconds = sum(r.duration_s for r in rows)
    nac = sum(r.nac_bytes for r in rows)
    pcm = sum(r.pcm16_bytes for r in rows)
    originals = [r.original_bytes for r in rows if r.original_bytes is not None]
    summary = {
        "files": len(rows),
        "duration_s": seconds,
        "nac_bytes": nac,
        "pcm16_bytes": pcm,
        "overhead_bytes": sum(r.overhead_bytes for r in rows),
        "kbps": nac * 8 / seconds / 1000 if seconds else None,
        "ratio_vs_pcm16": pcm / nac if nac else None,
        "original_bytes": sum(originals) if originals else None,
    }
    if originals and len(originals) == len(rows):
        summary["ratio_vs_original"] = sum(originals) / nac
    score_names = sorted({name for r in rows for name in r.scores})
    for name in score_names:
        values = [r.scores[name] for r in rows if r.scores.get(name) is not None]
        summary[f"mean_{name}"] = sum(values) / len(values) if values else None
    return summary


REPORT_FORMATS = ("table", "md", "csv", "json")
COLUMNS = (  # (key, heading, format)
    ("file", "file", "{}"),
    ("duration_s", "sec", "{:.2f}"),
    ("sample_rate", "Hz", "{}"),
    ("channels", "ch", "{}"),
    ("original_bytes", "orig B", "{}"),
    ("pcm16_bytes", "PCM16 B", "{}"),
    ("nac_bytes", "nac B", "{}"),
    ("ratio_vs_original", "x orig", "{:.1f}"),
    ("ratio_vs_pcm16", "x PCM", "{:.1f}"),
    ("kbps", "kbps", "{:.2f}"),
    ("overhead_bytes", "ovh B", "{}"),
    ("model", "model", "{}"),
    ("code_bits", "bits", "{}"),
    ("layers", "layers", "{}"),
)


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def format_report(rows: list[ReportRow], summary: dict, style: str, failures: list[str] = ()) -> str:
    """The report as ``table``, ``md``, ``csv`` or ``json`` (which lists the ``failures`` too; the others leave
    them to stderr)."""
    records = [{**asdict(r), **r.scores} for r in rows]
    if style == "json":
        return json.dumps({"files": records, "summary": summary, "failed": list(failures)}, indent=2)
    score_names = sorted({name for r in rows for name in r.scores})
    columns = list(COLUMNS) + [(name, name, "{:.2f}") for name in score_names]
    if style == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([key for key, _, _ in columns])
        writer.writerows([[record.get(key) for key, _, _ in columns] for record in records])
        return out.getvalue().rstrip("\n")
    total = {"file": f"TOTAL ({summary['files']} files)", "model": "", "code_bits": None, "layers": "", "sample_rate": None,
             "channels": None, **summary, **{name: summary[f"mean_{name}"] for name in score_names}}
    table = [[heading for _, heading, _ in columns]]
    table += [[_cell(record.get(key), fmt) for key, _, fmt in columns] for record in records + [total]]
    if style == "md":
        lines = ["| " + " | ".join(row) + " |" for row in table]
        lines.insert(1, "|" + "---|" * len(columns))
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in table)
