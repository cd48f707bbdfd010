"""rANS coding of integer codes (pure functions; format_spec.md section 9).

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

from bisect import bisect_right
from collections.abc import Iterator

import numpy as np

PRECISION = 15
_LOW = 1 << 16  # the state's lower bound, and its value before the first code is encoded
_MASK = (1 << PRECISION) - 1


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


def _cumulative(freq: np.ndarray) -> list:
    """Per table and context, the list ``[0, f0, f0 + f1, ..., 2**P]``."""
    cum = np.concatenate([np.zeros(freq.shape[:-1] + (1,), np.int64), np.cumsum(freq, axis=-1)], axis=-1)
    return cum.tolist()


def _encode_intervals(intervals: list[tuple[int, int]]) -> bytes:
    """The rANS stream of symbols given as (cumulative start, frequency) pairs, in decoding order."""
    words, x = [], _LOW
    for start, f in reversed(intervals):
        if x >= f << (32 - PRECISION):
            words.append(x & 0xFFFF)
            x >>= 16
        x = ((x // f) << PRECISION) + x % f + start
    words += [x & 0xFFFF, x >> 16]
    return np.array(words[::-1], dtype="<u2").tobytes()


class _Reader:
    """Decodes symbols from a stream of :func:`_encode_intervals`: by a cumulative list, or by slot and advance."""

    def __init__(self, data: bytes):
        if len(data) % 2 or len(data) < 4:
            raise ValueError(f"code stream of {len(data)} bytes: not whole 16-bit words, or under 4 bytes")
        self.words = np.frombuffer(data, dtype="<u2").tolist()
        self.x, self.position = self.words[0] << 16 | self.words[1], 2
        if self.x < _LOW:
            raise ValueError("code stream starts below the coder's state range")

    def symbol(self, cum: list[int]) -> int:
        """The next symbol, ``cum`` being ``[0, f0, f0 + f1, ..., 2**P]`` of its distribution."""
        s = bisect_right(cum, self.slot()) - 1
        self.advance(cum[s], cum[s + 1] - cum[s])
        return s

    def slot(self) -> int:
        """``x mod 2**P``: where the next symbol's interval must lie."""
        return self.x & _MASK

    def advance(self, start: int, f: int) -> None:
        """Take the symbol whose interval ``[start, start + f)`` holds :meth:`slot`."""
        x = f * (self.x >> PRECISION) + (self.x & _MASK) - start
        if x < _LOW:
            if self.position == len(self.words):
                raise ValueError("code stream ends early")
            x = x << 16 | self.words[self.position]
            self.position += 1
        self.x = x

    def finish(self) -> None:
        if self.x != _LOW or self.position != len(self.words):
            raise ValueError("code stream does not end where its codes do (damaged)")


def encode(codes: np.ndarray, tables: np.ndarray, freq: np.ndarray) -> bytes:
    """The rANS stream of ``codes`` (rows, frames) in [-U, U]; row ``r`` uses table ``tables[r]``."""
    code_range = freq.shape[-1] // 2
    cum_rows = _cumulative(freq)
    intervals = []
    for row, table in zip((np.asarray(codes, np.int64) + code_range).tolist(), np.asarray(tables).tolist()):
        context = code_range
        for s in row:
            cum = cum_rows[table][context]
            intervals.append((cum[s], cum[s + 1] - cum[s]))
            context = s
    return _encode_intervals(intervals)


def decode(data: bytes, tables: np.ndarray, freq: np.ndarray, frames: int) -> np.ndarray:
    """Codes (rows, frames) from a stream made by :func:`encode`; ValueError if it is not sound."""
    code_range = freq.shape[-1] // 2
    reader, cum_rows = _Reader(data), _cumulative(freq)
    rows = []
    for table in np.asarray(tables).tolist():
        contexts, context, row = cum_rows[table], code_range, []
        for _ in range(frames):
            context = reader.symbol(contexts[context])
            row.append(context)
        rows.append(row)
    reader.finish()
    return np.array(rows, dtype=np.int64).reshape(len(rows), frames) - code_range


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


