"""Fuzz every reader of untrusted ``.nac`` bytes: header, chunk records, entropy decoders, decoder.

    python tools/fuzz.py --count 100000 --seed 1
    python tools/fuzz.py --seconds 15 --seed 7 --save-dir /tmp/bad   # what CI runs

A seeded mutation loop (no coverage guidance; the same seed gives the same
inputs). Seeds: the golden vectors in ``tests/vectors/*.nac`` (format 9), the
legacy vectors in ``tests/vectors/legacy/*.nac`` (formats 1.0 to 8.0), and
six format 9 files encoded here with short chunks (0.1 s) and small scale
groups (2 or 3 chunks), so that they hold several chunks and groups: mono
with default settings; stereo 16-bit with stored phase at 22.05 kHz; 8
channels at 8 kHz (8-bit zstd codes, the coarse channels a bit narrower);
stereo with a residual layer; a residual layer with bands, a slope, fine
bins and phase hints; speech with silent chunks in the middle. Each input is
one to three mutations of a seed (a format 9 seed in three draws of four),
drawn from:

* bytes (any version): bit flips, random bytes, truncation, insertion,
  deletion, sync words sprayed in (``NACK``/``NEND``), splicing byte ranges
  of two files;
* records (any version): whole chunk records swapped, dropped, duplicated or
  imported from another seed (at the offsets and sizes ``container.scan``
  finds, so their CRCs stay correct); forged end records (counts changed,
  CRC recomputed);
* forged headers (format 9; the header CRC recomputed, so the field checks,
  not the CRC, are what gets tested): fixed fields set to extreme values (0,
  1, type maximum, limit +- 1, counts that overflow), layer descriptor
  fields likewise (sizes, steps NaN/inf/0/huge, bit widths, descriptors of
  the wrong size), companions (unknown role, duplicated, dropped, changed
  hash, one the model has added), the layer list (unknown critical and
  non-critical types, with or without a part in every record, duplicated,
  dropped, reordered, a known type marked non-critical), a newer minor
  version with appended header and descriptor bytes (must still decode);
* forged chunk records (format 9; CRC recomputed): index, flags (peaks,
  silent, reserved bits; a record made silent or given parts consistently),
  peak shift and codes (shift out of range, one carrier's copy disagreeing
  with the other's), part sizes (off by one, huge, padded VarInts), part
  bytes (rANS words, truncated or extended streams, parts swapped between
  records, residual codes re-encoded with an invalid -128, zstd bodies
  edited or recompressed with other frame options, several frames, frames
  declaring other or huge sizes);
* consistent forges (format 9): valid containers (``container.pack``) with
  another chunk size and group size, another original rate (sample_count
  consistent with it), a shorter stream, another model id, weights hash or
  companion hash, extreme but finite peaks (the grid's largest values at the
  largest shift, its least at the least shift) with full-range codes, and
  extreme residual steps and codes, so the model and resampler see them.

What runs on each input (the "full path"):

* every input: the stream's model (``container.read_info`` and
  ``zoo.for_stream``), ``api.unpack`` (``container.open_stream``, strict, and
  every chunk decoded), ``api.inspect``, ``api.decode`` (container, model
  lookup, dequantization, model, residual layer, phase reconstruction,
  resampling; the model only runs when the container is sound) and
  ``container.salvage`` (with the stream's tables when the header and model
  are fine);
* every ``--salvage-every``-th input (default 8, so 12.5 %): also
  ``api.decode_salvage``, which runs the model on damaged files too.

Every outcome must be a successful decode or a ``NacError`` subclass. A crash
is any other exception, a stage slower than ``--time-limit`` seconds (2), or a
broken invariant: decoded audio must be finite float32 of shape (channels,
sample_count) at the original rate of ``container.read_info``; a file
``unpack`` accepts must be intact for ``salvage`` and ``inspect`` and must
decode; a file ``unpack`` rejects (header and model sound) must not be intact
for ``salvage``; salvage lists as lost exactly the chunks it could not
decode, and its audio ends with the last chunk it recovered. Crashing inputs are saved to ``--save-dir`` (default
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
(silent chunks cost a few bytes a second), and decoding it takes time and
memory in proportion to that audio. The consistent forges therefore keep
streams within a few seconds of audio; the 2 s and 1 GiB bounds are about
hostile structure, not about long but valid files.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import io
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

import numpy as np
import torch
import zstandard
from construct import VarInt

from nac import api, codec
from nac.audio import read_audio, resample
from nac.errors import NacError
from nac.format import container, rans, records
from nac.format import header as header_format
from nac.format.container import PEAKS_FLAG, SILENT_FLAG
from nac.format.header import Companion, LayerType, StreamInfo
from nac.format.records import Chunk
from nac.layers import latent as latent_layer
from nac.layers.residual import MAX_STEP, RESIDUAL_LIMIT, SLOPE_ONE, SPAN_ONE
from nac.model import zoo
from nac.settings import EncoderSettings

VECTORS = ROOT / "tests" / "vectors"  # format 9 golden vectors; formats 1.0-8.0 under legacy/
CLIP = ROOT / "samples" / "speech-en-allison.flac"
DEFAULT_SAVE_DIR = ROOT / "tests" / "vectors" / "bad"
MEMORY_HEADROOM = 2**30  # bytes of address space allowed above the warmed-up baseline
HANG_SECONDS = 30  # SIGALRM aborts an input after this long (a hang; >time_limit is already a crash)
SEED_CHUNK_SECONDS = 0.1  # codec.CHUNK_SECONDS for the fresh seeds: 3 latent frames a chunk at 16 kHz
FORMAT9_SHARE = 0.75  # share of inputs made from a format 9 seed (the rest from a legacy vector)

SPECIAL_FLOATS = (0.0, -0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-45, 1e-38, 0.5, 16.0, 16.000002,
                  3.4e38)
ZSTD_OPTIONS = ({"write_content_size": False}, {"write_checksum": True}, {"level": -5}, {"level": 19},
                {"write_dict_id": True})


def _struct_format(sub) -> str:
    """The struct format of a fixed-size construct field (``Ns`` for byte strings and bit structs)."""
    inner = sub
    while not hasattr(inner, "fmtstr") and hasattr(inner, "subcon"):
        inner = inner.subcon
    return getattr(inner, "fmtstr", None) or f"{sub.sizeof()}s"


def _fixed_layout() -> dict[str, tuple[int, str]]:
    """(offset, struct format) of each fixed field of a format 9 header, read off its schema."""
    fields = header_format.HEADER.subcons[0].subcon.subcon  # signed -> RawCopy -> the header's fields
    layout, offset = {}, 0
    for sub in fields.subcons:
        if sub.name == "companions":
            break
        layout[sub.name] = (offset, _struct_format(sub))
        offset += sub.sizeof()
    return layout


# Header fields the fuzzer forges -> (offset, struct format); the version byte as one unsigned byte
HEADER_FIELDS = {name: (offset, "<B" if name == "version" else fmt)
                 for name, (offset, fmt) in _fixed_layout().items() if name != "magic"}
LAYER_SCHEMAS = {LayerType.LATENT: header_format.LATENT_BODY, LayerType.RESIDUAL: header_format.RESIDUAL_BODY,
                 LayerType.STORED_PHASE: header_format.STORED_PHASE_BODY,
                 LayerType.HIGH_BAND: header_format.HIGH_BAND_BODY, LayerType.STEREO: header_format.STEREO_BODY}


# --------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    """A format 9 chunk record's fields (the sizes of its parts follow from them)."""

    index: int
    flags: int
    peaks: bytes  # the shift byte and the peak codes; empty when absent
    parts: list[bytes]  # one per layer in header order; empty for a silent chunk


