"""The ``.nac`` container (versions 1.0 to 8.0): header, checksummed chunks, end record.

``format_spec.md`` is the normative description; this module implements it
and nothing else (no torch, no model).  Layers:

* construct schemas describe the bytes (``Const`` magic and sync words,
  ``RawCopy`` + ``Checksum`` for every CRC, ``Prefixed`` payloads, ``Rebuild``
  sizes, ``Terminated`` at the end of the file);
* ``_parse`` is the one place where construct's exceptions become
  :class:`FormatError`;
* plain functions check the semantic rules (limits, counts, sizes) before
  anything is allocated, shared by :func:`pack` (``ValueError``: a bug in the
  caller) and the readers (``FormatError``: a bad file);
* zstd, (v3+) the rANS stream of the latent codes (:mod:`codec.entropy`,
  with tables the caller supplies) and (v4+) the adaptive rANS stream of the
  residual codes run outside the schemas, bounded by the sizes the header
  implies.

Public API: :class:`StreamHeader`, :class:`Chunk`, :func:`pack`,
:func:`unpack`, :func:`read_header`, :func:`scan` (with :class:`StreamReport`
and :class:`ChunkReport`), :func:`unpack_salvage` (with :class:`Salvage`),
:func:`chunk_span`, :func:`chunk_body_size`, :func:`crc32`.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import zstandard
from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Check,
    Checksum,
    ChecksumError,
    Const,
    ConstError,
    ConstructError,
    Flag,
    Float32l,
    GreedyBytes,
    If,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Nibble,
    Prefixed,
    RawCopy,
    Rebuild,
    StreamError,
    Struct,
    Terminated,
    TerminatedError,
    this,
)

from . import entropy
from .errors import FormatError, ModelError, VersionError

__all__ = [
    "MAGIC",
    "HEADER_SIZE",
    "StreamHeader",
    "Chunk",
    "ChunkReport",
    "StreamReport",
    "pack",
    "unpack",
    "read_header",
    "scan",
    "Salvage",
    "unpack_salvage",
    "chunk_span",
    "chunk_body_size",
    "crc32",
]

# --------------------------------------------------------------------------
# Constants (format_spec.md sections 3-7)
# --------------------------------------------------------------------------

MAGIC = b"\x89NAC\r\n\x1a\n"
CHUNK_SYNC = b"NACK"
END_SYNC = b"NEND"
VERSION_MAJORS = (1, 2, 3, 4, 5, 6, 7, 8)  # 2.0 adds the residual layer, 3.0 rANS-coded latent codes, 4.0 rANS-coded
# residual codes in rows and bands, 5.0 level-adaptive residual steps, 6.0 fine residual bins coded at every
# frame, 7.0 the fine bins' codes in contexts of their own, 8.0 phase hints (format_spec.md section 5)
VERSION_MINOR = 0  # what this encoder writes, for either major
# x.0 header, magic through header_crc, per major
HEADER_SIZES = {1: 74, 2: 82, 3: 92, 4: 98, 5: 102, 6: 108, 7: 108, 8: 114}
HEADER_SIZE = HEADER_SIZES[1]
CHUNK_OVERHEAD = 24  # sync, index, frames, raw_size, payload_size, chunk_crc
END_SIZE = 24  # sync, chunk_count, latent_frames, sample_count, crc
ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"  # 0xFD2FB528 little-endian (RFC 8878)

# Encoder choice, not part of the format: zstd levels per body part, measured
# on 100 dev speech files (2 s each). Latent codes are a few KB a second, so
# a slow level costs little: 15 made 4-bit files 0.3 % smaller than 12.
# Stored phase is 30-60x bigger and gains little, so it keeps the fast 12.
# Residual codes (v2, v3 only; v4+ code them with rANS): 19 took 1.3 % (bins
# under 1 kHz) to 6.3 % (under 2 kHz) fewer bytes than 12.
ZSTD_LEVEL_LATENT = 15
ZSTD_LEVEL_PHASE = 12
ZSTD_LEVEL_RESIDUAL = 19

# --------------------------------------------------------------------------
# Limits (format_spec.md section 11).  Each range is
# (format minimum, format maximum, implementation minimum, implementation maximum):
# a value outside the format range makes the file invalid; a value outside the
# implementation range is valid but refused by this decoder.
# --------------------------------------------------------------------------

_U16, _U32, _U64 = 2**16 - 1, 2**32 - 1, 2**64 - 1
_RANGES = {
    "model_id": (0, _U16, 0, _U16),
    "original_sample_rate": (1000, 768000, 8000, 192000),
    "model_sample_rate": (1000, 768000, 8000, 48000),
    "channels": (1, 255, 1, 8),
    "sample_count": (0, _U64, 0, 2**34),
    "model_sample_count": (0, _U64, 0, 2**34),
    "n_fft": (16, 32768, 64, 4096),
    "time_stride": (1, _U16, 1, 64),
    "latent_channels": (1, _U16, 1, 1024),
    "latent_height": (1, _U16, 1, 1024),
    "latent_frames": (0, _U32, 0, _U32),
    "chunk_frames": (1, _U32, 1, 512),  # bounds the decoder's window memory
    "chunk_count": (0, _U32, 0, _U32),
}
MAX_CHANNELS = _RANGES["channels"][3]
MAX_RESIDUAL_STEP = 16.0  # residual_step range (0, 16]: a step of e^16 is already absurd
MAX_CODE_RANGE = 127  # implementation limit on code_range (tables of 255 x 255 per latent channel)
RESIDUAL_LIMIT = 127  # residual codes lie in [-127, 127]
HINT_ROWS = 2  # v8: per residual column, a delay code and a turn code
MAX_HINT_TURNS = 256  # phase_hint_turns range 1..256
GROWTH_ONE = 1 << 16  # residual_band_growth's fixed-point 1.0 (every row one bin); 2.0 is its maximum
SLOPE_ONE = 1 << 12  # residual_step_slope's fixed-point 1.0, also its maximum
SPAN_ONE = 1 << 8  # residual_step_span's fixed-point 1.0 (one log-magnitude unit); 16.0 is its maximum
MAX_CHUNK_RAW_SIZE = 64 * 2**20  # implementation limit on one chunk body
ZSTD_MAX_WINDOW = 2**26  # >= MAX_CHUNK_RAW_SIZE; bounds the decoder's window buffer
# scan() parses at most this many times the file's size in records (a sound file
# needs 1x; resynchronizing after damage re-reads overlapping candidates).
SCAN_WORK_FACTOR = 16


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib): reflected poly 0x04C11DB7, init and xorout 0xFFFFFFFF."""
    return zlib.crc32(data) & 0xFFFFFFFF


