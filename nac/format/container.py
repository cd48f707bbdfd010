"""The ``.nac`` container of format 9 (format_spec.md sections 6 and 9): chunk records of typed, sized parts.

A file is the header, one record per chunk (about a second of audio each),
and the end record. A chunk record carries one sized part per layer, in the
header's layer order, and a CRC over its exact bytes; the first two chunks of
each scale group also carry the group's peak codes, so a damaged record costs
its own second of audio and no more. A silent chunk carries no parts.

:func:`open_stream` checks a whole file's framing and CRCs without decoding
anything, then decodes chunks on demand (seeking decodes only what it needs);
:func:`scan` reports damage for ``nac inspect``; :func:`salvage` keeps every
sound chunk. Files of formats 1.0 to 8.0 go to :mod:`nac.format.legacy`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from construct import Const, Int8ul, Int32ul, Struct, VarInt

from ..errors import FormatError, ModelError, UsageError, VersionError
from ..layers import latent as latent_layer
from ..layers.residual import HINT_ROWS, RESIDUAL_LIMIT
from ..layers.stereo import ICC_LEVELS
from . import header as header_format
from . import legacy, rans, records
from .header import LayerType, StreamInfo
from .records import CHUNK_SYNC, Chunk, Framing, LostRun, Salvage, StreamReport

PEAKS_FLAG, SILENT_FLAG = 0x01, 0x02
ICC_CODES = len(ICC_LEVELS)
_CHUNK_HEAD = Struct("sync" / Const(CHUNK_SYNC), "index" / Int32ul, "flags" / Int8ul)
_HEAD_SIZE = _CHUNK_HEAD.sizeof()
# Encoder choice, not part of the format: zstd levels of the parts that use it.
ZSTD_LEVEL_CODES = 15
ZSTD_LEVEL_PHASE = 12
# A part may code its integers in at most this many times their bytes (a rANS code costs at most 15 bits, an
# escaped residual code 30): a larger part is refused before it is decoded.
PART_SLACK = 4


@dataclass(frozen=True)
class Tables:
    """The model data a stream's entropy coding needs: latent code tables by code range, residual starting
    counts (None: :func:`nac.format.rans.default_counts`)."""

    code_tables: dict = field(default_factory=dict)
    residual_counts: np.ndarray | None = None

    def for_latent(self, info: StreamInfo) -> np.ndarray | None:
        return self.code_tables.get(info.latent.code_range)


# --------------------------------------------------------------------------
# Reading the version, then the header
# --------------------------------------------------------------------------


def checked_bytes(data: bytes) -> bytes | bytearray | memoryview:
    """``data`` if it is bytes-like (a memoryview as one of bytes, whatever its item size); :class:`UsageError`
    for anything else (a path, most likely)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UsageError(f"expected a .nac file's bytes, not {type(data).__name__} (for a path use "
                         "nac.decode_file, or read the file's bytes first)")
    if isinstance(data, memoryview) and (data.itemsize != 1 or data.ndim != 1):
        return data.cast("B") if data.c_contiguous else memoryview(data.tobytes())
    return data


def read_info(data: bytes) -> tuple[StreamInfo, int]:
    """The header of a file of any version, checked, and its size; formats 1.0-8.0 through the legacy reader."""
    data = bytes(checked_bytes(data)[: 2**16 + 8])
    if not data:
        raise FormatError("empty file: not a nac file")
    if data[: len(header_format.MAGIC)] != header_format.MAGIC[: len(data)]:
        raise FormatError("bad magic: not a nac file")
    stream = io.BytesIO(data)
    preamble = records.parse(header_format.PREAMBLE, stream, "header")
    major, minor = preamble.version.major, preamble.version.minor
    if major in legacy.VERSION_MAJORS:
        return legacy.read_info(data)
    if major != header_format.VERSION_MAJOR:
        raise VersionError(f"unsupported format version {major}.{minor} (this decoder reads 1.x to 9.x)")
    stream.seek(0)
    info = header_format.read(stream)
    return info, info.header_size


# --------------------------------------------------------------------------
# Parts: a chunk's arrays <-> bytes
# --------------------------------------------------------------------------


