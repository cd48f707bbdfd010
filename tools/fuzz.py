"""Fuzz every reader of untrusted ``.nac`` bytes: parser, decompression, decoder.

    python tools/fuzz.py --count 100000 --seed 1
    python tools/fuzz.py --seconds 40 --seed 7 --save-dir /tmp/bad   # what CI runs

A seeded mutation loop (no coverage guidance; the same seed gives the same
inputs). Seeds: the golden vectors in ``tests/vectors/*.nac`` and three files
encoded here with short chunks (so they hold several chunks): mono 8-bit,
stereo 16-bit with stored phase at 22.05 kHz, 8-channel 8-bit at 8 kHz.
Each input is one to three mutations of a seed, drawn from:

* bytes: bit flips, random bytes, truncation, insertion, deletion, sync words
  sprayed in (``NACK``/``NEND``), splicing records or byte ranges of two files;
* forged headers: fields set to extreme values (0, 1, type maximum, limit +- 1,
  sample rate 0, channels over the limit, counts that overflow), header CRC
  recomputed so the field checks, not the CRC, are what gets tested;
* forged chunks with a recomputed chunk CRC: framing fields, corrupt zstd,
  NaN/inf/huge/negative scales, out-of-range codes, other zstd frame options;
* consistent forges: valid containers (``bitstream.pack``) with another chunk
  size, bit width, original rate, model id, or extreme but finite scales, so
  the model and resampler see them;
* forged end records (counts changed, CRC recomputed).

What runs on each input (the "full path"):

* every input: ``api.inspect``, ``api.decode`` (container, model lookup,
  dequantization, model, Griffin-Lim, resampling; the model only runs when the
  container is sound) and ``bitstream.unpack_salvage``;
* every ``--salvage-every``-th input (default 8, so 12.5 %): also
  ``api.decode_salvage``, which runs the model on damaged files too.

Every outcome must be a successful decode or a ``NacError`` subclass. A crash
is any other exception, a stage slower than ``--time-limit`` seconds (2), or a
broken invariant: decoded audio must be finite float32 of the header's shape
and rate; a file ``unpack`` accepts must be intact for ``unpack_salvage`` and
``inspect``; a file ``unpack`` rejects (header sound) must not be intact for
``unpack_salvage``. Crashing inputs are saved to ``--save-dir`` (default
``tests/vectors/bad/``) as ``fuzz-<sha256 prefix>.nac``, one per distinct
crash, and the exit status is 1.

Threads: torch runs single-threaded here by default (``--threads``). Fuzzing
is about robustness, and with other work on the machine, torch's thread pool
can spend seconds waiting for descheduled workers on tiny tensors, which
would drown real hangs in false alarms.

Memory: the harness caps its own address space with ``RLIMIT_AS``. torch
reserves several GB of virtual address space just by importing (thread pools,
allocator arenas, the mapped library), so a fixed 1 GB cap would stop it
before it starts. The harness therefore imports everything, loads the model,
decodes every seed once (so thread pools and arenas exist), reads the
process's ``VmPeak`` from /proc/self/status as the baseline, and sets the
limit to baseline + 1 GiB: any input that needs more than 1 GiB beyond what
the warmed-up decoder already holds fails to allocate, and the resulting
``MemoryError`` (or torch's allocation ``RuntimeError``) counts as a crash.

Limit of the method: a *valid* file can describe long audio in few bytes
(chunks of all-zero codes compress about 25,000:1), and decoding it takes
time and memory in proportion to that audio. The consistent forges therefore
keep streams within a few seconds of audio; the 2 s and 1 GiB bounds are
about hostile structure, not about long but valid files.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import random
import re
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import zstandard  # noqa: E402

from nac import api  # noqa: E402

from nac.format import container  # noqa: E402

from nac.model import zoo  # noqa: E402
from nac.audio import read_audio  # noqa: E402
from nac.errors import NacError  # noqa: E402
from nac.layers.residual import dequantize, quantize  # noqa: E402
from nac.settings import EncoderSettings  # noqa: E402

VECTORS = ROOT / "tests" / "vectors" / "legacy"
CLIP = ROOT / "samples" / "speech-en-allison.flac"
DEFAULT_SAVE_DIR = VECTORS / "bad"
MEMORY_HEADROOM = 2**30  # bytes of address space allowed above the warmed-up baseline
HANG_SECONDS = 30  # SIGALRM aborts an input after this long (a hang; >time_limit is already a crash)

# Header fields the fuzzer forges, per major version -> (offset, struct format), read off the schema
HEADER_FIELDS = {
    major: {name: place for name, place in bitstream.header_layout(major).items()
            if name not in ("magic", "weights_hash", "tables_hash")}
    for major in bitstream.VERSION_MAJORS
}
SPECIAL_SCALES = np.array(
    [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 1e-38, 3.4e38, 1e30, -1.0, 1.0, 65504.0], dtype=np.float32
)


# --------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seed:
    """A sound file and where its records lie (found once, used by the structural mutators)."""

    name: str
    data: bytes
    header_size: int
    records: tuple[tuple[int, int], ...]  # (offset, length) of each chunk record

    @property
    def end_offset(self) -> int:
        return len(self.data) - bitstream.END_SIZE


def make_seed(name: str, data: bytes) -> Seed:
    report = bitstream.scan(data)
    assert report.ok, name
    records = tuple((c.offset, bitstream.CHUNK_OVERHEAD + c.payload_size) for c in report.chunks)
    return Seed(name, data, report.header_size, records)


@contextlib.contextmanager
def chunk_seconds(seconds: float):
    """Encode with short chunks so a fraction of a second holds several."""
    saved = api.CHUNK_SECONDS
    api.CHUNK_SECONDS = seconds
    try:
        yield
    finally:
        api.CHUNK_SECONDS = saved


def load_seeds() -> list[Seed]:
    seeds = [make_seed(path.stem, path.read_bytes()) for path in sorted(VECTORS.glob("*.nac"))]
    clip, rate = read_audio(CLIP)
    with chunk_seconds(0.1):
        mono = clip[:, : rate // 2]
        seeds.append(make_seed("fresh-mono-8bit", api.encode(mono, rate)))
        stereo = api.resample(np.concatenate([clip, -0.5 * clip])[:, rate : rate + rate * 3 // 10], rate, 22050)
        seeds.append(make_seed("fresh-stereo-phase16", api.encode(stereo, 22050, EncoderSettings(bits=16, store_phase=True))))
        eight = api.resample(clip[:, : rate // 5], rate, 8000)
        gains = np.linspace(1.0, -1.0, 8, dtype=np.float32)[:, None]
        seeds.append(make_seed("fresh-8ch-8k", api.encode(gains * eight, 8000)))
        seeds.append(make_seed("fresh-stereo-residual", api.encode(stereo, 22050, EncoderSettings(residual_hz=2000))))
    return seeds


# --------------------------------------------------------------------------
# Helpers to forge records with correct CRCs
# --------------------------------------------------------------------------


def resign_header(head: bytearray) -> bytes:
    size = len(head)
    struct.pack_into("<I", head, size - 4, zlib.crc32(head[: size - 4]))
    return bytes(head)


def chunk_record(index: int, frames: int, raw_size: int, payload: bytes, payload_size: int | None = None) -> bytes:
    size = len(payload) if payload_size is None else payload_size
    record = b"NACK" + struct.pack("<IIII", index, frames, raw_size, size) + payload
    return record + struct.pack("<I", zlib.crc32(record))


def end_record(chunk_count: int, latent_frames: int, sample_count: int) -> bytes:
    record = b"NEND" + struct.pack("<IIQ", chunk_count, latent_frames, sample_count)
    return record + struct.pack("<I", zlib.crc32(record))


def interesting_int(rng: random.Random, fmt: str, current: int) -> int:
    bits = struct.calcsize(fmt) * 8
    top = 2**bits - 1
    choices = [0, 1, 2, top, top - 1, top // 2 + 1, current + 1, current - 1, current * 2, current // 2,
               rng.randrange(top + 1), 7, 8, 9, 16, 255, 256, 1000, 8000, 48000, 192000, 768000, 768001,
               4096, 4097, 65535, 2**31, 2**32, 2**34, 2**34 + 1]
    return min(max(rng.choice(choices), 0), top)


def split_seed(seed: Seed) -> tuple[bitstream.StreamHeader, list[bitstream.Chunk]]:
    return api.unpack(seed.data)


def body_of(seed: Seed, position: int) -> tuple[bytes, bytes]:
    """A chunk's decompressed latent part and (v2; else empty) residual part."""
    offset, _ = seed.records[position]
    payload_size = struct.unpack_from("<I", seed.data, offset + 16)[0]
    payload = seed.data[offset + 20 : offset + 20 + payload_size]
    if seed.data[8] >> 4 == 1:
        return zstandard.ZstdDecompressor().decompress(payload), b""
    (first,) = struct.unpack_from("<I", payload)
    decompress = zstandard.ZstdDecompressor().decompress
    return decompress(payload[4 : 4 + first]), decompress(payload[4 + first :])


