"""rANS coding of latent codes with static tables (pure functions; format_spec.md section 9.1, format 3.0).

Each row of codes (one latent channel's values over a chunk's frames) is coded
in time order; the probability of a code comes from the table of its latent
channel, in the row picked by the code before it (code 0 before the first).
Tables hold integer frequencies: every entry >= 1, each row summing to
``2**PRECISION``, so coding is integer-only and every machine agrees.

The coder is a single-stream rANS with a 32-bit state and 16-bit words: the
decoder starts from the first two words (state = w0 << 16 | w1), and for each
code takes ``slot = x mod 2**P``, finds the symbol ``s`` with ``cum[s] <= slot
< cum[s] + f[s]``, sets ``x = f[s] * (x >> P) + slot - cum[s]`` and, while
``x < 2**16``, shifts in the next word. A sound stream ends with ``x == 2**16``
and no words left.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

PRECISION = 15
_LOW = 1 << 16  # the state's lower bound, and its value before the first code is encoded


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


def encode(codes: np.ndarray, tables: np.ndarray, freq: np.ndarray) -> bytes:
    """The rANS stream of ``codes`` (rows, frames) in [-U, U]; row ``r`` uses table ``tables[r]``."""
    code_range = freq.shape[-1] // 2
    symbols = (np.asarray(codes, np.int64) + code_range).tolist()
    freq_rows, cum_rows = freq.tolist(), _cumulative(freq)
    words, x = [], _LOW
    for row, table in zip(reversed(symbols), reversed(np.asarray(tables).tolist())):
        f_table, c_table = freq_rows[table], cum_rows[table]
        for t in range(len(row) - 1, -1, -1):
            s, context = row[t], row[t - 1] if t else code_range
            f = f_table[context][s]
            if x >= f << (32 - PRECISION):
                words.append(x & 0xFFFF)
                x >>= 16
            x = ((x // f) << PRECISION) + x % f + c_table[context][s]
    words += [x & 0xFFFF, x >> 16]
    return np.array(words[::-1], dtype="<u2").tobytes()


def decode(data: bytes, tables: np.ndarray, freq: np.ndarray, frames: int) -> np.ndarray:
    """Codes (rows, frames) from a stream made by :func:`encode`; ValueError if it is not sound."""
    if len(data) % 2 or len(data) < 4:
        raise ValueError(f"code stream of {len(data)} bytes: not whole 16-bit words, or under 4 bytes")
    code_range = freq.shape[-1] // 2
    words = np.frombuffer(data, dtype="<u2").tolist()
    x, position, mask = words[0] << 16 | words[1], 2, (1 << PRECISION) - 1
    if x < _LOW:
        raise ValueError("code stream starts below the coder's state range")
    freq_rows, cum_rows = freq.tolist(), _cumulative(freq)
    rows = []
    for table in np.asarray(tables).tolist():
        f_table, c_table = freq_rows[table], cum_rows[table]
        context, row = code_range, []
        for _ in range(frames):
            slot = x & mask
            cum = c_table[context]
            s = bisect_right(cum, slot) - 1
            x = f_table[context][s] * (x >> PRECISION) + slot - cum[s]
            if x < _LOW:
                if position == len(words):
                    raise ValueError("code stream ends early")
                x = x << 16 | words[position]
                position += 1
            row.append(s)
            context = s
        rows.append(row)
    if x != _LOW or position != len(words):
        raise ValueError("code stream does not end where its codes do (damaged)")
    return np.array(rows, dtype=np.int64).reshape(len(rows), frames) - code_range
