"""Read-only reader of formats 1.0 to 8.0 (docs/legacy-formats.md): their files map onto today's description.

Format 9 replaced eight major versions, one per experiment. Files written by
them keep decoding as they did: this module parses their headers and chunk
records and maps them onto :class:`~nac.format.header.StreamInfo` and
:class:`~nac.format.records.Chunk` (one chunk per legacy chunk, a scale group
of one, steps ``scale / L``, the model's phase initializer used as it was).
Nothing here writes; no other module branches on these versions.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Check,
    Const,
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
    Struct,
    this,
)

from ..errors import FormatError, ModelError, VersionError
from ..layers.latent import LatentParams
from ..layers.residual import GROWTH_ONE, HINT_ROWS, MAX_HINT_TURNS, RESIDUAL_LIMIT, SLOPE_ONE, SPAN_ONE, \
    ResidualLayer
from . import rans, records
from .header import MAGIC, RANGES, Companion, StreamInfo
from .records import CHUNK_SYNC, END_SYNC, Chunk, Framing, LostRun, Salvage, StreamReport

VERSION_MAJORS = (1, 2, 3, 4, 5, 6, 7, 8)  # 2.0 adds the residual layer, 3.0 rANS-coded latent codes, 4.0 rANS-coded
# residual codes in rows and bands, 5.0 level-adaptive residual steps, 6.0 fine residual bins coded at every
# frame, 7.0 the fine bins' codes in contexts of their own, 8.0 phase hints
HEADER_SIZES = {1: 74, 2: 82, 3: 92, 4: 98, 5: 102, 6: 108, 7: 108, 8: 114}  # x.0 headers, magic through CRC
CHUNK_OVERHEAD = 24  # sync, index, frames, raw_size, payload_size, chunk_crc
MAX_RESIDUAL_STEP = 16.0
MAX_CODE_RANGE = 127
MAX_CHUNK_RAW_SIZE = 64 * 2**20  # implementation limit on one chunk body
LEGACY_RESIDUAL_PHASE_ITERS = 64  # the phase iterations the 2.0-8.0 decoders ran on streams with a residual layer
_U32 = 2**32 - 1
_RANGES = {**{name: RANGES[name] for name in ("model_id", "original_sample_rate", "model_sample_rate", "channels",
                                            "sample_count", "model_sample_count", "n_fft", "time_stride",
                                            "latent_frames", "chunk_count")},
           "latent_channels": (1, 2**16 - 1, 1, 1024), "latent_height": (1, 2**16 - 1, 1, 1024),
           "chunk_frames": (1, 2**32 - 1, 1, 512)}


@dataclass(frozen=True)
class StreamHeader:
    """Everything needed to size and decode a stream; one per file."""

    version_minor: int
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

        The 8.0 writer used the oldest version that held the stream.
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
        """Bin edges of the residual rows (docs/legacy-formats.md, Quantizers): one row per bin before v4.

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


_VERSION = BitStruct("major" / Nibble, "minor" / Nibble)
_FLAGS = BitStruct("reserved" / BitsInteger(7), "store_phase" / Flag)