# --------------------------------------------------------------------------
# Mutators: (rng, seed, data, seeds) -> bytes. ``data`` may already be mutated.
# --------------------------------------------------------------------------


def flip_bits(rng, seed, data, seeds):
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def random_bytes(rng, seed, data, seeds):
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def truncate(rng, seed, data, seeds):
    return data[: rng.randrange(len(data) + 1)]


def insert_bytes(rng, seed, data, seeds):
    at = rng.randrange(len(data) + 1)
    blob = rng.choice([bytes(rng.randint(1, 64)), rng.randbytes(rng.randint(1, 64)), b"\xff" * rng.randint(1, 64)])
    return data[:at] + blob + data[at:]


def delete_bytes(rng, seed, data, seeds):
    at = rng.randrange(len(data) + 1)
    return data[:at] + data[at + rng.randint(1, 64) :]


def spray_sync(rng, seed, data, seeds):
    """Sync words in bulk: resynchronization must stay linear and never accept garbage."""
    word = rng.choice([b"NACK", b"NEND", b"NACK" + bytes(12) + struct.pack("<I", 40)])
    at = rng.randrange(len(data) + 1)
    return data[:at] + word * rng.choice([1, 2, 10, 1000, 20000]) + data[at:]


def splice_bytes(rng, seed, data, seeds):
    other = rng.choice(seeds).data
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


