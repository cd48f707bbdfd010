"""Folders of audio: parallel encode/decode that mirrors the tree, and the size report.

``run_batch`` runs one task per file in a process pool (one torch thread per
worker); a file that fails is recorded with its error and the batch goes on.
``size_report`` describes ``.nac`` files from their headers alone, optionally
next to the originals they came from and with quality scores.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import api, codec
from .audio import audio_info, read_audio
from .format import container
from .model import manifest
from .errors import InputError, NacError, OutputError, UsageError, naming
from .settings import EncoderSettings

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


@dataclass(frozen=True)
class Options:
    """What every task of one batch shares."""

    decode: bool = False
    resume: bool = False
    overwrite: bool = False
    model: str | None = None
    settings: EncoderSettings | None = None  # when encoding: these, or the ladder point for ``bitrate``
    bitrate: str | None = None


@dataclass(frozen=True)
class Task:
    source: Path
    target: Path


@dataclass
class Outcome:
    """One file's result: ``error`` is None on success; ``skipped`` when resume found it done."""

    source: str
    target: str
    seconds: float = 0.0
    error: str | None = None
    skipped: bool = False


def plan(input_dir: Path, output_dir: Path, options: Options) -> list[Task]:
    """Tasks for every audio (or ``.nac`` when decoding) file under ``input_dir``, tree mirrored.

    :class:`OutputError` when outputs exist and neither ``overwrite`` nor ``resume`` says what to do with them.
    """
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: not a folder")
    wanted = (".nac",) if options.decode else AUDIO_SUFFIXES
    suffix = ".wav" if options.decode else ".nac"
    tasks = [
        Task(path, output_dir / path.relative_to(input_dir).with_suffix(suffix))
        for path in sorted(input_dir.rglob("*"))
        if path.is_file() and path.suffix.lower() in wanted
    ]
    sources: dict[Path, Path] = {}
    for task in tasks:
        if (other := sources.setdefault(task.target, task.source)) != task.source:
            raise OutputError(f"{task.target}: would be written from both {other} and {task.source} (rename one)")
    existing = [task.target for task in tasks if task.target.exists()]
    if existing and not (options.overwrite or options.resume):
        raise OutputError(f"{existing[0]}: already exists, with {len(existing) - 1} more outputs (use -f to "
                          "overwrite or --resume to skip finished files)")
    return tasks


def _finished(task: Task, options: Options) -> float | None:
    """Duration in seconds of a target that already exists and verifies, else None."""
    if not task.target.is_file():
        return None
    try:
        if options.decode:
            frames, rate, _ = audio_info(task.target)
            return frames / rate
        info, _ = api.unpack(task.target.read_bytes(), options.model)
    except NacError:
        return None
    return info.sample_count / info.original_sample_rate if info.original_sample_rate else 0.0


def run_task(task: Task, options: Options) -> Outcome:
    """Encode or decode one file; errors become part of the outcome."""
    outcome = Outcome(str(task.source), str(task.target))
    if options.resume:
        done = _finished(task, options)
        if done is not None:
            outcome.seconds, outcome.skipped = done, True
            return outcome
    try:
        task.target.parent.mkdir(parents=True, exist_ok=True)
        codec.tune_heap()
        if options.decode:
            report = api.decode_file(task.source, task.target, overwrite=True, model=options.model)
            outcome.seconds = report.samples / report.sample_rate
        else:
            api.encode_file(task.source, task.target, options.settings, bitrate=options.bitrate, overwrite=True,
                            model=options.model)
            info, _ = container.read_info(task.target.read_bytes())
            outcome.seconds = info.sample_count / info.original_sample_rate
    except NacError as err:
        outcome.error = str(err)
    except OSError as err:
        outcome.error = f"{task.target}: {err.strerror or err}"
    except KeyboardInterrupt:  # its partial output is removed by now
        if multiprocessing.parent_process() is not None:
            os._exit(130)  # a pool worker stopped by the batch: end here, not on to the next queued file
        raise
    return outcome


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


ENGINES = ("local", "ray")


def run_batch(
    tasks: list[Task],
    options: Options,
    jobs: int,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
    engine: str = "local",
    address: str | None = None,
) -> list[Outcome]:
    """Run ``tasks`` on ``jobs`` local processes (1 = in this process) or on Ray; outcomes in task order."""
    if engine == "ray":
        return _run_on_ray(tasks, options, jobs, on_done, address)
    if engine != "local":
        raise UsageError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    if jobs <= 1:
        outcomes = []
        for task in tasks:
            outcomes.append(run_task(task, options))
            on_done(outcomes[-1])
        return outcomes
    by_task: dict[Task, Outcome] = {}
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker)
    futures = {pool.submit(run_task, task, options): task for task in tasks}
    try:
        for future in as_completed(futures):
            by_task[futures[future]] = future.result()
            on_done(by_task[futures[future]])
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: start no more files, and stop the running ones
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():
            worker.terminate()  # its own handler removes its partial output
            worker.join(timeout=30)
        raise
    pool.shutdown()
    return [by_task[task] for task in tasks]


def _ray_task(task: Task, options: Options) -> Outcome:
    _init_worker()
    return run_task(task, options)


def _run_on_ray(
    tasks: list[Task], options: Options, jobs: int, on_done: Callable[[Outcome], None], address: str | None
) -> list[Outcome]:
    """The same per-file task on a Ray cluster (``address``) or a local Ray instance (None).

    Paths must be visible to every node (a shared file system) and every node
    needs nac installed; each task takes one CPU and runs torch on one thread.
    """
    try:
        import ray
    except ImportError:
        raise UsageError("the ray engine needs Ray: pip install 'nac[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        local = {"num_cpus": max(1, jobs)} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    try:
        remote_task = ray.remote(num_cpus=1)(_ray_task)
        pending = {remote_task.remote(task, options): task for task in tasks}
        by_task: dict[Task, Outcome] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            by_task[task] = ray.get(done[0])
            on_done(by_task[task])
        return [by_task[task] for task in tasks]
    finally:
        if started_here:
            ray.shutdown()


# ------------------------------------------------------------------ the size report


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
            found += sorted(p for p in path.rglob("*.nac") if p.is_file())
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
    data = api.read_input_bytes(path)
    with naming(path):
        scan = container.scan(data)
    h = scan.header
    duration = h.sample_count / h.original_sample_rate
    try:
        model = manifest.find_entry(h.model_id).name
    except NacError:
        model = f"id {h.model_id}"
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
        model=model,
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


def format_report(rows: list[ReportRow], summary: dict, style: str) -> str:
    """The report as ``table``, ``md``, ``csv`` or ``json``."""
    records = [{**asdict(r), **r.scores} for r in rows]
    if style == "json":
        return json.dumps({"files": records, "summary": summary}, indent=2)
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


def throughput(outcomes: list[Outcome], wall_seconds: float) -> dict:
    """Files/s and audio hours per hour of one batch."""
    audio = sum(o.seconds for o in outcomes if o.error is None)
    return {
        "files": len(outcomes),
        "failed": sum(o.error is not None for o in outcomes),
        "skipped": sum(o.skipped for o in outcomes),
        "wall_s": wall_seconds,
        "files_per_s": len(outcomes) / wall_seconds if wall_seconds else None,
        "audio_x_real_time": audio / wall_seconds if wall_seconds else None,
    }
