"""Audio in and out: files (the only module that uses soundfile), layout, resampling (soxr).

Arrays are float32 shaped (channels, time) everywhere in nac; the conversion
from soundfile's (frames, channels) happens here, once. Writes are atomic:
a temporary file in the destination folder is renamed over the target only
after it was written completely.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import shutil
import stat
import struct
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import InputError, OutputError, UsageError

# what a folder's audio files end in (formats libsndfile reads)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".caf", ".w64", ".au",
                  ".snd")
WRITABLE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


STDIO = "-"  # as a path: standard input or standard output


def as_channels_first(audio: np.ndarray) -> np.ndarray:
    """float32 (channels, time) from a (time,) or (channels, time) array; integer samples are scaled from their
    type's full scale, as soundfile reads them (int16 32767 -> 1.0)."""
    try:
        array = np.asarray(audio)
    except (ValueError, TypeError, RuntimeError) as err:  # ragged lists, tensors that need .detach()
        raise UsageError(f"audio must be an array of numbers ({first_line(err)})") from None
    if array.dtype.kind in "iu":
        if array.dtype.itemsize > 4:
            raise UsageError(f"{array.dtype} audio has no full scale to read it by: give float in -1..1, or int16 "
                             "or int32 PCM")
        limits = np.iinfo(array.dtype)
        middle = (limits.max + 1) // 2 if array.dtype.kind == "u" else 0
        peak = int(np.abs(array.astype(np.int64) - middle).max()) if array.size else 0
        if array.dtype.itemsize == 4 and 0 < peak <= 32768:
            raise UsageError(f"{array.dtype} audio peaks at {peak} of {limits.max} (-96 dB or less): 16-bit samples "
                             f"in a wider array? Give .astype(np.int16)")
        array = (array.astype(np.float64) - middle) / (limits.max + 1 - middle)
    elif array.dtype.kind not in "f":
        raise UsageError(f"audio must be an array of numbers, not {array.dtype}")
    with np.errstate(over="ignore"):  # beyond float32's range: infinite, which the encoder codes as silence
        array = array.astype(np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise UsageError(f"audio must be (time,) or (channels, time), not shape {array.shape}")
    return np.ascontiguousarray(array)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """(channels, time) audio at ``target_rate`` (soxr, high quality)."""
    if source_rate == target_rate or audio.shape[1] == 0:
        return audio
    out = soxr.resample(audio.T, source_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, audio.shape[0]).T)


def resample_blocks(
    blocks: Iterable[np.ndarray], source_rate: int, target_rate: int, channels: int
) -> Iterator[np.ndarray]:
    """Blocks of (channels, n) audio resampled as they stream (same samples as :func:`resample`)."""
    if source_rate == target_rate:
        yield from blocks
        return
    stream = soxr.ResampleStream(source_rate, target_rate, channels, dtype="float32", quality="HQ")
    for block in blocks:
        yield np.ascontiguousarray(stream.resample_chunk(np.ascontiguousarray(block.T)).T)
    yield np.ascontiguousarray(stream.resample_chunk(np.zeros((0, channels), np.float32), last=True).T)


STDIO_NAMES = (STDIO, "/dev/stdin", "/dev/stdout")  # the last two as names, whatever they point to


def is_stdio(path: str | os.PathLike) -> bool:
    return str(path) in STDIO_NAMES


def standard_input():
    """Standard input's binary stream, or :class:`InputError` when it is closed."""
    if sys.stdin is None:
        raise InputError("<stdin>: closed")
    return sys.stdin.buffer


def _standard_output():
    if sys.stdout is None:
        raise OutputError("<stdout>: closed")
    return sys.stdout.buffer