class _AdaptiveModel:
    """Integer symbol counts of one context and the coding intervals they give."""

    def __init__(self, counts: list[int]):
        self.counts = list(counts)
        self.total = sum(self.counts)

    def interval(self, s: int) -> tuple[int, int]:
        """``(start(s), start(s + 1) - start(s))``, ``start(s) = s + C(s) * (2**P - 14) // N``; each >= 1."""
        below = sum(self.counts[:s])
        start = s + below * _SPREAD // self.total
        return start, s + 1 + (below + self.counts[s]) * _SPREAD // self.total - start

    def find(self, slot: int) -> tuple[int, int, int]:
        """``(s, start, frequency)`` of the symbol whose interval holds ``slot``."""
        total, below, start = self.total, 0, 0
        for s, count in enumerate(self.counts):
            end = s + 1 + (below + count) * _SPREAD // total
            if slot < end:
                return s, start, end - start
            below, start = below + count, end
        raise AssertionError("the last interval ends at 2**P")

    def update(self, s: int) -> None:
        self.counts[s] += RESIDUAL_INCREMENT
        self.total += RESIDUAL_INCREMENT
        if self.total > RESIDUAL_COUNT_LIMIT:
            self.counts = [(count + 1) >> 1 for count in self.counts]
            self.total = sum(self.counts)


# Context parts of a neighbouring code v (index v + 128): 5 * (clamp(v) + 2) for the first
# neighbour, clamp(v) + 2 for the second, clamp(v) = min(2, max(-2, v)).
_CLAMPED = [min(RESIDUAL_CONTEXT_CLAMP, max(-RESIDUAL_CONTEXT_CLAMP, v - 128)) + RESIDUAL_CONTEXT_CLAMP
            for v in range(256)]
_LEFT_PART = [(2 * RESIDUAL_CONTEXT_CLAMP + 1) * part for part in _CLAMPED]
RESIDUAL_CONTEXTS = (2 * RESIDUAL_CONTEXT_CLAMP + 1) ** 2  # per set: the other rows' set, then the fine rows' (v7)
_HINT_CONTEXTS = 2 * RESIDUAL_CONTEXTS  # then per hint row (v8), 5: the same row's clamped code a column earlier
_CLAMP_WIDTH = 2 * RESIDUAL_CONTEXT_CLAMP + 1
RESIDUAL_MODELS = _HINT_CONTEXTS + 2 * _CLAMP_WIDTH


