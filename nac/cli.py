"""The ``nac`` command line: thin wrappers over :mod:`nac.api`.

Every command maps the project's errors to a one-line message on stderr and
the exit code of its class (see :mod:`nac.errors`); set ``NAC_DEBUG=1`` to
see the full traceback instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import api, batch, codec
from .model import manifest, zoo
from .audio import is_stdio, write_atomic
from .errors import BatchFailedError, BatchPartialError, NacError, SalvagedError, UsageError
from .settings import DEFAULT_BANDS_PER_OCTAVE, DEFAULT_RESIDUAL_SPAN, DEFAULT_RESIDUAL_STEP, EncoderSettings

MAX_PROBLEMS_SHOWN = 20  # inspect's text form; --json lists them all

app = typer.Typer(add_completion=False, no_args_is_help=True, help="nac: a neural audio codec.")

ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]
CodeBitsOption = Annotated[
    Optional[int],
    typer.Option(
        "--code-bits", help="Latent code precision, 2..bits: fewer, smaller files [default: 5 (--bits 8), 16 (--bits 16)]."
    ),
]
BitsOption = Annotated[Optional[int], typer.Option("--bits", "-b", help="Latent code width: 8 or 16 [default: 8].")]
BitrateOption = Annotated[
    Optional[str],
    typer.Option(
        "--bitrate", "-r",
        help="Target kbps, e.g. 6k: the model's measured setting at or below it (listed by `nac models`).",
    ),
]
CoarseChannelsOption = Annotated[
    Optional[int],
    typer.Option("--coarse-channels", help="Code the model's N least important latent channels (its measured "
                 "order) with one code bit fewer [default: 0]."),
]
ResidualHzOption = Annotated[
    Optional[float],
    typer.Option(
        "--residual-hz",
        help="Also code the log-magnitude under this many Hz as a correction to the model's (format 2.0+) "
        "[default: 0, none].",
    ),
]
ResidualStepOption = Annotated[
    Optional[float],
    typer.Option("--residual-step", help="Log-magnitude step of that correction: smaller is finer and larger "
                 f"[default: {DEFAULT_RESIDUAL_STEP:g}]."),
]
ResidualBandsOption = Annotated[
    Optional[float],
    typer.Option("--residual-bands-hz", help="Above this many Hz (under --residual-hz), correct the log-magnitude "
                 "with one gain per band instead of per bin: the envelope for far fewer bits [default: 0, per bin]."),
]
BandsPerOctaveOption = Annotated[
    Optional[float],
    typer.Option("--bands-per-octave", help="Width of those bands: more is finer and larger "
                 f"[default: {DEFAULT_BANDS_PER_OCTAVE:g}]."),
]
ResidualSlopeOption = Annotated[
    Optional[float],
    typer.Option("--residual-slope", help="Widen the step of rows the decoded spectrum puts below each frame's "
                 "loudest by exp(slope x distance), where the ear hears errors less (format 5.0) [default: 0, none]."),
]
ResidualSpanOption = Annotated[
    Optional[float],
    typer.Option("--residual-span", help="How far below the loudest row (log-magnitude units) the step stops "
                 f"widening [default: {DEFAULT_RESIDUAL_SPAN:g}]."),
]
ResidualFineHzOption = Annotated[
    Optional[float],
    typer.Option("--residual-fine-hz", help="Correct the bins under this many Hz (at most --residual-bands-hz) at "
                 "every STFT frame, not every second one: pitch harmonics stay sharp (format 7.0) [default: 0, none]."),
]
ResidualFineStepOption = Annotated[
    Optional[float],
    typer.Option("--residual-fine-step", help="Log-magnitude step of those bins [default: --residual-step]."),
]
PhaseHintOption = Annotated[
    Optional[float],
    typer.Option("--phase-hint-hz", help="Code a delay and a turn of the starting phase of the bins under this "
                 "many Hz every second frame: needs --residual-fine-hz (format 8.0) [default: 0, none]."),
]
ClosedLoopOption = Annotated[
    bool,
    typer.Option("--closed-loop", help="Aim the residual layer at what the decoder's own output lacks: "
                 "3-4 % more bytes, up to +0.09 PESQ-WB but lower ViSQOL and STOI, about 3x slower encoding."),
]
ModelOption = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Model name or id (see `nac models`), or a .safetensors path.")
]


def _say(message: str) -> None:
    typer.echo(message, err=True)


def reports_errors(command):
    """Turn NacError into its one-line message and exit code (traceback with NAC_DEBUG=1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except NacError as err:
            if os.environ.get("NAC_DEBUG"):
                raise
            _say(f"nac: error: {err}")
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            _say("nac: interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@reports_errors
def encode(
    input: Annotated[Path, typer.Argument(help="Audio file to encode (wav, flac, ogg, mp3, ...); - reads stdin.")],
    output: Annotated[
        Optional[Path], typer.Argument(help="Output .nac file; - writes stdout [default: INPUT with .nac].")
    ] = None,
    bits: BitsOption = None,
    store_phase: Annotated[bool, typer.Option("--store-phase", help="Also store the quantized STFT phase.")] = False,
    code_bits: CodeBitsOption = None,
    coarse_channels: CoarseChannelsOption = None,
    residual_hz: ResidualHzOption = None,
    residual_step: ResidualStepOption = None,
    residual_bands_hz: ResidualBandsOption = None,
    bands_per_octave: BandsPerOctaveOption = None,
    residual_slope: ResidualSlopeOption = None,
    residual_span: ResidualSpanOption = None,
    residual_fine_hz: ResidualFineHzOption = None,
    residual_fine_step: ResidualFineStepOption = None,
    phase_hint_hz: PhaseHintOption = None,
    closed_loop: ClosedLoopOption = False,
    bitrate: BitrateOption = None,
    model: ModelOption = None,
    force: ForceOption = False,
) -> None:
    """Encode an audio file to .nac."""
    output = output or _default_output(input, ".nac")
    settings = _code_settings(bitrate, model, store_phase, closed_loop, bits=bits, code_bits=code_bits,
                              coarse_channels=coarse_channels, residual_hz=residual_hz, residual_step=residual_step,
                              residual_bands_hz=residual_bands_hz, bands_per_octave=bands_per_octave,
                              residual_slope=residual_slope, residual_span=residual_span,
                              residual_fine_hz=residual_fine_hz, residual_fine_step=residual_fine_step,
                              phase_hint_hz=phase_hint_hz)
    codec.tune_heap()
    with chunk_progress("encoding") as on_progress:
        report = api.encode_file(input, output, settings, overwrite=force, model=model, on_progress=on_progress)
    kbps = f"{report.kbps:.2f} kbps" if report.kbps else "empty"
    _say(f"{input} -> {output}: {report.file_bytes} bytes, {report.duration_s:.2f} s, {kbps}")


def _code_settings(
    bitrate: str | None, model: str | None, store_phase: bool, closed_loop: bool, **given: float | None
) -> EncoderSettings:
    """Encoder settings from either --bitrate or the options it stands for (``given``, None where unset)."""
    if bitrate is None:  # unset ones keep the defaults
        return EncoderSettings(store_phase=store_phase, closed_loop=closed_loop,
                               **{name: value for name, value in given.items() if value is not None}).check()
    if any(value is not None for value in given.values()):
        raise UsageError("--bitrate chooses --bits, --code-bits, --coarse-channels and the residual layer: "
                         "give one or the other")
    return replace(api.bitrate_settings(bitrate, model), store_phase=store_phase, closed_loop=closed_loop).check()


@contextlib.contextmanager
def chunk_progress(description: str):
    """A progress bar over chunks, on stderr and only on a terminal; yields its update callback."""
    with Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True,
    ) as progress:
        bar = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(bar, completed=done, total=total)


def _default_output(input: Path, suffix: str) -> Path:
    if is_stdio(input):
        raise UsageError("reading from stdin: name the output (- for stdout)")
    return input.with_suffix(suffix)


@app.command()
@reports_errors
def decode(
    input: Annotated[Path, typer.Argument(help="The .nac file to decode; - reads stdin.")],
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Output .wav/.flac; - writes WAV to stdout [default: INPUT.decoded.wav]."),
    ] = None,
    start: Annotated[Optional[float], typer.Option("--start", help="Decode from this time (seconds).")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Decode this many seconds.")] = None,
    phase_iters: Annotated[
        Optional[int],
        typer.Option("--phase-iters", help="Griffin-Lim iterations [default: the model's, at least "
                     f"{codec.RESIDUAL_PHASE_ITERS} with a residual layer]; fewer is faster."),
    ] = None,
    keep_model_rate: Annotated[
        bool, typer.Option("--keep-model-rate", help="Write at the model's rate instead of the original rate.")
    ] = False,
    model: ModelOption = None,
    force: ForceOption = False,
    salvage: Annotated[
        bool,
        typer.Option(
            "--salvage",
            help="Decode a damaged file's intact chunks, silence for the rest; "
            f"list the lost time ranges and exit {SalvagedError.exit_code}.",
        ),
    ] = False,
) -> None:
    """Decode a .nac file to WAV or FLAC, restoring rate, length and channels."""
    output = output or _default_output(input, ".decoded.wav")
    if salvage and (start is not None or duration is not None):
        raise UsageError("--salvage decodes the whole file: drop --start/--duration")
    codec.tune_heap()
    with chunk_progress("decoding") as on_progress:
        report = api.decode_file(
            input, output, overwrite=force, keep_model_rate=keep_model_rate, model=model, salvage=salvage,
            start=start, duration=duration, phase_iters=phase_iters, on_progress=on_progress,
        )
    _say(f"{input} -> {output}: {report.samples} samples x {report.channels} ch at {report.sample_rate} Hz")
    if report.clipped_samples:
        _say(f"nac: warning: {report.clipped_samples} samples clipped to [-1, 1]")
    if report.damaged:
        for span in report.lost:
            _say(f"nac: lost {span.describe()}")
        lost = sum(span.stop - span.start for span in report.lost) / report.sample_rate
        raise SalvagedError(
            f"{input}: damaged ({len(report.problems)} problem(s)); {lost:.3f} s lost in "
            f"{len(report.lost)} range(s), silence written there"
        )


@app.command()
@reports_errors
def inspect(
    input: Annotated[Path, typer.Argument(help="The .nac file to describe.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show every header field, the chunks and whether each CRC verifies (exit 4 if not)."""
    data = api.read_input_bytes(input)  # its errors name the file already
    try:
        info = api.inspect(data)
    except NacError as err:
        raise type(err)(f"{input}: {err}") from None
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(format_inspection(input, info))
    if not (info["all_crc_ok"] and info["intact"]):
        raise typer.Exit(4)


def format_inspection(path: Path, info: dict) -> str:
    """The human-readable form of :func:`nac.api.inspect`'s report."""
    kbps = f"{info['kbps']:.2f} kbps" if info["kbps"] else "-"
    lines = [
        f"{path}: {info['file_bytes']} bytes, {info['duration_s']:.3f} s, {kbps}, model {info['model_name']}",
        "header:",
        *(f"  {name:22} {value}" for name, value in info["header"].items()),
        f"chunks: {len(info['chunks'])}",
    ]
    for chunk in info["chunks"]:
        status = "ok" if chunk["crc_ok"] else "CRC MISMATCH"
        lines.append(
            f"  #{chunk['index']:<4} offset {chunk['offset']:<8} {chunk['size']:>7} bytes "
            f"{chunk['frames']:>5} frames  {status}"
        )
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
def models() -> None:
    """List the shipped models."""
    default = manifest.find_entry(None).name
    for entry in manifest.list_models():
        mark = "*" if entry.name == default else " "
        typer.echo(
            f"{mark} {entry.id:>3}  {entry.name:20} {entry.sample_rate} Hz  {entry.parameters:>9,} params  "
            f"{entry.description}"
        )
        if entry.quality:
            typer.echo(f"        measured: {entry.quality}")
        if entry.rates:
            typer.echo("        bitrates (nac encode --bitrate K picks the highest at or below K):")
            width = max(len(point.options()) for point in entry.rates)
            for point in entry.rates:
                typer.echo(f"          {point.describe(width)}")
        if entry.training_data:
            typer.echo(f"        trained on: {entry.training_data}")


ReportFormat = Annotated[str, typer.Option("--format", help="table, md, csv or json.")]


@app.command(name="batch")
@reports_errors
def batch_command(
    input_dir: Annotated[Path, typer.Argument(help="Folder to encode (or, with --decode, of .nac files).")],
    output_dir: Annotated[Path, typer.Argument(help="Output folder; the input tree is mirrored.")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel processes [default: all cores].")] = 0,
    decode: Annotated[bool, typer.Option("--decode", help="Decode .nac files to .wav instead.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Skip outputs that exist and verify.")] = False,
    bits: BitsOption = None,
    store_phase: Annotated[bool, typer.Option("--store-phase", help="Also store the quantized STFT phase.")] = False,
    code_bits: CodeBitsOption = None,
    coarse_channels: CoarseChannelsOption = None,
    residual_hz: ResidualHzOption = None,
    residual_step: ResidualStepOption = None,
    residual_bands_hz: ResidualBandsOption = None,
    bands_per_octave: BandsPerOctaveOption = None,
    residual_slope: ResidualSlopeOption = None,
    residual_span: ResidualSpanOption = None,
    residual_fine_hz: ResidualFineHzOption = None,
    residual_fine_step: ResidualFineStepOption = None,
    phase_hint_hz: PhaseHintOption = None,
    closed_loop: ClosedLoopOption = False,
    bitrate: BitrateOption = None,
    model: ModelOption = None,
    engine: Annotated[str, typer.Option("--engine", help="local (process pool) or ray.")] = "local",
    address: Annotated[
        Optional[str], typer.Option("--address", help="Ray cluster address (HOST:PORT or auto); none starts Ray here.")
    ] = None,
    report_path: Annotated[Optional[Path], typer.Option("--report", help="Also write the size report here.")] = None,
    report_format: ReportFormat = "table",
) -> None:
    """Encode (or decode) every file under a folder in parallel, then print the size report."""
    settings = _code_settings(bitrate, model, store_phase, closed_loop, bits=bits, code_bits=code_bits,
                              coarse_channels=coarse_channels, residual_hz=residual_hz, residual_step=residual_step,
                              residual_bands_hz=residual_bands_hz, bands_per_octave=bands_per_octave,
                              residual_slope=residual_slope, residual_span=residual_span,
                              residual_fine_hz=residual_fine_hz, residual_fine_step=residual_fine_step,
                              phase_hint_hz=phase_hint_hz)
    if report_format not in batch.REPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(batch.REPORT_FORMATS)}")
    if not decode:
        zoo.load_model(model)  # an unknown model fails once, before any file
    tasks = batch.plan(input_dir, output_dir, decode)
    options = batch.Options(decode=decode, resume=resume, model=model, settings=settings)
    workers = jobs or os.cpu_count() or 1
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=Console(stderr=True), disable=not sys.stderr.isatty(),
    ) as progress:
        bar = progress.add_task("nac batch", total=len(tasks), rate="")
        audio_seconds = 0.0

        def on_done(outcome: batch.Outcome) -> None:
            nonlocal audio_seconds
            audio_seconds += outcome.seconds
            elapsed = max(time.monotonic() - started, 1e-9)
            done = progress.tasks[0].completed + 1
            rate = f"{done / elapsed:.1f} files/s, {audio_seconds / elapsed:.1f}x real time"
            progress.update(bar, advance=1, rate=rate)

        outcomes = batch.run_batch(tasks, options, workers, on_done, engine=engine, address=address)
    stats = batch.throughput(outcomes, time.monotonic() - started)
    for outcome in outcomes:
        if outcome.error:
            _say(f"nac: failed: {outcome.error}")
    _say(
        f"{stats['files']} files ({stats['skipped']} skipped, {stats['failed']} failed) in {stats['wall_s']:.1f} s: "
        f"{stats['files_per_s'] or 0:.2f} files/s, {stats['audio_x_real_time'] or 0:.1f}x real time"
    )
    if not decode:
        rows, summary = batch.size_report([output_dir], originals=input_dir)
        text = batch.format_report(rows, summary, report_format)
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
    originals: Annotated[
        Optional[Path], typer.Option("--originals", help="Folder of the original audio, mirrored like nac batch.")
    ] = None,
    with_metrics: Annotated[
        bool, typer.Option("--metrics", help="Decode and score against the originals (needs --originals).")
    ] = False,
    report_format: ReportFormat = "table",
) -> None:
    """The batch size report: per file and total sizes, ratios, bitrate, overhead (and quality)."""
    if report_format not in batch.REPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(batch.REPORT_FORMATS)}")
    if with_metrics and originals is None:
        raise UsageError("--metrics needs --originals DIR")
    rows, summary = batch.size_report(paths, originals=originals, with_metrics=with_metrics)
    typer.echo(batch.format_report(rows, summary, report_format))


@app.command(name="eval")
@reports_errors
def eval_command(
    inputs: Annotated[
        list[Path], typer.Argument(help="Audio files, folders of audio, or corpus folders with a MANIFEST.tsv.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Report folder: eval.json/csv, summary.md, rd.png, recon_*.wav.")
    ] = Path("results/eval"),
    against: Annotated[Optional[str], typer.Option("--against", help="Also run a reference codec: opus.")] = None,
    bitrates: Annotated[str, typer.Option("--bitrates", help="Opus target kbps, comma-separated.")] = "6,8,12,16,24,32",
    presets: Annotated[
        str,
        typer.Option("--presets", help="nac presets, comma-separated: default, bits16, store_phase, cbN (code bits), "
                     "coarseN (coarse channels), resHZ (residual band), stepS (residual step), bandsHZ (banded "
                     "residual above HZ), octN (bands per octave), itN (decode with --phase-iters N); + combines, "
                     "e.g. cb4+res4000+bands1000+it64."),
    ] = "default",
    model: Annotated[
        Optional[list[str]],
        typer.Option("--model", "-m", help="Model to evaluate, repeatable (default: every shipped model)."),
    ] = None,
    manifest_split: Annotated[
        str, typer.Option("--manifest-split", help="MANIFEST.tsv split of corpus folders.")
    ] = "dev",
    kind: Annotated[str, typer.Option("--kind", help="MANIFEST.tsv kind of corpus folders.")] = "speech_wb",
    max_files: Annotated[
        int, typer.Option("--max-files", help="Score this many files, evenly spaced over the list (0: all).")
    ] = 0,
    keep: Annotated[int, typer.Option("--keep", help="Write reference and reconstructions of this many files.")] = 2,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Torch threads for decoding.")] = None,
) -> None:
    """Score nac (and Opus) on speech: quality per bit, with a summary table and a rate-quality plot."""
    from .lab import evaluate

    if against not in (None, "opus"):
        raise UsageError(f"--against: only opus is supported, not {against!r}")
    options = evaluate.EvalOptions(
        inputs=inputs, out_dir=output, models=model or [], presets=evaluate.parse_list(presets, "--presets"),
        against_opus=against == "opus", bitrates=evaluate.parse_bitrates(bitrates), manifest_split=manifest_split,
        kind=kind, max_files=max_files, keep=keep, threads=threads,
    )
    files, systems = evaluate.plan(options)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not sys.stderr.isatty(),
    ) as progress:
        bar = progress.add_task(f"nac eval ({len(systems)} systems)", total=len(files))
        result = evaluate.run(options, files, systems, on_file=lambda _: progress.update(bar, advance=1))
    for note in result.notes:
        _say(f"nac: note: {note}")
    for failure in result.failed:
        _say(f"nac: failed: {failure['file']}{' (' + failure['system'] + ')' if failure['system'] else ''}: "
             f"{failure['error']}")
    typer.echo(evaluate.summary_table(result.systems))
    _say(f"nac: report in {output}: " + ", ".join(path.name for path in result.paths.values()))
    if result.failed:
        raise NacError(f"{len(result.failed)} coding(s) failed (listed in {result.paths['json']})")


def main() -> None:
    """The ``nac`` command.

    Ends with ``os._exit`` once the command has finished and its output is
    flushed: the files are closed by then, and tearing the interpreter down
    (unloading torch) would add ~0.25 s to every run (measured), which adds
    up in batch and pipe use.
    """
    try:
        app()
        code = 0
    except SystemExit as finished:
        code = finished.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
