"""The static-table rANS coder of codec/entropy.py (format_spec.md section 9.1)."""

import numpy as np
import pytest

from codec import entropy


def tables(code_range: int, count: int = 3, seed: int = 0) -> np.ndarray:
    size = 2 * code_range + 1
    return entropy.tables_from_counts(np.random.default_rng(seed).integers(1, 1000, (count, size, size)))


def test_tables_are_valid_integer_tables():
    freq = tables(7)
    entropy.check_tables(freq, 7)
    assert freq.min() >= 1 and (freq.sum(-1) == 1 << entropy.PRECISION).all()
    zero = freq.copy()
    zero[0, 0, 1] += zero[0, 0, 0]
    zero[0, 0, 0] = 0  # rows still sum right, but one code could not be coded
    for bad, message in ((freq[:, :3], "shaped"), (freq.astype(float), "integers"), (zero, "integers >= 1"),
                         (freq + 1, "sum to")):
        with pytest.raises(ValueError, match=message):
            entropy.check_tables(bad, 7)


@pytest.mark.parametrize("code_range", [1, 3, 7, 31])
def test_round_trip(code_range):
    rng = np.random.default_rng(code_range)
    codes = np.clip(np.rint(rng.normal(0, code_range / 2, (6, 57))), -code_range, code_range).astype(np.int64)
    codes[0] = code_range  # a run of the extreme code
    which = np.arange(6) % 3
    freq = tables(code_range)
    data = entropy.encode(codes, which, freq)
    np.testing.assert_array_equal(entropy.decode(data, which, freq, 57), codes)


def test_damaged_streams_are_rejected():
    codes = np.tile(np.arange(-7, 8), (4, 4))
    which = np.zeros(4, np.int64)
    freq = tables(7, count=1)
    data = entropy.encode(codes, which, freq)
    for bad, message in ((data[:-2], "ends early|does not end"), (data + b"\0\0", "does not end"),
                         (data[:3], "whole 16-bit words"), (b"\0\0\0\0", "starts below")):
        with pytest.raises(ValueError, match=message):
            entropy.decode(bad, which, freq, codes.shape[1])
