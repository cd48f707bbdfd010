"""What every version of the container shares: CRCs, the construct error funnel, bounded zstd, the end record,
and the walk over chunk records that ``inspect`` and salvage use (format_spec.md sections 2, 6 and 9).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zstandard
from construct import (
    Checksum,
    ChecksumError,
    Const,
    ConstError,
    ConstructError,
    Int32ul,
    Int64ul,
    RawCopy,
    StreamError,
    Struct,
    Terminated,
    TerminatedError,
    this,
)

from ..errors import FormatError

CHUNK_SYNC = b"NACK"
END_SYNC = b"NEND"
CRC_SIZE = 4
ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"  # 0xFD2FB528 little-endian (RFC 8878)
ZSTD_MAX_WINDOW = 2**26  # bounds the decoder's window buffer
# A walk parses at most this many times the file's size in records (a sound file needs 1x; resynchronizing
# after damage re-reads overlapping candidates).
SCAN_WORK_FACTOR = 16


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib): reflected poly 0x04C11DB7, init and xorout 0xFFFFFFFF."""
    return zlib.crc32(data) & 0xFFFFFFFF


def signed(body: Struct, verify: bool = True) -> Struct:
    """``body`` followed by a CRC-32 of its exact bytes (checked on parse when ``verify``)."""
    crc = Checksum(Int32ul, crc32, this.signed.data) if verify else Int32ul
    return Struct("signed" / RawCopy(body), "crc" / crc)


END_FIELDS = Struct(
    "sync" / Const(END_SYNC),
    "chunk_count" / Int32ul,
    "latent_frames" / Int32ul,
    "sample_count" / Int64ul,
)
END = Struct("record" / signed(END_FIELDS), Terminated)
END_UNVERIFIED = signed(END_FIELDS, verify=False)
END_SIZE = END_UNVERIFIED.sizeof()
_TRUNCATED_PART = {"payload": " payload", "crc": " CRC"}


def parse(schema: Struct, stream: io.BytesIO, where: str):
    """Parse one record at the stream's position: the one place construct errors become :class:`FormatError`.

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


def end_problem(info, end) -> str | None:
    """How an end record disagrees with the header, or None."""
    for name in ("chunk_count", "latent_frames", "sample_count"):
        if end[name] != getattr(info, name):
            return f"{name} {end[name]} disagrees with header ({getattr(info, name)})"
    return None


def end_record(info) -> bytes:
    return END.build({"record": {"signed": {"value": {
        name: getattr(info, name) for name in ("chunk_count", "latent_frames", "sample_count")}}}})


def compressor(level: int) -> zstandard.ZstdCompressor:
    """The zstd compressor of the writer: content size recorded, no checksum or dictionary id."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False, write_dict_id=False)


def decompress(payload: bytes, size: int, where: str, what: str = "payload") -> bytes:
    """Decompress one zstd frame (``what`` names it in messages) into exactly ``size`` bytes, never more."""
    if payload[:4] != ZSTD_FRAME_MAGIC:
        raise FormatError(f"{where}: {what} is not a zstd frame")
    try:
        declared = zstandard.get_frame_parameters(payload).content_size
        if declared not in (zstandard.CONTENTSIZE_UNKNOWN, size):
            raise FormatError(f"{where}: {what}: zstd frame declares {declared} bytes, expected {size}")
        decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        body = decompressor.decompress(payload, max_output_size=size, read_across_frames=False,
                                       allow_extra_data=False)
    except zstandard.ZstdError as err:
        raise FormatError(f"{where}: bad zstd {what} ({err})") from None
    if len(body) != size:
        raise FormatError(f"{where}: {what} decompressed to {len(body)} bytes, expected {size}")
    return body