def splice_records(rng, seed, data, seeds):
    """Swap, drop, duplicate or import whole chunk records (their CRCs stay correct)."""
    records = [seed.data[o : o + n] for o, n in seed.records]
    kind = rng.randrange(4)
    if kind == 0 and len(records) > 1:
        i, j = rng.sample(range(len(records)), 2)
        records[i], records[j] = records[j], records[i]
    elif kind == 1 and records:
        del records[rng.randrange(len(records))]
    elif kind == 2 and records:
        i = rng.randrange(len(records))
        records.insert(i, records[i])
    else:
        donor = rng.choice(seeds)
        if donor.records:
            o, n = rng.choice(donor.records)
            at = rng.randrange(len(records) + 1)
            records[at : at + rng.randint(0, 1)] = [donor.data[o : o + n]]
    tail = seed.data[seed.end_offset :]
    if rng.random() < 0.2:
        tail = rng.choice(seeds).data[-bitstream.END_SIZE :]
    return seed.data[: seed.header_size] + b"".join(records) + tail


def forge_header(rng, seed, data, seeds):
    head = bytearray(seed.data[: seed.header_size])
    fields = HEADER_FIELDS[head[8] >> 4]
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(list(fields))
        offset, fmt = fields[name]
        current = struct.unpack_from(fmt, head, offset)[0]
        if name == "residual_step":
            value = rng.choice([0.0, -0.0, -1.0, float("nan"), float("inf"), 16.0, 16.000002, 1e-45, 3.4e38])
        else:
            value = interesting_int(rng, fmt, current)
        if name == "version":
            value = rng.choice([0x10, 0x11, 0x1F, 0x20, 0x21, 0x30, 0x31, 0x40, 0x00, 0xF0, value])
        struct.pack_into(fmt, head, offset, value)
    return resign_header(head) + seed.data[seed.header_size :]