@dataclasses.dataclass(eq=False)
class Seed:
    """A sound file and where its records lie (found once, used by the structural mutators)."""

    name: str
    data: bytes
    info: StreamInfo
    header_size: int
    records: tuple[tuple[int, int], ...]  # (offset, size) of each chunk record, from container.scan
    parsed: tuple[Record, ...] = ()  # format 9: each record's fields
    tables: container.Tables | None = None  # format 9: the stream's tables
    chunks: tuple[Chunk, ...] = ()  # format 9: each chunk decoded

    @property
    def end_offset(self) -> int:
        return len(self.data) - records.END_SIZE

    @property
    def format9(self) -> bool:
        return not self.info.legacy


def read_record(data: bytes, info: StreamInfo, offset: int) -> Record:
    index, flags = struct.unpack_from("<IB", data, offset + 4)
    position, peaks, parts = offset + 9, b"", []
    if flags & PEAKS_FLAG:
        size = 1 + info.coded_channels * info.latent.latent_channels
        peaks, position = data[position : position + size], position + size
    if not flags & SILENT_FLAG:
        stream = io.BytesIO(data)
        stream.seek(position)
        for _ in info.parts:
            parts.append(stream.read(VarInt.parse_stream(stream)))
    return Record(index, flags, peaks, parts)


def make_seed(name: str, data: bytes) -> Seed:
    report = container.scan(data)
    assert report.ok, name
    info, header_size = container.read_info(data)
    offsets = tuple((c.offset, c.size) for c in report.chunks)
    seed = Seed(name, data, info, header_size, offsets)
    if seed.format9:
        for field, (offset, fmt) in HEADER_FIELDS.items():  # the layout read off the schema fits the file
            if field != "version" and hasattr(info, field):
                assert struct.unpack_from(fmt, data, offset)[0] == getattr(info, field), field
        seed.parsed = tuple(read_record(data, info, offset) for offset, _ in offsets)
        seed.tables = zoo.for_stream(info).tables
        seed.chunks = tuple(container.unpack(data, seed.tables)[1])
    return seed


@contextlib.contextmanager
def short_chunks(seconds: float, group: int):
    """Encode with short chunks and small scale groups, so a fraction of a second holds several of each."""
    saved = codec.CHUNK_SECONDS, codec.GROUP_CHUNKS
    codec.CHUNK_SECONDS, codec.GROUP_CHUNKS = seconds, group
    try:
        yield
    finally:
        codec.CHUNK_SECONDS, codec.GROUP_CHUNKS = saved