_PREAMBLE_FIELDS = (
    "magic" / Const(MAGIC),
    "version" / _VERSION,
    "flags" / _FLAGS,
    "header_size" / Int16ul,
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
_HEADER = records.signed(_HEADER_BODY)

_CHUNK_FIELDS = Struct(
    "sync" / Const(CHUNK_SYNC),
    "index" / Int32ul,
    "frames" / Int32ul,
    "raw_size" / Int32ul,
    "payload" / Prefixed(Int32ul, GreedyBytes),  # payload_size, then one zstd frame
)
_CHUNK = records.signed(_CHUNK_FIELDS)

_HEADER_FIELD_NAMES = tuple(
    name for name in StreamHeader.__dataclass_fields__
    if name not in ("version_minor", "store_phase", "residual_bins", "residual_stride", "residual_step",
                    "code_range", "tables_hash", "residual_band_start", "residual_band_growth",
                    "residual_step_slope", "residual_step_span", "residual_fine_bins", "residual_fine_step",
                    "residual_fine_contexts", "phase_hint_bins", "phase_hint_delay", "phase_hint_turns")
)


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
    """The first rule of docs/legacy-formats.md (Header) that ``h`` breaks, or None."""
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
        raise ModelError("rANS-coded codes (a version 3 or later stream) need the model's code tables")
    if code_tables.shape[0] != h.latent_channels:
        raise ModelError(f"code tables for {code_tables.shape[0]} latent channels, the stream has {h.latent_channels}")
    try:
        rans.check_tables(code_tables, h.code_range)
    except ValueError as err:
        raise ModelError(f"code tables unusable for code_range {h.code_range}: {err}") from None


def _without_codes(h: StreamHeader, frames: int) -> np.dtype:
    """The latent part's dtype less the codes: what a v3+ payload's zstd frame holds."""
    body = _body_dtype(h, frames)
    return np.dtype([(name, body.fields[name][0]) for name in body.names if name != "codes"])


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


def _contexts(h: StreamHeader) -> tuple[int, int, int]:
    """(fine rows, rows per fine bin, hint rows) that :mod:`nac.format.rans` codes in their own contexts: v7's
    fine bins and v8's phase hints."""
    fine = (h.residual_fine_bins * h.residual_stride, h.residual_stride) if h.residual_fine_contexts else (0, 1)
    return (*fine, HINT_ROWS if h.phase_hint_bins else 0)


def _read_header(stream: io.BytesIO) -> tuple[StreamHeader, int]:
    """Parse and check the header at offset 0; return it and its size in bytes."""
    head = stream.read(len(MAGIC))
    stream.seek(0)
    if not head:
        raise FormatError("empty file: not a nac file")
    if head != MAGIC[: len(head)]:
        raise FormatError("bad magic: not a nac file")
    pre = records.parse(_PREAMBLE, stream, "header")
    major, minor = pre.version.major, pre.version.minor
    if major not in VERSION_MAJORS:
        raise VersionError(f"unsupported format version {major}.{minor}")
    size = HEADER_SIZES[major]
    if pre.header_size < size:
        raise FormatError(f"header_size {pre.header_size} smaller than {size} (version {major}.x)")
    if minor == 0 and pre.header_size != size:
        raise FormatError(f"header_size {pre.header_size} invalid for version {major}.0 (must be {size})")
    stream.seek(0)
    value = records.parse(_HEADER, stream, "header").signed.value
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


def _sized(payload: bytes, position: int, where: str, what: str) -> tuple[bytes, int]:
    """The ``u32``-sized piece of ``payload`` at ``position`` and the position after it."""
    if len(payload) - position < 4:
        raise FormatError(f"{where}: payload too short for its {what} size")
    (size,) = struct.unpack_from("<I", payload, position)
    if size > len(payload) - position - 4:
        raise FormatError(f"{where}: {what} size {size} runs past the payload")
    return payload[position + 4 : position + 4 + size], position + 4 + size


def _decompress_parts(
    h: StreamHeader, payload: bytes, frames: int, where: str, code_tables: dict
) -> list[bytes]:
    """A chunk payload's body parts (docs/legacy-formats.md), the latent part always in v1/v2 layout.

    v1: one zstd frame. v2: a u32 size, the latent frame, the residual frame.
    v3: a u32 size and the latent frame without codes, a u32 size and the rANS
    stream of the codes (decoded with ``code_tables(h)``), then the residual
    frame if there is a layer. v4 to v8: as v2 or v3, with the residual codes' rANS
    stream in place of the residual frame.
    """
    sizes = _part_sizes(h, frames)
    if not h.code_range:
        if len(sizes) == 1:
            return [records.decompress(payload, sizes[0], where)]
        frame, position = _sized(payload, 0, where, "latent frame")
        return [records.decompress(frame, sizes[0], where, "latent frame"),
                _residual_part(h, payload[position:], sizes[1], frames, where)]
    freq = code_tables.get(h.code_range)
    _check_tables(h, freq)
    frame, position = _sized(payload, 0, where, "latent frame")
    coded, position = _sized(payload, position, where, "code stream")
    rest_dtype = _without_codes(h, frames)
    rest = np.frombuffer(records.decompress(frame, h.channels * rest_dtype.itemsize, where, "latent frame"),
                         dtype=rest_dtype, count=h.channels)
    try:
        codes = rans.decode(coded, _row_tables(h), freq, frames)
    except ValueError as err:
        raise FormatError(f"{where}: {err}") from None
    body = np.zeros(h.channels, dtype=_body_dtype(h, frames))
    for name in rest_dtype.names:
        body[name] = rest[name]
    body["codes"] = codes.reshape(body["codes"].shape)
    parts = [body.tobytes()]
    if h.residual_bins:
        parts.append(_residual_part(h, payload[position:], sizes[1], frames, where))
    elif position != len(payload):
        raise FormatError(f"{where}: {len(payload) - position} bytes after the code stream")
    return parts


def _residual_part(h: StreamHeader, data: bytes, size: int, frames: int, where: str) -> bytes:
    """The residual codes' bytes from the end of a payload: a zstd frame (v2, v3) or a rANS stream (v4+)."""
    if not h.residual_band_growth:
        return records.decompress(data, size, where, "residual frame")
    try:
        shape = (h.channels, h.residual_rows, h.residual_columns(frames))
        return rans.decode_residual(data, shape, *_contexts(h)).tobytes()
    except ValueError as err:
        raise FormatError(f"{where}: residual stream: {err}") from None


def _decode_body(h: StreamHeader, position: int, frames: int, parts: list[bytes]) -> Chunk:
    body = np.frombuffer(parts[0], dtype=_body_dtype(h, frames), count=h.channels)
    scales = body["scales"]
    if not (np.isfinite(scales).all() and (scales >= 0).all()):
        raise FormatError(f"chunk {position}: scale not finite or negative")
    if body["codes"].min() < -_code_limit(h):
        raise FormatError(f"chunk {position}: latent code below -{_code_limit(h)}")
    residual = None
    if h.residual_bins:
        residual = np.frombuffer(parts[1], np.int8).reshape(h.channels, h.residual_rows, h.residual_columns(frames))
        if residual.min() < -RESIDUAL_LIMIT:
            raise FormatError(f"chunk {position}: residual code below -{RESIDUAL_LIMIT}")
    return Chunk(
        index=position,
        frames=frames,
        steps=np.array(scales, dtype=np.float32) / np.float32(_code_limit(h)),
        codes=np.array(body["codes"], dtype=h.code_dtype),
        phase=np.array(body["phase"], dtype=h.phase_dtype) if h.store_phase else None,
        residual=None if residual is None else residual.copy(),
    )


def _unpack(data: bytes, code_tables: dict) -> tuple[StreamHeader, list[Chunk]]:
    """A whole legacy file parsed strictly: :class:`FormatError` for any defect, :class:`ModelError` for
    rANS-coded codes without usable tables (``code_tables``: code range -> tables)."""
    data = bytes(data)
    stream = io.BytesIO(data)
    header, _ = _read_header(stream)
    chunks = []
    for position in range(header.chunk_count):
        where = f"chunk {position}"
        if data[stream.tell() : stream.tell() + 4] == END_SYNC:
            raise FormatError(f"{where}: missing (end record after {position} of {header.chunk_count} chunks)")
        fields = records.parse(_CHUNK, stream, where).signed.value
        problem = _chunk_problem(header, position, fields.index, fields.frames, fields.raw_size)
        if problem:
            raise FormatError(f"{where}: {problem}")
        parts = _decompress_parts(header, fields.payload, fields.frames, where, code_tables)
        chunks.append(_decode_body(header, position, fields.frames, parts))
    if data[stream.tell() : stream.tell() + 4] == CHUNK_SYNC:
        raise FormatError(f"more chunks than the header's chunk_count {header.chunk_count}")
    end = records.parse(records.END, stream, "end record").record.signed.value
    problem = records.end_problem(header, end)
    if problem:
        raise FormatError(f"end record: {problem}")
    return header, chunks


# --------------------------------------------------------------------------
# Onto today's description
# --------------------------------------------------------------------------


def describe(h: StreamHeader, header_size: int = 0) -> StreamInfo:
    """A legacy header as today's :class:`StreamInfo`: scale groups of one chunk, the phase initializer of the
    model (whatever it is), the residual rows of a per-bin layer as single-bin rows."""
    code_bits = h.bits if not h.code_range else int(h.code_range + 1).bit_length() + 1
    latent = LatentParams(h.latent_channels, h.latent_height, (code_bits,) * h.latent_channels, bool(h.code_range))
    residual = None
    if h.residual_bins:
        residual = ResidualLayer(
            bins=h.residual_bins, stride=h.residual_stride, step=h.residual_step,
            band_start=h.residual_band_start if h.residual_band_growth else h.residual_bins,
            band_growth=h.residual_band_growth or GROWTH_ONE, slope=h.residual_step_slope,
            span=h.residual_step_span, fine_bins=h.residual_fine_bins, fine_step=h.residual_fine_step,
            hint_bins=h.phase_hint_bins, hint_delay=h.phase_hint_delay, hint_turns=h.phase_hint_turns)
    companions = ((Companion.CODE_TABLES, h.tables_hash),) if h.code_range else ()
    return StreamInfo(
        model_id=h.model_id, weights_hash=h.weights_hash, original_sample_rate=h.original_sample_rate,
        model_sample_rate=h.model_sample_rate, channels=h.channels, sample_count=h.sample_count,
        model_sample_count=h.model_sample_count, n_fft=h.n_fft, hop_length=h.hop_length, time_stride=h.time_stride,
        latent_frames=h.latent_frames, chunk_frames=h.chunk_frames, group_chunks=1, chunk_count=h.chunk_count,
        latent=latent, residual=residual, stored_phase_bits=h.bits if h.store_phase else 0,
        companions=companions + ((Companion.PHASE_INIT, None),), version=(h.version_major, h.version_minor),
        header_size=header_size, phase_iters=LEGACY_RESIDUAL_PHASE_ITERS if residual else None)


def read_header(data: bytes) -> StreamHeader:
    """A legacy file's own header, parsed and checked."""
    return _read_header(io.BytesIO(bytes(data)))[0]


def read_info(data: bytes) -> tuple[StreamInfo, int]:
    """The header of a legacy file, checked, as today's description, and its size in bytes."""
    header, size = _read_header(io.BytesIO(bytes(data)))
    return describe(header, size), size


class LegacyStream:
    """A legacy file decoded whole and checked strictly, with the interface of :class:`nac.format.container.Stream`."""

    def __init__(self, data: bytes, code_tables: dict):
        header, self.chunks = _unpack(data, code_tables)
        self.info = describe(header)
        self.silent: frozenset[int] = frozenset()  # no legacy format codes silence

    def chunk(self, index: int) -> Chunk:
        return self.chunks[index]


def open_stream(data: bytes, code_tables: dict) -> LegacyStream:
    return LegacyStream(data, code_tables)


def _framing(data: bytes, pos: int) -> Framing | None:
    if pos + CHUNK_OVERHEAD > len(data):
        return None
    index, frames, raw_size, payload_size = struct.unpack_from("<IIII", data, pos + 4)
    end = pos + CHUNK_OVERHEAD + payload_size
    if end > len(data):
        return None
    return _LegacyFraming(end, index, frames, payload_size, raw_size=raw_size)


@dataclass(frozen=True)
class _LegacyFraming(Framing):
    raw_size: int = 0


def scan(data: bytes) -> StreamReport:
    """The walk over a legacy file's records (see :func:`nac.format.records.walk`)."""
    data = bytes(data)
    header, header_size = _read_header(io.BytesIO(data))
    info = describe(header, header_size)

    def check(position: int, framing: _LegacyFraming) -> str | None:
        return _chunk_problem(header, position, framing.index, framing.frames, framing.raw_size)

    return records.walk(data, info, header_size, _framing, check)


def salvage(data: bytes, code_tables: dict) -> Salvage:
    """Every sound chunk of a possibly damaged legacy file, and which ones were lost."""
    data = bytes(data)
    report = scan(data)
    header, _ = _read_header(io.BytesIO(data))
    chunks: dict[int, Chunk] = {}
    failures: dict[int, str] = {}
    problems = list(report.problems)
    stream = io.BytesIO(data)
    for record in report.chunks:
        if record.problem is not None:
            problems.append(f"chunk record at offset {record.offset}: {record.problem}")
        index = record.index
        if not record.sound or index in chunks:
            continue
        where = f"chunk {index}"
        try:
            stream.seek(record.offset)
            fields = records.parse(_CHUNK, stream, where).signed.value
            parts = _decompress_parts(header, fields.payload, fields.frames, where, code_tables)
            chunks[index] = _decode_body(header, index, fields.frames, parts)
        except FormatError as err:
            failures.setdefault(index, str(err).removeprefix(f"{where}: "))
            problems.append(str(err))
    lost = report.lost_runs() + [LostRun(i, i, reason) for i, reason in failures.items() if i not in chunks]
    return Salvage(report.header, chunks, records.merge_runs(lost), tuple(problems))
