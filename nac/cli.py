"""The ``nac`` command line: thin commands over the library, and one map from its errors to exit codes.

Commands import the library only when they run, so ``--help``, ``--version``,
``inspect`` and ``models`` start without loading torch. Every error is one
line on stderr and the exit code of its class (:mod:`nac.errors`);
``NAC_DEBUG=1`` adds the traceback, not another exit code.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import signal
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .errors import (BatchFailedError, BatchPartialError, InputError, NacError, OutputError, SalvagedError, UsageError,
                     naming)

MAX_PROBLEMS_SHOWN = 20  # inspect's text form; --json lists them all

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="nac: a neural audio codec. nac COMMAND --help tells more.")

BitrateOption = Annotated[Optional[str], typer.Option(
    "--bitrate", "-r", help="Target for the whole file, all channels together, e.g. 12k; the model's rate ladder "
    "(nac models) [default: the model's default point].")]
SettingsOption = Annotated[Optional[Path], typer.Option(
    "--settings", help="Encoder settings as a JSON file, instead of a bitrate (for experts; docs/design.md).")]
ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Model name or id (nac models), or a .safetensors path.")]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]
ReportFormat = Annotated[str, typer.Option("--format", help="Report as table, md, csv or json.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nac {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    """nac: a neural audio codec."""


def _say(message: str) -> None:
    try:
        typer.echo(message, err=True)
    except (OSError, ValueError, AttributeError):  # stderr closed (2>&-): the exit code still tells
        pass


def reports_errors(command):
    """Turn :class:`NacError` into its one-line message and exit code (and the traceback with NAC_DEBUG=1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except NacError as err:
            _say_error(err)
            raise typer.Exit(err.exit_code) from None
        except BrokenPipeError:  # output whose reader went away (| head -1, a player that quits): quietly, as SIGPIPE
            raise typer.Exit(128 + 13) from None
        except KeyboardInterrupt as err:  # partial outputs are gone by now (nac.audio.write_atomic)
            signum = getattr(err, "signum", signal.SIGINT)
            _say("nac: interrupted" if signum == signal.SIGINT else f"nac: stopped by {signal.Signals(signum).name}")
            raise typer.Exit(128 + signum) from None

    return wrapper


def _say_error(err: NacError) -> None:
    if os.environ.get("NAC_DEBUG"):
        traceback.print_exc()
    _say(f"nac: error: {err}")


def _for_each(pairs: list[tuple[Path, Path]], work) -> None:
    """``work(source, target)`` for every pair; a file that fails is reported and the others still run, and the
    first failure's code is the exit code. A usage error stops everything."""
    first = None
    for source, target in pairs:
        try:
            work(source, target)
        except UsageError:
            raise
        except NacError as err:
            if len(pairs) == 1:
                raise
            _say_error(err)
            first = first or err
    if first is not None:
        raise typer.Exit(first.exit_code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it stops as on Ctrl-C: no partial output left."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def chunk_progress(description: str, quiet: bool):
    """A progress bar over chunks, on stderr and only on a terminal; yields its update callback."""
    if quiet or sys.stderr is None or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(bar, completed=done, total=total)


def _pairs(inputs: list[Path], output: Path | None, suffix: str, output_suffixes: tuple[str, ...]) -> list[tuple]:
    """(input, output) of each file: ``nac encode in.wav out.nac`` names its output as a second argument, ``-o``
    names it for one input, else each output is the input's name with ``suffix``."""
    if output is None and len(inputs) == 2 and (str(inputs[1]) == "-" or inputs[1].suffix.lower() in output_suffixes):
        inputs, output = inputs[:1], inputs[1]
    if output is not None:
        if len(inputs) != 1:
            raise UsageError("an output names one file: give one input with it")
        return [(inputs[0], output)]
    if any(str(path) == "-" for path in inputs):
        raise UsageError("reading from stdin: name the output (- for stdout)")
    return [(path, path.with_suffix(suffix)) for path in inputs]


def _refuse_terminal(output: Path, what: str) -> None:
    from .audio import is_stdio

    if is_stdio(output) and sys.stdout is not None and sys.stdout.isatty():
        raise UsageError(f"refusing to write {what} to a terminal: redirect standard output or name a file")


@app.command()
@reports_errors
def encode(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files (wav, flac, ogg, mp3, ...); - reads stdin. "
                                                      "A second argument ending in .nac names the output.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output .nac; - writes stdout "
                                                   "[default: INPUT with .nac].")] = None,
    bitrate: BitrateOption = None,
    settings: SettingsOption = None,
    model: ModelOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Encode audio files to .nac."""
    from . import api, codec
    from .settings import EncoderSettings

    chosen = EncoderSettings.from_file(settings) if settings is not None else None
    if chosen is not None and bitrate is not None:
        raise UsageError("give --bitrate or --settings, not both")
    codec.tune_heap()

    def encode_one(source: Path, target: Path) -> None:
        _refuse_terminal(target, ".nac bytes")
        with chunk_progress("encoding", quiet) as on_progress:
            report = api.encode_file(source, target, chosen, bitrate=bitrate, overwrite=force, model=model,
                                     on_progress=on_progress)
        if not quiet:
            kbps = f"{report.kbps:.2f} kbps" if report.kbps else "empty"
            _say(f"{source} -> {target}: {report.file_bytes} bytes, {report.duration_s:.2f} s, {kbps}")
            for note in report.notes:
                _say(f"nac: {note}")

    _for_each(_pairs(inputs, output, ".nac", (".nac",)), encode_one)


@app.command()
@reports_errors
def decode(
    inputs: Annotated[list[Path], typer.Argument(help=".nac files; - reads stdin.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output .wav or .flac; - writes WAV "
                                                   "to stdout [default: INPUT.decoded.wav].")] = None,
    start: Annotated[Optional[float], typer.Option("--start", help="Decode from this time (seconds).")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Decode this many seconds.")] = None,
    salvage: Annotated[bool, typer.Option("--salvage", help="Decode a damaged file's intact chunks, silence for "
                                          "lost spans inside (a lost end is cut); list the lost ranges and exit "
                                          f"{SalvagedError.exit_code}.")] = False,
    keep_model_rate: Annotated[bool, typer.Option("--keep-model-rate", help="Write at the rate the file decodes at (the model's, 16 kHz; 48 kHz with a high-band or stereo layer) instead of the original.")] = False,
    phase_iters: Annotated[Optional[int], typer.Option("--phase-iters", help="Phase iterations: fewer is faster "
                                                       "[default: the stream's].")] = None,
    model: ModelOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Decode .nac files to WAV or FLAC, restoring rate, length and channels."""
    from . import api, codec

    if salvage and (start is not None or duration is not None):
        raise UsageError("--salvage decodes the whole file: drop --start/--duration")
    codec.tune_heap()

    def decode_one(source: Path, target: Path) -> None:
        _refuse_terminal(target, "audio")
        with chunk_progress("decoding", quiet) as on_progress:
            report = api.decode_file(source, target, overwrite=force, keep_model_rate=keep_model_rate, model=model,
                                     salvage=salvage, start=start, duration=duration, phase_iters=phase_iters,
                                     on_progress=on_progress)
        if not quiet:
            _say(f"{source} -> {target}: {report.samples} samples x {report.channels} ch at {report.sample_rate} Hz")
        if report.clipped_samples and not quiet:
            _say(f"nac: warning: {report.clipped_samples} samples clipped to [-1, 1]")
        if report.damaged:
            for span in report.lost:
                _say(f"nac: lost {span.describe()}")
            if not report.lost:
                raise SalvagedError(f"{source}: damaged ({'; '.join(report.problems)}); no audio lost")
            raise SalvagedError(f"{source}: damaged ({len(report.problems)} problem(s)); {_salvage_summary(report)}")

    _for_each(_pairs(inputs, output, ".decoded.wav", (".wav", ".flac")), decode_one)


@app.command()
@reports_errors
def inspect(
    input: Annotated[Path, typer.Argument(help="The .nac file to describe; - reads stdin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show the header, the layers, the chunks and whether each CRC verifies (exit 4 if not)."""
    from . import info as info_module

    data = info_module.read_input_bytes(input)  # its errors name the file already
    with naming(input):
        described = info_module.inspect(data)
    typer.echo(json.dumps(described, indent=2) if as_json else format_inspection(input, described))
    if not (described["all_crc_ok"] and described["intact"]):
        raise typer.Exit(4)


def _salvage_summary(report) -> str:
    """What a salvage lost (a :class:`nac.api.DecodeReport`): silence written inside the output, a lost end cut."""
    seconds = [(span.stop - span.start) / report.sample_rate for span in report.lost]
    inside = [s for span, s in zip(report.lost, seconds) if span.stop <= report.samples]
    said = [f"{sum(seconds):.3f} s lost in {len(seconds)} range(s)"]
    if inside:
        said.append(f"silence written for {sum(inside):.3f} s")
    if len(inside) < len(seconds):
        said.append(f"the output ends {sum(seconds) - sum(inside):.3f} s early, at "
                    f"{report.samples / report.sample_rate:.3f} s")
    return ", ".join(said)


def format_inspection(path: Path, info: dict) -> str:
    """The human-readable form of :func:`nac.info.inspect`'s report."""
    kbps = f"{info['kbps']:.2f} kbps" if info["kbps"] else "-"
    header = info["header"]
    model = f"model {info['model_name']}" if info["model_name"] else info["model_problem"]
    lines = [f"{path}: {info['file_bytes']} bytes, {info['duration_s']:.3f} s, {kbps}, {model}",
             "header:"]
    for name, value in header.items():
        if isinstance(value, dict):
            value = ", ".join(f"{key} {item}" for key, item in value.items()) or "-"
        lines.append(f"  {name:22} {value}")
    lines.append(f"chunks: {len(info['chunks'])}")
    for chunk in info["chunks"]:
        status = "ok" if chunk["crc_ok"] else "CRC MISMATCH"
        silent = "  silent" if chunk["silent"] else ""
        lines.append(f"  #{chunk['index']:<5} offset {chunk['offset']:<9} {chunk['size']:>7} bytes "
                     f"{chunk['frames']:>4} frames  {status}{silent}")
    lines.append(f"end record: {'ok' if info['end_record_ok'] else 'MISSING OR DAMAGED'}")
    if info["lost"]:
        lines.append(f"lost: {len(info['lost'])} range(s)")
        for span in info["lost"]:
            first, last = span["first_chunk"], span["last_chunk"]
            chunks = f"chunk {first}" if first == last else f"chunks {first}-{last}"
            lines.append(f"  {span['start_s']:.3f}-{span['stop_s']:.3f} s ({chunks}: {span['reason']})")
    problems = info["problems"]
    if problems:
        lines.append(f"problems: {len(problems)}")
        lines.extend(f"  {problem}" for problem in problems[:MAX_PROBLEMS_SHOWN])
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more (see --json)")
    return "\n".join(lines)


@app.command()
@reports_errors
def models(
    folder: Annotated[Optional[Path], typer.Argument(help="A models folder, or a nac train run folder "
                                                          "[default: the shipped models].")] = None,
) -> None:
    """List the shipped models (or a folder's), the default first, and each one's rate ladder."""
    from .model import manifest

    models_dir = manifest.MODELS_DIR
    if folder is not None:
        models_dir = folder / "models" if (folder / "models" / "manifest.json").is_file() else folder
        if not (models_dir / "manifest.json").is_file():
            raise UsageError(f"{folder}: no manifest.json (not a models folder or a nac train run)")
    default = manifest.find_entry(None, models_dir).name
    fullband = manifest.find_entry(None, models_dir, kind=manifest.FULLBAND).name
    serves = {default: "default for mono (or 3+ channels) up to 16 kHz", fullband: "default for stereo or above 16 kHz"}
    if default == fullband:
        serves = {default: "default"}
    entries = sorted(manifest.list_models(models_dir),
                     key=lambda entry: (entry.name not in serves, entry.name != default, -entry.id))
    for entry in entries:
        mark = "*" if entry.name in serves else " "
        top = max((point.settings.high_band_hz for point in entry.ladder), default=0.0)
        band = f"{entry.sample_rate // 1000} kHz" + (f" core, audio to {top / 1000:g} kHz" if top else "")
        stereo = ", stereo" if any(point.settings.stereo_bands for point in entry.ladder) else ""
        typer.echo(f"{mark} {entry.name}  id {entry.id}, {band}{stereo}, {entry.parameters / 1e6:.2f} M parameters")
        if entry.name in serves:
            typer.echo(f"    {serves[entry.name]}")
        if entry.description:
            typer.echo(f"    {textwrap.shorten(entry.description, 92, placeholder=' ...')}")
        for point in entry.ladder:
            default_point = " (default)" if point.name == entry.default_point else ""
            typer.echo(f"    --bitrate {point.describe()}{default_point}")
        if not entry.ladder:
            typer.echo("    no rate ladder: kept to decode its files (encode with --settings)")


@app.command(name="batch")
@reports_errors
def batch_command(
    input_dir: Annotated[Path, typer.Argument(help="Folder to encode (or, with --decode, of .nac files).")],
    output_dir: Annotated[Path, typer.Argument(help="Output folder; the input tree is mirrored.")],
    decode: Annotated[bool, typer.Option("--decode", help="Decode .nac files to .wav instead.")] = False,
    bitrate: BitrateOption = None,
    settings: SettingsOption = None,
    model: ModelOption = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel processes [default: all cores].",
                                      show_default=False)] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Skip outputs that exist and verify.")] = False,
    force: ForceOption = False,
    quiet: QuietOption = False,
    report_path: Annotated[Optional[Path], typer.Option("--report", help="Also write the size report here.")] = None,
    report_format: ReportFormat = "table",
    engine: Annotated[str, typer.Option("--engine", help="local (process pool) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address; none starts Ray "
                                                   "here.")] = None,
) -> None:
    """Encode (or decode) every file under a folder in parallel, then print the size report."""
    from . import api, batch
    from . import report as size
    from .audio import is_stream, refuse_existing, write_atomic
    from .model import zoo
    from .settings import EncoderSettings

    if report_format not in size.REPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(size.REPORT_FORMATS)}")
    chosen = EncoderSettings.from_file(settings) if settings is not None else None
    if chosen is not None and bitrate is not None:
        raise UsageError("give --bitrate or --settings, not both")
    if jobs < 0:
        raise UsageError("--jobs must be 0 (all cores) or more")
    if bitrate is not None:
        api.parse_kbps(bitrate)  # a malformed rate fails once, before any file
    if report_path is not None and not is_stream(report_path):
        if not report_path.parent.is_dir():
            raise OutputError(f"{report_path}: cannot write (no folder {report_path.parent})")
        refuse_existing(report_path, force)
    if not decode:
        zoo.load_model(model)  # an unknown model fails once, before any file
    options = batch.Options(decode=decode, resume=resume, overwrite=force, model=model, settings=chosen,
                            bitrate=bitrate)
    tasks = batch.plan(input_dir, output_dir, options)
    if not tasks:
        raise InputError(f"{input_dir}: no {'.nac' if decode else 'audio'} files under this folder")
    started = time.monotonic()
    outcomes = batch.run_batch(tasks, options, jobs or os.cpu_count() or 1, engine=engine, address=address)
    stats = batch.throughput(outcomes, time.monotonic() - started)
    for outcome in outcomes:
        if outcome.error:
            _say(f"nac: failed: {outcome.error}")
    if not quiet:
        _say(f"{stats['files']} files ({stats['skipped']} skipped, {stats['failed']} failed) in "
             f"{stats['wall_s']:.1f} s: {stats['audio_x_real_time'] or 0:.1f}x real time")
    if not decode and stats["failed"] < stats["files"]:
        rows, summary, failures = size.size_report([output_dir], originals=input_dir, model=model)
        _say_failures(failures)
        text = size.format_report(rows, summary, report_format, failures)
        if not quiet:
            typer.echo(text)
        if report_path is not None:
            write_atomic(report_path, lambda handle: handle.write((text + "\n").encode()))
    if stats["failed"] == stats["files"] and stats["files"]:
        raise BatchFailedError(f"{input_dir}: all {stats['files']} files failed")
    if stats["failed"]:
        raise BatchPartialError(f"{input_dir}: {stats['failed']} of {stats['files']} files failed")


@app.command()
@reports_errors
def report(
    paths: Annotated[list[Path], typer.Argument(help=".nac files or folders of them.")],
    originals: Annotated[Optional[Path], typer.Option("--originals", help="Folder of the original audio, mirrored "
                                                      "like nac batch.")] = None,
    with_metrics: Annotated[bool, typer.Option("--metrics", help="Decode and score against the originals (needs "
                                               "--originals and the [eval] extra).")] = False,
    model: ModelOption = None,
    report_format: ReportFormat = "table",
) -> None:
    """The size report: per file and total sizes, ratios, bitrate, overhead (and quality); a damaged file is
    marked DAMAGED, and one that is not a nac file is listed on stderr (exit 9)."""
    from . import report as size

    if report_format not in size.REPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(size.REPORT_FORMATS)}")
    if with_metrics and originals is None:
        raise UsageError("--metrics needs --originals DIR")
    rows, summary, failures = size.size_report(paths, originals=originals, with_metrics=with_metrics, model=model)
    _say_failures(failures)
    typer.echo(size.format_report(rows, summary, report_format, failures))
    if failures:
        raise typer.Exit(BatchFailedError.exit_code if not rows else BatchPartialError.exit_code)