def forge_minor_version(rng, seed, data, seeds):
    """A newer minor version with appended header fields (must still decode)."""
    head = bytearray(seed.data[: seed.header_size - 4])
    head += rng.randbytes(rng.choice([0, 1, 6, 200]))
    head[8] = (head[8] & 0xF0) | rng.randint(1, 15)  # same major
    head[9] |= rng.choice([0, 0x80, 0xFE])
    struct.pack_into("<H", head, 10, min(len(head) + 4, 65535))
    return resign_header(head + bytes(4)) + seed.data[seed.header_size :]


def forge_chunk_fields(rng, seed, data, seeds):
    """Chunk framing fields changed, chunk CRC recomputed: the checks before zstd."""
    if not seed.records:
        return forge_header(rng, seed, data, seeds)
    position = rng.randrange(len(seed.records))
    offset, length = seed.records[position]
    index, frames, raw_size, payload_size = struct.unpack_from("<IIII", seed.data, offset + 4)
    payload = seed.data[offset + 20 : offset + 20 + payload_size]
    field = rng.randrange(4)
    values = [index, frames, raw_size, payload_size]
    values[field] = interesting_int(rng, "<I", values[field])
    if field == 3:
        record = chunk_record(values[0], values[1], values[2], payload, values[3])
    else:
        record = chunk_record(values[0], values[1], values[2], payload)
    return seed.data[:offset] + record + seed.data[offset + length :]


def forge_code_stream(rng, seed, header, position: int) -> bytes:
    """A v3 payload edited: a scale, the rANS stream's words or its size; the record's CRC recomputed."""
    offset, length = seed.records[position]
    payload = seed.data[offset + 20 : offset + 20 + struct.unpack_from("<I", seed.data, offset + 16)[0]]
    (first,) = struct.unpack_from("<I", payload)
    frame = bytearray(zstandard.ZstdDecompressor().decompress(payload[4 : 4 + first]))
    (second,) = struct.unpack_from("<I", payload, 4 + first)
    stream = bytearray(payload[8 + first : 8 + first + second])
    rest = payload[8 + first + second :]
    kind = rng.randrange(4)
    if kind == 0:  # a scale
        at = 4 * rng.randrange(len(frame) // 4)
        frame[at : at + 4] = SPECIAL_SCALES[rng.randrange(len(SPECIAL_SCALES))].tobytes()
    elif kind == 1:  # words of the code stream
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(stream))
            stream[at] = rng.randrange(256)
    elif kind == 2:  # a stream of another length
        stream = stream[: -rng.choice([1, 2, 4])] if rng.random() < 0.5 else stream + rng.randbytes(rng.choice([1, 2]))
    frame_bytes = zstandard.ZstdCompressor().compress(bytes(frame))
    size = len(stream) + (rng.choice([-2, 2, 10**6]) if kind == 3 else 0)
    payload = struct.pack("<I", len(frame_bytes)) + frame_bytes + struct.pack("<I", max(size, 0)) + stream + rest
    record = chunk_record(position, header.chunk_frames_at(position), bitstream.chunk_body_size(
        header, header.chunk_frames_at(position)), payload)
    return seed.data[:offset] + record + seed.data[offset + length :]