def _code_rows(info: StreamInfo, peaks: np.ndarray) -> np.ndarray:
    """The rows of latent codes that are coded, in order (audio channel, latent channel, height): those of
    channels whose peak code is not 0 (a channel of peak 0 holds only zeros)."""
    latent = info.latent
    used = np.repeat(peaks.reshape(-1) != 0, latent.latent_height)
    return np.flatnonzero(used)


def _row_tables(info: StreamInfo, rows: np.ndarray) -> np.ndarray:
    """Each coded row's table: its latent channel."""
    return rows // info.latent.latent_height % info.latent.latent_channels


def _latent_part(info: StreamInfo, chunk: Chunk, tables: Tables) -> bytes:
    codes = chunk.codes.reshape(-1, chunk.frames)
    if info.latent.entropy_coded:
        rows = _code_rows(info, chunk.peaks)
        return rans.encode(codes[rows], _row_tables(info, rows), tables.for_latent(info))
    data = codes.astype(info.latent.code_dtype.newbyteorder("<")).tobytes()
    return records.compressor(ZSTD_LEVEL_CODES).compress(data)


def _read_latent(info: StreamInfo, part: bytes, peaks: np.ndarray, frames: int, tables: Tables,
                 where: str) -> np.ndarray:
    latent = info.latent
    shape = (info.coded_channels, latent.latent_channels, latent.latent_height, frames)
    if latent.entropy_coded:
        rows = _code_rows(info, peaks)
        codes = np.zeros((info.coded_channels * latent.latent_channels * latent.latent_height, frames), np.int64)
        try:
            codes[rows] = rans.decode(part, _row_tables(info, rows), tables.for_latent(info), frames)
        except ValueError as err:
            raise FormatError(f"{where}: latent codes: {err}") from None
    else:
        dtype = latent.code_dtype.newbyteorder("<")
        raw = records.decompress(part, int(np.prod(shape)) * dtype.itemsize, where, "latent codes")
        codes = np.frombuffer(raw, dtype).astype(np.int64)
    codes = codes.reshape(shape)
    limits = latent.limits.reshape(1, -1, 1, 1)
    if (np.abs(codes) > limits).any():
        raise FormatError(f"{where}: latent code outside its channel's range")
    return codes.astype(latent.code_dtype)


def residual_contexts(info: StreamInfo) -> tuple[int, int, int]:
    """(fine rows, rows per fine bin, hint rows) for :mod:`nac.format.rans`."""
    layer = info.residual
    return layer.fine_bins * layer.stride, layer.stride, HINT_ROWS if layer.hint_bins else 0


def _residual_part(info: StreamInfo, chunk: Chunk, tables: Tables) -> bytes:
    return rans.encode_residual(chunk.residual, *residual_contexts(info), counts=tables.residual_counts)


def _read_residual(info: StreamInfo, part: bytes, frames: int, tables: Tables, where: str) -> np.ndarray:
    layer = info.residual
    shape = (info.coded_channels, layer.code_rows, layer.columns(frames * info.time_stride))
    try:
        return rans.decode_residual(part, shape, *residual_contexts(info), counts=tables.residual_counts)
    except ValueError as err:
        raise FormatError(f"{where}: residual codes: {err}") from None


def _band_codes(info: StreamInfo, frames: int, chunk: Chunk | None = None) -> Iterator[tuple]:
    """(name, the chunk's codes, shape, lowest, highest) of each fullband layer the stream has: codes per band
    and latent frame, coded by the adaptive residual coder (format_spec.md sections 7.5 and 8.3)."""
    if info.high_band:
        yield ("high-band", chunk and chunk.high_band, (info.coded_channels, info.high_band.bands, frames),
               -RESIDUAL_LIMIT, RESIDUAL_LIMIT)
    if info.stereo:
        limit, bands = info.stereo.max_ild_code(), info.stereo.bands
        low = np.repeat([-limit, 0], bands)[:, None]  # ILD rows, then ICC rows
        high = np.repeat([limit, ICC_CODES - 1], bands)[:, None]
        yield "stereo", chunk and chunk.stereo, (1, info.stereo.code_rows, frames), low, high


def _phase_dtype(info: StreamInfo) -> np.dtype:
    return np.dtype(np.uint8 if info.stored_phase_bits == 8 else "<u2")


def _phase_part(info: StreamInfo, chunk: Chunk) -> bytes:
    return records.compressor(ZSTD_LEVEL_PHASE).compress(chunk.phase.astype(_phase_dtype(info)).tobytes())


