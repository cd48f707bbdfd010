"""The ``.nac`` header of format 9 (format_spec.md sections 3-5): fixed fields, companions, layer descriptors.

:class:`StreamInfo` is the in-memory description of a stream. Format 9 files
are read and written here; :mod:`nac.format.legacy` maps the headers of
formats 1.0 to 8.0 onto the same description. construct errors become
:class:`FormatError` in :func:`nac.format.records.parse` alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from construct import (
    BitsInteger,
    ConstructError,
    BitStruct,
    Bytes,
    Const,
    Flag,
    Float32l,
    GreedyBytes,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Nibble,
    Prefixed,
    PrefixedArray,
    Rebuild,
    Struct,
    Tell,
    VarInt,
    this,
)

from ..errors import FormatError, VersionError
from ..layers import fullband
from ..layers.high_band import HighBandLayer
from ..layers.latent import MAX_CODE_BITS, LatentParams
from ..layers.residual import GROWTH_ONE, MAX_HINT_TURNS, MAX_STEP, SLOPE_ONE, SPAN_ONE, ResidualLayer
from ..layers.stereo import StereoLayer
from . import records

MAGIC = b"\x89NAC\r\n\x1a\n"
VERSION_MAJOR = 9
VERSION_MINOR = 1  # the newest minor this decoder reads; a file carries the lowest minor its layers need


class LayerType(IntEnum):
    LATENT = 1
    RESIDUAL = 2
    STORED_PHASE = 3
    HIGH_BAND = 4  # 9.1, not critical: without it a decoder outputs the core's band
    STEREO = 5  # 9.1


LAYER_MINOR = {LayerType.HIGH_BAND: 1, LayerType.STEREO: 1}  # the minor version that brought each later layer
CRITICAL = {LayerType.LATENT, LayerType.RESIDUAL, LayerType.STORED_PHASE, LayerType.STEREO}


class Companion(IntEnum):
    """Files beside a model's weights that decoding a stream depends on, named by role."""

    CODE_TABLES = 1  # the latent codes' rANS tables
    RESIDUAL_TABLES = 2  # the residual coder's starting counts
    PHASE_INIT = 3  # the decoder's phase initializer


# Limits (format_spec.md section 10): (format minimum, format maximum, implementation minimum, implementation
# maximum). Outside the format range the file is invalid; outside the implementation range this decoder refuses it.
_U16, _U32, _U64 = 2**16 - 1, 2**32 - 1, 2**64 - 1
RANGES = {
    "model_id": (0, _U16, 0, _U16),
    "original_sample_rate": (1000, 768000, 8000, 192000),
    "model_sample_rate": (1000, 768000, 8000, 48000),
    "channels": (1, 255, 1, 8),
    "sample_count": (0, _U64, 0, 2**34),
    "model_sample_count": (0, _U64, 0, 2**34),
    "n_fft": (16, 32768, 64, 4096),
    "time_stride": (1, _U16, 1, 64),
    "latent_frames": (0, _U32, 0, _U32),
    "chunk_frames": (1, _U16, 1, 512),  # bounds the decoder's window memory
    "group_chunks": (1, 255, 1, 64),
    "chunk_count": (0, _U32, 0, _U32),
}
MAX_CHANNELS = RANGES["channels"][3]
MAX_LATENT_CHANNELS = 1024
MAX_CODE_RANGE = 127  # implementation limit on rANS-coded codes (tables of 255 x 255 per latent channel)
MAX_PART_SIZE = 64 * 2**20  # implementation limit on one decoded part of a chunk