def forge_chunk_body(rng, seed, data, seeds):
    """A decompressed body edited (scales, codes, phase, size), recompressed, CRC recomputed."""
    if not seed.records:
        return forge_header(rng, seed, data, seeds)
    header = bitstream.read_header(seed.data)
    if header.code_range:
        return forge_code_stream(rng, seed, header, rng.randrange(len(seed.records)))
    position = rng.randrange(len(seed.records))
    offset, length = seed.records[position]
    frames = header.chunk_frames_at(position)
    latent, residual = body_of(seed, position)
    body = bytearray(latent)
    scale_bytes = 4 * header.latent_channels
    per_channel = len(body) // header.channels
    for _ in range(rng.randint(1, 4)):
        channel = rng.randrange(header.channels)
        base = channel * per_channel
        kind = rng.randrange(4)
        if kind == 0:  # a scale
            at = base + 4 * rng.randrange(header.latent_channels)
            body[at : at + 4] = SPECIAL_SCALES[rng.randrange(len(SPECIAL_SCALES))].tobytes()
        elif kind == 1:  # a code: the minimum (-128 / -32768) is invalid, the maximum valid
            width = header.bits // 8
            codes = header.latent_channels * header.latent_height * frames
            at = base + scale_bytes + width * rng.randrange(codes)
            value = rng.choice([-(2 ** (8 * width - 1)), 2 ** (8 * width - 1) - 1, 0, -1])
            body[at : at + width] = value.to_bytes(width, "little", signed=True)
        elif kind == 2:  # random bytes anywhere (phase included)
            at = base + rng.randrange(per_channel)
            body[at : at + 4] = rng.randbytes(4)
        else:  # all scales of a channel set to one special value
            body[base : base + scale_bytes] = SPECIAL_SCALES[rng.randrange(len(SPECIAL_SCALES))].tobytes() * (
                header.latent_channels
            )
    if residual and rng.random() < 0.5:  # residual codes: -128 is invalid, the rest valid
        residual = bytearray(residual)
        residual[rng.randrange(len(residual))] = rng.choice([0x80, 0x7F, 0x81, 0x00])
    raw_size = len(body) + len(residual)
    if rng.random() < 0.15:  # body longer or shorter than raw_size
        body = body + bytes(rng.randint(1, 64)) if rng.random() < 0.5 else body[: -rng.randint(1, 16)]
    options = rng.choice([dict(), dict(write_content_size=False), dict(write_checksum=True), dict(level=-5)])
    payload = zstandard.ZstdCompressor(**options).compress(bytes(body))
    if residual:
        payload = struct.pack("<I", len(payload)) + payload + zstandard.ZstdCompressor(**options).compress(residual)
    if rng.random() < 0.1:
        payload = rng.choice([bytes(body), payload + payload, payload[:-1], payload + b"\0"])
    record = chunk_record(position, frames, raw_size, payload)
    return seed.data[:offset] + record + seed.data[offset + length :]


def forge_end(rng, seed, data, seeds):
    header = bitstream.read_header(seed.data)
    counts = [header.chunk_count, header.latent_frames, header.sample_count]
    field = rng.randrange(3)
    counts[field] = interesting_int(rng, "<Q" if field == 2 else "<I", counts[field])
    return seed.data[: seed.end_offset] + end_record(*counts)