def _read_phase(info: StreamInfo, part: bytes, frames: int, where: str) -> np.ndarray:
    shape = (info.coded_channels, info.phase_bins, frames * info.time_stride)
    dtype = _phase_dtype(info)
    raw = records.decompress(part, int(np.prod(shape)) * dtype.itemsize, where, "stored phase")
    return np.frombuffer(raw, dtype).reshape(shape).astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------


def _check_chunk(info: StreamInfo, position: int, chunk: Chunk) -> None:
    """ValueError unless ``chunk`` is the one ``info`` expects at ``position``, shaped and typed as it implies."""
    where = f"chunk {position}"
    if chunk.index != position or chunk.frames != info.chunk_frames_at(position):
        raise ValueError(f"{where}: index {chunk.index} / frames {chunk.frames}, expected {position} / "
                         f"{info.chunk_frames_at(position)}")
    latent = info.latent
    if chunk.peaks is None or chunk.peaks.shape != (info.coded_channels, latent.latent_channels):
        raise ValueError(f"{where}: peaks must be shaped (channels, latent_channels)")
    latent_layer.encode_peaks(chunk.peaks)  # ValueError off the grid
    if chunk.silent:
        return
    shape = (info.coded_channels, latent.latent_channels, latent.latent_height, chunk.frames)
    if chunk.codes.shape != shape or (np.abs(chunk.codes.astype(np.int64)) > latent.limits.reshape(1, -1, 1, 1)).any():
        raise ValueError(f"{where}: codes shaped {chunk.codes.shape} or outside their channels' ranges")
    if (chunk.codes[chunk.peaks == 0] != 0).any():
        raise ValueError(f"{where}: nonzero codes in a channel of peak 0")
    if info.residual is not None:
        shape = (info.coded_channels, info.residual.code_rows, info.residual.columns(chunk.frames * info.time_stride))
        if chunk.residual is None or chunk.residual.shape != shape or chunk.residual.dtype != np.int8 \
                or chunk.residual.min(initial=0) < -RESIDUAL_LIMIT:
            raise ValueError(f"{where}: residual codes must be int8 {shape} in [-{RESIDUAL_LIMIT}, {RESIDUAL_LIMIT}]")
    if info.stored_phase_bits and (chunk.phase is None
                                   or chunk.phase.shape != (info.coded_channels, info.phase_bins,
                                                            chunk.frames * info.time_stride)):
        raise ValueError(f"{where}: stored phase missing or misshaped")
    for kind, codes, shape, low, high in _band_codes(info, chunk.frames, chunk):
        if codes is None or codes.shape != shape or (codes < low).any() or (codes > high).any():
            raise ValueError(f"{where}: {kind} codes must be shaped {shape} and within their rows' ranges")


def _record(info: StreamInfo, chunk: Chunk, tables: Tables) -> bytes:
    flags = (PEAKS_FLAG if info.carries_peaks(chunk.index) else 0) | (SILENT_FLAG if chunk.silent else 0)
    pieces = [_CHUNK_HEAD.build({"index": chunk.index, "flags": flags})]
    if flags & PEAKS_FLAG:
        shift, codes = latent_layer.encode_peaks(chunk.peaks)
        pieces += [shift.to_bytes(1, "little", signed=True), codes.tobytes()]
    if not chunk.silent:
        writers = {LayerType.LATENT: lambda: _latent_part(info, chunk, tables),
                   LayerType.RESIDUAL: lambda: _residual_part(info, chunk, tables),
                   LayerType.STORED_PHASE: lambda: _phase_part(info, chunk),
                   LayerType.HIGH_BAND: lambda: rans.encode_residual(chunk.high_band),
                   LayerType.STEREO: lambda: rans.encode_residual(chunk.stereo)}
        for kind in info.parts:
            part = writers[kind]()
            pieces += [VarInt.build(len(part)), part]
    body = b"".join(pieces)
    return body + records.crc32(body).to_bytes(4, "little")


