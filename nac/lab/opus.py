"""Opus as the reference codec: opusenc/opusdec (Debian's opus-tools) and an Ogg payload counter.

Bitrate. Opus is charged for its audio payload only: the bytes of the Opus
packets after the two header packets (OpusHead, OpusTags), summed from the
segment tables of the Ogg pages (:func:`read_ogg_opus`). Ogg framing (27
bytes plus the segment table per page) and the headers (opusenc pads
OpusTags to over 512 bytes) are left out, so Opus is measured at its best;
nac is charged for its whole ``.nac`` file. opusenc's ``--bitrate`` is a VBR
target: the payload it reaches differs somewhat from the target.

Alignment. opusdec drops the stream's pre-skip (the encoder's look-ahead plus
opusenc's resampler delay, recorded in OpusHead) and trims the tail to the
final granule position, so at ``--rate`` equal to the input rate its output
has the input's length and lines up with it: cross-correlation of the
decoded speech with the original peaks at a lag of 0 samples at 16 kHz at
6-32 kbps (:func:`nac.lab.evaluate.estimate_lag`, checked in
``tests/test_evaluate.py``; ``nac eval`` records the lag of every file).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import read_audio, write_audio
from ..errors import FormatError, NacError, UsageError

INSTALL_HINT = "install opus-tools (Debian/Ubuntu: apt-get install opus-tools)"
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # rates opusdec decodes at natively
_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, sequence, CRC, segments
_CONTINUED, _FIRST, _LAST = 0x01, 0x02, 0x04


class OpusToolsMissing(UsageError):
    """opusenc or opusdec is not on PATH."""


@dataclass(frozen=True)
class OggOpusStats:
    """Byte accounting of one Ogg Opus stream (one logical stream, as opusenc writes)."""

    file_bytes: int
    pages: int
    header_bytes: int  # OpusHead + OpusTags packets
    audio_packets: int
    audio_bytes: int  # the payload: audio packets only, no Ogg framing, no headers
    channels: int
    pre_skip: int  # 48 kHz samples dropped at the start
    input_sample_rate: int  # informational, from OpusHead
    final_granule: int  # 48 kHz samples including the pre-skip

    @property
    def ogg_overhead_bytes(self) -> int:
        return self.file_bytes - self.header_bytes - self.audio_bytes

    @property
    def duration_s(self) -> float:
        """Playback duration from the granule position (48 kHz clock)."""
        return max(self.final_granule - self.pre_skip, 0) / 48000


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0, no final XOR."""
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def ogg_packets(data: bytes) -> tuple[list[bytes], int, int]:
    """(packets, page count, last granule position) of a single-stream Ogg file.

    Every page is checked before use: capture pattern, version 0, its length
    against the data, its CRC, one serial number, consecutive sequence
    numbers, and continuation flags that match the packet in progress.
    Packets are joined across pages from the lacing values (a value below
    255 ends a packet). Raises :class:`FormatError` on any violation, and on
    a packet left unfinished at the end.
    """
    packets: list[bytes] = []
    pending: bytearray | None = None
    offset, pages, serial, granule = 0, 0, None, 0
    while offset < len(data):
        if len(data) - offset < _PAGE_HEADER.size:
            raise FormatError(f"ogg: truncated page header at byte {offset}")
        capture, version, flags, page_granule, page_serial, sequence, crc, segments = _PAGE_HEADER.unpack_from(
            data, offset
        )
        if capture != b"OggS":
            raise FormatError(f"ogg: no capture pattern at byte {offset}")
        if version != 0:
            raise FormatError(f"ogg: page version {version} at byte {offset}")
        table_end = offset + _PAGE_HEADER.size + segments
        if table_end > len(data):
            raise FormatError(f"ogg: truncated segment table at byte {offset}")
        lacing = data[offset + _PAGE_HEADER.size : table_end]
        page_end = table_end + sum(lacing)
        if page_end > len(data):
            raise FormatError(f"ogg: truncated page at byte {offset}")
        page = bytearray(data[offset:page_end])
        page[22:26] = b"\0\0\0\0"
        if ogg_crc(page) != crc:
            raise FormatError(f"ogg: CRC mismatch in page {pages} at byte {offset}")
        if serial is None:
            serial = page_serial
        elif page_serial != serial:
            raise FormatError("ogg: more than one logical stream (only single-stream files are read)")
        if sequence != pages:
            raise FormatError(f"ogg: page {pages} has sequence number {sequence}")
        if bool(flags & _CONTINUED) != (pending is not None):
            raise FormatError(f"ogg: continuation flag of page {pages} does not match the packet in progress")
        position = table_end
        for value in lacing:
            if pending is None:
                pending = bytearray()
            pending += data[position : position + value]
            position += value
            if value < 255:
                packets.append(bytes(pending))
                pending = None
        if page_granule != -1:
            granule = page_granule
        pages += 1
        offset = page_end
    if pending is not None:
        raise FormatError("ogg: the last packet is unfinished (truncated file)")
    return packets, pages, granule