def _say_failures(failures: list[str]) -> None:
    for failure in failures:
        _say(f"nac: failed: {failure}")


@app.command(name="eval")
@reports_errors
def eval_command(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files, folders, or corpus folders with a "
                                                      "MANIFEST.tsv.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder: eval.json/csv, summary.md, "
                                         "rd.png.")] = Path("results/eval"),
    points: Annotated[str, typer.Option("--points", help="Ladder points of each model, comma-separated, e.g. "
                                        "6k,12k; all: every point.")] = "",
    settings: Annotated[Optional[list[Path]], typer.Option("--settings", help="Settings files to score, "
                                                           "repeatable.")] = None,
    presets: Annotated[str, typer.Option("--presets", help="Research presets, comma-separated: cbN, resHZ, stepS, "
                                         "bandsHZ, octN, slopeS, spanD, fineHZ, fstepS, hintHZ, loop, itN, "
                                         "joined with +.")] = "",
    against: Annotated[Optional[str], typer.Option("--against", help="Also run a reference codec: opus.")] = None,
    bitrates: Annotated[Optional[str], typer.Option("--bitrates", help="Opus target kbps, comma-separated "
                                                    "[default: 6,8,12,16,24; music mode: 16,24,32,48,64].")] = None,
    mode: Annotated[str, typer.Option("--mode", help="speech: mono at 16 kHz, PESQ-WB, STOI, ViSQOL speech mode; "
                                      "music: fullband at 48 kHz with the channels kept, ViSQOL audio mode, "
                                      "bandwidth, stereo image.")] = "speech",
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model to evaluate, repeatable "
                                                       "[default: the default model].")] = None,
    manifest_split: Annotated[str, typer.Option("--manifest-split", help="MANIFEST.tsv split.")] = "dev",
    kind: Annotated[Optional[str], typer.Option("--kind", help="MANIFEST.tsv kind [default: speech_wb; music "
                                                "mode: music].")] = None,
    max_files: Annotated[int, typer.Option("--max-files", help="Score this many files, evenly spaced "
                                           "(0: all).")] = 0,
    excerpt: Annotated[float, typer.Option("--excerpt", help="Score this many seconds from the middle of "
                                           "each file (0: whole files).")] = 0.0,
    keep: Annotated[int, typer.Option("--keep", help="Write reference and decodes of this many files.")] = 2,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Torch threads for decoding.")] = None,
    force: ForceOption = False,
) -> None:
    """Score nac (and Opus) on audio: quality per bit, with a summary table and a rate-quality plot."""
    from .lab import evaluate

    if against not in (None, "opus"):
        raise UsageError(f"--against: only opus is supported, not {against!r}")
    if excerpt < 0:
        raise UsageError(f"--excerpt: {excerpt:g} seconds is negative")
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: exists and is not a folder (-o names the report folder)")
    if (output / "eval.json").exists() and not force:
        raise OutputError(f"{output}: holds a report already (use -f to overwrite)")
    if bitrates is None and mode == "speech":
        bitrates = "6,8,12,16,24"  # the command's speech default, narrower than the engine's; music: the mode's
    options = evaluate.EvalOptions(
        inputs=inputs, out_dir=output, models=model or [], points=evaluate.parse_list(points, "--points"),
        settings_files=settings or [], presets=evaluate.parse_list(presets, "--presets"),
        against_opus=against == "opus", bitrates=evaluate.parse_bitrates(bitrates) if bitrates is not None else None,
        mode=mode, manifest_split=manifest_split, kind=kind or ("music" if mode == "music" else "speech_wb"),
        max_files=max_files, excerpt=excerpt, keep=keep, threads=threads,
    )
    files, systems = evaluate.plan(options)
    result = evaluate.run(options, files, systems)
    for note in result.notes:
        _say(f"nac: note: {note}")
    for failure in result.failed:
        _say(f"nac: failed: {failure['file']}{' (' + failure['system'] + ')' if failure['system'] else ''}: "
             f"{failure['error']}")
    typer.echo(evaluate.summary_table(result.systems, mode))
    _say(f"nac: report in {output}: " + ", ".join(path.name for path in result.paths.values()))
    if result.failed:
        raise (BatchPartialError if result.rows else BatchFailedError)(
            f"{len(result.failed)} file(s) or coding(s) failed (listed in {result.paths['json']})")