@dataclass(frozen=True)
class StreamInfo:
    """Everything needed to size and decode a stream; one per file."""

    model_id: int
    weights_hash: bytes  # first 8 bytes of the weights' SHA-256
    original_sample_rate: int
    model_sample_rate: int
    channels: int
    sample_count: int  # per channel, at the original rate
    model_sample_count: int  # per channel, at the model rate
    n_fft: int
    hop_length: int
    time_stride: int  # STFT frames per latent frame
    latent_frames: int
    chunk_frames: int  # latent frames per chunk (the last has 1..chunk_frames)
    group_chunks: int  # chunks per scale group (the last group may have fewer)
    chunk_count: int
    latent: LatentParams
    residual: ResidualLayer | None = None
    high_band: HighBandLayer | None = None
    stereo: StereoLayer | None = None  # two channels coded as their mid and the stereo layer
    stored_phase_bits: int = 0  # 8 or 16 with a stored-phase layer, 0 without
    companions: tuple[tuple[int, bytes | None], ...] = ()  # (role, hash); a None hash (legacy files only)
    # stands for whatever the model has
    layer_order: tuple[int, ...] = ()  # layer types in header order, unknown non-critical ones included
    version: tuple[int, int] | None = None  # None: format 9 at the minor its layers need
    header_size: int = 0
    phase_iters: int | None = None  # legacy files only: the phase iterations their decoder ran

    def __post_init__(self) -> None:
        if self.version is None:
            object.__setattr__(self, "version", (VERSION_MAJOR, self.minor_version))

    @property
    def coded_channels(self) -> int:
        """Channels the core codes: one mid for a stereo layer, else every channel."""
        return 1 if self.stereo else self.channels

    @property
    def fullband(self) -> bool:
        """Whether the fullband layers' 48 kHz stage wraps the core (format_spec.md section 7.5)."""
        return bool(self.high_band or self.stereo)

    @property
    def decoded_rate(self) -> int:
        """The rate the decoder's windows come out at: 48 kHz for a fullband stream, else the model's."""
        return fullband.RATE if self.fullband else self.model_sample_rate

    @property
    def decoded_ratio(self) -> int:
        return self.decoded_rate // self.model_sample_rate

    @property
    def decoded_sample_count(self) -> int:
        return self.model_sample_count * self.decoded_ratio

    @property
    def columns_per_frame(self) -> int:
        """Fullband STFT columns per latent frame."""
        return self.samples_per_frame * self.decoded_ratio // fullband.HOP

    @property
    def legacy(self) -> bool:
        """Written by formats 1.0-8.0: only :mod:`nac.format.legacy` reads its records."""
        return self.version[0] != VERSION_MAJOR

    @property
    def samples_per_frame(self) -> int:
        """Model-rate samples one latent frame advances: ``hop_length * time_stride``."""
        return self.hop_length * self.time_stride

    @property
    def phase_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def parts(self) -> tuple[int, ...]:
        """The layer types whose parts a chunk record carries, in order."""
        return self.layer_order or self.known_layers

    @property
    def known_layers(self) -> tuple[int, ...]:
        present = {LayerType.LATENT: True, LayerType.RESIDUAL: self.residual, LayerType.STORED_PHASE:
                   self.stored_phase_bits, LayerType.HIGH_BAND: self.high_band, LayerType.STEREO: self.stereo}
        return tuple(kind for kind, used in present.items() if used)

    @property
    def minor_version(self) -> int:
        """The lowest minor version whose layers this stream uses."""
        return max([LAYER_MINOR.get(kind, 0) for kind in self.known_layers])

    def chunk_frames_at(self, index: int) -> int:
        """Latent frames in chunk ``index``: ``chunk_frames``, the last one fewer."""
        return min(self.chunk_frames, self.latent_frames - index * self.chunk_frames)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """Nominal model-rate samples ``[start, stop)`` of chunk ``index``, clipped to ``model_sample_count``."""
        step, first = self.samples_per_frame, index * self.chunk_frames
        start = min(first * step, self.model_sample_count)
        return start, min((first + self.chunk_frames_at(index)) * step, self.model_sample_count)

    def decoded_chunk_span(self, index: int) -> tuple[int, int]:
        """:meth:`chunk_span` at the decoded rate."""
        start, stop = self.chunk_span(index)
        return start * self.decoded_ratio, stop * self.decoded_ratio

    def group(self, index: int) -> range:
        """The chunk indices of chunk ``index``'s scale group."""
        first = index // self.group_chunks * self.group_chunks
        return range(first, min(first + self.group_chunks, self.chunk_count))

    def carries_peaks(self, index: int) -> bool:
        """Whether chunk ``index`` carries its group's peak codes: the group's first two chunks do."""
        return index % self.group_chunks < 2

    def companion(self, role: Companion) -> tuple[bool, bytes | None]:
        """(listed, hash) of a companion role."""
        for listed, digest in self.companions:
            if listed == role:
                return True, digest
        return False, None

    def part_limits(self, frames: int) -> dict[int, int]:
        """Decoded bytes of each known part of a chunk of ``frames`` latent frames (an upper bound for the latent
        part, whose codes take one or two bytes)."""
        channels = self.coded_channels
        sizes = {LayerType.LATENT: channels * self.latent.latent_channels * self.latent.latent_height * frames
                 * self.latent.code_dtype.itemsize}
        stft_frames = frames * self.time_stride
        if self.residual:
            sizes[LayerType.RESIDUAL] = channels * self.residual.code_rows * self.residual.columns(stft_frames)
        if self.stored_phase_bits:
            sizes[LayerType.STORED_PHASE] = channels * self.phase_bins * stft_frames * self.stored_phase_bits // 8
        if self.high_band:
            sizes[LayerType.HIGH_BAND] = channels * self.high_band.bands * frames
        if self.stereo:
            sizes[LayerType.STEREO] = self.stereo.code_rows * frames
        return sizes