def pack_parts(info: StreamInfo, chunks: Iterable[Chunk], tables: Tables = Tables()) -> Iterator[bytes]:
    """The file as it is made: the header, each chunk's record as the chunk arrives, the end record.

    ``chunks`` must be exactly ``info.chunk_count`` chunks in order, each
    carrying its scale group's peaks. Deterministic: the same input gives the
    same bytes (for a given zstd library version). ValueError for a chunk that
    does not fit ``info`` (a bug in the caller).
    """
    if info.latent.entropy_coded:
        _check_code_tables(info, tables.for_latent(info), ValueError)
    yield header_format.build(info)
    count = 0
    for position, chunk in enumerate(chunks):
        if position >= info.chunk_count:
            raise ValueError(f"more chunks than chunk_count ({info.chunk_count})")
        _check_chunk(info, position, chunk)
        yield _record(info, chunk, tables)
        count = position + 1
    if count != info.chunk_count:
        raise ValueError(f"{count} chunks, chunk_count is {info.chunk_count}")
    yield records.end_record(info)


def pack(info: StreamInfo, chunks: Iterable[Chunk], tables: Tables = Tables()) -> bytes:
    return b"".join(pack_parts(info, chunks, tables))


def _check_code_tables(info: StreamInfo, freq, error=ModelError) -> None:
    if freq is None:
        raise error("rANS-coded latent codes need the model's code tables")
    if freq.shape[0] != info.latent.latent_channels:
        raise error(f"code tables for {freq.shape[0]} latent channels, the stream has {info.latent.latent_channels}")
    try:
        rans.check_tables(freq, info.latent.code_range)
    except ValueError as err:
        raise error(f"code tables unusable for code range {info.latent.code_range}: {err}") from None


# --------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------


def _framing(info: StreamInfo, data: bytes, pos: int) -> Framing | None:
    """A chunk record's framing: its flags, peaks and part sizes read without decoding (None past the file)."""
    if pos + _HEAD_SIZE > len(data):
        return None
    index, flags = int.from_bytes(data[pos + 4 : pos + 8], "little"), data[pos + 8]
    end, payload = pos + _HEAD_SIZE, 0
    if flags & PEAKS_FLAG:
        end += _peaks_size(info)
    if not flags & SILENT_FLAG:
        for _ in info.parts:
            size, end = _varint(data, end)
            end, payload = end + size, payload + size
            if end > len(data):
                return None
    end += records.CRC_SIZE
    if end > len(data):
        return None
    frames = info.chunk_frames_at(index) if index < info.chunk_count else 0
    return Framing(end, index, frames, payload, bool(flags & SILENT_FLAG))


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the unsigned LEB128 at ``pos``; a size past the file where it runs out
    or takes more than 10 bytes, which the caller's bounds check refuses."""
    value = 0
    for count in range(10):
        if pos + count >= len(data):
            break
        byte = data[pos + count]
        value |= (byte & 0x7F) << (7 * count)
        if not byte & 0x80:
            return value, pos + count + 1
    return len(data) + 1, pos


def _framing_problem(info: StreamInfo, position: int, data: bytes, offset: int, framing: Framing) -> str | None:
    if position >= info.chunk_count:
        return f"beyond the header's chunk_count {info.chunk_count}"
    if framing.index != position:
        return f"index {framing.index}, expected {position}"
    flags = data[offset + 8]
    if flags & ~(PEAKS_FLAG | SILENT_FLAG):
        return f"reserved flag bits set ({flags:#04x})"
    if bool(flags & PEAKS_FLAG) != info.carries_peaks(position):
        return "peak codes present where they must not be, or missing where they must be"
    return None


def scan(data: bytes) -> StreamReport:
    """Walk a file's records for ``nac inspect``: report damage instead of raising.

    Only an unusable header raises (:class:`FormatError` or :class:`VersionError`).
    Nothing is decoded. After a damaged record the walk resynchronizes on the next sync word.
    """
    data = bytes(checked_bytes(data))
    info, header_size = read_info(data)
    if info.legacy:
        return legacy.scan(data)
    return _scan(data, info, header_size)


def _scan(data: bytes, info: StreamInfo, header_size: int) -> StreamReport:
    offsets: dict[int, int] = {}

    def frame(data: bytes, pos: int) -> Framing | None:
        framing = _framing(info, data, pos)
        if framing is not None:
            offsets[id(framing)] = pos
        return framing

    def check(position: int, framing: Framing) -> str | None:
        return _framing_problem(info, position, data, offsets[id(framing)], framing)

    return records.walk(data, info, header_size, frame, check)