def is_stream(path: str | os.PathLike) -> bool:
    """Standard output, or an existing pipe or device (``/dev/null``): written straight through, never replaced."""
    if is_stdio(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read any format soundfile knows (``-``: standard input); returns (float32 (channels, time), rate)."""
    if is_stdio(path):
        source, name = io.BytesIO(standard_input().read()), "<stdin>"
    else:
        source, name = str(path), str(path)
        _check_input_path(Path(path))
    try:
        with _quiet_decoders():
            data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"{name}: not a readable audio file ({_reason(err)})") from None
    return np.ascontiguousarray(data.T), int(rate)


BLOCK_FRAMES = 1 << 16


def read_blocks(path: str | os.PathLike) -> tuple[int, int, int, Iterator[np.ndarray]]:
    """(frames, sample_rate, channels, blocks): a file read block by block as (channels, n) float32.

    Memory stays bounded whatever the file's length. Standard input (``-``)
    is first copied to a temporary file (a pipe cannot be measured before it
    ends), so it is bounded by disk, not memory.
    """
    if is_stdio(path):
        source, name = _spooled(standard_input()), "<stdin>"
    else:
        _check_input_path(Path(path))
        source, name = str(path), str(path)
    handle = _opened(source, name)
    quiet = _quiet_decoders if handle.format == "MP3" else contextlib.nullcontext

    def blocks() -> Iterator[np.ndarray]:
        with handle:
            while True:
                try:
                    with quiet():  # not across the yield: the caller may print between blocks
                        block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as err:
                    raise InputError(f"{name}: unreadable audio ({_reason(err)})") from None
                if not len(block):
                    return
                yield np.ascontiguousarray(block.T)

    return int(handle.frames), int(handle.samplerate), int(handle.channels), blocks()


def _opened(source: str | IO[bytes], name: str) -> sf.SoundFile:
    """``source`` open for reading (the decoders kept quiet), or :class:`InputError` naming ``name``."""
    try:
        with _quiet_decoders():
            return sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"{name}: not a readable audio file ({_reason(err)})") from None


def _spooled(stream: IO[bytes]) -> IO[bytes]:
    """A temporary file (deleted when closed) holding all of ``stream``, rewound."""
    spool = tempfile.TemporaryFile()
    try:
        shutil.copyfileobj(stream, spool, BLOCK_FRAMES * 16)
        spool.seek(0)
    except OSError as err:
        spool.close()
        raise InputError(f"<stdin>: cannot keep a copy to read ({err.strerror or err})") from None
    return spool


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """While a file is opened (or an MP3 read), file descriptor 2 goes to the null device: libsndfile's MP3
    decoder (libmpg123) prints its own notes on bad frames there, and a bad file should give nac's one-line error
    alone. libsndfile takes MP3 by content too (standard input, a misnamed file), so every open is kept quiet.
    The descriptor is the process's: the windows are kept to single library calls, since a program using nac
    may write to stderr from other threads meanwhile."""
    if sys.stderr is None:  # started with descriptor 2 closed: it may be one of nac's own files by now
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # closed since: nothing to keep clean
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) of an audio file, read from its header only."""
    _check_input_path(Path(path))
    with _opened(str(path), str(path)) as handle:
        return int(handle.frames), int(handle.samplerate), int(handle.channels)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write float (channels, time) audio as 16-bit PCM, format chosen by the extension."""
    write_audio_blocks(path, [audio], sample_rate, audio.shape[0])


def write_audio_blocks(path: str | os.PathLike, blocks: Iterable[np.ndarray], sample_rate: int, channels: int,
                       frames: int | None = None) -> None:
    """Write (channels, n) float blocks as 16-bit PCM as they arrive, atomically.

    The format comes from the extension. ``-`` (standard output), a pipe or a
    device gets WAV unless its name says FLAC: streamed as the blocks arrive
    when ``frames`` (the length) is given, else gathered first (a WAV header
    needs the length, and a pipe cannot seek back to write it).
    """
    path = Path(path)
    if is_stream(path):
        stream_format = WRITABLE_FORMATS.get(path.suffix.lower(), "WAV")
        size = _wav_data_bytes(frames, channels) if stream_format == "WAV" and frames is not None else 0
        if size:
            write_atomic(path, lambda handle: _stream_wav(handle, blocks, sample_rate, channels, frames, size))
            return
        audio = np.concatenate([np.zeros((channels, 0), np.float32), *blocks], axis=1)
        encoded = io.BytesIO()
        sf.write(encoded, np.ascontiguousarray(audio.T), sample_rate, subtype="PCM_16", format=stream_format)
        write_atomic(path, lambda handle: handle.write(encoded.getbuffer()))
        return
    file_format = WRITABLE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise OutputError(f"{path}: unsupported output extension (use {', '.join(WRITABLE_FORMATS)})")

    def write(handle) -> None:
        # libsndfile writes through the descriptor itself: a full disk (EFBIG,
        # ENOSPC) becomes its error code, which soundfile raises, not a silent
        # short write as through a Python file object's callback.
        try:
            with sf.SoundFile(handle.fileno(), "w", samplerate=sample_rate, channels=channels,
                              format=file_format, subtype="PCM_16", closefd=False) as out:
                for block in blocks:
                    out.write(np.ascontiguousarray(block.T))
        except (sf.LibsndfileError, RuntimeError, AssertionError) as err:
            # libsndfile only says "System error": one more byte through the
            # same descriptor (into a file that is deleted anyway) gets the OS's reason.
            os.write(handle.fileno(), b"\0")
            raise OSError(f"audio write failed ({first_line(err)})") from None

    write_atomic(path, write)


def _wav_data_bytes(frames: int, channels: int) -> int:
    """Bytes of 16-bit PCM ``frames``, or 0 when they do not fit a plain WAV header's 32-bit sizes."""
    size = 2 * channels * frames
    return size if 0 < size <= 0xFFFFFFFF - 36 else 0


def _stream_wav(handle, blocks: Iterable[np.ndarray], sample_rate: int, channels: int, frames: int,
                size: int) -> None:
    """A plain 16-bit PCM WAV of ``frames`` (``size`` bytes of samples), header first (as libsndfile writes it),
    then each block as it comes; samples are converted by libsndfile as in a file, so the bytes equal the
    gathered WAV's."""
    handle.write(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, sample_rate, 2 * channels * sample_rate, 2 * channels, 16) + b"data"
        + struct.pack("<I", size))
    left = frames
    for block in blocks:
        block = block[:, :left]
        if block.shape[1]:
            pcm = io.BytesIO()
            sf.write(pcm, np.ascontiguousarray(block.T), sample_rate, subtype="PCM_16", format="RAW")
            handle.write(pcm.getbuffer())
            handle.flush()  # the reader (a player) gets each block as it is made
            left -= block.shape[1]
    if left:  # the header promised more: the stream is cut, and said so
        raise OSError(errno.EIO, f"the audio ended {left} samples short of its length")


