"""The project's exception hierarchy; each kind carries the CLI's exit code.

Every error raised on purpose by nac is a ``NacError``. The CLI maps
``exit_code`` to the process exit status, so the table below is the one
place exit codes are defined (README and ``format_spec.md`` repeat it).
"""

import contextlib


class NacError(Exception):
    """Base class; ``str(err)`` is a one-line message naming the problem."""

    exit_code = 1


class UsageError(NacError):
    """Invalid option values or combinations."""

    exit_code = 2


class InputError(NacError):
    """Missing, unreadable or non-audio input file."""

    exit_code = 3


class FormatError(NacError):
    """Not a nac file, or a corrupt one (bad magic, CRC, sizes, limits)."""

    exit_code = 4


class VersionError(FormatError):
    """A nac file whose major version this decoder does not know."""

    exit_code = 5


class ModelError(NacError):
    """Unknown model id or name, or weights that fail their hash or validation."""

    exit_code = 6


class OutputError(NacError):
    """The output cannot be written (exists without --force, unwritable, disk full)."""

    exit_code = 7


class SalvagedError(NacError):
    """``decode --salvage`` wrote a damaged file's intact audio; lost spans were reported.

    Not a failure to write: the output file exists, with silence where chunks
    were damaged or missing. Without ``--salvage`` the same file is a
    :class:`FormatError` and nothing is written.
    """

    exit_code = 8


class BatchPartialError(NacError):
    """``nac batch`` finished, but some files failed (each is listed)."""

    exit_code = 9


class BatchFailedError(NacError):
    """``nac batch`` found files but none of them succeeded."""

    exit_code = 10


class TrainingError(NacError):
    """Training diverged: a loss that is not a finite number (the last checkpoint is kept)."""

    exit_code = 11


@contextlib.contextmanager
def naming(path):
    """Let a :class:`NacError` raised inside name ``path`` first (unless its message does already)."""
    try:
        yield
    except NacError as err:
        if str(err).startswith(f"{path}:"):
            raise
        raise type(err)(f"{path}: {err}") from None
