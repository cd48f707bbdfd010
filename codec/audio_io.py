"""Audio file I/O: the only module that uses soundfile.

Arrays are float32 shaped (channels, time) everywhere in nac; the conversion
from soundfile's (frames, channels) happens here, once. Writes are atomic:
a temporary file in the destination folder is renamed over the target only
after it was written completely.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import InputError, OutputError

WRITABLE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


STDIO = "-"  # as a path: standard input or standard output


def is_stdio(path: str | os.PathLike) -> bool:
    return str(path) == STDIO


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read any format soundfile knows (``-``: standard input); returns (float32 (channels, time), rate)."""
    if is_stdio(path):
        source, name = io.BytesIO(sys.stdin.buffer.read()), "<stdin>"
    else:
        source, name = str(path), str(path)
        if not Path(path).is_file():
            raise InputError(f"{name}: no such file")
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"{name}: not a readable audio file ({_first_line(err)})") from None
    return np.ascontiguousarray(data.T), int(rate)


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) of an audio file, read from its header only."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"{path}: not a readable audio file ({_first_line(err)})") from None
    return int(info.frames), int(info.samplerate), int(info.channels)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write float (channels, time) audio as 16-bit PCM, format chosen by the extension."""
    path = Path(path)
    file_format = "WAV" if is_stdio(path) else WRITABLE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise OutputError(f"{path}: unsupported output extension (use {', '.join(WRITABLE_FORMATS)})")

    def write(handle) -> None:
        # Encoded in memory first: libsndfile writes a file object through a cffi
        # callback that swallows the OSError of a full disk (EFBIG, ENOSPC) and then
        # fails an assertion; a plain write of the bytes raises the OSError itself.
        encoded = io.BytesIO()
        sf.write(encoded, np.ascontiguousarray(audio.T), sample_rate, format=file_format, subtype="PCM_16")
        handle.write(encoded.getbuffer())

    write_atomic(path, write)


def write_atomic(path: Path, writer) -> None:
    """Call ``writer(file_object)`` on a temporary file, then rename it to ``path``.

    ``-`` writes to standard output instead (a pipe cannot be made atomic).
    """
    if is_stdio(path):
        try:
            writer(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except OSError as err:  # BrokenPipeError included: the reader went away
            raise OutputError(f"<stdout>: cannot write ({err.strerror or err})") from None
        return
    path = Path(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
    try:
        os.chmod(temp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as err:
        _remove_quietly(temp)
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
    except BaseException:
        _remove_quietly(temp)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
