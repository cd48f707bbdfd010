"""What a ``.nac`` file holds, read without decoding (``nac inspect``): header, layers, records, damage.

Torch-free: inspecting and listing need no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .audio import is_stdio, standard_input
from .errors import InputError, NacError
from .format import container
from .format.header import Companion, StreamInfo
from .format.records import LostRun, merge_runs
from .model import manifest


@dataclass(frozen=True)
class LostSpan:
    """Consecutive lost chunks of a damaged file, as a time range of the output."""

    first_chunk: int
    last_chunk: int  # inclusive
    start: int  # output samples [start, stop) at ``sample_rate``
    stop: int
    sample_rate: int
    reason: str  # why each chunk was lost, "; "-joined when they differ

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def stop_s(self) -> float:
        return self.stop / self.sample_rate

    def describe(self) -> str:
        """One line: ``1.024-2.048 s (chunk 1: CRC mismatch)``; seconds with 3 decimals."""
        chunks = f"chunk {self.first_chunk}"
        if self.last_chunk != self.first_chunk:
            chunks = f"chunks {self.first_chunk}-{self.last_chunk}"
        return f"{self.start_s:.3f}-{self.stop_s:.3f} s ({chunks}: {self.reason})"


def lost_spans(info: StreamInfo, runs: list[LostRun], keep_model_rate: bool = False) -> list[LostSpan]:
    """Lost runs of chunks (merged) as time ranges at the output rate.

    A chunk covers its nominal samples at the decoded rate R_d
    (:meth:`StreamInfo.decoded_chunk_span`); at the original rate a range
    becomes ``[floor(start * R_o / R_d), ceil(stop * R_o / R_d))``, clipped to
    ``sample_count``.
    """
    spans = []
    for run in merge_runs(runs):
        start, stop = info.decoded_chunk_span(run.first)[0], info.decoded_chunk_span(run.last)[1]
        rate = info.decoded_rate
        if not keep_model_rate:
            rate, r_m = info.original_sample_rate, info.decoded_rate
            start = min(start * rate // r_m, info.sample_count)
            stop = min(-(-stop * rate // r_m), info.sample_count)
        spans.append(LostSpan(run.first, run.last, start, stop, rate, run.reason))
    return spans


def read_input_bytes(src: Path) -> bytes:
    """The bytes of ``src`` (``-``: standard input)."""
    try:
        return standard_input().read() if is_stdio(src) else src.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{src}: no such file") from None
    except OSError as err:
        raise InputError(f"{src}: cannot read ({err.strerror or err})") from None


def inspect(data: bytes) -> dict:
    """A JSON-ready description of a stream: header fields, layers, chunks, CRC status, bitrate."""
    data = container.checked_bytes(data)
    report = container.scan(data)
    info = report.header
    duration = info.sample_count / info.original_sample_rate if info.original_sample_rate else 0.0
    try:
        model_name, model_problem = manifest.find_entry(info.model_id).name, None
    except NacError as err:  # an unknown or retired model: the message names a retired one
        model_name, model_problem = None, str(err)
    return {
        "file_bytes": len(data),
        "duration_s": duration,
        "kbps": len(data) * 8 / duration / 1000 if duration else None,
        "model_name": model_name,
        "model_problem": model_problem,
        "header": describe_info(info),
        "chunks": [vars(chunk) for chunk in report.chunks],
        "end_record_ok": report.end_ok,
        "all_crc_ok": all(chunk.crc_ok for chunk in report.chunks) and report.end_ok,
        "intact": report.ok,
        "lost": [
            {"first_chunk": span.first_chunk, "last_chunk": span.last_chunk, "start_s": span.start_s,
             "stop_s": span.stop_s, "reason": span.reason}
            for span in lost_spans(info, report.lost_runs())
        ],
        "problems": list(report.problems),
    }


def describe_info(info: StreamInfo) -> dict:
    """The header's fields as JSON-ready values: hashes in hex, layers by name."""
    fields = {name: value for name, value in vars(info).items()
              if name not in ("latent", "residual", "high_band", "stereo", "companions", "layer_order", "version",
                              "phase_iters")}
    fields["weights_hash"] = info.weights_hash.hex()
    described = {
        "version": f"{info.version[0]}.{info.version[1]}",
        **fields,
        "companions": {Companion(role).name.lower(): (digest.hex() if digest else "the model's")
                       for role, digest in info.companions},
        "latent": {"code_bits": list(info.latent.code_bits), "entropy_coded": info.latent.entropy_coded,
                   "latent_channels": info.latent.latent_channels, "latent_height": info.latent.latent_height},
        **{name: None if layer is None else {field: _json(getattr(layer, field)) for field in layer.__dataclass_fields__}
           for name, layer in (("residual", info.residual), ("high_band", info.high_band), ("stereo", info.stereo))},
    }
    if info.residual:  # the header's u16 field, as format_spec.md names it
        described["residual"]["band_growth"] = info.residual.growth_field
    return described


def _json(value):
    """Tuples as lists, as JSON reads them back."""
    return list(value) if isinstance(value, tuple) else value
