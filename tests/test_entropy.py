"""The rANS coders of nac/format/rans.py: static tables for latent codes, adaptive models for residual codes."""

import hashlib

import numpy as np
import pytest

from nac.format import rans

# sha256 prefixes of two streams made by the pure-Python coder of format 9's first release (the bytes every
# later coder must make)
RESIDUAL_DIGEST, LATENT_DIGEST = "1e5bbac288becf20", "00158d95fcd53928"


def tables(code_range: int, count: int = 3, seed: int = 0) -> np.ndarray:
    size = 2 * code_range + 1
    return rans.tables_from_counts(np.random.default_rng(seed).integers(1, 1000, (count, size, size)))


def test_tables_are_valid_integer_tables():
    freq = tables(7)
    rans.check_tables(freq, 7)
    assert freq.min() >= 1 and (freq.sum(-1) == 1 << rans.PRECISION).all()
    zero = freq.copy()
    zero[0, 0, 1] += zero[0, 0, 0]
    zero[0, 0, 0] = 0  # rows still sum right, but one code could not be coded
    for bad, message in ((freq[:, :3], "shaped"), (freq.astype(float), "integers"), (zero, "integers >= 1"),
                         (freq + 1, "sum to")):
        with pytest.raises(ValueError, match=message):
            rans.check_tables(bad, 7)


@pytest.mark.parametrize("code_range", [1, 3, 7, 31])
def test_round_trip(code_range):
    rng = np.random.default_rng(code_range)
    codes = np.clip(np.rint(rng.normal(0, code_range / 2, (6, 57))), -code_range, code_range).astype(np.int64)
    codes[0] = code_range  # a run of the extreme code
    which = np.arange(6) % 3
    freq = tables(code_range)
    data = rans.encode(codes, which, freq)
    np.testing.assert_array_equal(rans.decode(data, which, freq, 57), codes)


def test_damaged_streams_are_rejected():
    codes = np.tile(np.arange(-7, 8), (4, 4))
    which = np.zeros(4, np.int64)
    freq = tables(7, count=1)
    data = rans.encode(codes, which, freq)
    for bad, message in ((data[:-2], "ends early|does not end"), (data + b"\0\0", "does not end"),
                         (data[:3], "whole 16-bit words"), (b"\0\0\0\0", "starts below")):
        with pytest.raises(ValueError, match=message):
            rans.decode(bad, which, freq, codes.shape[1])


# ---------------------------------------------------------------- residual codes (format_spec.md section 8.2)


def test_adaptive_model_intervals_cover_the_range_and_follow_the_counts():
    counts, totals = rans._start_counts(None)
    assert counts[0].tolist() == [1, 2, 4, 8, 16, 32, 64, 32, 16, 8, 4, 2, 1, 1]

    def interval(s):
        return rans._interval(counts[0], totals[0], s)

    for _ in range(400):
        intervals = [interval(s) for s in range(rans.RESIDUAL_SYMBOLS)]
        starts, widths = zip(*intervals)
        assert starts[0] == 0 and starts[-1] + widths[-1] == 1 << rans.PRECISION and min(widths) >= 1
        assert all(start + width == following for (start, width), following in zip(intervals, starts[1:]))
        for s, (start, width) in enumerate(intervals):  # the decoder's search finds each interval from either end
            found = [rans._find(counts[0], totals[0], slot) for slot in (start, start + width - 1)]
            assert found[0] == found[1] == (s, start, width)
        rans._update(counts, totals, 0, 9)
    assert totals[0] == counts[0].sum() <= rans.RESIDUAL_COUNT_LIMIT and counts[0].min() >= 1
    assert max(range(rans.RESIDUAL_SYMBOLS), key=lambda s: interval(s)[1]) == 9
    assert (counts[1:] == rans.default_counts()[1:]).all()  # other contexts untouched


@pytest.mark.parametrize("kernel", ["compiled", "python"])
def test_compiled_and_python_coders_agree(kernel, monkeypatch):
    """The compiled kernels and the same functions run as Python make and read the same bytes."""
    if kernel == "python":
        for name in ("_stream", "_decode_latent", "_residual_intervals", "_decode_residual", "_contexts"):
            monkeypatch.setattr(rans, name, getattr(getattr(rans, name), "py_func", getattr(rans, name)))
        for name in ("_interval", "_find", "_update", "_context", "_clamped"):
            monkeypatch.setitem(rans.__dict__, name, getattr(getattr(rans, name), "py_func", getattr(rans, name)))
    rng = np.random.default_rng(3)
    codes = np.clip(np.rint(rng.laplace(0, 4, (2, 12, 9))), -127, 127).astype(np.int8)
    data = rans.encode_residual(codes, 4, 2, 2)
    assert hashlib.sha256(data).hexdigest()[:16] == RESIDUAL_DIGEST
    np.testing.assert_array_equal(rans.decode_residual(data, codes.shape, 4, 2, 2), codes)
    freq = tables(7, count=3)
    latent = np.clip(np.rint(rng.laplace(0, 2, (5, 40))), -7, 7).astype(np.int64)
    which = np.array([0, 1, 2, 1, 0])
    data = rans.encode(latent, which, freq)
    assert hashlib.sha256(data).hexdigest()[:16] == LATENT_DIGEST
    np.testing.assert_array_equal(rans.decode(data, which, freq, 40), latent)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 16, 9), (1, 73, 40)])