def write_atomic(path: Path, writer) -> None:
    """Call ``writer(file_object)`` on a temporary file, then rename it to ``path``.

    ``-`` writes to standard output instead, and an existing pipe or device is
    written straight through (neither can be made atomic, nor replaced).
    """
    if is_stdio(path):
        stdout = _standard_output()
        try:
            writer(WholeWrites(stdout))
            stdout.flush()
        except BrokenPipeError:  # the reader went away (| head, a player that quits): the caller stops quietly
            raise
        except OSError as err:
            raise OutputError(f"<stdout>: cannot write ({err.strerror or err})") from None
        return
    if is_stream(path):
        try:
            with open(path, "wb") as handle:
                writer(WholeWrites(handle))
        except BrokenPipeError:
            raise
        except OSError as err:
            raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
        return
    path = Path(path)
    # The name is chosen before the file is made, so that a signal arriving at any point (SIGTERM raises in
    # nac's handler) finds a name to remove; a name taken by another file is never removed.
    temp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any new file
        with os.fdopen(fd, "wb") as handle:
            writer(WholeWrites(handle))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except FileExistsError:
        raise OutputError(f"{path}: cannot write (temporary name {temp.name} is taken)") from None
    except OSError as err:
        _remove_quietly(temp)
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
    except BaseException:
        _remove_quietly(temp)
        raise


class WholeWrites:
    """A binary file whose ``write`` writes all it is given or raises: a buffered file may write part, say
    nothing and return the count when the reader of a pipe goes away."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        while view:
            written = self.handle.write(view)
            if not written:
                raise OSError(errno.EIO, "nothing more could be written")
            view = view[written:]
        return memoryview(data).nbytes

    def flush(self) -> None:
        self.handle.flush()

    def fileno(self) -> int:
        return self.handle.fileno()


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    """:class:`OutputError` when ``path`` is an existing file (not a pipe or device) and ``overwrite`` is off."""
    if not overwrite and not is_stream(path) and Path(path).exists():
        raise OutputError(f"{path}: already exists (use -f to overwrite)")


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _check_input_path(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an audio file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")


def _reason(err: BaseException) -> str:
    """libsndfile's reason without its "Error opening <name>: " prefix (which may be an object's repr)."""
    reason = first_line(err).rsplit(": ", 1)[-1]
    if reason.startswith("File does not exist or is not a regular file"):  # what it says of an undecodable MP3
        return "its contents could not be decoded"
    return reason


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