# --------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------

_VERSION = BitStruct("major" / Nibble, "minor" / Nibble)
_FIXED = (
    "magic" / Const(MAGIC),
    "version" / _VERSION,
    "flags" / Int8ul,
    "header_size" / Int16ul,
)
PREAMBLE = Struct(*_FIXED)  # what every version keeps: read first to decide how to go on
PREAMBLE_SIZE = PREAMBLE.sizeof()

_COMPANION = Struct("role" / Int8ul, "hash" / Bytes(8))
_LAYER = Struct(
    "kind" / BitStruct("critical" / Flag, "type" / BitsInteger(7)),
    "body" / Prefixed(VarInt, GreedyBytes),
)
_HEADER_BODY = Struct(
    *_FIXED[:3],
    "header_size" / Rebuild(Int16ul, lambda ctx: _header_size(ctx)),
    "model_id" / Int16ul,
    "weights_hash" / Bytes(8),
    "original_sample_rate" / Int32ul,
    "model_sample_rate" / Int32ul,
    "channels" / Int8ul,
    "sample_count" / Int64ul,
    "n_fft" / Int16ul,
    "hop_length" / Int16ul,
    "time_stride" / Int16ul,
    "chunk_frames" / Int16ul,
    "group_chunks" / Int8ul,
    "companions" / PrefixedArray(Int8ul, _COMPANION),
    "layers" / PrefixedArray(Int8ul, _LAYER),
    "fields_end" / Tell,
    "extension" / Bytes(lambda ctx: ctx.header_size - records.CRC_SIZE - ctx.fields_end),  # a newer minor's
)
HEADER = records.signed(_HEADER_BODY)
_FIXED_SIZE = Struct(*_HEADER_BODY.subcons[: _HEADER_BODY.subcons.index(_HEADER_BODY._subcons["companions"])]).sizeof()
_SCALAR_FIELDS = ("model_id", "weights_hash", "original_sample_rate", "model_sample_rate", "channels", "sample_count",
                  "n_fft", "hop_length", "time_stride", "chunk_frames", "group_chunks")


def _header_size(ctx) -> int:
    layers = sum(1 + len(VarInt.build(len(layer["body"]))) + len(layer["body"]) for layer in ctx.layers)
    return _FIXED_SIZE + 2 + _COMPANION.sizeof() * len(ctx.companions) + layers + len(ctx.extension) + records.CRC_SIZE