def read_ogg_opus(data: bytes) -> OggOpusStats:
    """Count an Ogg Opus file's payload: audio packet bytes without Ogg framing and headers."""
    packets, pages, granule = ogg_packets(data)
    if len(packets) < 2 or not packets[0].startswith(b"OpusHead") or len(packets[0]) < 19:
        raise FormatError("ogg: the first packet is not an OpusHead")
    if not packets[1].startswith(b"OpusTags"):
        raise FormatError("ogg: the second packet is not an OpusTags")
    channels, pre_skip, input_rate = struct.unpack_from("<BHI", packets[0], 9)
    audio = packets[2:]
    return OggOpusStats(
        file_bytes=len(data),
        pages=pages,
        header_bytes=len(packets[0]) + len(packets[1]),
        audio_packets=len(audio),
        audio_bytes=sum(len(p) for p in audio),
        channels=channels,
        pre_skip=pre_skip,
        input_sample_rate=input_rate,
        final_granule=granule,
    )


def find_tools() -> tuple[str, str]:
    """Paths of opusenc and opusdec; :class:`OpusToolsMissing` (one line saying how to install) if absent."""
    encoder, decoder = shutil.which("opusenc"), shutil.which("opusdec")
    if not encoder or not decoder:
        missing = " and ".join(name for name, path in (("opusenc", encoder), ("opusdec", decoder)) if not path)
        raise OpusToolsMissing(f"{missing} not found: {INSTALL_HINT}")
    return encoder, decoder


def version() -> str | None:
    """opusenc's version line (``opusenc opus-tools 0.2 (using libopus 1.3.1)``), None if missing."""
    try:
        encoder, _ = find_tools()
        result = subprocess.run([encoder, "--version"], capture_output=True, text=True, timeout=30)
    except (OpusToolsMissing, OSError, subprocess.SubprocessError):
        return None
    return (result.stdout or result.stderr).splitlines()[0].strip() if (result.stdout or result.stderr) else None


@dataclass(frozen=True)
class OpusResult:
    """One file through opusenc and opusdec."""

    audio: np.ndarray  # float32 (channels, time) at the input rate
    sample_rate: int
    stats: OggOpusStats
    encode_s: float
    decode_s: float


def code(audio: np.ndarray, sample_rate: int, bitrate_kbps: float, *, workdir: str | Path | None = None) -> OpusResult:
    """Encode (channels, time) float audio with ``opusenc --bitrate`` and decode it back with opusdec.

    The input is written as a 16-bit WAV; opusdec decodes at ``sample_rate``
    (one of :data:`OPUS_RATES`) to 32-bit float, so no dither is added. The
    output is cut or zero-padded to the input length (opusdec already gives
    that length; see the module docstring on alignment).
    """
    if sample_rate not in OPUS_RATES:
        raise UsageError(f"opus: decode rate {sample_rate} Hz is not one of {OPUS_RATES}")
    encoder, decoder = find_tools()
    with tempfile.TemporaryDirectory(prefix="nac-opus-", dir=workdir) as folder:
        source, coded, decoded = (Path(folder) / name for name in ("in.wav", "coded.opus", "out.wav"))
        write_audio(source, np.clip(audio, -1.0, 1.0), sample_rate)
        start = time.perf_counter()
        _run([encoder, "--quiet", "--bitrate", f"{bitrate_kbps:g}", str(source), str(coded)])
        encoded = time.perf_counter()
        _run([decoder, "--quiet", "--rate", str(sample_rate), "--float", str(coded), str(decoded)])
        finished = time.perf_counter()
        stats = read_ogg_opus(coded.read_bytes())
        output, rate = read_audio(decoded)
    if rate != sample_rate or output.shape[0] != audio.shape[0]:
        raise NacError(
            f"opusdec gave {output.shape[0]} channel(s) at {rate} Hz, expected {audio.shape[0]} at {sample_rate}"
        )
    length = audio.shape[1]
    if output.shape[1] < length:
        output = np.pad(output, ((0, 0), (0, length - output.shape[1])))
    output = output[:, :length]
    return OpusResult(output, rate, stats, encoded - start, finished - encoded)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise NacError(f"{Path(command[0]).name} failed ({detail[-1] if detail else f'exit {result.returncode}'})")