class Stream:
    """A format 9 file whose framing and CRCs were checked whole; chunks are decoded on demand."""

    def __init__(self, data: bytes, info: StreamInfo, report: StreamReport, tables: Tables):
        self.data, self.info, self.tables = data, info, tables
        self.offsets = {chunk.index: chunk.offset for chunk in report.chunks if chunk.sound}
        self.silent = frozenset(chunk.index for chunk in report.chunks if chunk.sound and chunk.silent)
        self._peaks: dict[int, np.ndarray] = {}

    def chunk(self, index: int) -> Chunk:
        """Chunk ``index`` decoded and checked (:class:`FormatError` if its payload is unsound)."""
        return _decode_record(self.data, self.info, self.offsets[index], self.group_peaks(index), self.tables)

    def group_peaks(self, index: int) -> np.ndarray:
        """The peak codes of chunk ``index``'s scale group, from its first carrier (both carriers must agree)."""
        group = self.info.group(index)
        if group.start not in self._peaks:
            found = [_peaks(self.data, self.info, self.offsets[i]) for i in group if self.info.carries_peaks(i)
                     and i in self.offsets]
            if any((other != found[0]).any() for other in found[1:]):
                raise FormatError(f"chunk {group.start}: the scale group's two copies of its peak codes differ")
            self._peaks = {group.start: found[0]}
        return self._peaks[group.start]


def _peaks_size(info: StreamInfo) -> int:
    """Bytes of a group's peaks: the shift, then a code per audio and latent channel."""
    return 1 + info.coded_channels * info.latent.latent_channels


def _peaks(data: bytes, info: StreamInfo, offset: int) -> np.ndarray:
    """The peaks a carrier chunk's record at ``offset`` holds (FormatError for a shift out of range)."""
    start = offset + _HEAD_SIZE
    shift = int.from_bytes(data[start : start + 1], "little", signed=True)
    if not latent_layer.MIN_SHIFT <= shift <= latent_layer.MAX_SHIFT:
        raise FormatError(f"chunk {int.from_bytes(data[offset + 4 : offset + 8], 'little')}: peak shift {shift} "
                          f"out of range {latent_layer.MIN_SHIFT}..{latent_layer.MAX_SHIFT}")
    codes = np.frombuffer(data[start + 1 : start + _peaks_size(info)], np.uint8)
    return latent_layer.decode_peaks(shift, codes).reshape(info.coded_channels, info.latent.latent_channels)


def _decode_record(data: bytes, info: StreamInfo, offset: int, peaks: np.ndarray, tables: Tables) -> Chunk:
    """The chunk whose sound record starts at ``offset``, its parts decoded and checked."""
    index, flags = int.from_bytes(data[offset + 4 : offset + 8], "little"), data[offset + 8]
    where, frames = f"chunk {index}", info.chunk_frames_at(index)
    steps = latent_layer.steps(peaks, info.latent)
    chunk = Chunk(index, frames, steps, None, peaks=peaks)
    if flags & SILENT_FLAG:
        return chunk
    position = offset + _HEAD_SIZE + (_peaks_size(info) if flags & PEAKS_FLAG else 0)
    parts = {}
    for kind in info.parts:  # the framing was checked: every size is whole and in the record
        size, position = _varint(data, position)
        parts[kind], position = data[position : position + size], position + size
    limits = info.part_limits(frames)
    for kind, part in parts.items():
        if kind in limits and len(part) > PART_SLACK * limits[kind] + 2**16:
            raise FormatError(f"{where}: {LayerType(kind).name.lower()} part of {len(part)} bytes is implausibly large")
    chunk.codes = _read_latent(info, parts[LayerType.LATENT], peaks, frames, tables, where)
    if info.residual is not None:
        chunk.residual = _read_residual(info, parts[LayerType.RESIDUAL], frames, tables, where)
    if info.stored_phase_bits:
        chunk.phase = _read_phase(info, parts[LayerType.STORED_PHASE], frames, where)
    for kind, _, shape, low, high in _band_codes(info, frames):
        layer = LayerType[kind.upper().replace("-", "_")]
        try:
            codes = rans.decode_residual(parts[layer], shape)
        except ValueError as err:
            raise FormatError(f"{where}: {kind} codes: {err}") from None
        if (codes < low).any() or (codes > high).any():
            raise FormatError(f"{where}: {kind} codes outside their rows' ranges")
        setattr(chunk, layer.name.lower(), codes)
    return chunk


