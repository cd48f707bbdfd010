"""Folders of audio: parallel encode/decode that mirrors the tree (its size report is :mod:`nac.report`).

``run_batch`` runs one task per file in a process pool (one torch thread per
worker); a file that fails is recorded with its error and the batch goes on.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import api, codec
from .audio import AUDIO_SUFFIXES, audio_info, first_line
from .format import container
from .errors import InputError, NacError, OutputError, UsageError
from .settings import EncoderSettings


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
    except Exception as err:  # a fault of nac's own: this file fails, the batch goes on
        outcome.error = f"{task.source}: internal error ({type(err).__name__}: {first_line(err)}; please report it)"
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