def forge_consistent(rng, seed, data, seeds):
    """A valid container the model and resampler must cope with (bitstream.pack checks it)."""
    header, chunks = split_seed(seed)
    if header.latent_frames == 0:
        return forge_header(rng, seed, data, seeds)
    latent = np.concatenate([dequantize(c.codes, c.scales, header.bits) for c in chunks], axis=-1)
    phase = np.concatenate([c.phase for c in chunks], axis=-1) if header.store_phase else None
    residual = np.concatenate([c.residual for c in chunks], axis=-1) if header.residual_bins else None
    changes = {}
    kind = rng.randrange(7)
    if kind == 0:  # another chunk size
        changes["chunk_frames"] = rng.randint(1, header.latent_frames + 2)
    elif kind == 1:  # the other bit width
        changes["bits"] = 24 - header.bits
        if phase is not None:
            phase = (phase.astype(np.int64) * 2**changes["bits"] // 2**header.bits).astype(
                np.uint8 if changes["bits"] == 8 else np.uint16
            )
    elif kind == 2:  # another original rate, sample_count consistent with it
        rate = rng.choice([8000, 8001, 11025, 44100, 96000, 191999, 192000, rng.randint(8000, 192000)])
        changes["original_sample_rate"] = rate
        changes["sample_count"] = header.model_sample_count * rate // header.model_sample_rate
    elif kind == 3:  # a model this build may not have
        changes["model_id"] = rng.choice([0, 2, 65535])
        if rng.random() < 0.5:
            changes["weights_hash"] = rng.randbytes(8)
    elif kind == 4:  # extreme but finite latents: huge scales, full-range codes
        big = rng.choice([3.4e38, 1e30, 1e10, 1e-38, 0.0])
        latent = np.where(rng.random() < 0.5, np.sign(latent) * big, np.full_like(latent, big)).astype(np.float32)
    elif kind == 5 and residual is not None:  # extreme residual: the largest step, codes at the limits
        changes["residual_step"] = rng.choice([16.0, 1e-30])
        residual = np.where(rng.random() < 0.5, residual, rng.choice([127, -127])).astype(np.int8)
    else:  # fewer frames of audio than the header's model (sample_count shrinks)
        changes["sample_count"] = rng.randint(0, header.sample_count)
    header = dataclasses.replace(header, **changes)
    step = header.chunk_frames
    count = -(-header.latent_frames // step)
    header = dataclasses.replace(header, chunk_count=count)
    rebuilt = []
    code_bits = (header.code_range + 1).bit_length() if header.code_range else None  # U = 2^(b-1) - 1
    original = bitstream.read_header(seed.data)
    tables = zoo.load_model(original.model_id).tables_for(original) if original.code_range else None
    for index in range(count):
        span = slice(index * step, min((index + 1) * step, header.latent_frames))
        codes, scales = quantize(latent[..., span], header.bits, code_bits)
        frames = slice(span.start * header.time_stride, span.stop * header.time_stride)
        columns = slice(header.residual_columns(span.start), header.residual_columns(span.stop))
        rebuilt.append(bitstream.Chunk(index, span.stop - span.start, scales, codes,
                                       None if phase is None else phase[..., frames],
                                       None if residual is None else residual[..., columns]))
    return bitstream.pack(header, rebuilt, tables)


STRUCTURAL = [splice_records, forge_header, forge_minor_version, forge_chunk_fields, forge_chunk_body,
              forge_end, forge_consistent]
BYTES = [flip_bits, random_bytes, truncate, insert_bytes, delete_bytes, spray_sync, splice_bytes]


def mutate(rng: random.Random, seeds: list[Seed]) -> tuple[bytes, str]:
    """One input: a seed, an optional structural mutation, then zero to two byte mutations."""
    seed = rng.choice(seeds)
    data, names = seed.data, []
    steps = []
    if rng.random() < 0.6:
        steps.append(rng.choice(STRUCTURAL))
    steps += [rng.choice(BYTES) for _ in range(rng.choice([0, 1, 1, 2]) if steps else rng.choice([1, 1, 2]))]
    for step in steps:
        with np.errstate(all="ignore"):  # forged extreme scales overflow in quantize; that is the point
            data = step(rng, seed, data, seeds)
        names.append(step.__name__)
    return data, f"{seed.name}:{'+'.join(names)}"


# --------------------------------------------------------------------------
# Running one input
# --------------------------------------------------------------------------


class Hang(Exception):
    pass


class Broken(Exception):
    """An invariant of the decoder's results does not hold (not an exception it raised)."""


def _alarm(signum, frame):
    raise Hang(f"no result after {HANG_SECONDS} s")


def check_audio(data: bytes, audio, rate) -> None:
    header = bitstream.read_header(data)
    if not isinstance(audio, np.ndarray) or audio.dtype != np.float32:
        raise Broken(f"decoded audio is {type(audio).__name__} {getattr(audio, 'dtype', '')}")
    if audio.shape != (header.channels, header.sample_count) or rate != header.original_sample_rate:
        raise Broken(f"decoded shape {audio.shape} at {rate} Hz, header says "
                     f"{(header.channels, header.sample_count)} at {header.original_sample_rate} Hz")
    if not np.isfinite(audio).all():
        raise Broken("decoded audio is not finite")


def shipped_tables(header: bitstream.StreamHeader):
    """The code tables of the shipped model a v3 header names (ModelError if there are none)."""
    return zoo.load_model(header.model_id).tables_for(header)


def run_one(data: bytes, full_salvage: bool, time_limit: float, times: dict | None = None) -> dict[str, str]:
    """Outcome of each stage: "ok", the NacError class name, or "CRASH ..." with the reason.

    ``times``, when given, keeps the longest time each stage took (seconds).
    """
    outcomes = {}
    times = {} if times is None else times
    strict_ok = None

    def stage(name, function):
        start = time.perf_counter()
        try:
            result = function()
            outcome = "ok"
        except NacError as err:
            result, outcome = err, type(err).__name__
        except (Broken, Hang) as err:
            result, outcome = None, f"CRASH {type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - anything else is what we are looking for
            tb = traceback.extract_tb(err.__traceback__)[-1]
            result = None
            outcome = f"CRASH {type(err).__name__} at {Path(tb.filename).name}:{tb.lineno}: {str(err)[:200]}"
        elapsed = time.perf_counter() - start
        times[name] = max(times.get(name, 0.0), elapsed)
        if elapsed > time_limit and not outcome.startswith("CRASH"):
            outcome = f"CRASH slow: {name} took {elapsed:.2f} s"
        outcomes[name] = outcome
        return result

    def decode():
        audio, rate = api.decode(data)
        check_audio(data, audio, rate)

    def inspect():
        info = api.inspect(data)
        if strict_ok and not info["intact"]:
            raise Broken("inspect reports damage in a file unpack accepts")

    def salvage_parse():
        result = bitstream.unpack_salvage(data, shipped_tables)
        if strict_ok and not result.intact:
            raise Broken(f"unpack_salvage finds damage in a file unpack accepts: {result.problems[:2]}")
        if strict_ok is False and result.intact:
            raise Broken("unpack_salvage calls intact a file unpack rejects")

    def salvage_decode():
        result = api.decode_salvage(data)
        header = bitstream.read_header(data)
        shape = (header.channels, header.sample_count)
        if result.audio.shape != shape or not np.isfinite(result.audio).all():
            raise Broken(f"salvaged audio {result.audio.shape}, header says {shape}, or not finite")

    signal.alarm(HANG_SECONDS)
    try:
        stage("unpack", lambda: bitstream.unpack(data, shipped_tables))
        strict_ok = outcomes["unpack"] == "ok"
        if outcomes["unpack"] in ("VersionError",):
            strict_ok = None  # no header to salvage from
        stage("inspect", inspect)
        stage("decode", decode)
        stage("salvage_parse", salvage_parse)
        if full_salvage:
            stage("salvage_decode", salvage_decode)
    finally:
        signal.alarm(0)
    return outcomes


# --------------------------------------------------------------------------
# Resource limit and the loop
# --------------------------------------------------------------------------


def vm_peak(field: str = "VmPeak") -> int:
    """Peak virtual memory (or with ``VmHWM``, peak resident memory) of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def limit_memory(headroom: int) -> int:
    """Cap the address space at the current peak plus ``headroom``; returns the cap."""
    cap = vm_peak() + headroom
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


def save_crash(data: bytes, save_dir: Path) -> Path:
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / f"fuzz-{hashlib.sha256(data).hexdigest()[:12]}.nac"
    path.write_bytes(data)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100000, help="inputs to try")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (whichever comes first)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed tries the same inputs")
    parser.add_argument("--salvage-every", type=int, default=8, help="run api.decode_salvage on every Nth input")
    parser.add_argument("--time-limit", type=float, default=2.0, help="seconds one stage may take")
    parser.add_argument("--save-dir", type=Path, default=DEFAULT_SAVE_DIR, help="where crashing inputs go")
    parser.add_argument("--no-memory-limit", action="store_true", help="do not set RLIMIT_AS")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    seeds = load_seeds()
    for seed in seeds:  # warm up: model loaded, thread pools and allocator arenas created
        api.decode(seed.data)
        api.decode_salvage(seed.data)
    if args.no_memory_limit:
        print("memory: no limit")
    else:
        cap = limit_memory(MEMORY_HEADROOM)
        print(f"memory: RLIMIT_AS {cap / 2**30:.2f} GiB = VmPeak after warm-up + {MEMORY_HEADROOM / 2**30:.0f} GiB")
    baseline = vm_peak(), vm_peak("VmHWM")
    print(f"seeds: {', '.join(f'{s.name} ({len(s.data)} B)' for s in seeds)}")
    signal.signal(signal.SIGALRM, _alarm)

    rng = random.Random(args.seed)
    outcomes = collections.defaultdict(collections.Counter)
    crashes: dict[str, tuple[Path, str]] = {}
    slowest = (0.0, "")
    stage_times: dict[str, float] = {}
    start = time.perf_counter()
    tried = 0
    for tried in range(1, args.count + 1):
        data, recipe = mutate(rng, seeds)
        began = time.perf_counter()
        result = run_one(data, tried % args.salvage_every == 0, args.time_limit, stage_times)
        took = time.perf_counter() - began
        if took > slowest[0]:
            slowest = (took, recipe)
        for stage_name, outcome in result.items():
            kind = re.sub(r"[0-9.]+ s$", "N s", outcome.split(" at ")[0]) if outcome.startswith("CRASH") else outcome
            outcomes[stage_name][kind] += 1
            if outcome.startswith("CRASH"):
                key = f"{stage_name}: {re.sub(r'[0-9.]+ s$', 'N s', outcome)}"
                if key not in crashes:
                    crashes[key] = (save_crash(data, args.save_dir), recipe)
                    print(f"crash #{len(crashes)}: {key}\n  input {crashes[key][0]} ({recipe})", flush=True)
        if tried % 5000 == 0:
            rate = tried / (time.perf_counter() - start)
            print(f"  {tried} inputs, {rate:.0f}/s, {len(crashes)} distinct crashes", flush=True)
        if args.seconds is not None and time.perf_counter() - start > args.seconds:
            break
    elapsed = time.perf_counter() - start
    print(f"inputs: {tried} in {elapsed:.1f} s: {tried / elapsed:.1f} inputs/s, "
          f"{1000 * elapsed / tried:.2f} ms per input on average, slowest {slowest[0] * 1000:.0f} ms ({slowest[1]})")
    print(f"memory: peak grew by {(vm_peak() - baseline[0]) / 2**20:.0f} MiB virtual, "
          f"{(vm_peak('VmHWM') - baseline[1]) / 2**20:.0f} MiB resident over the warmed-up decoder")
    for stage_name, counter in outcomes.items():
        summary = ", ".join(f"{name} {count}" for name, count in counter.most_common())
        print(f"  {stage_name} (slowest {stage_times[stage_name] * 1000:.0f} ms): {summary}")
    print(f"crashes: {len(crashes)}")
    for key, (path, recipe) in crashes.items():
        print(f"  {key}\n    {path} ({recipe})")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