SEED_KNOBS = {  # option of nac train -> the seed's environment variable read when it is not given, its range
    "max_files": ("MAX_TRAIN_FILES", int, 0, None), "crop_seconds": ("MAX_AUDIO_SECONDS", float, 0.1, 30.0),
    "mel_weight": ("MEL_LOSS_WEIGHT", float, 0, 100.0), "epochs": ("EPOCHS", int, 1, None),
    "model_channels": ("MODEL_CHANNELS", int, 1, None),
}
SEED_PANEL = "The research seed's knobs (fine-tunes; each falls back to its environment variable)"


def _seed_knobs(given: dict) -> tuple[dict, set[str]]:
    """``given`` options, each None filled from its environment variable, and the options so filled (a bad
    value is a usage error)."""
    knobs, from_environment = {}, set()
    for option, (variable, kind, lowest, highest) in SEED_KNOBS.items():
        value, source = given[option], f"--{option.replace('_', '-')}"
        if value is None and os.environ.get(variable, "").strip():
            source = f"{variable}={os.environ[variable]!r}"
            try:
                value = kind(os.environ[variable])
            except ValueError:
                raise UsageError(f"{source}: not {'an integer' if kind is int else 'a number'}") from None
            from_environment.add(option)
        if value is not None and not (math.isfinite(value) and lowest <= value <= (highest or math.inf)):
            raise UsageError(f"{source}: must be {lowest:g} " + (f"to {highest:g}" if highest else "or more"))
        knobs[option] = value
    return knobs, from_environment