def _salvaged_peaks(data: bytes, info: StreamInfo, offsets: dict[int, int], group: range,
                    problems: list[str]) -> np.ndarray | None:
    """A group's peaks from its first sound carrier with valid peaks; a carrier whose peaks are invalid or
    differ from the group's is a problem (``problems``)."""
    found = None
    for index in group:
        if not (info.carries_peaks(index) and index in offsets):
            continue
        try:
            peaks = _peaks(data, info, offsets[index])
        except FormatError as err:
            problems.append(str(err))
            continue
        if found is None:
            found = peaks
        elif (peaks != found).any():
            problems.append(f"chunk {group.start}: the scale group's two copies of its peak codes differ")
    return found


def open_stream(data: bytes, tables: Tables = Tables()):
    """A file checked whole (header, framing, every CRC, the end record) and ready to decode chunk by chunk;
    a legacy file (1.0-8.0) is decoded whole by :mod:`nac.format.legacy`. :class:`FormatError` for any damage."""
    data = bytes(checked_bytes(data))
    info, header_size = read_info(data)
    if info.legacy:
        return legacy.open_stream(data, tables.code_tables)
    _check_tables(info, tables)
    report = _scan(data, info, header_size)
    problem = _first_problem(report)
    if problem:
        raise FormatError(problem)
    return Stream(data, info, report, tables)


def _check_tables(info: StreamInfo, tables: Tables) -> None:
    if info.latent.entropy_coded:
        _check_code_tables(info, tables.for_latent(info))
    if tables.residual_counts is not None:
        rans.check_counts(tables.residual_counts)


def _first_problem(report: StreamReport) -> str | None:
    for position, chunk in enumerate(report.chunks):
        if chunk.problem:
            return f"chunk {position}: {chunk.problem}"
    if report.problems:
        return report.problems[0]
    return None


def unpack(data: bytes, tables: Tables = Tables()) -> tuple[StreamInfo, list[Chunk]]:
    """Every chunk of a whole file, checked strictly (:class:`FormatError` for any defect)."""
    stream = open_stream(data, tables)
    return stream.info, [stream.chunk(i) for i in range(stream.info.chunk_count)]


def salvage(data: bytes, tables: Tables = Tables()) -> Salvage:
    """Every sound chunk of a possibly damaged file, and which ones were lost.

    The header must be sound. Records are found by a walk that resynchronizes
    after damage and placed by their CRC-checked index; a chunk whose record is
    damaged or missing, whose payload fails its checks, or whose scale group
    lost both copies of its peak codes, is lost.
    """
    data = bytes(checked_bytes(data))
    info, header_size = read_info(data)
    if info.legacy:
        return legacy.salvage(data, tables.code_tables)
    _check_tables(info, tables)
    report = _scan(data, info, header_size)
    lost = report.lost_runs()
    problems = list(report.problems)
    candidates: dict[int, list[int]] = {}  # chunk index -> offsets of its sound records, in file order
    for record in report.chunks:
        if record.problem is not None:
            problems.append(f"chunk record at offset {record.offset}: {record.problem}")
        if record.sound:
            candidates.setdefault(record.index, []).append(record.offset)
    offsets = {index: found[0] for index, found in candidates.items()}
    chunks: dict[int, Chunk] = {}
    peaks_of: dict[int, np.ndarray | None] = {}
    for index in sorted(candidates):
        group = info.group(index).start
        if group not in peaks_of:
            peaks_of[group] = _salvaged_peaks(data, info, offsets, info.group(index), problems)
        if peaks_of[group] is None:
            lost.append(LostRun(index, index, "its scale group's peak codes were lost"))
            continue
        failure = None
        for offset in candidates[index]:  # a later record of the index may be the sound one (a foreign one first)
            try:
                chunks[index] = _decode_record(data, info, offset, peaks_of[group], tables)
                break
            except FormatError as err:
                failure = str(err)
                problems.append(failure)
        if index not in chunks:
            lost.append(LostRun(index, index, failure.removeprefix(f"chunk {index}: ")))
    return Salvage(info, chunks, records.merge_runs(lost), tuple(problems))