@dataclass
class Chunk:
    """One chunk's integers and what dequantizing them needs (C audio channels, K latent channels)."""

    index: int
    frames: int  # latent frames in this chunk
    steps: np.ndarray  # float32 (C, K): the latent code step of each channel (0: a silent channel)
    codes: np.ndarray | None  # (C, K, H, frames); None for a silent chunk
    phase: np.ndarray | None = None  # uint8/uint16 (C, n_fft//2+1, frames * time_stride), stored phase only
    residual: np.ndarray | None = None  # int8 (C, code rows, columns), with a residual layer
    peaks: np.ndarray | None = None  # uint8 (C, K): the scale group's peak codes (format 9)
    high_band: np.ndarray | None = None  # int (C, bands, frames), with a high-band layer
    stereo: np.ndarray | None = None  # int (1, 2 bands, frames), with a stereo layer

    @property
    def silent(self) -> bool:
        return self.codes is None


@dataclass(frozen=True)
class ChunkReport:
    """What a walk found about one chunk record, without decoding it."""

    index: int  # as stored (untrusted when crc_ok is False)
    offset: int  # byte offset of the chunk's sync word
    size: int  # bytes of the whole record
    frames: int  # latent frames it covers (as stored, or as the header implies)
    sample_start: int  # nominal model-rate sample range [start, stop) it covers
    sample_stop: int
    crc_ok: bool
    problem: str | None  # first problem found at its place in the walk, None when the record is sound there
    sound: bool  # CRC correct and its counters agree with the header for its own index
    payload: int  # bytes of coded data (layer parts), the rest of ``size`` being framing
    silent: bool = False


@dataclass(frozen=True)
class StreamReport:
    """Result of a walk: the header, every chunk record, the end record."""

    header: object  # StreamInfo
    header_size: int
    file_size: int
    chunks: tuple[ChunkReport, ...]
    end_present: bool
    end_ok: bool  # present, CRC correct, agrees with the header, nothing after it
    problems: tuple[str, ...]  # stream-level problems (gaps, missing chunks, trailing bytes)

    @property
    def ok(self) -> bool:
        return self.end_ok and not self.problems and all(c.problem is None for c in self.chunks)

    def lost_runs(self) -> list[LostRun]:
        """The chunks ``0 .. chunk_count-1`` with no sound record, as runs with their reason (the first sound
        record of an index wins; a missing chunk does not condemn the ones after it). The list grows with the
        records found, not with the chunk count a header claims."""
        count = self.header.chunk_count
        sound, damaged = set(), {}
        for chunk in self.chunks:
            if chunk.sound:
                sound.add(chunk.index)
            elif chunk.index < count:
                damaged.setdefault(chunk.index, chunk.problem or "CRC mismatch")
        marked = sorted((i, r) for i, r in damaged.items() if i not in sound)
        runs: list[LostRun] = []
        start, next_mark = 0, 0
        for index in [*sorted(sound), count]:  # the gap start .. index - 1 before each sound chunk
            while next_mark < len(marked) and marked[next_mark][0] < index:
                mark, reason = marked[next_mark]
                if start < mark:
                    runs.append(LostRun(start, mark - 1, "missing"))
                runs.append(LostRun(mark, mark, reason))
                start, next_mark = mark + 1, next_mark + 1
            if start < index:
                runs.append(LostRun(start, index - 1, "missing"))
            start = index + 1
        return merge_runs(runs)


@dataclass(frozen=True)
class LostRun:
    """Consecutive lost chunks ``first .. last`` and why they were lost (``; ``-joined reasons)."""

    first: int
    last: int  # inclusive
    reason: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def merge_runs(runs: list[LostRun]) -> list[LostRun]:
    """Runs sorted, adjacent ones joined (their reasons too, each once)."""
    merged: list[LostRun] = []
    for run in sorted(runs, key=lambda run: run.first):
        if merged and merged[-1].last + 1 >= run.first:
            previous = merged[-1]
            reasons = previous.reason.split("; ")
            reason = previous.reason if run.reason in reasons else f"{previous.reason}; {run.reason}"
            merged[-1] = LostRun(previous.first, max(previous.last, run.last), reason)
        else:
            merged.append(run)
    return merged