DEFAULT_TRAIN_MINUTES = 30.0


@app.command(name="train")
@reports_errors
def train_command(
    data: Annotated[Path, typer.Argument(help="Folder of audio to train on (nested folders too; every tenth file "
                                              "held out), or with --recipe a corpus folder with MANIFEST.tsv.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder; its models/ is a models folder "
                                                                 "(nac encode -m OUTPUT).")],
    base: Annotated[Optional[str], typer.Option("--from", help="Fine-tune this model (nac models).")] = None,
    recipe: Annotated[Optional[Path], typer.Option("--recipe", help="Train from nothing by this recipe "
                                                                     "(recipes/*.json).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="With --from: minutes of training (default 30).")] = None,
    steps: Annotated[int, typer.Option(help="With --from: stop after this many steps instead (0: minutes).")] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads (0: torch's default).")] = 0,
    device: Annotated[str, typer.Option(help="auto (cuda when there is one), cpu, cuda, cuda:N.")] = "auto",
    epochs: Annotated[Optional[int], typer.Option(help="Passes over the audio, in place of --minutes (EPOCHS).",
                                                  rich_help_panel=SEED_PANEL)] = None,
    max_files: Annotated[Optional[int], typer.Option(help="Train on the first N files (MAX_TRAIN_FILES).",
                                                     rich_help_panel=SEED_PANEL)] = None,
    crop_seconds: Annotated[Optional[float], typer.Option(help="Length of a training crop, default 1 "
                                                               "(MAX_AUDIO_SECONDS).",
                                                          rich_help_panel=SEED_PANEL)] = None,
    mel_weight: Annotated[Optional[float], typer.Option(help="Weight of the mel loss, default 1 (MEL_LOSS_WEIGHT).",
                                                        rich_help_panel=SEED_PANEL)] = None,
    model_channels: Annotated[Optional[int], typer.Option(help="Latent channels; a fine-tune keeps its base's "
                                                               "(MODEL_CHANNELS).",
                                                          rich_help_panel=SEED_PANEL)] = None,
) -> None:
    """Train a model and make it usable: training (with resume), export, entropy tables, phase initializer, and
    the rate ladder measured on held-out audio; run.json, metrics.md and loss.png in the run folder."""
    from .lab import pipeline
    from .lab import recipe as recipes

    if (base is None) == (recipe is None):
        raise UsageError("give --from MODEL (fine-tune) or --recipe FILE (train from nothing)")
    if not data.is_dir():
        raise InputError(f"{data}: {'not a folder' if data.exists() else 'no such folder'}")
    if threads < 0:
        raise UsageError("--threads must be 0 (torch's default) or more")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UsageError(f"--device {device!r}: give auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: this torch sees no CUDA device (use auto or cpu)")

    def log(line: str) -> None:
        _say(f"nac: {line}")

    given = {"max_files": max_files, "crop_seconds": crop_seconds, "mel_weight": mel_weight, "epochs": epochs,
             "model_channels": model_channels}
    if base is not None:
        values, from_environment = _seed_knobs(given)
        if steps < 0:
            raise UsageError("--steps must be 0 (use --minutes) or more")
        if minutes is not None and not minutes > 0:
            raise UsageError("--minutes must be above 0")
        if values["epochs"] and (steps or minutes is not None):
            if "epochs" not in from_environment:
                raise UsageError(f"give --epochs or {'--steps' if steps else '--minutes'}, not both")
            values["epochs"] = None  # an option given outranks an environment fallback
        knobs = pipeline.SeedKnobs(**values)
        minutes = DEFAULT_TRAIN_MINUTES if minutes is None else minutes
        models = pipeline.fine_tune(pipeline.folder_data(data, log), base, output, minutes, steps, threads, device,
                                    log=log, knobs=knobs)
    else:
        named = [f"--{option.replace('_', '-')}" for option, value in given.items() if value is not None]
        if named:
            raise UsageError(f"{', '.join(named)}: a recipe sets its own training (these are for --from)")
        ignored = [variable for variable, *_ in SEED_KNOBS.values() if os.environ.get(variable, "").strip()]
        if ignored:
            log(f"warning: {', '.join(ignored)} not used: a recipe sets its own training")
        chosen = recipes.load(recipe)
        if not (data / "MANIFEST.tsv").is_file():
            raise InputError(f"{data}: a recipe trains on a corpus folder with MANIFEST.tsv")
        models = pipeline.from_recipe(chosen, pipeline.corpus_data(data, chosen.kinds, chosen.dev_files), output,
                                      threads, device, log=log)
    _say(f"nac: model in {models} (nac encode -m {output} ...); scores in {output / 'metrics.md'}")


def main() -> None:
    """The ``nac`` command: usage errors one line too (exit 2), then ``os._exit`` once output is flushed.

    Tearing the interpreter down (unloading torch) would add about 0.25 s to
    every run, which adds up in batch and pipe use; the files are closed by then.
    """
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    try:
        code = typer.main.get_command(app).main(args=sys.argv[1:], prog_name="nac", standalone_mode=False)
    except typer.Abort:
        _say("nac: interrupted")
        code = 130
    except Exception as err:  # click's usage errors (typer may carry its own click, so matched by their API)
        if not (hasattr(err, "format_message") and isinstance(getattr(err, "exit_code", None), int)):
            raise
        context = getattr(err, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None and err.exit_code == 2 else ""
        _say(f"nac: error: {err.format_message()}{hint}")
        code = err.exit_code
    code = code if isinstance(code, int) else 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # a closed pipe or stream (None if closed at start)
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