# --------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamHeader:
    """Everything needed to size and decode a stream; one per file."""

    version_minor: int  # written as 0 by this encoder; the major follows from residual_bins
    store_phase: bool  # flags bit 0
    model_id: int  # u16
    weights_hash: bytes  # first 8 bytes of sha256 of the model weights file
    original_sample_rate: int  # u32, rate of the user's input
    model_sample_rate: int  # u32
    channels: int  # u8, audio channels, each coded separately
    bits: int  # 8 or 16: width of latent codes and of phase codes
    sample_count: int  # u64, samples per channel at the original rate
    model_sample_count: int  # u64, samples per channel at the model rate
    n_fft: int  # u16
    hop_length: int  # u16
    time_stride: int  # u16, STFT frames per latent frame
    latent_channels: int  # u16
    latent_height: int  # u16, latent size along frequency (1 for 1-D models)
    latent_frames: int  # u32, latent frames in the stream
    chunk_frames: int  # u32, latent frames per chunk (the last has 1..chunk_frames)
    chunk_count: int  # u32
    residual_bins: int = 0  # u16, v2+: lowest STFT bins with a residual layer (0: none)
    residual_stride: int = 0  # u16, v2+: STFT frames per residual column (divides time_stride)
    residual_step: float = 0.0  # f32, v2+: log-magnitude step of one residual code
    code_range: int = 0  # u16, v3+: U, the latent codes' range [-U, U], rANS-coded with the model's tables (0: zstd)
    tables_hash: bytes = b""  # v3+: first 8 bytes of SHA-256 of the model's code tables file (empty without)
    residual_band_start: int = 0  # u16, v4+: residual bins below this are rows of one bin each
    residual_band_growth: int = 0  # u32, v4+: band widening in 16.16 fixed point (0: before v4, per-bin rows)
    residual_step_slope: int = 0  # u16, v5: how fast a row's step grows below its column's loudest row, / 4096
    residual_step_span: int = 0  # u16, v5: how far below that row the step stops growing, / 256 (log-magnitude)
    residual_fine_bins: int = 0  # u16, v6: lowest residual bins coded at every STFT frame, not every stride frames
    residual_fine_step: float = 0.0  # f32, v6: log-magnitude step of the fine bins' codes
    residual_fine_contexts: bool = False  # v7 (no field of its own): fine bins' codes in contexts of their own
    phase_hint_bins: int = 0  # u16, v8: lowest STFT bins whose starting phase the hints turn (0: no hints)
    phase_hint_delay: int = 0  # u16, v8: model-rate samples of delay per delay code
    phase_hint_turns: int = 0  # u16, v8: turn codes per full turn of phase

    @property
    def version_major(self) -> int:
        """1 plain, 2 residual layer, 3 rANS-coded codes, 4 rANS-coded residual rows, 5 level-adaptive steps,
        6 fine bins, 7 fine bins with contexts of their own, 8 phase hints.

        Writers use the oldest version that holds the stream.
        """
        if self.phase_hint_bins:
            return 8
        if self.residual_fine_bins:
            return 7 if self.residual_fine_contexts else 6
        if self.residual_step_slope:
            return 5
        return 4 if self.residual_band_growth else 3 if self.code_range else 2 if self.residual_bins else 1

    @property
    def code_dtype(self) -> np.dtype:
        """int8 or int16: the dtype of :attr:`Chunk.codes`."""
        return np.dtype(np.int8 if self.bits == 8 else np.int16)

    @property
    def phase_dtype(self) -> np.dtype:
        """uint8 or uint16: the dtype of :attr:`Chunk.phase`."""
        return np.dtype(np.uint8 if self.bits == 8 else np.uint16)

    @property
    def phase_bins(self) -> int:
        """STFT bins stored per phase column: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def residual_row_edges(self) -> list[int]:
        """Bin edges of the residual rows (format_spec.md section 9): one row per bin before v4.

        ``[0, 1, ..., residual_band_start]``, then ``e[i+1] = min(residual_bins,
        max(e[i] + 1, (e[i] * residual_band_growth + 2**15) >> 16))`` up to
        ``residual_bins``: integers only, so every decoder finds the same rows.
        """
        if not self.residual_band_growth:
            return list(range(self.residual_bins + 1))
        edges = list(range(self.residual_band_start + 1))
        while edges[-1] < self.residual_bins:
            grown = (edges[-1] * self.residual_band_growth + (GROWTH_ONE >> 1)) >> 16
            edges.append(min(self.residual_bins, max(edges[-1] + 1, grown)))
        return edges

    @property
    def residual_rows(self) -> int:
        """Residual codes per column: one per row of :meth:`residual_row_edges`, ``residual_stride - 1``
        more per fine bin (its frames between the columns), and (v8) the two phase-hint codes last."""
        if not self.residual_bins:
            return 0
        hints = HINT_ROWS if self.phase_hint_bins else 0
        return len(self.residual_row_edges()) - 1 + self.residual_fine_bins * (self.residual_stride - 1) + hints

    def residual_columns(self, frames: int) -> int:
        """Residual columns of a chunk of ``frames`` latent frames: one every ``residual_stride`` STFT frames."""
        return frames * self.time_stride // self.residual_stride if self.residual_bins else 0

    @property
    def samples_per_frame(self) -> int:
        """Model-rate samples one latent frame advances: ``hop_length * time_stride``."""
        return self.hop_length * self.time_stride

    def chunk_frames_at(self, index: int) -> int:
        """Latent frames in chunk ``index``: ``chunk_frames``, the last one fewer."""
        return min(self.chunk_frames, self.latent_frames - index * self.chunk_frames)


@dataclass
class Chunk:
    """One chunk of quantized latents (see format_spec.md section 9)."""

    index: int
    frames: int  # latent frames in this chunk
    scales: np.ndarray  # float32 (channels, latent_channels), finite, >= 0
    codes: np.ndarray  # int8/int16 (channels, latent_channels, latent_height, frames)
    phase: np.ndarray | None  # uint8/uint16 (channels, n_fft//2+1, frames*time_stride)
    residual: np.ndarray | None = None  # int8 (channels, residual_rows, residual_columns(frames)), v2+; v8's
    # last two rows are the phase hints' delay and turn codes


@dataclass(frozen=True)
class ChunkReport:
    """What :func:`scan` found about one chunk record, without decompressing it."""

    index: int  # as stored (untrusted when crc_ok is False)
    offset: int  # byte offset of the chunk's sync word
    payload_size: int  # zstd bytes
    raw_size: int  # decompressed body bytes, as stored
    frames: int  # latent frames, as stored
    sample_start: int  # nominal model-rate sample range [start, stop) it covers
    sample_stop: int
    crc_ok: bool
    problem: str | None  # first problem found, None when the record is sound


@dataclass(frozen=True)
class StreamReport:
    """Result of :func:`scan`: the header, every chunk record, the end record."""

    header: StreamHeader
    header_size: int
    file_size: int
    chunks: tuple[ChunkReport, ...]
    end_present: bool
    end_ok: bool  # present, CRC correct, agrees with the header, nothing after it
    problems: tuple[str, ...]  # stream-level problems (gaps, missing chunks, trailing bytes)

    @property
    def ok(self) -> bool:
        """True when :func:`unpack` should find nothing wrong short of zstd and body checks."""
        return self.end_ok and not self.problems and all(c.problem is None for c in self.chunks)

    def lost_chunks(self) -> dict[int, str]:
        """Chunk indices ``0 .. chunk_count-1`` with no sound record, each with the reason.

        A record is sound when its CRC matches and its stored index, frames and
        raw_size agree with the header (the index decides its place, so a
        missing chunk does not condemn the ones after it). The first sound
        record of an index wins. Payloads are not decompressed here.
        """
        h = self.header
        sound, damaged = set(), {}
        for chunk in self.chunks:
            problem = "CRC mismatch"
            if chunk.crc_ok:
                problem = _chunk_problem(h, chunk.index, chunk.index, chunk.frames, chunk.raw_size)
            if problem is None:
                sound.add(chunk.index)
            elif chunk.index < h.chunk_count:
                damaged.setdefault(chunk.index, problem)
        return {i: damaged.get(i, "missing") for i in range(h.chunk_count) if i not in sound}


@dataclass(frozen=True)
class Salvage:
    """Result of :func:`unpack_salvage`: every sound chunk, and what was lost."""

    header: StreamHeader
    chunks: list[Chunk | None]  # one per chunk index; None where damaged or missing
    lost: dict[int, str]  # chunk index -> why it was lost (None in ``chunks``)
    problems: tuple[str, ...]  # every defect found, lost chunks or not (end record, trailing bytes)

    @property
    def intact(self) -> bool:
        """True when the file had no defect at all (then it equals :func:`unpack`'s result)."""
        return not self.lost and not self.problems


# --------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------


def _signed(body: Struct, verify: bool = True) -> Struct:
    """``body`` followed by a CRC-32 of its exact bytes (checked on parse when ``verify``)."""
    crc = Checksum(Int32ul, crc32, this.signed.data) if verify else Int32ul
    return Struct("signed" / RawCopy(body), "crc" / crc)


_VERSION = BitStruct("major" / Nibble, "minor" / Nibble)
_FLAGS = BitStruct("reserved" / BitsInteger(7), "store_phase" / Flag)

_PREAMBLE_FIELDS = (
    "magic" / Const(MAGIC),
    "version" / _VERSION,
    "flags" / _FLAGS,
    "header_size" / Rebuild(Int16ul, lambda ctx: HEADER_SIZES[ctx.version.major] + len(ctx.extension)),
)
# The part every major version keeps; read first to decide whether to go on.
_PREAMBLE = Struct(*_PREAMBLE_FIELDS)

_HEADER_BODY = Struct(
    *_PREAMBLE_FIELDS,
    "model_id" / Int16ul,
    "weights_hash" / Bytes(8),
    "original_sample_rate" / Int32ul,
    "model_sample_rate" / Int32ul,
    "channels" / Int8ul,
    "bits" / Int8ul,
    "sample_count" / Int64ul,
    "model_sample_count" / Int64ul,
    "n_fft" / Int16ul,
    "hop_length" / Int16ul,
    "time_stride" / Int16ul,
    "latent_channels" / Int16ul,
    "latent_height" / Int16ul,
    "latent_frames" / Int32ul,
    "chunk_frames" / Int32ul,
    "chunk_count" / Int32ul,
    "residual" / If(this.version.major >= 2, Struct("bins" / Int16ul, "stride" / Int16ul, "step" / Float32l)),
    "code" / If(this.version.major >= 3, Struct("range" / Int16ul, "tables_hash" / Bytes(8))),
    "bands" / If(this.version.major >= 4, Struct("start" / Int16ul, "growth" / Int32ul)),
    "steps" / If(this.version.major >= 5, Struct("slope" / Int16ul, "span" / Int16ul)),
    "fine" / If(this.version.major >= 6, Struct("bins" / Int16ul, "step" / Float32l)),
    "hints" / If(this.version.major >= 8, Struct("bins" / Int16ul, "delay" / Int16ul, "turns" / Int16ul)),
    Check(lambda ctx: ctx.header_size >= HEADER_SIZES[ctx.version.major]),
    "extension" / Bytes(lambda ctx: ctx.header_size - HEADER_SIZES[ctx.version.major]),  # a newer minor's fields
)
_HEADER = _signed(_HEADER_BODY)

_CHUNK_FIELDS = Struct(
    "sync" / Const(CHUNK_SYNC),
    "index" / Int32ul,
    "frames" / Int32ul,
    "raw_size" / Int32ul,
    "payload" / Prefixed(Int32ul, GreedyBytes),  # payload_size, then one zstd frame
)
_CHUNK = _signed(_CHUNK_FIELDS)

_END_FIELDS = Struct(
    "sync" / Const(END_SYNC),
    "chunk_count" / Int32ul,
    "latent_frames" / Int32ul,
    "sample_count" / Int64ul,
)
_END = Struct("record" / _signed(_END_FIELDS), Terminated)
_END_UNVERIFIED = _signed(_END_FIELDS, verify=False)

def header_layout(major: int = 1) -> dict[str, tuple[int, str]]:
    """Byte offset and ``struct`` format of each fixed-size header field of an ``major``.0 header.

    Read off the schema. Integers (version and flags as whole bytes) are
    little-endian unsigned, ``residual_step`` a float; ``magic`` and
    ``weights_hash`` are raw bytes (format_spec.md section 4).
    """
    layout, offset = {}, 0
    for field in _HEADER_BODY.subcons:
        if field.name == "residual":  # the first field whose presence depends on the version
            break
        if field.name:
            size = field.sizeof()
            raw = field.name in ("magic", "weights_hash")
            layout[field.name] = (offset, f"{size}s" if raw else {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[size])
            offset += size
    if major >= 2:
        layout.update(residual_bins=(offset, "<H"), residual_stride=(offset + 2, "<H"),
                      residual_step=(offset + 4, "<f"))
    if major >= 3:
        layout.update(code_range=(offset + 8, "<H"), tables_hash=(offset + 10, "8s"))
    if major >= 4:
        layout.update(residual_band_start=(offset + 18, "<H"), residual_band_growth=(offset + 20, "<I"))
    if major >= 5:
        layout.update(residual_step_slope=(offset + 24, "<H"), residual_step_span=(offset + 26, "<H"))
    if major >= 6:
        layout.update(residual_fine_bins=(offset + 28, "<H"), residual_fine_step=(offset + 30, "<f"))
    if major >= 8:
        layout.update(phase_hint_bins=(offset + 34, "<H"), phase_hint_delay=(offset + 36, "<H"),
                      phase_hint_turns=(offset + 38, "<H"))
    return layout


_HEADER_FIELD_NAMES = tuple(
    f.name for f in dataclasses.fields(StreamHeader)
    if f.name not in ("version_minor", "store_phase", "residual_bins", "residual_stride", "residual_step",
                      "code_range", "tables_hash", "residual_band_start", "residual_band_growth",
                      "residual_step_slope", "residual_step_span", "residual_fine_bins", "residual_fine_step",
                      "residual_fine_contexts", "phase_hint_bins", "phase_hint_delay", "phase_hint_turns")
)
_TRUNCATED_PART = {"payload": " payload", "crc": " CRC"}


def _parse(schema: Struct, stream: io.BytesIO, where: str):
    """Parse one record at the stream's position: the one place construct errors are caught.

    ``where`` names the record in messages: "header", "chunk 3", "end record".
    """
    prefix = "header " if where == "header" else f"{where}: "
    try:
        return schema.parse_stream(stream)
    except StreamError as err:
        part = _TRUNCATED_PART.get((err.path or "").rsplit(" -> ", 1)[-1], "")
        raise FormatError(f"truncated in {where}{part}") from None
    except ConstError:
        if where == "header":
            raise FormatError("bad magic: not a nac file") from None
        sync = END_SYNC if where == "end record" else CHUNK_SYNC
        raise FormatError(f"{prefix}bad sync word (expected {sync.decode()})") from None
    except ChecksumError:
        raise FormatError(f"{prefix}CRC mismatch") from None
    except TerminatedError:
        raise FormatError("trailing data after end record") from None
    except ConstructError as err:
        reason = str(err).splitlines()[-1]
        raise FormatError(f"{prefix}malformed ({reason})") from None


# --------------------------------------------------------------------------
# Semantic rules shared by writer and readers
# --------------------------------------------------------------------------


def chunk_body_size(header: StreamHeader, frames: int) -> int:
    """Bytes of the decompressed body of a chunk holding ``frames`` latent frames."""
    width = header.bits // 8
    per_channel = 4 * header.latent_channels
    per_channel += width * header.latent_channels * header.latent_height * frames
    if header.store_phase:
        per_channel += width * header.phase_bins * frames * header.time_stride
    per_channel += header.residual_rows * header.residual_columns(frames)
    return header.channels * per_channel


def _header_problem(h: StreamHeader) -> str | None:
    """The first rule of format_spec.md section 10 that ``h`` breaks, or None."""
    if not 0 <= h.version_minor <= 15:
        return f"version_minor {h.version_minor} out of range 0..15"
    if not isinstance(h.weights_hash, bytes) or len(h.weights_hash) != 8:
        return "weights_hash must be 8 bytes"
    for name, (lo, hi, impl_lo, impl_hi) in _RANGES.items():
        value = getattr(h, name)
        if not lo <= value <= hi:
            return f"{name} {value} out of range {lo}..{hi}"
        if not impl_lo <= value <= impl_hi:
            return f"{name} {value} exceeds this decoder's limit {impl_lo}..{impl_hi}"
    if h.bits not in (8, 16):
        return f"bits {h.bits} must be 8 or 16"
    if h.n_fft & (h.n_fft - 1):
        return f"n_fft {h.n_fft} is not a power of two"
    if not 0 <= h.residual_bins <= h.phase_bins:
        return f"residual_bins {h.residual_bins} out of range 0..n_fft/2+1 ({h.phase_bins})"
    if h.residual_bins and not 0.0 < h.residual_step <= MAX_RESIDUAL_STEP:  # NaN fails too
        return f"residual_step {h.residual_step} out of range (0, {MAX_RESIDUAL_STEP:g}]"
    if h.residual_bins and not (h.residual_stride >= 1 and h.time_stride % h.residual_stride == 0):
        return f"residual_stride {h.residual_stride} does not divide time_stride {h.time_stride}"
    if not h.residual_bins and (h.residual_step != 0.0 or h.residual_stride != 0):
        return "residual_step and residual_stride without a residual layer (must be 0)"
    if h.residual_band_growth and not h.residual_bins:
        return "residual_band_growth without a residual layer (a version 4 stream has one)"
    if h.residual_band_growth and not GROWTH_ONE <= h.residual_band_growth <= 2 * GROWTH_ONE:
        return f"residual_band_growth {h.residual_band_growth} out of range {GROWTH_ONE}..{2 * GROWTH_ONE}"
    if h.residual_step_slope and not h.residual_band_growth:
        return "residual_step_slope without residual bands (a version 5 stream has them)"
    if not 0 <= h.residual_step_slope <= SLOPE_ONE:
        return f"residual_step_slope {h.residual_step_slope} out of range 0..{SLOPE_ONE}"
    low, high = (1, 16 * SPAN_ONE) if h.residual_step_slope else (0, 0)
    if not low <= h.residual_step_span <= high:
        return f"residual_step_span {h.residual_step_span} out of range 1..{16 * SPAN_ONE} (0 without residual_step_slope)"
    if not 0 <= h.residual_band_start <= (h.residual_bins if h.residual_band_growth else 0):
        return f"residual_band_start {h.residual_band_start} out of range 0..residual_bins (0 before version 4)"
    if not 0 <= h.residual_fine_bins <= h.residual_band_start:
        return f"residual_fine_bins {h.residual_fine_bins} out of range 0..residual_band_start ({h.residual_band_start})"
    if h.residual_fine_bins and not 0.0 < h.residual_fine_step <= MAX_RESIDUAL_STEP:  # NaN fails too
        return f"residual_fine_step {h.residual_fine_step} out of range (0, {MAX_RESIDUAL_STEP:g}]"
    if not h.residual_fine_bins and h.residual_fine_step != 0.0:
        return "residual_fine_step without fine bins (must be 0)"
    if h.residual_fine_contexts and not h.residual_fine_bins:
        return "fine-bin contexts without fine bins (a version 7 stream has them)"
    if h.phase_hint_bins and not (h.residual_fine_bins and h.residual_fine_contexts):
        return "phase hints without fine bins in contexts of their own (a version 8 stream has them)"
    if not 0 <= h.phase_hint_bins <= h.phase_bins:
        return f"phase_hint_bins {h.phase_hint_bins} out of range 0..n_fft/2+1 ({h.phase_bins})"
    (delay_low, delay_high), (turns_low, turns_high) = (
        ((1, h.n_fft), (1, MAX_HINT_TURNS)) if h.phase_hint_bins else ((0, 0), (0, 0)))
    if not delay_low <= h.phase_hint_delay <= delay_high:
        return f"phase_hint_delay {h.phase_hint_delay} out of range {delay_low}..{delay_high} (n_fft; 0 without hints)"
    if not turns_low <= h.phase_hint_turns <= turns_high:
        return f"phase_hint_turns {h.phase_hint_turns} out of range {turns_low}..{turns_high} (0 without hints)"
    if not 0 <= h.code_range <= _code_limit(h):
        return f"code_range {h.code_range} out of range 0..{_code_limit(h)}"
    if h.code_range > MAX_CODE_RANGE:
        return f"code_range {h.code_range} exceeds this decoder's limit 1..{MAX_CODE_RANGE}"
    if h.code_range and (not isinstance(h.tables_hash, bytes) or len(h.tables_hash) != 8):
        return "tables_hash must be 8 bytes"
    if not h.code_range and h.tables_hash:
        return "tables_hash without rANS-coded codes (must be empty)"
    if not 1 <= h.hop_length <= h.n_fft:
        return f"hop_length {h.hop_length} out of range 1..n_fft ({h.n_fft})"
    body = chunk_body_size(h, h.chunk_frames)
    if body > _U32:
        return f"chunk body of {body} bytes does not fit raw_size (u32)"
    if body > MAX_CHUNK_RAW_SIZE:
        return f"chunk body of {body} bytes exceeds this decoder's limit of {MAX_CHUNK_RAW_SIZE}"
    step = h.samples_per_frame
    if (h.latent_frames == 0) != (h.model_sample_count == 0):
        counts = f"latent_frames {h.latent_frames} and model_sample_count {h.model_sample_count}"
        return f"{counts}: exactly one is zero"
    if h.latent_frames > (h.model_sample_count + h.n_fft) // step + 1:
        return f"latent_frames {h.latent_frames} too many for model_sample_count {h.model_sample_count}"
    if h.model_sample_count > h.latent_frames * step + h.n_fft:
        return f"model_sample_count {h.model_sample_count} not covered by {h.latent_frames} latent frames"
    if h.sample_count * h.model_sample_rate > (h.model_sample_count + 1) * h.original_sample_rate:
        return f"sample_count {h.sample_count} not covered by model_sample_count {h.model_sample_count}"
    expected_chunks = -(-h.latent_frames // h.chunk_frames)
    if h.chunk_count != expected_chunks:
        return f"chunk_count {h.chunk_count}, expected {expected_chunks} (ceil(latent_frames / chunk_frames))"
    return None


def _chunk_problem(h: StreamHeader, position: int, index: int, frames: int, raw_size: int) -> str | None:
    """Check a chunk record's counters against the header, before decompressing anything."""
    if position >= h.chunk_count:
        return f"beyond the header's chunk_count {h.chunk_count}"
    if index != position:
        return f"index {index}, expected {position}"
    expected = h.chunk_frames_at(position)
    if frames != expected:
        return f"frames {frames}, expected {expected}"
    expected = chunk_body_size(h, frames)
    if raw_size != expected:
        return f"raw_size {raw_size}, expected {expected}"
    return None


def _end_problem(h: StreamHeader, end) -> str | None:
    for name in ("chunk_count", "latent_frames", "sample_count"):
        if end[name] != getattr(h, name):
            return f"{name} {end[name]} disagrees with header ({getattr(h, name)})"
    return None


def _body_dtype(h: StreamHeader, frames: int) -> np.dtype:
    """Structured little-endian dtype of one audio channel's latent part of a chunk body."""
    width = h.bits // 8
    fields = [
        ("scales", "<f4", (h.latent_channels,)),
        ("codes", f"<i{width}", (h.latent_channels, h.latent_height, frames)),
    ]
    if h.store_phase:
        fields.append(("phase", f"<u{width}", (h.phase_bins, frames * h.time_stride)))
    return np.dtype(fields)


def _check_tables(h: StreamHeader, code_tables) -> None:
    """ModelError unless ``code_tables`` fit ``h``: one table per latent channel for its code_range."""
    if code_tables is None:
        raise ModelError("rANS-coded codes (a version 3 or 4 stream) need the model's code tables")
    if code_tables.shape[0] != h.latent_channels:
        raise ModelError(f"code tables for {code_tables.shape[0]} latent channels, the stream has {h.latent_channels}")
    try:
        entropy.check_tables(code_tables, h.code_range)
    except ValueError as err:
        raise ModelError(f"code tables unusable for code_range {h.code_range}: {err}") from None


def _row_tables(h: StreamHeader) -> np.ndarray:
    """The table of each row of codes, rows in body order (audio channel, latent channel, height): its latent channel."""
    return np.arange(h.channels * h.latent_channels * h.latent_height) // h.latent_height % h.latent_channels


def _without_codes(h: StreamHeader, frames: int) -> np.dtype:
    """The latent part's dtype less the codes: what a v3 payload's zstd frame holds."""
    body = _body_dtype(h, frames)
    return np.dtype([(name, body.fields[name][0]) for name in body.names if name != "codes"])


def _part_sizes(h: StreamHeader, frames: int) -> list[int]:
    """Bytes of each part of a chunk body: the latent part, then (v2+) the residual part."""
    residual = h.channels * h.residual_rows * h.residual_columns(frames)
    latent = chunk_body_size(h, frames) - residual
    return [latent, residual] if h.residual_bins else [latent]


def _code_limit(h: StreamHeader) -> int:
    """L = 2^(bits-1) - 1: codes lie in [-L, L]."""
    return 2 ** (h.bits - 1) - 1


# --------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------


def _check_array(name: str, array, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise ValueError(f"{name} dtype {array.dtype}, expected {dtype}")
    if array.shape != shape:
        raise ValueError(f"{name} shape {array.shape}, expected {shape}")


def _encode_body(h: StreamHeader, position: int, chunk: Chunk) -> tuple[np.ndarray, np.ndarray | None]:
    """A chunk's latent part as records of :func:`_body_dtype`, and its residual codes (v2+)."""
    where = f"chunk {position}"
    if chunk.index != position:
        raise ValueError(f"{where}: index {chunk.index}, expected {position}")
    if chunk.frames != h.chunk_frames_at(position):
        raise ValueError(f"{where}: frames {chunk.frames}, expected {h.chunk_frames_at(position)}")
    frames = chunk.frames
    _check_array(f"{where}: scales", chunk.scales, np.dtype(np.float32), (h.channels, h.latent_channels))
    if not (np.isfinite(chunk.scales).all() and (chunk.scales >= 0).all()):
        raise ValueError(f"{where}: scales must be finite and >= 0")
    shape = (h.channels, h.latent_channels, h.latent_height, frames)
    _check_array(f"{where}: codes", chunk.codes, h.code_dtype, shape)
    if chunk.codes.min() < -_code_limit(h):
        raise ValueError(f"{where}: codes below -{_code_limit(h)}")
    if h.store_phase:
        shape = (h.channels, h.phase_bins, frames * h.time_stride)
        _check_array(f"{where}: phase", chunk.phase, h.phase_dtype, shape)
    elif chunk.phase is not None:
        raise ValueError(f"{where}: phase given but header.store_phase is False")
    if h.residual_bins:
        shape = (h.channels, h.residual_rows, h.residual_columns(frames))
        _check_array(f"{where}: residual", chunk.residual, np.dtype(np.int8), shape)
        if chunk.residual.min(initial=0) < -RESIDUAL_LIMIT:
            raise ValueError(f"{where}: residual codes below -{RESIDUAL_LIMIT}")
    elif chunk.residual is not None:
        raise ValueError(f"{where}: residual given but header.residual_bins is 0")
    if h.code_range and np.abs(chunk.codes).max(initial=0) > h.code_range:
        raise ValueError(f"{where}: codes outside the header's code_range {h.code_range}")
    records = np.zeros(h.channels, dtype=_body_dtype(h, frames))
    records["scales"] = chunk.scales
    records["codes"] = chunk.codes
    if h.store_phase:
        records["phase"] = chunk.phase
    return records, chunk.residual if h.residual_bins else None


def _segments(records: np.ndarray, scale_bytes: int) -> list[bytes]:
    """Each record's bytes cut after its scales: the writer ends a zstd block there.

    So the codes' small alphabet gets a literal table of its own, apart from
    the float bytes (6.7 % fewer bytes on short speech files).
    """
    body, segments = records.tobytes(), []
    for start in range(0, len(body), records.itemsize):
        segments += [body[start : start + scale_bytes], body[start + scale_bytes : start + records.itemsize]]
    return [segment for segment in segments if segment]


def _payload(h: StreamHeader, frames: int, records: np.ndarray, residual: np.ndarray | None, compressors: list,
             code_tables: np.ndarray | None) -> bytes:
    """A chunk's payload (format_spec.md section 6): zstd frames, rANS streams (v3+), and their sizes."""
    latent, residual_compressor = compressors
    scale_bytes = 4 * h.latent_channels
    if h.code_range:
        rest = np.zeros(h.channels, dtype=_without_codes(h, frames))
        for name in rest.dtype.names:
            rest[name] = records[name]
        frame = _compress_segments(latent, _segments(rest, scale_bytes))
        codes = records["codes"]
        coded = entropy.encode(codes.reshape(-1, codes.shape[-1]), _row_tables(h), code_tables)
        payload = struct.pack("<I", len(frame)) + frame + struct.pack("<I", len(coded)) + coded
    else:
        frame = _compress_segments(latent, _segments(records, scale_bytes))
        payload = frame if residual is None else struct.pack("<I", len(frame)) + frame
    if residual is not None and h.residual_band_growth:
        payload += entropy.encode_residual(residual, *_contexts(h))
    elif residual is not None:
        payload += _compress_segments(residual_compressor, [residual.tobytes()])
    return payload


def _contexts(h: StreamHeader) -> tuple[int, int, int]:
    """(fine rows, rows per fine bin, hint rows) that :mod:`codec.entropy` codes in their own contexts: v7's
    fine bins and v8's phase hints."""
    fine = (h.residual_fine_bins * h.residual_stride, h.residual_stride) if h.residual_fine_contexts else (0, 1)
    return (*fine, HINT_ROWS if h.phase_hint_bins else 0)


def _compress_segments(compressor: zstandard.ZstdCompressor, segments: list[bytes]) -> bytes:
    """One zstd frame (content size recorded) holding ``segments`` joined, a block boundary after each."""
    stream = compressor.compressobj(size=sum(map(len, segments)))
    pieces = []
    for segment in segments[:-1]:
        pieces += [stream.compress(segment), stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)]
    return b"".join(pieces) + stream.compress(segments[-1]) + stream.flush()


def pack(header: StreamHeader, chunks: Iterable[Chunk], code_tables: np.ndarray | None = None) -> bytes:
    """Serialize a stream to ``.nac`` bytes (see :func:`pack_parts`)."""
    return b"".join(pack_parts(header, chunks, code_tables))


def pack_parts(
    header: StreamHeader, chunks: Iterable[Chunk], code_tables: np.ndarray | None = None
) -> Iterator[bytes]:
    """Serialize a stream to ``.nac`` as it is made: the header, each chunk record, the end record.

    Parameters
    ----------
    header : StreamHeader
        ``version_minor`` must be 0; the major follows from the fields
        (:attr:`StreamHeader.version_major`), and every field must satisfy
        format_spec.md sections 10-11.
    chunks : iterable of Chunk
        Exactly ``header.chunk_count`` chunks in index order, shaped and typed
        as the header implies. Each is compressed as it arrives and not kept.
    code_tables : array, optional
        For a header with ``code_range`` > 0 (v3+): the model's tables for
        that range, (latent_channels, 2U+1, 2U+1) (:mod:`codec.entropy`).

    Yields
    ------
    bytes
        Consecutive pieces of the file.  Deterministic: the same input gives
        the same bytes (for a given zstd library version).

    Raises
    ------
    ValueError
        If the header or a chunk is inconsistent (a bug in the caller).
    """
    if header.version_minor != VERSION_MINOR:
        raise ValueError(f"this encoder writes minor version {VERSION_MINOR}, got {header.version_minor}")
    problem = _header_problem(header)
    if problem:
        raise ValueError(f"invalid header: {problem}")
    if header.code_range:
        _check_tables(header, code_tables)
    fields = {name: getattr(header, name) for name in _HEADER_FIELD_NAMES}
    fields.update(
        version={"major": header.version_major, "minor": VERSION_MINOR},
        flags={"reserved": 0, "store_phase": header.store_phase},
        residual=(
            {"bins": header.residual_bins, "stride": header.residual_stride, "step": header.residual_step}
            if header.version_major >= 2 else None
        ),
        code=(
            {"range": header.code_range, "tables_hash": header.tables_hash or bytes(8)}
            if header.version_major >= 3 else None
        ),
        bands=(
            {"start": header.residual_band_start, "growth": header.residual_band_growth}
            if header.version_major >= 4 else None
        ),
        steps=(
            {"slope": header.residual_step_slope, "span": header.residual_step_span}
            if header.version_major >= 5 else None
        ),
        fine=(
            {"bins": header.residual_fine_bins, "step": header.residual_fine_step}
            if header.version_major >= 6 else None
        ),
        hints=(
            {"bins": header.phase_hint_bins, "delay": header.phase_hint_delay, "turns": header.phase_hint_turns}
            if header.version_major >= 8 else None
        ),
        extension=b"",
    )
    yield _HEADER.build({"signed": {"value": fields}})
    latent_level = ZSTD_LEVEL_PHASE if header.store_phase else ZSTD_LEVEL_LATENT
    compressors = [
        zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False, write_dict_id=False, threads=0
        )
        for level in (latent_level, ZSTD_LEVEL_RESIDUAL)
    ]
    count = 0
    for position, chunk in enumerate(chunks):
        if position >= header.chunk_count:
            raise ValueError(f"more chunks than header.chunk_count ({header.chunk_count})")
        records, residual = _encode_body(header, position, chunk)
        payload = _payload(header, chunk.frames, records, residual, compressors, code_tables)
        raw_size = records.nbytes + (residual.nbytes if residual is not None else 0)
        record = {"index": position, "frames": chunk.frames, "raw_size": raw_size, "payload": payload}
        yield _CHUNK.build({"signed": {"value": record}})
        count = position + 1
    if count != header.chunk_count:
        raise ValueError(f"{count} chunks, header.chunk_count is {header.chunk_count}")
    end = {name: getattr(header, name) for name in ("chunk_count", "latent_frames", "sample_count")}
    yield _END.build({"record": {"signed": {"value": end}}})


# --------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------


def _read_header(stream: io.BytesIO) -> tuple[StreamHeader, int]:
    """Parse and check the header at offset 0; return it and its size in bytes."""
    head = stream.read(len(MAGIC))
    stream.seek(0)
    if not head:
        raise FormatError("empty file: not a nac file")
    if head != MAGIC[: len(head)]:
        raise FormatError("bad magic: not a nac file")
    pre = _parse(_PREAMBLE, stream, "header")
    major, minor = pre.version.major, pre.version.minor
    if major not in VERSION_MAJORS:
        raise VersionError(f"unsupported format version {major}.{minor} (this decoder reads 1.x to 8.x)")
    size = HEADER_SIZES[major]
    if pre.header_size < size:
        raise FormatError(f"header_size {pre.header_size} smaller than {size} (version {major}.x)")
    if minor == 0 and pre.header_size != size:
        raise FormatError(f"header_size {pre.header_size} invalid for version {major}.0 (must be {size})")
    stream.seek(0)
    value = _parse(_HEADER, stream, "header").signed.value
    if minor == 0 and value.flags.reserved:
        raise FormatError(f"reserved flag bits set in a version {major}.0 header")
    residual = value.residual or {"bins": 0, "stride": 0, "step": 0.0}
    code = value.code or {"range": 0, "tables_hash": b""}
    bands = value.bands or {"start": 0, "growth": 0}
    steps = value.steps or {"slope": 0, "span": 0}
    fine = value.fine or {"bins": 0, "step": 0.0}
    hints = value.hints or {"bins": 0, "delay": 0, "turns": 0}
    if major == 2 and not residual["bins"]:
        raise FormatError("residual_bins 0 in a version 2 header (a stream without the layer is 1.0)")
    if major == 3 and not code["range"]:
        raise FormatError("code_range 0 in a version 3 header (a stream of zstd-coded codes is 1.0 or 2.0)")
    if major == 4 and not bands["growth"]:
        raise FormatError(f"residual_band_growth 0 in a version 4 header (must be {GROWTH_ONE}..{2 * GROWTH_ONE})")
    if major == 5 and not steps["slope"]:
        raise FormatError(f"residual_step_slope 0 in a version 5 header (must be 1..{SLOPE_ONE})")
    if major >= 6 and not fine["bins"]:
        raise FormatError(f"residual_fine_bins 0 in a version {major} header (must be 1..residual_band_start)")
    if major >= 8 and not hints["bins"]:
        raise FormatError(f"phase_hint_bins 0 in a version {major} header (must be 1..n_fft/2+1)")
    if not code["range"] and code["tables_hash"] not in (b"", bytes(8)):
        raise FormatError("tables_hash without rANS-coded codes (must be 0)")
    header = StreamHeader(
        version_minor=minor,
        store_phase=value.flags.store_phase,
        **{name: value[name] for name in _HEADER_FIELD_NAMES},
        residual_bins=residual["bins"],
        residual_stride=residual["stride"],
        residual_step=residual["step"],
        code_range=code["range"],
        tables_hash=code["tables_hash"] if code["range"] else b"",
        residual_band_start=bands["start"],
        residual_band_growth=bands["growth"],
        residual_step_slope=steps["slope"],
        residual_step_span=steps["span"],
        residual_fine_bins=fine["bins"],
        residual_fine_step=fine["step"],
        residual_fine_contexts=major >= 7,
        phase_hint_bins=hints["bins"],
        phase_hint_delay=hints["delay"],
        phase_hint_turns=hints["turns"],
    )
    problem = _header_problem(header)
    if problem:
        raise FormatError(f"header: {problem}")
    return header, value.header_size


def read_header(data: bytes) -> StreamHeader:
    """Parse and check only the header (magic, version, CRC, limits).

    Raises
    ------
    VersionError
        For a major version other than 1 to 8.
    FormatError
        For anything else wrong with the header.
    """
    return _read_header(io.BytesIO(data))[0]


def _decompress(payload: bytes, size: int, where: str, what: str = "payload") -> bytes:
    """Decompress one zstd frame (``what`` names it in messages) into exactly ``size`` bytes, never more."""
    if payload[:4] != ZSTD_FRAME_MAGIC:
        raise FormatError(f"{where}: {what} is not a zstd frame")
    try:
        declared = zstandard.get_frame_parameters(payload).content_size
        if declared not in (zstandard.CONTENTSIZE_UNKNOWN, size):
            raise FormatError(f"{where}: {what}: zstd frame declares {declared} bytes, expected {size}")
        decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        body = decompressor.decompress(
            payload, max_output_size=size, read_across_frames=False, allow_extra_data=False
        )
    except zstandard.ZstdError as err:
        raise FormatError(f"{where}: bad zstd {what} ({err})") from None
    if len(body) != size:
        raise FormatError(f"{where}: {what} decompressed to {len(body)} bytes, expected {size}")
    return body


def _sized(payload: bytes, position: int, where: str, what: str) -> tuple[bytes, int]:
    """The ``u32``-sized piece of ``payload`` at ``position`` and the position after it."""
    if len(payload) - position < 4:
        raise FormatError(f"{where}: payload too short for its {what} size")
    (size,) = struct.unpack_from("<I", payload, position)
    if size > len(payload) - position - 4:
        raise FormatError(f"{where}: {what} size {size} runs past the payload")
    return payload[position + 4 : position + 4 + size], position + 4 + size


def _decompress_parts(
    h: StreamHeader, payload: bytes, frames: int, where: str, code_tables: Callable | None = None
) -> list[bytes]:
    """A chunk payload's body parts (format_spec.md section 6), the latent part always in v1/v2 layout.

    v1: one zstd frame. v2: a u32 size, the latent frame, the residual frame.
    v3: a u32 size and the latent frame without codes, a u32 size and the rANS
    stream of the codes (decoded with ``code_tables(h)``), then the residual
    frame if there is a layer. v4 to v8: as v2 or v3, with the residual codes' rANS
    stream in place of the residual frame.
    """
    sizes = _part_sizes(h, frames)
    if not h.code_range:
        if len(sizes) == 1:
            return [_decompress(payload, sizes[0], where)]
        frame, position = _sized(payload, 0, where, "latent frame")
        return [_decompress(frame, sizes[0], where, "latent frame"),
                _residual_part(h, payload[position:], sizes[1], frames, where)]
    freq = code_tables(h) if code_tables is not None else None
    _check_tables(h, freq)
    frame, position = _sized(payload, 0, where, "latent frame")
    coded, position = _sized(payload, position, where, "code stream")
    rest_dtype = _without_codes(h, frames)
    rest = np.frombuffer(_decompress(frame, h.channels * rest_dtype.itemsize, where, "latent frame"),
                         dtype=rest_dtype, count=h.channels)
    try:
        codes = entropy.decode(coded, _row_tables(h), freq, frames)
    except ValueError as err:
        raise FormatError(f"{where}: {err}") from None
    records = np.zeros(h.channels, dtype=_body_dtype(h, frames))
    for name in rest_dtype.names:
        records[name] = rest[name]
    records["codes"] = codes.reshape(records["codes"].shape)
    parts = [records.tobytes()]
    if h.residual_bins:
        parts.append(_residual_part(h, payload[position:], sizes[1], frames, where))
    elif position != len(payload):
        raise FormatError(f"{where}: {len(payload) - position} bytes after the code stream")
    return parts


def _residual_part(h: StreamHeader, data: bytes, size: int, frames: int, where: str) -> bytes:
    """The residual codes' bytes from the end of a payload: a zstd frame (v2, v3) or a rANS stream (v4+)."""
    if not h.residual_band_growth:
        return _decompress(data, size, where, "residual frame")
    try:
        shape = (h.channels, h.residual_rows, h.residual_columns(frames))
        return entropy.decode_residual(data, shape, *_contexts(h)).tobytes()
    except ValueError as err:
        raise FormatError(f"{where}: residual stream: {err}") from None


def _decode_body(h: StreamHeader, position: int, frames: int, parts: list[bytes]) -> Chunk:
    records = np.frombuffer(parts[0], dtype=_body_dtype(h, frames), count=h.channels)
    scales = records["scales"]
    if not (np.isfinite(scales).all() and (scales >= 0).all()):
        raise FormatError(f"chunk {position}: scale not finite or negative")
    if records["codes"].min() < -_code_limit(h):
        raise FormatError(f"chunk {position}: latent code below -{_code_limit(h)}")
    residual = None
    if h.residual_bins:
        residual = np.frombuffer(parts[1], np.int8).reshape(h.channels, h.residual_rows, h.residual_columns(frames))
        if residual.min() < -RESIDUAL_LIMIT:
            raise FormatError(f"chunk {position}: residual code below -{RESIDUAL_LIMIT}")
    return Chunk(
        index=position,
        frames=frames,
        scales=np.array(scales, dtype=np.float32),
        codes=np.array(records["codes"], dtype=h.code_dtype),
        phase=np.array(records["phase"], dtype=h.phase_dtype) if h.store_phase else None,
        residual=None if residual is None else residual.copy(),
    )


def unpack(data: bytes, code_tables: Callable | None = None) -> tuple[StreamHeader, list[Chunk]]:
    """Parse a whole ``.nac`` file strictly (format_spec.md section 10).

    ``code_tables(header)`` gives the model's tables for a stream's
    ``code_range`` (:func:`codec.zoo.LoadedModel.tables_for`); without it a
    stream with rANS-coded codes raises :class:`ModelError`.

    Returns
    -------
    (StreamHeader, list of Chunk)
        Arrays are native-endian, writable copies.

    Raises
    ------
    VersionError
        For a major version other than 1 to 8.
    ModelError
        For rANS-coded codes without usable ``code_tables``.
    FormatError
        For any other defect: magic, CRCs, limits, sizes, truncation,
        trailing bytes.  The message is one line without the file name.
    """
    data = bytes(data)
    stream = io.BytesIO(data)
    header, _ = _read_header(stream)
    chunks = []
    for position in range(header.chunk_count):
        where = f"chunk {position}"
        if data[stream.tell() : stream.tell() + 4] == END_SYNC:
            raise FormatError(f"{where}: missing (end record after {position} of {header.chunk_count} chunks)")
        fields = _parse(_CHUNK, stream, where).signed.value
        problem = _chunk_problem(header, position, fields.index, fields.frames, fields.raw_size)
        if problem:
            raise FormatError(f"{where}: {problem}")
        parts = _decompress_parts(header, fields.payload, fields.frames, where, code_tables)
        chunks.append(_decode_body(header, position, fields.frames, parts))
    if data[stream.tell() : stream.tell() + 4] == CHUNK_SYNC:
        raise FormatError(f"more chunks than the header's chunk_count {header.chunk_count}")
    end = _parse(_END, stream, "end record").record.signed.value
    problem = _end_problem(header, end)
    if problem:
        raise FormatError(f"end record: {problem}")
    return header, chunks


class _SyncFinder:
    """Offsets of the next chunk or end sync word, in amortized linear time.

    Each word's last hit is remembered and only searched again once the walk
    has passed it, so a file with many stray sync words of one kind is not
    rescanned to its end for the other kind at every stop.
    """

    def __init__(self, data: bytes):
        self.data = data
        self.hits = {CHUNK_SYNC: -2, END_SYNC: -2}  # -2: not searched yet, -1: none left

    def next(self, start: int) -> int:
        """Offset of the next sync word at or after ``start``, or ``len(data)``."""
        for word, hit in self.hits.items():
            if hit == -2 or 0 <= hit < start:
                self.hits[word] = self.data.find(word, start)
        return min((hit for hit in self.hits.values() if hit >= start), default=len(self.data))


def scan(data: bytes) -> StreamReport:
    """Walk a file's records for ``nac inspect``: report damage instead of raising.

    Only an unusable header raises (:class:`FormatError` or :class:`VersionError`).
    Chunk payloads are not decompressed.  After a damaged record the walk
    resynchronizes on the next sync word.
    """
    data = bytes(data)
    stream = io.BytesIO(data)
    header, header_size = _read_header(stream)
    size = len(data)
    step = header.samples_per_frame
    chunks: list[ChunkReport] = []
    problems: list[str] = []
    end_present = end_ok = False
    view = memoryview(data)
    finder = _SyncFinder(data)
    budget = SCAN_WORK_FACTOR * size  # bytes of records parsed and CRC-checked, overlaps included
    pos = header_size
    while pos < size:
        sync = data[pos : pos + 4]
        if sync not in (CHUNK_SYNC, END_SYNC):
            resume = finder.next(pos + 1)
            problems.append(f"{resume - pos} unrecognized bytes at offset {pos}")
            pos = resume
            continue
        where = f"chunk {len(chunks)}" if sync == CHUNK_SYNC else "end record"
        if sync == CHUNK_SYNC:
            # Framing read with struct and the CRC checked over a view before any
            # parsing: the walk stays linear and cheap however many stray sync
            # words a damaged file holds; the schema parses sound records only.
            if pos + CHUNK_OVERHEAD > size:
                problems.append(f"truncated in {where} at offset {pos}")
                break
            index, frames, raw_size, payload_size = struct.unpack_from("<IIII", data, pos + 4)
            end = pos + CHUNK_OVERHEAD + payload_size
            if end > size:
                problems.append(f"truncated in {where} payload at offset {pos}")
                pos = finder.next(pos + 4)
                continue
            budget -= CHUNK_OVERHEAD + payload_size
            if budget < 0:
                # Stray sync words whose lengths overlap could otherwise make the walk quadratic.
                problems.append(f"scan stopped at offset {pos}: too many overlapping damaged records")
                break
            crc_ok = crc32(view[pos : end - 4]) == int.from_bytes(data[end - 4 : end], "little")
            if crc_ok:
                stream.seek(pos)
                fields = _parse(_CHUNK, stream, where).signed.value
                index, frames, raw_size = fields.index, fields.frames, fields.raw_size
        else:
            end = pos + END_SIZE
            if end > size:
                problems.append(f"truncated in {where} at offset {pos}")
                break
            crc_ok = crc32(view[pos : end - 4]) == int.from_bytes(data[end - 4 : end], "little")
            if not crc_ok and finder.next(pos + 4) < size:
                problems.append(f"damaged end record at offset {pos}, more records follow")
                pos = finder.next(pos + 4)
                continue
            stream.seek(pos)
            fields = _parse(_END_UNVERIFIED, stream, where).signed.value
        if sync == END_SYNC:
            end_present = True
            problem = None if crc_ok else "CRC mismatch"
            problem = problem or _end_problem(header, fields)
            if problem:
                problems.append(f"end record: {problem}")
            if end < size:
                problems.append(f"{size - end} bytes of trailing data after end record")
            end_ok = problem is None and end == size
            break
        problem = None if crc_ok else "CRC mismatch"
        problem = problem or _chunk_problem(header, len(chunks), index, frames, raw_size)
        start = min(index * header.chunk_frames * step, header.model_sample_count)
        stop = min(start + frames * step, header.model_sample_count)
        chunks.append(
            ChunkReport(
                index=index,
                offset=pos,
                payload_size=payload_size,
                raw_size=raw_size,
                frames=frames,
                sample_start=start,
                sample_stop=stop,
                crc_ok=crc_ok,
                problem=problem,
            )
        )
        if not crc_ok and data[end : end + 4] not in (CHUNK_SYNC, END_SYNC) and end < size:
            end = finder.next(pos + 4)  # the length field may be the damaged part
        pos = end
    if len(chunks) != header.chunk_count:
        problems.append(f"{len(chunks)} chunk records found, header says {header.chunk_count}")
    if not end_present:
        problems.append("end record missing (file truncated?)")
    return StreamReport(
        header=header,
        header_size=header_size,
        file_size=size,
        chunks=tuple(chunks),
        end_present=end_present,
        end_ok=end_ok,
        problems=tuple(problems),
    )


def chunk_span(header: StreamHeader, index: int) -> tuple[int, int]:
    """Nominal model-rate samples ``[start, stop)`` of chunk ``index`` (format_spec.md section 6).

    ``[index * chunk_frames * S, (index * chunk_frames + frames) * S)`` with
    ``S = hop_length * time_stride``, clipped to ``model_sample_count``.
    """
    step = header.samples_per_frame
    first = index * header.chunk_frames
    start = min(first * step, header.model_sample_count)
    stop = min((first + header.chunk_frames_at(index)) * step, header.model_sample_count)
    return start, stop


def unpack_salvage(data: bytes, code_tables: Callable | None = None) -> Salvage:
    """Parse a possibly damaged file: every sound chunk, and which ones were lost.

    The header must be sound (magic, version, CRC, limits): a damaged header
    raises :class:`FormatError` or :class:`VersionError` as in :func:`unpack`,
    since without it nothing can be placed. Chunk records are found with
    :func:`scan` (which resynchronizes on sync words after damage) and placed
    by their CRC-checked ``index``; each is then checked exactly as
    :func:`unpack` checks it (zstd frame, sizes, scales, codes). A chunk that
    fails any check, or has no record at all, is lost. For an intact file the
    chunks equal :func:`unpack`'s.
    """
    data = bytes(data)
    report = scan(data)
    header = report.header
    lost = report.lost_chunks()
    chunks: list[Chunk | None] = [None] * header.chunk_count
    problems = list(report.problems)
    stream = io.BytesIO(data)
    for record in report.chunks:
        if record.problem is not None:
            problems.append(f"chunk record at offset {record.offset}: {record.problem}")
        index = record.index
        if not record.crc_ok or index in lost or index >= header.chunk_count or chunks[index] is not None:
            continue
        where = f"chunk {index}"
        try:
            stream.seek(record.offset)
            fields = _parse(_CHUNK, stream, where).signed.value
            problem = _chunk_problem(header, index, fields.index, fields.frames, fields.raw_size)
            if problem:  # a sound record of this index comes later
                continue
            parts = _decompress_parts(header, fields.payload, fields.frames, where, code_tables)
            chunks[index] = _decode_body(header, index, fields.frames, parts)
        except FormatError as err:
            lost[index] = str(err).removeprefix(f"{where}: ")
            problems.append(str(err))
    return Salvage(header=header, chunks=chunks, lost=dict(sorted(lost.items())), problems=tuple(problems))
