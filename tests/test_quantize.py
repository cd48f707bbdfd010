"""The quantizers of format_spec.md section 9, as pure functions."""

import numpy as np
import pytest

from codec.quantize import dequantize, dequantize_phase, levels, quantize, quantize_phase


@pytest.mark.parametrize("bits, code_bits", [(8, None), (16, None), (8, 4), (8, 2), (16, 9)])
def test_latent_round_trip_error_is_half_a_step(bits, code_bits):
    x = np.random.default_rng(bits).standard_normal((2, 3, 1, 50)).astype(np.float32)
    codes, scales = quantize(x, bits, code_bits)
    used = 2 ** ((code_bits or bits) - 1) - 1
    assert codes.dtype == (np.int8 if bits == 8 else np.int16) and np.abs(codes).max() == used
    peak = np.abs(x).max(axis=(2, 3))
    np.testing.assert_allclose(scales, peak * levels(bits) / used, rtol=1e-6)
    error = np.abs(dequantize(codes, scales, bits) - x)
    assert (error <= peak[..., None, None] / used / 2 * (1 + 1e-5)).all()


def test_zero_and_non_finite_channels():
    x = np.zeros((1, 2, 1, 4), np.float32)
    x[0, 1] = [[np.nan, np.inf, -np.inf, 0.5]]
    codes, scales = quantize(x, 8)
    assert scales.tolist() == [[0.0, 0.5]] and codes[0, 0].tolist() == [[0, 0, 0, 0]]
    assert codes[0, 1].tolist() == [[0, 0, 0, 127]] and np.isfinite(dequantize(codes, scales, 8)).all()


def test_rounding_is_half_to_even():
    x = np.array([[[[2.5, 3.5, -2.5, 127.0]]]], np.float32)  # scale 127 makes x itself the code
    codes, _ = quantize(x, 8)
    assert codes.ravel().tolist() == [2, 4, -2, 127]


@pytest.mark.parametrize("bits", [8, 16])
def test_phase_round_trip(bits):
    phase = np.linspace(-np.pi, np.pi, 1001, dtype=np.float32)
    restored = dequantize_phase(quantize_phase(phase, bits), bits)
    error = np.angle(np.exp(1j * (restored - phase)))
    assert np.abs(error).max() <= np.pi / 2**bits * 1.0001
    assert restored.min() > -np.pi and restored.max() <= np.pi