def load_seeds() -> list[Seed]:
    seeds = [make_seed(path.stem, path.read_bytes()) for path in sorted(VECTORS.glob("*.nac"))]
    seeds += [make_seed(f"legacy-{path.stem}", path.read_bytes()) for path in sorted((VECTORS / "legacy").glob("*.nac"))]
    clip, rate = read_audio(CLIP)
    stereo = resample(np.concatenate([clip, -0.5 * clip])[:, rate : rate + rate * 3 // 10], rate, 22050)
    silent = clip[:, : rate * 6 // 10].copy()
    silent[:, 2800:6500] = 0.0  # chunks 2 and 3 (of 0.096 s): a group's last chunk and the next group's first
    eight = resample(clip[:, : rate // 5], rate, 8000)
    gains = np.linspace(1.0, -1.0, 8, dtype=np.float32)[:, None]
    hints = EncoderSettings(residual_hz=4000, residual_bands_hz=1000, residual_fine_hz=500, phase_hint_hz=500,
                            residual_slope=0.2)
    fresh = [  # name, group chunks, audio, rate, settings
        ("fresh-mono", 3, clip[:, : rate // 2], rate, EncoderSettings()),
        ("fresh-stereo-phase16", 2, stereo, 22050, EncoderSettings(bits=16, store_phase=True)),
        ("fresh-8ch-8k", 3, gains * eight, 8000, EncoderSettings(code_bits=8, coarse_channels=8)),
        ("fresh-stereo-residual", 3, stereo, 22050, EncoderSettings(residual_hz=2000)),
        ("fresh-residual-hints", 2, clip[:, : rate * 4 // 10], rate, hints),
        ("fresh-silent-chunks", 3, silent, rate, EncoderSettings()),
        ("fresh-fullband-stereo", 2, resample(np.concatenate([clip, 0.5 * clip])[:, rate : rate * 13 // 10], rate,
                                              48000), 48000,
         EncoderSettings(code_bits=4, residual_hz=2000, high_band_hz=20000, high_bands=4, stereo_bands=6)),
    ]
    for name, group, audio, audio_rate, settings in fresh:
        with short_chunks(SEED_CHUNK_SECONDS, group):
            seeds.append(make_seed(name, api.encode(audio, audio_rate, settings)))
    return seeds


# --------------------------------------------------------------------------
# Helpers to forge records with correct CRCs
# --------------------------------------------------------------------------


def crc(body: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(body))


def resign(data: bytes, end: int) -> bytes:
    """``data`` with a correct CRC in the 4 bytes before ``end`` (over everything before them)."""
    end = min(max(end, 4), len(data))
    return data[: end - 4] + crc(data[: end - 4]) + data[end:]


def varint(value: int, padding: int = 0) -> bytes:
    """``value`` as a VarInt (LEB128), with ``padding`` redundant continuation bytes (a non-minimal encoding)."""
    out = bytearray(VarInt.build(value))
    if padding:
        out[-1] |= 0x80
        out += b"\x80" * (padding - 1) + b"\x00"
    return bytes(out)


def record_bytes(record: Record, sizes: list[bytes] | None = None) -> bytes:
    """A chunk record with its CRC; ``sizes`` (encoded) replace the parts' own sizes."""
    sizes = sizes if sizes is not None else [varint(len(part)) for part in record.parts]
    body = b"NACK" + struct.pack("<IB", record.index, record.flags) + record.peaks + b"".join(
        size + part for size, part in zip(sizes, record.parts))
    return body + crc(body)


def end_record(chunk_count: int, latent_frames: int, sample_count: int) -> bytes:
    record = b"NEND" + struct.pack("<IIQ", chunk_count, latent_frames, sample_count)
    return record + crc(record)


def replace_record(seed: Seed, position: int, record: bytes) -> bytes:
    offset, size = seed.records[position]
    return seed.data[:offset] + record + seed.data[offset + size :]


def with_records(seed: Seed, edit) -> bytes:
    """The seed with every record passed through ``edit(position, Record) -> Record``, CRCs recomputed."""
    body = b"".join(record_bytes(edit(position, dataclasses.replace(record, parts=list(record.parts))))
                    for position, record in enumerate(seed.parsed))
    return seed.data[: seed.header_size] + body + seed.data[seed.end_offset :]


def parse_header(seed: Seed):
    """The header's fields as construct parses them (a Container to edit and give to :func:`build_header`)."""
    return header_format.HEADER.parse(seed.data[: seed.header_size]).signed.value


def build_header(value) -> bytes:
    """Header bytes of edited fields: header_size and the CRC follow from them."""
    return header_format.HEADER.build({"signed": {"value": value}})


def interesting_int(rng: random.Random, fmt: str, current: int) -> int:
    bits = struct.calcsize(fmt) * 8
    top = 2**bits - 1
    choices = [0, 1, 2, 3, top, top - 1, top // 2, top // 2 + 1, current + 1, current - 1, current * 2,
               current // 2, rng.randrange(top + 1), 7, 8, 9, 15, 16, 17, 48, 63, 64, 65, 127, 128, 255, 256,
               512, 513, 999, 1000, 1024, 1025, 4096, 4097, 7999, 8000, 32768, 48000, 65535, 192000, 192001,
               768000, 768001, 2**31, 2**32, 2**34, 2**34 + 1, 2**63]
    return min(max(rng.choice(choices), 0), top)


def zstd_raw_frame(body: bytes, declared: int) -> bytes:
    """A zstd frame of raw blocks holding ``body`` whose header declares ``declared`` content bytes."""
    frame = records.ZSTD_FRAME_MAGIC + bytes([0xE0]) + struct.pack("<Q", declared)  # single segment, 8-byte size
    pieces = [body[i : i + 2**17] for i in range(0, len(body), 2**17)] or [b""]
    for number, piece in enumerate(pieces):
        last = number == len(pieces) - 1
        frame += struct.pack("<I", len(piece) << 3 | last)[:3] + piece
    return frame


def zstd_parts(info: StreamInfo) -> dict[int, np.dtype]:
    """Part positions coded as zstd frames -> the dtype of their decompressed body."""
    kinds = {}
    for position, kind in enumerate(info.parts):
        if kind == LayerType.LATENT and not info.latent.entropy_coded:
            kinds[position] = info.latent.code_dtype.newbyteorder("<")
        elif kind == LayerType.STORED_PHASE:
            kinds[position] = np.dtype(np.uint8 if info.stored_phase_bits == 8 else "<u2")
    return kinds


# --------------------------------------------------------------------------
# Byte mutators, any version: (rng, seed, data, seeds) -> bytes. ``data`` may already be mutated.
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
    word = rng.choice([b"NACK", b"NEND", b"NACK" + bytes(12) + struct.pack("<I", 40),  # a legacy record's head
                       b"NACK" + bytes(4) + b"\x00\x7f", b"NACK" + bytes(4) + b"\x01"])  # format 9 heads
    at = rng.randrange(len(data) + 1)
    return data[:at] + word * rng.choice([1, 2, 10, 1000, 20000]) + data[at:]


def splice_bytes(rng, seed, data, seeds):
    other = rng.choice(seeds).data
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


# --------------------------------------------------------------------------
# Structural mutators, any version: whole records, the end record
# --------------------------------------------------------------------------


def splice_records(rng, seed, data, seeds):
    """Swap, drop, duplicate or import whole chunk records (their CRCs stay correct)."""
    records_ = [seed.data[o : o + n] for o, n in seed.records]
    kind = rng.randrange(4)
    if kind == 0 and len(records_) > 1:
        i, j = rng.sample(range(len(records_)), 2)
        records_[i], records_[j] = records_[j], records_[i]
    elif kind == 1 and records_:
        del records_[rng.randrange(len(records_))]
    elif kind == 2 and records_:
        i = rng.randrange(len(records_))
        records_.insert(i, records_[i])
    else:
        donor = rng.choice(seeds)
        if donor.records:
            o, n = rng.choice(donor.records)
            at = rng.randrange(len(records_) + 1)
            records_[at : at + rng.randint(0, 1)] = [donor.data[o : o + n]]
    tail = seed.data[seed.end_offset :]
    if rng.random() < 0.2:
        tail = rng.choice(seeds).data[-records.END_SIZE :]
    return seed.data[: seed.header_size] + b"".join(records_) + tail


def forge_end(rng, seed, data, seeds):
    counts = list(struct.unpack_from("<IIQ", seed.data, seed.end_offset + 4))
    field = rng.randrange(3)
    counts[field] = interesting_int(rng, "<Q" if field == 2 else "<I", counts[field])
    return seed.data[: seed.end_offset] + end_record(*counts)


# --------------------------------------------------------------------------
# Header mutators, format 9 (the header's CRC recomputed)
# --------------------------------------------------------------------------


def forge_header(rng, seed, data, seeds):
    """Fixed fields set to extreme values (header_size: the CRC placed where the forged size puts it)."""
    head = bytearray(seed.data[: seed.header_size])
    end = seed.header_size
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(list(HEADER_FIELDS))
        offset, fmt = HEADER_FIELDS[name]
        if name == "weights_hash":
            value = rng.choice([bytes(8), b"\xff" * 8, rng.randbytes(8)])
        elif name == "version":
            value = rng.choice([0x90, 0x91, 0x9F, 0x80, 0x81, 0x8F, 0x10, 0x40, 0x70, 0xA0, 0xF0, 0x00, 0x09])
        else:
            value = interesting_int(rng, fmt, struct.unpack_from(fmt, head, offset)[0])
        struct.pack_into(fmt, head, offset, value)
        if name == "header_size":
            end = value
    return resign(bytes(head) + seed.data[seed.header_size :], end if 4 <= end <= len(seed.data) else seed.header_size)


def forge_layer_fields(rng, seed, data, seeds):
    """A layer descriptor's field set to an extreme value, or the descriptor cut short or lengthened."""
    value = parse_header(seed)
    layer = rng.choice(value.layers)
    schema = LAYER_SCHEMAS[layer.kind.type]
    body = schema.parse(layer.body)
    kind = rng.randrange(8)
    if kind == 0:  # a descriptor of the wrong size (a 9.0 header must have the exact size)
        layer.body = layer.body[: -rng.randint(1, 2)] if rng.random() < 0.5 else layer.body + rng.randbytes(
            rng.choice([1, 4]))
        return build_header(value) + seed.data[seed.header_size :]
    if schema is header_format.LATENT_BODY and kind == 1:  # narrower bits: all, past the last channel, random
        width = len(body.narrower)
        body.narrower = rng.choice([b"\xff" * width, rng.randbytes(width), bytes(width - 1) + b"\x80"])
    else:
        for _ in range(rng.randint(1, 2)):
            sub = rng.choice([sub for sub in schema.subcons if sub.name != "narrower"])
            if sub.name == "edges":  # band edges: one extreme, out of order, one dropped or repeated
                edges = list(body.edges)
                change = rng.randrange(3)
                if change == 0 and edges:
                    edges[rng.randrange(len(edges))] = interesting_int(rng, "<H", 0)
                elif change == 1:
                    rng.shuffle(edges)
                elif edges:
                    index = rng.randrange(len(edges))
                    edges = edges[:index] + edges[index + 1 :] if rng.random() < 0.5 else edges + [edges[index]]
                body.edges = edges
                continue
            fmt = _struct_format(sub)
            if fmt == "<f":
                body[sub.name] = rng.choice(SPECIAL_FLOATS)
            else:
                body[sub.name] = interesting_int(rng, fmt, body[sub.name])
        if schema is header_format.LATENT_BODY:  # keep the narrower bits' length the channels' (or not)
            width = (body.latent_channels + 7) // 8
            body.narrower = bytes(width) if rng.random() < 0.8 else rng.randbytes(width)
    layer.body = schema.build(body)
    return build_header(value) + seed.data[seed.header_size :]


def forge_companions(rng, seed, data, seeds):
    """Companions: an unknown role, one duplicated, dropped, reordered, its hash changed, or one added."""
    value = parse_header(seed)
    companions = list(value.companions)
    known = zoo.load_model(seed.info.model_id).companions
    kind = rng.randrange(6)
    if kind == 0:
        companions.insert(rng.randint(0, len(companions)),
                          {"role": rng.choice([0, 4, 5, 127, 128, 255]), "hash": rng.randbytes(8)})
    elif kind == 1 and companions:
        companions.append(dict(rng.choice(companions)))
    elif kind == 2 and companions:
        del companions[rng.randrange(len(companions))]
    elif kind == 3 and len(companions) > 1:
        rng.shuffle(companions)
    elif kind == 4 and companions:
        chosen = rng.randrange(len(companions))
        companions[chosen] = {"role": companions[chosen].role, "hash": rng.randbytes(8)}
    else:  # a role the stream does not list, with the model's hash (or another)
        role = rng.choice(list(Companion))
        digest = known.get(role, rng.randbytes(8)) if rng.random() < 0.8 else rng.randbytes(8)
        companions.append({"role": role, "hash": digest})
    value.companions = companions
    return build_header(value) + seed.data[seed.header_size :]


def forge_layers(rng, seed, data, seeds):
    """The layer list: unknown types (critical or not, with a part in every record or not), a layer duplicated,
    dropped, reordered (with the parts or not), a known type marked non-critical, a descriptor added."""
    value = parse_header(seed)
    layers = list(value.layers)
    kind = rng.randrange(8)
    edit = None  # what the records need to stay consistent with the new list, when they should
    if kind in (0, 1):  # an unknown type
        layer = {"kind": {"critical": kind == 0, "type": rng.choice([0, 4, 5, 64, 127])},
                 "body": rng.choice([b"", rng.randbytes(rng.choice([1, 7, 200]))])}
        at = rng.randint(1 if rng.random() < 0.9 else 0, len(layers))
        layers.insert(at, layer)
        if rng.random() < 0.7:
            part = rng.choice([b"", rng.randbytes(rng.choice([1, 16, 300])), zstandard.compress(b"x" * 50)])

            def edit(position, record):
                if record.parts:
                    record.parts.insert(at, part)
                return record
    elif kind == 2:  # a layer listed twice
        layers.insert(rng.randint(0, len(layers)), rng.choice(layers))
    elif kind == 3:  # a layer dropped (its parts kept or dropped)
        at = rng.randrange(len(layers))
        del layers[at]
        if rng.random() < 0.5:

            def edit(position, record):
                if record.parts:
                    del record.parts[at]
                return record
    elif kind == 4 and len(layers) > 1:  # reordered (the parts too, mostly: then the file stays valid)
        order = list(range(len(layers)))
        while order == sorted(order):
            rng.shuffle(order)
        layers = [layers[i] for i in order]
        if rng.random() < 0.8:

            def edit(position, record):
                if record.parts:
                    record.parts = [record.parts[i] for i in order]
                return record
    elif kind == 5:  # a known type marked non-critical
        at = rng.randrange(len(layers))
        layers[at] = {"kind": {"critical": False, "type": layers[at].kind.type}, "body": layers[at].body}
    else:  # a known descriptor the stream does not have, from another seed
        donor = rng.choice([s for s in seeds if s.format9])
        layers.append(rng.choice(parse_header(donor).layers))
    value.layers = layers
    head = build_header(value)
    if edit is None:
        return head + seed.data[seed.header_size :]
    return head + with_records(seed, edit)[seed.header_size :]


def forge_minor_version(rng, seed, data, seeds):
    """A newer minor version: flags, appended header bytes and appended descriptor fields (must still decode)."""
    value = parse_header(seed)
    value.version.minor = rng.randint(1, 15)
    value.flags = rng.choice([0, 1, 0x80, 0xFF])
    value.extension = rng.randbytes(rng.choice([0, 1, 6, 200]))
    for layer in value.layers:
        if rng.random() < 0.3:
            layer.body = layer.body + rng.randbytes(rng.choice([1, 3, 40]))
    return build_header(value) + seed.data[seed.header_size :]


# --------------------------------------------------------------------------
# Chunk record mutators, format 9 (the record's CRC recomputed)
# --------------------------------------------------------------------------


def pick_record(rng, seed, with_parts: bool = False) -> int | None:
    positions = [p for p, r in enumerate(seed.parsed) if r.parts or not with_parts]
    return rng.choice(positions) if positions else None


def forge_chunk_fields(rng, seed, data, seeds):
    """Index, flags or part sizes changed; or a record made silent, or a silent one given parts."""
    position = pick_record(rng, seed)
    if position is None:
        return forge_header(rng, seed, data, seeds)
    record = dataclasses.replace(seed.parsed[position], parts=list(seed.parsed[position].parts))
    sizes = None
    kind = rng.randrange(6)
    if kind == 0:
        record.index = rng.choice([interesting_int(rng, "<I", record.index), rng.randrange(len(seed.parsed) + 1)])
    elif kind == 1:  # flag bits: peaks, silent, reserved
        record.flags ^= rng.choice([PEAKS_FLAG, SILENT_FLAG, 0x04, 0x80, 0xFC, PEAKS_FLAG | SILENT_FLAG])
    elif kind == 2:  # peaks added where they must not be, dropped where they must be
        if record.peaks:
            record.peaks, record.flags = b"", record.flags & ~PEAKS_FLAG
        else:
            record.peaks = next((r.peaks for r in seed.parsed if r.peaks), b"\x00\x01")
            record.flags |= PEAKS_FLAG
    elif kind == 3:  # made silent (a valid file) or a silent chunk given parts
        if record.parts:
            record.parts, record.flags = [], record.flags | SILENT_FLAG
        else:
            donor = pick_record(rng, seed, with_parts=True)
            if donor is not None:
                record.parts, record.flags = list(seed.parsed[donor].parts), record.flags & ~SILENT_FLAG
    elif record.parts:  # part sizes: off by one, huge, padded
        sizes = [varint(len(part)) for part in record.parts]
        at = rng.randrange(len(sizes))
        size = len(record.parts[at])
        forged = rng.choice([size + 1, size - 1, 0, 2**31, 2**32, 2**63, 2**64 + size, size])
        sizes[at] = varint(max(forged, 0), rng.choice([0, 0, 1, 9]))
    return replace_record(seed, position, record_bytes(record, sizes))


def forge_peaks(rng, seed, data, seeds):
    """A group's peak shift or codes changed in one carrier (the copies disagree) or in both."""
    carriers = [p for p, r in enumerate(seed.parsed) if r.peaks]
    if not carriers:
        return forge_chunk_fields(rng, seed, data, seeds)
    group = seed.info.group(seed.parsed[rng.choice(carriers)].index)
    targets = [p for p in carriers if seed.parsed[p].index in group]
    if rng.random() < 0.4:
        targets = [rng.choice(targets)]
    peaks = bytearray(seed.parsed[targets[0]].peaks)
    kind = rng.randrange(3)
    if kind == 0:
        shift = rng.choice([-128, -121, latent_layer.MIN_SHIFT, -1, 0, 1, latent_layer.MAX_SHIFT, 101, 127])
        peaks[0] = shift & 0xFF
    else:
        for _ in range(rng.randint(1, 4)):
            peaks[rng.randrange(1, len(peaks))] = rng.choice([0, 1, 255, rng.randrange(256)])
        if kind == 2:  # every code at once
            value = rng.choice([0, 1, 255])
            peaks[1:] = bytes([value]) * (len(peaks) - 1)
    out = seed.data
    for position in sorted(targets, reverse=True):  # later records first: earlier offsets stay put
        record = dataclasses.replace(seed.parsed[position], peaks=bytes(peaks))
        offset, size = seed.records[position]
        out = out[:offset] + record_bytes(record) + out[offset + size :]
    return out


def forge_part(rng, seed, data, seeds):
    """A part's bytes edited: rANS words, a stream cut short or extended, parts swapped, residual codes
    re-encoded with an invalid code, zstd bodies edited or recompressed, frames with other options or sizes."""
    position = pick_record(rng, seed, with_parts=True)
    if position is None:
        return forge_chunk_fields(rng, seed, data, seeds)
    record = dataclasses.replace(seed.parsed[position], parts=list(seed.parsed[position].parts))
    at = rng.randrange(len(record.parts))
    part = bytearray(record.parts[at])
    kind = seed.info.parts[at]
    zstd_dtype = zstd_parts(seed.info).get(at)
    choice = rng.randrange(6)
    if choice == 0:  # words overwritten (the first two are a rANS stream's starting state)
        for _ in range(rng.randint(1, 4)):
            if len(part) >= 2:
                word = 2 * rng.randrange(min(len(part) // 2, 2) if rng.random() < 0.3 else len(part) // 2)
                part[word : word + 2] = rng.choice([b"\x00\x00", b"\xff\xff", b"\x00\x01", rng.randbytes(2)])
    elif choice == 1:  # cut short or extended
        part = part[: -rng.choice([1, 2, 4, len(part) or 1])] if rng.random() < 0.5 else part + rng.choice(
            [b"\x00", b"\x00\x00", b"\xff\xff", b"\x00\x00\x01\x00", rng.randbytes(64)])
    elif choice == 2:  # the same layer's part of another record
        donor = pick_record(rng, seed, with_parts=True)
        part = bytearray(seed.parsed[donor].parts[at])
    elif choice == 3 and kind == LayerType.RESIDUAL:  # re-encoded with codes the decoder must refuse or take
        chunk = seed.chunks[record.index]
        codes = chunk.residual.astype(np.int64)
        flat = codes.reshape(-1)
        for _ in range(rng.randint(1, 3)):
            flat[rng.randrange(flat.size)] = rng.choice([-128, -RESIDUAL_LIMIT, RESIDUAL_LIMIT, 7, -7])
        part = bytearray(rans.encode_residual(codes, *container.residual_contexts(seed.info),
                                              counts=seed.tables.residual_counts))
    elif zstd_dtype is not None:  # a zstd frame: the body edited, recompressed with other options or sizes
        body = bytearray(zstandard.ZstdDecompressor().decompress(bytes(part)))
        width = zstd_dtype.itemsize
        if kind == LayerType.LATENT and rng.random() < 0.7:  # codes at and past the limits
            limit = seed.info.latent.code_range  # the widest channels' (a narrower channel's is less)
            for _ in range(rng.randint(1, 4)):
                where = width * rng.randrange(len(body) // width)
                lowest, highest = -(2 ** (8 * width - 1)), 2 ** (8 * width - 1) - 1
                value = rng.choice([lowest, highest, limit, -limit, min(limit + 1, highest), 0])
                body[where : where + width] = int(value).to_bytes(width, "little", signed=True)
        elif body:
            where = rng.randrange(len(body))
            body[where : where + 4] = rng.randbytes(4)
        if rng.random() < 0.2:
            body = body + bytes(rng.randint(1, 64)) if rng.random() < 0.5 else body[: -rng.randint(1, 16)]
        how = rng.randrange(6)
        if how == 0:
            part = bytearray(zstd_raw_frame(bytes(body), rng.choice(
                [len(body), len(body) + 1, max(len(body) - 1, 0), 2**32, 2**40, 2**64 - 1])))
        elif how == 1:  # two frames, or a frame with trailing bytes, or none at all
            frame = zstandard.ZstdCompressor().compress(bytes(body))
            part = bytearray(rng.choice([frame + frame, frame + b"\0", frame[:-1], bytes(body),
                                         b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + bytes(4) + frame]))
        else:
            part = bytearray(zstandard.ZstdCompressor(**rng.choice(ZSTD_OPTIONS)).compress(bytes(body)))
    else:  # random bytes anywhere
        for _ in range(rng.randint(1, 4)):
            if part:
                part[rng.randrange(len(part))] = rng.randrange(256)
    record.parts[at] = bytes(part)
    return replace_record(seed, position, record_bytes(record))


# --------------------------------------------------------------------------
# Consistent forges, format 9: valid containers the model and resampler must cope with
# --------------------------------------------------------------------------


def seed_signal(seed: Seed) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, dict]:
    """(latent float32 (C, K, H, T), silent frames (T,) bool, residual codes (C, rows, columns), stored phase
    (C, bins, STFT frames), the fullband layers' codes by name (., ., T)) of a format 9 seed, silent chunks as
    zeros; C is the coded channels."""
    info = seed.info
    latent, silent, residual, phase = [], [], [], []
    bands = {name: [] for name, layer in (("high_band", info.high_band), ("stereo", info.stereo)) if layer}
    rows = {"high_band": (info.coded_channels, info.high_band.bands) if info.high_band else None,
            "stereo": (1, info.stereo.code_rows) if info.stereo else None}
    shape = (info.coded_channels, info.latent.latent_channels, info.latent.latent_height)
    for chunk in seed.chunks:
        frames = chunk.frames
        stft = frames * info.time_stride
        silent.append(np.full(frames, chunk.silent))
        latent.append(np.zeros(shape + (frames,), np.float32) if chunk.silent
                      else latent_layer.dequantize(chunk.codes, chunk.steps))
        if info.residual is not None:
            rows, columns = info.residual.code_rows, info.residual.columns(stft)
            residual.append(np.zeros((info.coded_channels, rows, columns), np.int8) if chunk.silent
                            else chunk.residual)
        if info.stored_phase_bits:
            dtype = np.uint8 if info.stored_phase_bits == 8 else np.uint16
            phase.append(np.zeros((info.coded_channels, info.phase_bins, stft), dtype) if chunk.silent else chunk.phase)
        for name, pieces in bands.items():
            pieces.append(np.zeros(rows[name] + (frames,), np.int64) if chunk.silent else getattr(chunk, name))
    latent = np.concatenate([np.zeros(shape + (0,), np.float32), *latent], axis=-1)
    return (latent, np.concatenate([np.zeros(0, bool), *silent]),
            np.concatenate(residual, axis=-1) if residual else None, np.concatenate(phase, axis=-1) if phase else None,
            {name: np.concatenate(pieces, axis=-1) for name, pieces in bands.items()})


def rebuild(info: StreamInfo, latent, silent, residual, phase, bands, tables, shape_group=None) -> bytes:
    """``container.pack`` of the signal re-chunked and re-quantized for ``info``; ``shape_group(codes, peaks)``
    may replace each group's codes and peaks."""
    chunks = []
    columns = (lambda frame: info.residual.columns(frame * info.time_stride)) if info.residual else None
    for first in range(0, info.chunk_count, info.group_chunks):
        group = info.group(first)
        start, stop = group.start * info.chunk_frames, min(group.stop * info.chunk_frames, info.latent_frames)
        codes, peaks = latent_layer.quantize(latent[..., start:stop], info.latent)
        if shape_group is not None:
            codes, peaks = shape_group(codes, peaks)
        steps = latent_layer.steps(peaks, info.latent)
        for index in group:
            a = index * info.chunk_frames
            b = a + info.chunk_frames_at(index)
            if silent[a:b].all():
                chunks.append(Chunk(index, b - a, steps, None, peaks=peaks))
                continue
            chunks.append(Chunk(
                index, b - a, steps, codes[..., a - start : b - start],
                None if phase is None else phase[..., a * info.time_stride : b * info.time_stride],
                None if residual is None else residual[..., columns(a) : columns(b)], peaks,
                **{name: codes_of[..., a:b] for name, codes_of in bands.items()}))
    return container.pack(info, chunks, tables)


def extreme_peaks(rng: random.Random, params):
    """A ``shape_group`` of extreme but valid latents: peaks at the grid's largest values and largest shift, or
    at its least values and least shift, some channels 0; codes over their full range."""
    largest = rng.random() < 0.5
    shift = latent_layer.MAX_SHIFT if largest else latent_layer.MIN_SHIFT
    mix = rng.random() < 0.5

    def shape(codes, peaks):
        top = np.full(peaks.shape, 255 if largest else rng.choice([1, 16, 255]), np.intp)
        if mix:
            top = np.where(np.random.default_rng(rng.randrange(2**32)).random(peaks.shape) < 0.3, 0, top)
            top.flat[0] = 255  # the largest peak sets the shift
        peaks = latent_layer.decode_peaks(shift, top)
        limits = params.limits.reshape(1, -1, 1, 1)
        signs = np.where(np.random.default_rng(rng.randrange(2**32)).random(codes.shape) < 0.5, -1, 1)
        full = limits * signs if rng.random() < 0.7 else np.broadcast_to(limits, codes.shape)
        full = np.where((peaks > 0)[..., None, None], full, 0)
        return full.astype(params.code_dtype), peaks

    return shape


def forge_consistent(rng, seed, data, seeds):
    """A valid container (``container.pack`` checks it) that differs from the seed in a way a decoder must
    cope with: chunking, original rate, length, model identity, extreme peaks, codes or residual steps."""
    info = seed.info
    if info.latent_frames == 0:
        return forge_header(rng, seed, data, seeds)
    latent, silent, residual, phase, bands = seed_signal(seed)
    shape_group = None
    kind = rng.randrange(6)
    if kind == 0:  # another chunk size and group size
        info = dataclasses.replace(info, chunk_frames=rng.randint(1, info.latent_frames + 2),
                                   group_chunks=rng.choice([1, 2, 3, rng.randint(1, 10), 64]))
    elif kind == 1:  # another original rate, sample_count consistent with it
        rate = rng.choice([8000, 8001, 11025, 44100, 96000, 191999, 192000, rng.randint(8000, 192000)])
        target = info.model_sample_count * rate / info.model_sample_rate
        for count in sorted(range(max(0, int(target) - 3), int(target) + 4), key=lambda c: abs(c - target)):
            derived = header_format.derived_counts(count, rate, info.model_sample_rate, info.n_fft, info.hop_length,
                                                   info.time_stride, info.chunk_frames)
            if derived["model_sample_count"] == info.model_sample_count:
                info = dataclasses.replace(info, original_sample_rate=rate, sample_count=count)
                break
    elif kind == 2:  # a shorter stream (the signal cut to what is left)
        info = dataclasses.replace(info, sample_count=rng.randint(0, info.sample_count))
    elif kind == 3:  # a model, weights or companion this build may not have
        change = rng.randrange(3)
        if change == 0:
            info = dataclasses.replace(info, model_id=rng.choice([0, 1, 2, 4, 6, 65535]))
        elif change == 1:
            info = dataclasses.replace(info, weights_hash=rng.randbytes(8))
        elif info.companions:
            companions = list(info.companions)
            at = rng.randrange(len(companions))
            companions[at] = (companions[at][0], rng.randbytes(8))
            info = dataclasses.replace(info, companions=tuple(companions))
    elif kind == 4 or info.residual is None:  # extreme but finite peaks, full-range codes (phase at its limits)
        shape_group = extreme_peaks(rng, info.latent)
        if phase is not None:
            phase = np.full_like(phase, np.iinfo(phase.dtype).max) if rng.random() < 0.5 else phase
    else:  # extreme residual steps and codes at the limits
        layer = info.residual
        big = rng.random() < 0.5
        step = float(np.float32(MAX_STEP if big else 1e-30))
        changes = {"step": step, "fine_step": step if layer.fine_bins else 0.0}
        if rng.random() < 0.5:
            changes.update(slope=SLOPE_ONE, span=16 * SPAN_ONE)
        info = dataclasses.replace(info, residual=dataclasses.replace(layer, **changes))
        limit = rng.choice([RESIDUAL_LIMIT, -RESIDUAL_LIMIT])
        residual = np.where(np.random.default_rng(rng.randrange(2**32)).random(residual.shape) < 0.5, residual,
                            limit).astype(np.int8)
    info = dataclasses.replace(info, **header_format.derived_counts(
        info.sample_count, info.original_sample_rate, info.model_sample_rate, info.n_fft, info.hop_length,
        info.time_stride, info.chunk_frames))
    with np.errstate(all="ignore"):  # extreme peaks overflow in quantize; that is the point
        return rebuild(info, latent, silent, residual, phase, bands, seed.tables, shape_group)


STRUCTURAL = [splice_records, forge_end, forge_header, forge_layer_fields, forge_companions, forge_layers,
              forge_minor_version, forge_chunk_fields, forge_peaks, forge_part, forge_part, forge_consistent,
              forge_consistent]
STRUCTURAL_LEGACY = [splice_records, forge_end]
BYTES = [flip_bits, random_bytes, truncate, insert_bytes, delete_bytes, spray_sync, splice_bytes]


def mutate(rng: random.Random, seeds: list[Seed]) -> tuple[bytes, str]:
    """One input: a seed, an optional structural mutation, then zero to two byte mutations."""
    current = [seed for seed in seeds if seed.format9]
    legacy = [seed for seed in seeds if not seed.format9]
    seed = rng.choice(current if current and (not legacy or rng.random() < FORMAT9_SHARE) else legacy)
    data, names = seed.data, []
    steps = []
    if rng.random() < 0.6:
        steps.append(rng.choice(STRUCTURAL if seed.format9 else STRUCTURAL_LEGACY))
    steps += [rng.choice(BYTES) for _ in range(rng.choice([0, 1, 1, 2]) if steps else rng.choice([1, 1, 2]))]
    for step in steps:
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
    info, _ = container.read_info(data)
    if not isinstance(audio, np.ndarray) or audio.dtype != np.float32:
        raise Broken(f"decoded audio is {type(audio).__name__} {getattr(audio, 'dtype', '')}")
    if audio.shape != (info.channels, info.sample_count) or rate != info.original_sample_rate:
        raise Broken(f"decoded shape {audio.shape} at {rate} Hz, header says "
                     f"{(info.channels, info.sample_count)} at {info.original_sample_rate} Hz")
    if not np.isfinite(audio).all():
        raise Broken("decoded audio is not finite")


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
        result = container.salvage(data, tables if tables is not None else container.Tables())
        if strict_ok and not result.intact:
            raise Broken(f"salvage finds damage in a file unpack accepts: {result.problems[:2]} {result.lost}")
        if strict_ok is False and result.intact:
            raise Broken("salvage calls intact a file unpack rejects")
        count = result.header.chunk_count
        lost = sum(run.count for run in result.lost)
        overlaps = [run for run in result.lost if any(run.first <= index <= run.last for index in result.chunks)]
        if lost + len(result.chunks) != count or overlaps or any(not 0 <= i < count for i in result.chunks):
            raise Broken(f"salvage returned chunks {sorted(result.chunks)[:20]} of {count} but lists as lost "
                         f"{result.lost[:10]}")

    def salvage_decode():
        result = api.decode_salvage(data)
        info, _ = container.read_info(data)
        found = container.salvage(data, zoo.for_stream(info).tables).chunks
        # the output ends with the last chunk recovered: a lost tail is reported, not invented
        end = info.chunk_span(max(found))[1] * info.original_sample_rate if found else 0
        shape = (info.channels, min(info.sample_count, -(-end // info.model_sample_rate)))
        if result.audio.dtype != np.float32 or result.audio.shape != shape or not np.isfinite(result.audio).all():
            raise Broken(f"salvaged audio {result.audio.dtype} {result.audio.shape}, expected {shape}, "
                         f"or not finite")

    signal.alarm(HANG_SECONDS)
    try:
        found = stage("model", lambda: zoo.for_stream(container.read_info(data)[0]).tables)
        tables = found if outcomes["model"] == "ok" else None
        stage("unpack", lambda: api.unpack(data))
        if tables is not None:  # header and model sound: strict unpack decides whether the file is intact
            strict_ok = outcomes["unpack"] == "ok"
        stage("inspect", inspect)
        stage("decode", decode)
        if strict_ok and not outcomes["decode"].startswith("CRASH") and outcomes["decode"] != "ok":
            outcomes["decode"] = f"CRASH Broken: a file unpack accepts does not decode ({outcomes['decode']})"
        stage("salvage", salvage_parse)
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