@dataclass(frozen=True)
class Salvage:
    """Every sound chunk of a possibly damaged file, and what was lost."""

    header: object  # StreamInfo
    chunks: dict[int, Chunk]  # the sound chunks by index
    lost: list[LostRun]
    problems: tuple[str, ...]  # every defect found, lost chunks or not

    @property
    def intact(self) -> bool:
        return not self.lost and not self.problems


class SyncFinder:
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


@dataclass(frozen=True)
class Framing:
    """What a walk learns of a chunk record at an offset from its framing alone."""

    end: int  # offset after the record (its CRC included)
    index: int
    frames: int
    payload: int  # bytes of coded data in it
    silent: bool = False


def walk(data: bytes, info, header_size: int, frame: Callable[[bytes, int], Framing | None],
         check: Callable[[int, Framing], str | None]) -> StreamReport:
    """Walk a file's records after the header, reporting damage instead of raising.

    ``frame(data, offset)`` reads a chunk record's framing (None when it runs
    past the file); ``check(position, framing)`` says how a CRC-correct record
    disagrees with the header at ``position``. Payloads are not decoded.
    After a damaged record the walk resynchronizes on the next sync word.
    """
    size = len(data)
    chunks: list[ChunkReport] = []
    problems: list[str] = []
    end_present = end_ok = False
    view = memoryview(data)
    finder = SyncFinder(data)
    budget = SCAN_WORK_FACTOR * size
    pos = header_size
    while pos < size:
        sync = data[pos : pos + 4]
        if sync not in (CHUNK_SYNC, END_SYNC):
            resume = finder.next(pos + 1)
            problems.append(f"{resume - pos} unrecognized bytes at offset {pos}")
            pos = resume
            continue
        where = f"chunk {len(chunks)}" if sync == CHUNK_SYNC else "end record"
        if sync == END_SYNC:
            end = pos + END_SIZE
            if end > size:
                problems.append(f"truncated in {where} at offset {pos}")
                break
            crc_ok = crc32(view[pos : end - 4]) == int.from_bytes(data[end - 4 : end], "little")
            if not crc_ok and finder.next(pos + 4) < size:
                problems.append(f"damaged end record at offset {pos}, more records follow")
                pos = finder.next(pos + 4)
                continue
            end_present = True
            problem = None if crc_ok else "CRC mismatch"
            problem = problem or end_problem(info, END_UNVERIFIED.parse(data[pos:end]).signed.value)
            if problem:
                problems.append(f"end record: {problem}")
            if end < size:
                problems.append(f"{size - end} bytes of trailing data after end record")
            end_ok = problem is None and end == size
            break
        framing = frame(data, pos)
        if framing is None:
            problems.append(f"truncated in {where} at offset {pos}")
            pos = finder.next(pos + 4)
            continue
        budget -= framing.end - pos
        if budget < 0:  # stray sync words whose lengths overlap could otherwise make the walk quadratic
            problems.append(f"scan stopped at offset {pos}: too many overlapping damaged records")
            break
        end = framing.end
        crc_ok = crc32(view[pos : end - 4]) == int.from_bytes(data[end - 4 : end], "little")
        problem = None if crc_ok else "CRC mismatch"
        problem = problem or check(len(chunks), framing)
        index = framing.index
        sound = crc_ok and index < info.chunk_count and check(index, framing) is None
        start, stop = info.chunk_span(index) if index < info.chunk_count else (0, 0)
        chunks.append(ChunkReport(index, pos, end - pos, framing.frames, start, stop, crc_ok, problem, sound,
                                  framing.payload, framing.silent))
        if not crc_ok and data[end : end + 4] not in (CHUNK_SYNC, END_SYNC) and end < size:
            end = finder.next(pos + 4)  # the length fields may be the damaged part
        pos = end
    if len(chunks) != info.chunk_count:
        problems.append(f"{len(chunks)} chunk records found, header says {info.chunk_count}")
    if not end_present:
        problems.append("end record missing (file truncated?)")
    return StreamReport(info, header_size, size, tuple(chunks), end_present, end_ok, tuple(problems))
