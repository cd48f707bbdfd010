"""rANS coding of integer codes (pure functions; format_spec.md section 8).

Latent codes: each row of codes (one latent channel's values over a chunk's
frames) is coded in time order; the probability of a code comes from the
model's static table of its latent channel, in the row picked by the code
before it (code 0 before the first).

Residual codes: adaptive models, one per context of the codes left of and
below each, start from fixed counts in every chunk (the model's residual
tables, or :func:`default_counts`) and learn the chunk as it is coded. The
fine bins' rows have contexts of their own, from the same bin one frame
earlier and the bin below in the same frame; the phase hints' two rows
follow, each in contexts of the same row's code one column earlier.

Frequencies are integers, each >= 1 and summing to ``2**PRECISION``, so
coding is integer-only and every machine agrees.

The coder is a single-stream rANS with a 32-bit state and 16-bit words: the
decoder starts from the first two words (state = w0 << 16 | w1), and for each
code takes ``slot = x mod 2**P``, finds the symbol ``s`` with ``cum[s] <= slot
< cum[s] + f[s]``, sets ``x = f[s] * (x >> P) + slot - cum[s]`` and, while
``x < 2**16``, shifts in the next word. A sound stream ends with ``x == 2**16``
and no words left.
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

_KERNELS: list[str] = []  # the functions below that numba compiles, on first use (:func:`_compiled`)


def _kernel(function):
    """Mark ``function`` for numba; it runs as Python until :func:`_compiled` has replaced it."""
    _KERNELS.append(function.__name__)
    return function


_COMPILING = threading.Lock()


def _compiled() -> None:
    """Compile the kernels with numba (cached on disk) in place of their Python forms, once per process: importing
    numba costs about 0.25 s that reading headers alone (``nac inspect``, ``nac report``) need not pay. Kernels
    call each other by global name, so all are replaced before any runs; coders on several threads wait for it."""
    with _COMPILING:
        if _KERNELS:
            from numba import njit

            globals().update({name: njit(cache=True)(globals()[name]) for name in _KERNELS})  # all at once
            _KERNELS.clear()


# Loading numba's compiled kernels costs about 0.65 s, which a seek or a short file would mostly spend waiting:
# decoding runs the kernels as Python (about 5 us a residual code here) unless told to expect more codes than
# PYTHON_DECODE_CODES, or until they have taken PYTHON_DECODE_SECONDS in the process.
PYTHON_DECODE_CODES = 120_000
PYTHON_DECODE_SECONDS = 1.0
_python_seconds = 0.0


def expect(residual_codes: int) -> None:
    """Load the compiled kernels now if a decode of that many residual codes lies ahead: as Python it would take
    longer than loading them."""
    if residual_codes > PYTHON_DECODE_CODES:
        _compiled()


@contextlib.contextmanager
def _decoding():
    """Run the block with the kernels as Python while they have cost less than :data:`PYTHON_DECODE_SECONDS`,
    compiled after; either form gives the same codes."""
    global _python_seconds
    if not _KERNELS or _python_seconds >= PYTHON_DECODE_SECONDS:
        _compiled()
        yield
        return
    began = time.perf_counter()
    try:
        yield
    finally:
        with _COMPILING:
            _python_seconds += time.perf_counter() - began


PRECISION = 15
_LOW = 1 << 16  # the state's lower bound, and its value before the first code is encoded
_MASK = (1 << PRECISION) - 1
# kernel results other than 0 (sound), turned into ValueError by their callers
_EARLY_END, _NOT_AT_END, _BAD_ESCAPE = 1, 2, 3
_PROBLEMS = {_EARLY_END: "code stream ends early",
             _NOT_AT_END: "code stream does not end where its codes do (damaged)"}


def check_tables(freq: np.ndarray, code_range: int) -> None:
    """Raise ValueError unless ``freq`` (tables, 2U+1 contexts, 2U+1 codes) is a valid table set for U."""
    size = 2 * code_range + 1
    if freq.ndim != 3 or freq.shape[1:] != (size, size):
        raise ValueError(f"code tables shaped {freq.shape}, expected (tables, {size}, {size})")
    if not np.issubdtype(freq.dtype, np.integer) or freq.min(initial=1) < 1:
        raise ValueError("code table frequencies must be integers >= 1")
    if (freq.sum(axis=-1) != 1 << PRECISION).any():
        raise ValueError(f"every code table row must sum to 2**{PRECISION}")


def tables_from_counts(counts: np.ndarray) -> np.ndarray:
    """Integer tables from (tables, contexts, codes) counts: proportional, each >= 1, rows summing to 2**P."""
    counts = np.asarray(counts, dtype=np.float64)
    total = 1 << PRECISION
    freq = np.maximum(1, np.floor(counts / counts.sum(axis=-1, keepdims=True) * (total - counts.shape[-1])))
    freq = freq.astype(np.int64)
    largest = freq.argmax(axis=-1)[..., None]
    np.put_along_axis(freq, largest, np.take_along_axis(freq, largest, -1) + total - freq.sum(-1, keepdims=True), -1)
    return freq


def _cumulative(freq: np.ndarray) -> np.ndarray:
    """Per table and context, ``[0, f0, f0 + f1, ..., 2**P]`` (int64)."""
    return np.concatenate([np.zeros(freq.shape[:-1] + (1,), np.int64), np.cumsum(freq, axis=-1)], axis=-1)


@_kernel
def _stream(starts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The rANS words (uint16) of symbols given by their intervals ``[start, start + width)``, in decoding
    order."""
    words = np.empty(len(starts) + 2, np.uint16)
    count, x = 0, _LOW
    for i in range(len(starts) - 1, -1, -1):
        f = widths[i]
        if x >= f << (32 - PRECISION):
            words[count] = x & 0xFFFF
            count += 1
            x >>= 16
        x = ((x // f) << PRECISION) + x % f + starts[i]
    words[count] = x & 0xFFFF
    words[count + 1] = x >> 16
    return words[: count + 2][::-1].copy()


def _words(data: bytes) -> np.ndarray:
    """A code stream's 16-bit words (int64); ValueError if it cannot be one."""
    if len(data) % 2 or len(data) < 4:
        raise ValueError(f"code stream of {len(data)} bytes: not whole 16-bit words, or under 4 bytes")
    words = np.frombuffer(data, dtype="<u2").astype(np.int64)
    if words[0] << 16 | words[1] < _LOW:
        raise ValueError("code stream starts below the coder's state range")
    return words


def _check(status: int) -> None:
    if status:
        raise ValueError(_PROBLEMS[status])


def encode(codes: np.ndarray, tables: np.ndarray, freq: np.ndarray) -> bytes:
    """The rANS stream of ``codes`` (rows, frames) in [-U, U]; row ``r`` uses table ``tables[r]``."""
    _compiled()
    code_range = freq.shape[-1] // 2
    symbols = np.asarray(codes, np.int64).reshape(len(tables), -1) + code_range
    contexts = np.concatenate([np.full((len(symbols), 1), code_range), symbols[:, :-1]], axis=1)
    which = np.broadcast_to(np.asarray(tables, np.int64)[:, None], symbols.shape)
    cum = _cumulative(np.asarray(freq))
    starts = cum[which, contexts, symbols].ravel()
    widths = cum[which, contexts, symbols + 1].ravel() - starts
    return _stream(starts, widths).astype("<u2").tobytes()


@_kernel
def _decode_latent(words: np.ndarray, tables: np.ndarray, cum: np.ndarray, out: np.ndarray) -> int:
    """Fill ``out`` (rows, frames) with symbols; 0, or the problem found."""
    x, position = words[0] << 16 | words[1], 2
    last = cum.shape[-1] - 1
    for r in range(out.shape[0]):
        context = last // 2
        for j in range(out.shape[1]):
            row = cum[tables[r], context]
            slot = x & _MASK
            low, high = 0, last  # row[low] <= slot < row[high]
            while high - low > 1:
                middle = (low + high) >> 1
                if row[middle] <= slot:
                    low = middle
                else:
                    high = middle
            x = (row[low + 1] - row[low]) * (x >> PRECISION) + slot - row[low]
            if x < _LOW:
                if position == len(words):
                    return _EARLY_END
                x = x << 16 | words[position]
                position += 1
            out[r, j] = low
            context = low
    return 0 if x == _LOW and position == len(words) else _NOT_AT_END


def decode(data: bytes, tables: np.ndarray, freq: np.ndarray, frames: int) -> np.ndarray:
    """Codes (rows, frames) from a stream made by :func:`encode`; ValueError if it is not sound."""
    tables = np.asarray(tables, np.int64)
    if tables.size and not 0 <= tables.min() <= tables.max() < len(freq):
        raise ValueError(f"code table index out of 0..{len(freq) - 1}")
    out = np.empty((len(tables), frames), np.int64)
    with _decoding():
        _check(_decode_latent(_words(data), tables, _cumulative(np.asarray(freq)), out))
    return out - freq.shape[-1] // 2


# Residual codes: adaptive models, one per context (docs/results.md compares other contexts).
RESIDUAL_DIRECT = 6  # codes -6..6 are symbols 0..12; others are escaped
RESIDUAL_ESCAPE = 2 * RESIDUAL_DIRECT + 1  # symbol 13: the code follows as a byte, code + 128
RESIDUAL_SYMBOLS = RESIDUAL_ESCAPE + 1
RESIDUAL_CONTEXT_CLAMP = 2  # neighbours count as -2..2: 25 contexts
RESIDUAL_INCREMENT = 32  # added to a symbol's count each time it is coded
RESIDUAL_COUNT_LIMIT = 1 << 13  # when the counts sum above this, each is halved (rounding up)
_ESCAPED_BYTE = (1 << PRECISION) // 256  # frequency of each of the 256 escaped byte values
_SPREAD = (1 << PRECISION) - RESIDUAL_SYMBOLS  # the share of 2**P the counts divide (each symbol also gets 1)


def default_counts() -> np.ndarray:
    """The counts every context starts from without residual tables: 64 for code 0, halving with each step
    away (1 at +-6), 1 for the escape; (contexts, symbols) int64."""
    row = [64 >> abs(s - RESIDUAL_DIRECT) for s in range(RESIDUAL_ESCAPE)] + [1]
    return np.tile(np.array(row, np.int64), (RESIDUAL_MODELS, 1))


def check_counts(counts: np.ndarray) -> None:
    """Raise ValueError unless ``counts`` are residual tables: (contexts, symbols) integers >= 1, each row's sum
    at most the count limit."""
    if counts.shape != (RESIDUAL_MODELS, RESIDUAL_SYMBOLS):
        raise ValueError(f"residual tables shaped {counts.shape}, expected ({RESIDUAL_MODELS}, {RESIDUAL_SYMBOLS})")
    if not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1:
        raise ValueError("residual table counts must be integers >= 1")
    if (counts.sum(axis=-1) > RESIDUAL_COUNT_LIMIT).any():
        raise ValueError(f"every residual table row must sum to at most {RESIDUAL_COUNT_LIMIT}")


# The adaptive model of one context: integer counts (one row of ``counts``) and their sum (``totals``).


@_kernel
def _interval(counts: np.ndarray, total: int, s: int) -> tuple[int, int]:
    """``(start(s), start(s + 1) - start(s))``, ``start(s) = s + C(s) * (2**P - 14) // N``; each width >= 1."""
    below = 0
    for k in range(s):
        below += counts[k]
    start = s + below * _SPREAD // total
    return start, s + 1 + (below + counts[s]) * _SPREAD // total - start


@_kernel
def _find(counts: np.ndarray, total: int, slot: int) -> tuple[int, int, int]:
    """``(s, start, width)`` of the symbol whose interval holds ``slot``."""
    below, start = 0, 0
    for s in range(len(counts) - 1):
        end = s + 1 + (below + counts[s]) * _SPREAD // total
        if slot < end:
            return s, start, end - start
        below, start = below + counts[s], end
    return len(counts) - 1, start, (1 << PRECISION) - start


@_kernel
def _update(counts: np.ndarray, totals: np.ndarray, context: int, s: int) -> None:
    """Count symbol ``s`` in ``context``; halve the context's counts (rounding up) past the limit."""
    counts[context, s] += RESIDUAL_INCREMENT
    totals[context] += RESIDUAL_INCREMENT
    if totals[context] > RESIDUAL_COUNT_LIMIT:
        total = 0
        for k in range(counts.shape[1]):
            counts[context, k] = (counts[context, k] + 1) >> 1
            total += counts[context, k]
        totals[context] = total


RESIDUAL_CONTEXTS = (2 * RESIDUAL_CONTEXT_CLAMP + 1) ** 2  # per set: the other rows' set, then the fine rows' (v7)
_HINT_CONTEXTS = 2 * RESIDUAL_CONTEXTS  # then per hint row (v8), 5: the same row's clamped code a column earlier
_CLAMP_WIDTH = 2 * RESIDUAL_CONTEXT_CLAMP + 1
RESIDUAL_MODELS = _HINT_CONTEXTS + 2 * _CLAMP_WIDTH


@_kernel
def _clamped(v: int) -> int:
    return min(RESIDUAL_CONTEXT_CLAMP, max(-RESIDUAL_CONTEXT_CLAMP, v)) + RESIDUAL_CONTEXT_CLAMP


@_kernel
def _context(values: np.ndarray, c: int, row: int, column: int, below: int, fine_rows: int, stride: int,
             first_hint: int) -> int:
    """The context of code ``values[c, row, column]`` from the codes coded before it; ``below`` is the code
    of the row under it in the same column (0 for row 0).

    Codes go by channel, column (time), then row (upwards). A code's context is
    ``5 * (a + 2) + (b + 2)`` of the clamped codes left of it (previous column)
    and below it. The first ``fine_rows`` rows (v7: the fine bins, ``stride``
    rows each, row ``k`` of a bin holding its frames ``j * stride + k``) take
    ``25 + 5 * (a + 2) + (b + 2)`` instead, ``a`` the same bin's code one frame
    earlier and ``b`` the code of the bin below in the same frame. The last
    rows from ``first_hint`` (v8: a delay row and a turn row) take
    ``50 + 5 * h + (a + 2)``, ``h`` the hint row and ``a`` its code a column
    earlier. A neighbour outside the chunk counts as 0.
    """
    if row >= first_hint:
        left = values[c, row, column - 1] if column else 0
        return _HINT_CONTEXTS + _CLAMP_WIDTH * (row - first_hint) + _clamped(left)
    if row < fine_rows:
        if row % stride:
            earlier = values[c, row - 1, column]
        else:
            earlier = values[c, row + stride - 1, column - 1] if column else 0
        lower = values[c, row - stride, column] if row >= stride else 0
        return RESIDUAL_CONTEXTS + _CLAMP_WIDTH * _clamped(earlier) + _clamped(lower)
    left = values[c, row, column - 1] if column else 0
    return _CLAMP_WIDTH * _clamped(left) + _clamped(below)


@_kernel
def _contexts(values: np.ndarray, fine_rows: int, stride: int, hint_rows: int) -> np.ndarray:
    """The context of every code (channels, rows, columns), in coding order."""
    channels, rows, columns = values.shape
    out = np.empty(values.size, np.int64)
    n = 0
    for c in range(channels):
        for column in range(columns):
            below = 0
            for row in range(rows):
                out[n] = _context(values, c, row, column, below, fine_rows, stride, rows - hint_rows)
                below = values[c, row, column]
                n += 1
    return out


def residual_symbols(codes: np.ndarray, fine_rows: int = 0, stride: int = 1,
                     hint_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(context, symbol) of every code of a chunk in coding order (escaped codes as the escape symbol): what
    residual tables are counted from."""
    _compiled()
    values = np.ascontiguousarray(codes, np.int64)
    contexts = _contexts(values, fine_rows, stride, hint_rows)
    picked = values.transpose(0, 2, 1).ravel()
    symbols = np.where(np.abs(picked) <= RESIDUAL_DIRECT, picked + RESIDUAL_DIRECT, RESIDUAL_ESCAPE)
    return contexts, symbols


def counts_from_histogram(histogram: np.ndarray, total: int) -> np.ndarray:
    """Residual tables from (contexts, symbols) counts: each context's share of ``total``, every count >= 1."""
    histogram = np.asarray(histogram, np.float64) + 0.5
    counts = np.maximum(1, np.floor(histogram / histogram.sum(axis=-1, keepdims=True) * total)).astype(np.int64)
    check_counts(counts)
    return counts


def _start_counts(counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Fresh (counts, totals) of every context for one chunk."""
    counts = np.array(default_counts() if counts is None else counts, np.int64)
    return counts, counts.sum(axis=1)


@_kernel
def _residual_intervals(values: np.ndarray, contexts: np.ndarray, counts: np.ndarray,
                        totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The intervals of every code in coding order, an escaped code's byte after its escape."""
    starts = np.empty(2 * values.size, np.int64)
    widths = np.empty(2 * values.size, np.int64)
    channels, rows, columns = values.shape
    n = i = 0
    for c in range(channels):
        for column in range(columns):
            for row in range(rows):
                value, context = values[c, row, column], contexts[i]
                i += 1
                s = value + RESIDUAL_DIRECT if abs(value) <= RESIDUAL_DIRECT else RESIDUAL_ESCAPE
                starts[n], widths[n] = _interval(counts[context], totals[context], s)
                n += 1
                if s == RESIDUAL_ESCAPE:
                    starts[n], widths[n] = (value + 128) * _ESCAPED_BYTE, _ESCAPED_BYTE
                    n += 1
                _update(counts, totals, context, s)
    return starts[:n], widths[:n]


def encode_residual(codes: np.ndarray, fine_rows: int = 0, stride: int = 1, hint_rows: int = 0,
                    counts: np.ndarray | None = None) -> bytes:
    """The rANS stream of a chunk's residual codes (channels, rows, columns) in [-127, 127]; the first
    ``fine_rows`` rows, ``stride`` a bin, in the fine bins' contexts, the last ``hint_rows`` in the phase
    hints'; every context starts from its row of ``counts`` (:func:`default_counts` for None)."""
    _compiled()
    values = np.ascontiguousarray(codes, np.int64)
    starts, widths = _residual_intervals(values, _contexts(values, fine_rows, stride, hint_rows),
                                         *_start_counts(counts))
    return _stream(starts, widths).astype("<u2").tobytes()


@_kernel
def _decode_residual(words: np.ndarray, values: np.ndarray, fine_rows: int, stride: int, hint_rows: int,
                     counts: np.ndarray, totals: np.ndarray) -> tuple[int, int]:
    """Fill ``values`` (channels, rows, columns) in coding order; (0, 0), or the problem found and the code
    it found it at."""
    x, position = words[0] << 16 | words[1], 2
    channels, rows, columns = values.shape
    for c in range(channels):
        for column in range(columns):
            below = 0
            for row in range(rows):
                context = _context(values, c, row, column, below, fine_rows, stride, rows - hint_rows)
                slot = x & _MASK
                s, start, f = _find(counts[context], totals[context], slot)
                x = f * (x >> PRECISION) + slot - start
                if x < _LOW:
                    if position == len(words):
                        return _EARLY_END, 0
                    x = x << 16 | words[position]
                    position += 1
                value = s - RESIDUAL_DIRECT
                if s == RESIDUAL_ESCAPE:
                    slot = x & _MASK
                    byte = slot // _ESCAPED_BYTE
                    x = _ESCAPED_BYTE * (x >> PRECISION) + slot - byte * _ESCAPED_BYTE
                    if x < _LOW:
                        if position == len(words):
                            return _EARLY_END, 0
                        x = x << 16 | words[position]
                        position += 1
                    value = byte - 128
                    if abs(value) <= RESIDUAL_DIRECT or value < -127:
                        return _BAD_ESCAPE, value
                _update(counts, totals, context, s)
                values[c, row, column] = value
                below = value
    return (0 if x == _LOW and position == len(words) else _NOT_AT_END), 0


def decode_residual(data: bytes, shape: tuple[int, int, int], fine_rows: int = 0, stride: int = 1,
                    hint_rows: int = 0, counts: np.ndarray | None = None) -> np.ndarray:
    """Residual codes shaped ``shape`` from a stream of :func:`encode_residual` with the same ``fine_rows``,
    ``stride``, ``hint_rows`` and ``counts``; ValueError if not sound."""
    values = np.zeros(shape, np.int64)
    with _decoding():
        status, value = _decode_residual(_words(data), values, fine_rows, stride, hint_rows, *_start_counts(counts))
    if status == _BAD_ESCAPE:
        raise ValueError(f"escaped residual code {value}: not below -{RESIDUAL_DIRECT} or above "
                         f"{RESIDUAL_DIRECT} and at least -127")
    _check(status)
    return values.astype(np.int8)