LATENT_BODY = Struct(
    "latent_channels" / Int16ul,
    "latent_height" / Int16ul,
    "entropy_coded" / Int8ul,
    "code_bits" / Int8ul,
    "narrower" / Bytes((this.latent_channels + 7) // 8),  # bit k (LSB first): channel k has code_bits - 1
)
RESIDUAL_BODY = Struct(
    "bins" / Int16ul,
    "stride" / Int8ul,
    "step" / Float32l,
    "band_start" / Int16ul,
    "band_growth" / Int16ul,  # the growth less 1.0, in 1/65536
    "slope" / Int16ul,
    "span" / Int16ul,
    "fine_bins" / Int16ul,
    "fine_step" / Float32l,
    "hint_bins" / Int16ul,
    "hint_delay" / Int16ul,
    "hint_turns" / Int8ul,
)
STORED_PHASE_BODY = Struct("bits" / Int8ul)
STEP_ONE = 64  # level steps in 1/64 dB
HIGH_BAND_BODY = Struct("width" / Int16ul, "step" / Int16ul, "edges" / PrefixedArray(Int8ul, Int16ul))
STEREO_BODY = Struct("step" / Int16ul, "edges" / PrefixedArray(Int8ul, Int16ul))
_RESIDUAL_FIELDS = tuple(sub.name for sub in RESIDUAL_BODY.subcons)


# --------------------------------------------------------------------------
# Writing and reading
# --------------------------------------------------------------------------


def build(info: StreamInfo) -> bytes:
    """The header bytes of ``info`` (format 9.0); ValueError if it breaks a rule (a bug in the caller)."""
    problem = header_problem(info)
    derived = derived_counts(info.sample_count, info.original_sample_rate, info.model_sample_rate, info.n_fft,
                             info.hop_length, info.time_stride, info.chunk_frames)
    if not problem and any(getattr(info, name) != value for name, value in derived.items()):
        problem = f"counts {derived} do not follow from the header's fields"
    if problem:
        raise ValueError(f"invalid header: {problem}")
    latent = info.latent
    widest = max(latent.code_bits)
    if any(bits not in (widest, widest - 1) for bits in latent.code_bits):
        raise ValueError("latent code widths must be one width and one bit fewer")
    narrower = np.packbits(np.array(latent.code_bits) < widest, bitorder="little").tobytes()
    layers = [(LayerType.LATENT, LATENT_BODY.build({
        "latent_channels": latent.latent_channels, "latent_height": latent.latent_height,
        "entropy_coded": int(latent.entropy_coded), "code_bits": widest, "narrower": narrower}))]
    if info.residual:
        fields = {name: getattr(info.residual, name) for name in _RESIDUAL_FIELDS}
        layers.append((LayerType.RESIDUAL, RESIDUAL_BODY.build({**fields, "band_growth": info.residual.growth_field})))
    if info.stored_phase_bits:
        layers.append((LayerType.STORED_PHASE, STORED_PHASE_BODY.build({"bits": info.stored_phase_bits})))
    if info.high_band:
        layers.append((LayerType.HIGH_BAND, HIGH_BAND_BODY.build({
            "width": info.high_band.width, "step": round(info.high_band.step_db * STEP_ONE),
            "edges": list(info.high_band.edges)})))
    if info.stereo:
        layers.append((LayerType.STEREO, STEREO_BODY.build({
            "step": round(info.stereo.step_db * STEP_ONE), "edges": list(info.stereo.edges)})))
    value = {name: getattr(info, name) for name in _SCALAR_FIELDS}
    value.update(
        version={"major": VERSION_MAJOR, "minor": info.minor_version},
        flags=0,
        companions=[{"role": role, "hash": digest} for role, digest in info.companions],
        layers=[{"kind": {"critical": kind in CRITICAL, "type": kind}, "body": body} for kind, body in layers],
        fields_end=0,
        extension=b"",
    )
    return HEADER.build({"signed": {"value": value}})


def read(stream: io.BytesIO) -> StreamInfo:
    """Parse and check a format 9 header at the stream's position (after the preamble was checked)."""
    value = records.parse(HEADER, stream, "header").signed.value
    minor = value.version.minor
    if minor <= VERSION_MINOR and (value.flags or value.extension):
        raise FormatError(f"header: reserved flags or extension bytes in a version 9.{minor} header")
    fields = {name: value[name] for name in _SCALAR_FIELDS}
    layers: dict[int, bytes] = {}
    order = []
    for layer in value.layers:
        kind = layer.kind.type
        if kind in layers:
            raise FormatError(f"header: layer type {kind} listed twice")
        if kind not in LayerType.__members__.values():
            if layer.kind.critical:
                raise VersionError(f"unsupported critical layer type {kind} (this decoder reads 1 to 5)")
        elif layer.kind.critical != (kind in CRITICAL):
            raise FormatError(f"header: layer type {kind} must {'' if kind in CRITICAL else 'not '}be critical")
        elif LAYER_MINOR.get(kind, 0) > minor:
            raise FormatError(f"header: layer type {kind} in a version 9.{minor} header (needs 9.{LAYER_MINOR[kind]})")
        layers[kind] = layer.body
        order.append(kind)
    if LayerType.LATENT not in layers:
        raise FormatError("header: no latent layer")
    companions = []
    for companion in value.companions:
        if companion.role not in Companion.__members__.values():
            raise VersionError(f"unsupported companion role {companion.role} (this decoder knows 1 to 3)")
        if any(role == companion.role for role, _ in companions):
            raise FormatError(f"header: companion role {companion.role} listed twice")
        companions.append((companion.role, companion.hash))
    info = StreamInfo(
        **fields,
        **derived_counts(fields["sample_count"], fields["original_sample_rate"], fields["model_sample_rate"],
                         fields["n_fft"], fields["hop_length"], fields["time_stride"], fields["chunk_frames"]),
        latent=_latent(layers[LayerType.LATENT], minor),
        residual=_residual(layers[LayerType.RESIDUAL], minor) if LayerType.RESIDUAL in layers else None,
        stored_phase_bits=(_body(STORED_PHASE_BODY, layers[LayerType.STORED_PHASE], minor, "stored phase").bits
                           if LayerType.STORED_PHASE in layers else 0),
        high_band=_high_band(layers[LayerType.HIGH_BAND], minor) if LayerType.HIGH_BAND in layers else None,
        stereo=_stereo(layers[LayerType.STEREO], minor) if LayerType.STEREO in layers else None,
        companions=tuple(companions),
        layer_order=tuple(order),
        version=(VERSION_MAJOR, minor),
        header_size=value.header_size,
    )
    problem = header_problem(info)
    if problem:
        raise FormatError(f"header: {problem}")
    return info


def _body(schema: Struct, body: bytes, minor: int, what: str):
    """A layer descriptor's fields; a newer minor may append fields, which are skipped."""
    size = schema.sizeof() if schema is not LATENT_BODY else 6 + (int.from_bytes(body[:2], "little") + 7) // 8
    if len(body) < size or (minor <= VERSION_MINOR and len(body) != size):
        raise FormatError(f"header: {what} layer descriptor of {len(body)} bytes, expected {size}")
    return schema.parse(body[:size])


def _latent(body: bytes, minor: int) -> LatentParams:
    value = _body(LATENT_BODY, body, minor, "latent")
    if value.entropy_coded not in (0, 1):
        raise FormatError(f"header: latent entropy_coded {value.entropy_coded} (must be 0 or 1)")
    narrower = np.unpackbits(np.frombuffer(value.narrower, np.uint8), bitorder="little")
    if narrower[value.latent_channels :].any():
        raise FormatError("header: latent narrower bits set past the last channel")
    bits = tuple(value.code_bits - int(flag) for flag in narrower[: value.latent_channels])
    return LatentParams(value.latent_channels, value.latent_height, bits, bool(value.entropy_coded))


def _high_band(body: bytes, minor: int) -> HighBandLayer:
    value = _listed_body(HIGH_BAND_BODY, body, minor, "high-band")
    return HighBandLayer(tuple(value.edges), value.width, value.step / STEP_ONE)


def _stereo(body: bytes, minor: int) -> StereoLayer:
    value = _listed_body(STEREO_BODY, body, minor, "stereo")
    return StereoLayer(tuple(value.edges), value.step / STEP_ONE)


def _listed_body(schema: Struct, body: bytes, minor: int, what: str):
    """The fields of a descriptor that ends in a list (its size follows from the list's count)."""
    try:
        value = schema.parse(body)
    except ConstructError:
        raise FormatError(f"header: {what} layer descriptor of {len(body)} bytes is cut short") from None
    if minor <= VERSION_MINOR and len(schema.build(value)) != len(body):
        raise FormatError(f"header: {what} layer descriptor of {len(body)} bytes, expected {len(schema.build(value))}")
    return value


def _residual(body: bytes, minor: int) -> ResidualLayer:
    value = _body(RESIDUAL_BODY, body, minor, "residual")
    fields = {name: value[name] for name in _RESIDUAL_FIELDS}
    return ResidualLayer(**{**fields, "band_growth": fields["band_growth"] + GROWTH_ONE})


# --------------------------------------------------------------------------
# The rules (format_spec.md sections 3, 5 and 10), shared by the writer and the readers of every version
# --------------------------------------------------------------------------


def header_problem(h: StreamInfo) -> str | None:
    """The first rule ``h`` breaks, or None."""
    if not isinstance(h.weights_hash, bytes) or len(h.weights_hash) != 8:
        return "weights_hash must be 8 bytes"
    for name, (low, high, impl_low, impl_high) in RANGES.items():
        value = getattr(h, name)
        if not low <= value <= high:
            return f"{name} {value} out of range {low}..{high}"
        if not impl_low <= value <= impl_high:
            return f"{name} {value} exceeds this decoder's limit {impl_low}..{impl_high}"
    if h.n_fft & (h.n_fft - 1):
        return f"n_fft {h.n_fft} is not a power of two"
    if not 1 <= h.hop_length <= h.n_fft:
        return f"hop_length {h.hop_length} out of range 1..n_fft ({h.n_fft})"
    problem = _latent_problem(h.latent) or (h.residual and _residual_problem(h, h.residual))
    if problem:
        return problem
    if h.stored_phase_bits not in (0, 8, 16):
        return f"stored phase bits {h.stored_phase_bits} must be 8 or 16"
    problem = (h.high_band and h.high_band.problem()) or (h.stereo and h.stereo.problem())
    if problem:
        return problem
    if h.stereo and h.channels != 2:
        return f"a stereo layer with {h.channels} channels (it codes two)"
    if h.fullband and (fullband.RATE % h.model_sample_rate or h.samples_per_frame * h.decoded_ratio % fullband.HOP):
        return (f"fullband layers need a model rate dividing {fullband.RATE} Hz and latent frames of whole "
                f"{fullband.HOP}-sample hops at it")
    if h.fullband and h.stored_phase_bits:
        return "fullband layers with a stored phase"
    for frames in {h.chunk_frames, h.chunk_frames_at(max(0, h.chunk_count - 1))} - {0}:
        for kind, size in h.part_limits(frames).items():
            if size > MAX_PART_SIZE:
                return f"{LayerType(kind).name.lower()} part of {size} bytes exceeds this decoder's limit {MAX_PART_SIZE}"
    step = h.samples_per_frame
    if (h.latent_frames == 0) != (h.model_sample_count == 0):
        return f"latent_frames {h.latent_frames} and model_sample_count {h.model_sample_count}: exactly one is zero"
    if h.latent_frames > (h.model_sample_count + h.n_fft) // step + 1:
        return f"latent_frames {h.latent_frames} too many for model_sample_count {h.model_sample_count}"
    if h.model_sample_count > h.latent_frames * step + h.n_fft:
        return f"model_sample_count {h.model_sample_count} not covered by {h.latent_frames} latent frames"
    if h.sample_count * h.model_sample_rate > (h.model_sample_count + 1) * h.original_sample_rate:
        return f"sample_count {h.sample_count} not covered by model_sample_count {h.model_sample_count}"
    expected = -(-h.latent_frames // h.chunk_frames)
    if h.chunk_count != expected:
        return f"chunk_count {h.chunk_count}, expected {expected} (ceil(latent_frames / chunk_frames))"
    if h.latent.entropy_coded and not h.companion(Companion.CODE_TABLES)[0]:
        return "rANS-coded latent codes without code tables among the companions"
    return None


def _latent_problem(latent: LatentParams) -> str | None:
    if not 1 <= latent.latent_channels <= MAX_LATENT_CHANNELS:
        return f"latent_channels {latent.latent_channels} out of range 1..{MAX_LATENT_CHANNELS}"
    if not 1 <= latent.latent_height <= MAX_LATENT_CHANNELS:
        return f"latent_height {latent.latent_height} out of range 1..{MAX_LATENT_CHANNELS}"
    if len(latent.code_bits) != latent.latent_channels:
        return f"{len(latent.code_bits)} code widths for {latent.latent_channels} latent channels"
    if not all(2 <= bits <= MAX_CODE_BITS for bits in latent.code_bits):
        return f"latent code bits must be 2..{MAX_CODE_BITS} (narrower ones at least 2)"
    if latent.entropy_coded and latent.code_range > MAX_CODE_RANGE:
        return f"rANS-coded codes of range {latent.code_range} exceed this decoder's limit {MAX_CODE_RANGE}"
    return None



def _residual_problem(h: StreamInfo, r: ResidualLayer) -> str | None:
    if not 1 <= r.bins <= h.phase_bins:
        return f"residual bins {r.bins} out of range 1..n_fft/2+1 ({h.phase_bins})"
    if not (r.stride >= 1 and h.time_stride % r.stride == 0):
        return f"residual stride {r.stride} does not divide time_stride {h.time_stride}"
    if not 0.0 < r.step <= MAX_STEP:  # NaN fails too
        return f"residual step {r.step} out of range (0, {MAX_STEP:g}]"
    if not 0 <= r.band_start <= r.bins:
        return f"residual band_start {r.band_start} out of range 0..bins ({r.bins})"
    if not GROWTH_ONE <= r.band_growth < 2 * GROWTH_ONE:
        return f"residual band_growth {r.band_growth} out of range {GROWTH_ONE}..{2 * GROWTH_ONE - 1}"
    if not 0 <= r.slope <= SLOPE_ONE:
        return f"residual slope {r.slope} out of range 0..{SLOPE_ONE}"
    low, high = (1, 16 * SPAN_ONE) if r.slope else (0, 0)
    if not low <= r.span <= high:
        return f"residual span {r.span} out of range 1..{16 * SPAN_ONE} (0 without a slope)"
    if not 0 <= r.fine_bins <= r.band_start:
        return f"residual fine_bins {r.fine_bins} out of range 0..band_start ({r.band_start})"
    if (r.fine_bins and not 0.0 < r.fine_step <= MAX_STEP) or (not r.fine_bins and r.fine_step != 0.0):
        return f"residual fine_step {r.fine_step} out of range (0, {MAX_STEP:g}] (0 without fine bins)"
    if not 0 <= r.hint_bins <= h.phase_bins:
        return f"phase hint bins {r.hint_bins} out of range 0..n_fft/2+1 ({h.phase_bins})"
    (delay_low, delay_high), (turns_low, turns_high) = (
        ((1, h.n_fft), (1, MAX_HINT_TURNS)) if r.hint_bins else ((0, 0), (0, 0)))
    if not delay_low <= r.hint_delay <= delay_high:
        return f"phase hint delay {r.hint_delay} out of range {delay_low}..{delay_high} (n_fft; 0 without hints)"
    if not turns_low <= r.hint_turns <= turns_high:
        return f"phase hint turns {r.hint_turns} out of range {turns_low}..{turns_high} (0 without hints)"
    return None


def derived_counts(sample_count: int, original_rate: int, model_rate: int, n_fft: int, hop_length: int,
                   time_stride: int, chunk_frames: int) -> dict[str, int]:
    """The counts that follow from the header's fields (format_spec.md section 3): samples at the model rate
    ``M = floor((S * Rm + Ro / 2) / Ro)``, latent frames ``ceil((M + n_fft / 2) / (hop * stride))`` (0 for
    ``M = 0``), chunks ``ceil(latent_frames / chunk_frames)``."""
    model_samples = (sample_count * model_rate + original_rate // 2) // original_rate if original_rate > 0 else 0
    step = hop_length * time_stride  # fields out of range give counts of 0; the rules then refuse them
    frames = -(-(model_samples + n_fft // 2) // step) if model_samples and step > 0 else 0
    return {"model_sample_count": model_samples, "latent_frames": frames,
            "chunk_count": -(-frames // chunk_frames) if chunk_frames > 0 else 0}