def residual_symbols(codes: np.ndarray, fine_rows: int = 0, stride: int = 1,
                     hint_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(context, symbol) of every code of a chunk in coding order (escaped codes as the escape symbol): what
    residual tables are counted from."""
    values = np.asarray(codes, np.int64).tolist()
    order = list(_coding_order(values, np.shape(codes), fine_rows, stride, hint_rows))
    contexts = np.array([context for *_, context in order], np.int64)
    picked = np.array([values[c][row][column] for c, row, column, _ in order], np.int64)
    symbols = np.where(np.abs(picked) <= RESIDUAL_DIRECT, picked + RESIDUAL_DIRECT, RESIDUAL_ESCAPE)
    return contexts, symbols


def counts_from_histogram(histogram: np.ndarray, total: int) -> np.ndarray:
    """Residual tables from (contexts, symbols) counts: each context's share of ``total``, every count >= 1."""
    histogram = np.asarray(histogram, np.float64) + 0.5
    counts = np.maximum(1, np.floor(histogram / histogram.sum(axis=-1, keepdims=True) * total)).astype(np.int64)
    check_counts(counts)
    return counts


def _models(counts: np.ndarray | None) -> list[_AdaptiveModel]:
    rows = (default_counts() if counts is None else counts).tolist()
    return [_AdaptiveModel(row) for row in rows]


def _coding_order(values: list, shape: tuple[int, int, int], fine_rows: int = 0, stride: int = 1,
                  hint_rows: int = 0) -> Iterator[tuple[int, int, int, int]]:
    """(channel, row, column, context) of each code in coding order: channel, column (time), row (upwards).

    The context ``5 * (a + 2) + (b + 2)`` comes from the clamped codes left of
    (previous column) and below (previous row) it. The first ``fine_rows``
    rows (v7: the fine bins, ``stride`` rows each, row ``k`` of a bin holding
    its frames ``j * stride + k``) take ``25 + 5 * (a + 2) + (b + 2)`` instead,
    ``a`` the same bin's code one frame earlier and ``b`` the code of the bin
    below in the same frame. The last ``hint_rows`` rows (v8: a delay row and
    a turn row) take ``50 + 5 * h + (a + 2)``, ``h`` the hint row and ``a`` its
    code a column earlier. Codes are read from ``values`` when the code's
    turn comes (0 where there is none), so a decoder may fill ``values`` as it goes.
    """
    channels, rows, columns = shape
    first_hint = rows - hint_rows
    for c in range(channels):
        plane = values[c]
        for column in range(columns):
            below = 128
            for row in range(rows):
                if row >= first_hint:
                    left = plane[row][column - 1] + 128 if column else 128
                    yield c, row, column, _HINT_CONTEXTS + _CLAMP_WIDTH * (row - first_hint) + _CLAMPED[left]
                elif row < fine_rows:
                    if row % stride:
                        earlier = plane[row - 1][column] + 128
                    else:
                        earlier = plane[row + stride - 1][column - 1] + 128 if column else 128
                    lower = plane[row - stride][column] + 128 if row >= stride else 128
                    yield c, row, column, RESIDUAL_CONTEXTS + _LEFT_PART[earlier] + _CLAMPED[lower]
                else:
                    left = plane[row][column - 1] + 128 if column else 128
                    yield c, row, column, _LEFT_PART[left] + _CLAMPED[below]
                below = plane[row][column] + 128


def encode_residual(codes: np.ndarray, fine_rows: int = 0, stride: int = 1, hint_rows: int = 0,
                    counts: np.ndarray | None = None) -> bytes:
    """The rANS stream of a chunk's residual codes (channels, rows, columns) in [-127, 127]; the first
    ``fine_rows`` rows, ``stride`` a bin, in the fine bins' contexts, the last ``hint_rows`` in the phase
    hints'; every context starts from its row of ``counts`` (:func:`default_counts` for None)."""
    values = np.asarray(codes, np.int64).tolist()
    models = _models(counts)
    intervals = []
    for c, row, column, context in _coding_order(values, np.shape(codes), fine_rows, stride, hint_rows):
        value = values[c][row][column]
        model = models[context]
        s = value + RESIDUAL_DIRECT if abs(value) <= RESIDUAL_DIRECT else RESIDUAL_ESCAPE
        intervals.append(model.interval(s))
        if s == RESIDUAL_ESCAPE:
            intervals.append(((value + 128) * _ESCAPED_BYTE, _ESCAPED_BYTE))
        model.update(s)
    return _encode_intervals(intervals)


def decode_residual(data: bytes, shape: tuple[int, int, int], fine_rows: int = 0, stride: int = 1,
                    hint_rows: int = 0, counts: np.ndarray | None = None) -> np.ndarray:
    """Residual codes shaped ``shape`` from a stream of :func:`encode_residual` with the same ``fine_rows``,
    ``stride``, ``hint_rows`` and ``counts``; ValueError if not sound."""
    channels, rows, columns = shape
    values = [[[0] * columns for _ in range(rows)] for _ in range(channels)]
    models = _models(counts)
    escaped = list(range(0, (1 << PRECISION) + 1, _ESCAPED_BYTE))
    reader = _Reader(data)
    for c, row, column, context in _coding_order(values, shape, fine_rows, stride, hint_rows):
        model = models[context]
        s, start, f = model.find(reader.slot())
        reader.advance(start, f)
        value = s - RESIDUAL_DIRECT
        if s == RESIDUAL_ESCAPE:
            value = reader.symbol(escaped) - 128
            if abs(value) <= RESIDUAL_DIRECT or value < -127:
                raise ValueError(f"escaped residual code {value}: not below -{RESIDUAL_DIRECT} or above "
                                 f"{RESIDUAL_DIRECT} and at least -127")
        model.update(s)
        values[c][row][column] = value
    reader.finish()
    return np.array(values, dtype=np.int8).reshape(shape)
