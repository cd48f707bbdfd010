"""The ``nac`` command line: thin wrappers over :mod:`codec.api`.

Every command maps the project's errors to a one-line message on stderr and
the exit code of its class (see :mod:`codec.errors`); set ``NAC_DEBUG=1`` to
see the full traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import api, zoo
from .errors import NacError, SalvagedError

MAX_PROBLEMS_SHOWN = 20  # inspect's text form; --json lists them all

app = typer.Typer(add_completion=False, no_args_is_help=True, help="nac: a neural audio codec.")

ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]
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
    input: Annotated[Path, typer.Argument(help="Audio file to encode (wav, flac, ogg, mp3, ...).")],
    output: Annotated[Optional[Path], typer.Argument(help="Output .nac file [default: INPUT with .nac].")] = None,
    bits: Annotated[int, typer.Option("--bits", "-b", help="Latent code width: 8 or 16.")] = 8,
    store_phase: Annotated[bool, typer.Option("--store-phase", help="Also store the quantized STFT phase.")] = False,
    model: ModelOption = None,
    force: ForceOption = False,
) -> None:
    """Encode an audio file to .nac."""
    output = output or input.with_suffix(".nac")
    size = api.encode_file(input, output, overwrite=force, model=model, bits=bits, store_phase=store_phase)
    info = api.inspect(output.read_bytes())
    kbps = f"{info['kbps']:.2f} kbps" if info["kbps"] else "empty"
    _say(f"{input} -> {output}: {size} bytes, {info['duration_s']:.2f} s, {kbps}")


@app.command()
@reports_errors
def decode(
    input: Annotated[Path, typer.Argument(help="The .nac file to decode.")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Output .wav/.flac [default: INPUT.decoded.wav].")
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
    output = output or input.with_suffix(".decoded.wav")
    report = api.decode_file(
        input, output, overwrite=force, keep_model_rate=keep_model_rate, model=model, salvage=salvage
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
    try:
        info = api.inspect(api.read_input_bytes(input))
    except NacError as err:
        raise type(err)(f"{input}: {err}") from None
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(format_inspection(input, info))
    if not (info["all_crc_ok"] and info["intact"]):
        raise typer.Exit(4)


def format_inspection(path: Path, info: dict) -> str:
    """The human-readable form of :func:`codec.api.inspect`'s report."""
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
            f"  #{chunk['index']:<4} offset {chunk['offset']:<8} {chunk['payload_size']:>7} bytes "
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
    default = zoo.find_entry(None).name
    for entry in zoo.list_models():
        mark = "*" if entry.name == default else " "
        typer.echo(
            f"{mark} {entry.id:>3}  {entry.name:28} {entry.sample_rate} Hz  "
            f"{entry.parameters:>9,} params  {entry.description}"
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