def test_residual_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    codes = np.clip(np.rint(rng.laplace(0, 1.5, shape)), -127, 127).astype(np.int8)
    codes.flat[0] = 127  # escapes at both extremes and just past the direct range
    codes.flat[-1] = -127
    codes.flat[len(codes.flat) // 2] = -7
    data = rans.encode_residual(codes)
    assert rans.encode_residual(codes) == data
    decoded = rans.decode_residual(data, shape)
    assert decoded.dtype == np.int8
    np.testing.assert_array_equal(decoded, codes)


@pytest.mark.parametrize("fine_rows, stride", [(6, 2), (5, 1), (16, 2)])
def test_residual_round_trip_with_fine_rows(fine_rows, stride):
    shape = (2, 16, 9)
    codes = np.clip(np.rint(np.random.default_rng(fine_rows).laplace(0, 1.5, shape)), -127, 127).astype(np.int8)
    data = rans.encode_residual(codes, fine_rows, stride)
    assert data != rans.encode_residual(codes)  # other contexts, other intervals
    np.testing.assert_array_equal(rans.decode_residual(data, shape, fine_rows, stride), codes)


def test_fine_rows_contexts_follow_a_bin_from_frame_to_frame():
    """v7's point: a fine bin's code one frame earlier predicts its next one better than the codes two frames
    earlier and in the bin below at the next frame, which the other rows' contexts would use."""
    rng = np.random.default_rng(5)
    stride, bins, frames = 2, 8, 400
    flips = rng.random((bins, frames)) < 0.1  # each bin's code is +1 or -1 and changes sign one frame in ten
    walk = np.where(np.cumsum(flips, axis=1) % 2, -1, 1)
    rows = walk.reshape(bins, frames // stride, stride).swapaxes(1, 2).reshape(1, bins * stride, frames // stride)
    codes = np.concatenate([rows, np.zeros((1, 4, frames // stride), np.int64)], axis=1).astype(np.int8)
    fine = rans.encode_residual(codes, bins * stride, stride)
    assert len(fine) < 0.85 * len(rans.encode_residual(codes))
    np.testing.assert_array_equal(rans.decode_residual(fine, codes.shape, bins * stride, stride), codes)


def test_residual_coding_learns_a_file_whose_codes_are_mostly_zero():
    codes = np.zeros((1, 40, 200), np.int8)
    codes[0, 5, ::7] = 2
    assert len(rans.encode_residual(codes)) * 8 < 0.1 * codes.size  # under 0.1 bit a code


def test_damaged_residual_streams_are_rejected():
    codes = np.clip(np.rint(np.random.default_rng(2).laplace(0, 2, (2, 8, 30))), -20, 20).astype(np.int8)
    data = rans.encode_residual(codes)
    for bad, message in ((data[:-2], "ends early|does not end"), (data + b"\0\0", "does not end"),
                         (data[:3], "whole 16-bit words")):
        with pytest.raises(ValueError, match=message):
            rans.decode_residual(bad, codes.shape)
    with pytest.raises(ValueError, match="does not end"):
        rans.decode_residual(data, (2, 8, 29))  # fewer codes than the stream holds


def test_starting_counts_change_the_stream_not_the_codes():
    """Residual tables (a model's companion) only start each context elsewhere: fitted ones cost fewer bytes."""
    rng = np.random.default_rng(9)
    codes = np.clip(np.rint(rng.laplace(0.8, 2.5, (1, 24, 31))), -127, 127).astype(np.int8)
    contexts, symbols = rans.residual_symbols(codes)
    histogram = np.zeros((rans.RESIDUAL_MODELS, rans.RESIDUAL_SYMBOLS))
    np.add.at(histogram, (contexts, symbols), 1)
    counts = rans.counts_from_histogram(histogram, 4096)
    fitted = rans.encode_residual(codes, counts=counts)
    assert len(fitted) < 0.95 * len(rans.encode_residual(codes))
    np.testing.assert_array_equal(rans.decode_residual(fitted, codes.shape, counts=counts), codes)
    with pytest.raises(ValueError, match="at most"):
        rans.check_counts(counts * 4)
    with pytest.raises(ValueError, match="shaped"):
        rans.check_counts(counts[:, :5])


@pytest.mark.parametrize("value", [-128, 3])
def test_escaped_codes_must_be_beyond_the_direct_range_and_at_least_minus_127(value):
    """An escape carries only codes the direct symbols cannot: one way to code each value."""
    counts, totals = rans._start_counts(None)
    start, width = rans._interval(counts[0], totals[0], rans.RESIDUAL_ESCAPE)  # the first code's context: 0
    byte = rans._ESCAPED_BYTE
    data = rans._stream(np.array([start, (value + 128) * byte]), np.array([width, byte])).astype("<u2").tobytes()
    with pytest.raises(ValueError, match=f"escaped residual code {value}"):
        rans.decode_residual(data, (1, 1, 1))
