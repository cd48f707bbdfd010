"""The layers' quantizers (format_spec.md sections 7 and 8), as pure functions."""

import numpy as np
import pytest

from nac.layers import latent, stored_phase
from nac.layers.latent import LatentParams
from nac.layers.residual import (
    GROWTH_ONE,
    RESIDUAL_FLOOR,
    SLOPE_ONE,
    SPAN_ONE,
    ResidualLayer,
    dequantize_residual,
    expand_rows,
    quantize_residual,
    residual_steps,
    upsample_residual,
)


def params(*code_bits: int, height: int = 1) -> LatentParams:
    return LatentParams(len(code_bits), height, tuple(code_bits), False)


def layer_of(slope: float, fine_bins: int = 0, fine_step: float = 0.0) -> ResidualLayer:
    """A residual layer of 12 single-bin rows, a column every 2 frames, step 0.5, span 4."""
    return ResidualLayer(bins=12, stride=2, step=0.5, band_start=12, band_growth=GROWTH_ONE,
                         slope=round(slope * SLOPE_ONE), span=4 * SPAN_ONE if slope else 0, fine_bins=fine_bins,
                         fine_step=fine_step)


def test_peak_grid_is_sixteen_steps_an_octave_exact_in_float32():
    for shift in (-20, 0, 7):
        values = latent.decode_peaks(shift, np.arange(256))
        assert values[0] == 0 and values[1] == 16 * 2.0**shift and values[17] == 32 * 2.0**shift
        assert values[255] == 30 * 2.0 ** (15 + shift) and values.dtype == np.float32
        assert (np.diff(values[1:]) > 0).all()
        ratios = values[2:].astype(np.float64) / values[1:-1]
        assert ratios.max() <= 17 / 16 + 1e-9 and ratios.min() >= 32 / 31 - 1e-9


def test_peaks_round_up_on_the_grid_their_largest_sets_and_code_exactly():
    peaks = np.array([[0.0, 2.0**-30, 1.0, 1.0000001, 1.07, 120.0, np.nan]], np.float32)
    rounded = latent.round_peaks(peaks)
    shift, codes = latent.encode_peaks(rounded)
    assert shift == latent.peak_shift(120.0) == -13  # 120 = 30 * 2**(15 - 13): the grid's top
    np.testing.assert_array_equal(latent.decode_peaks(shift, codes), rounded)
    assert rounded[0, 0] == 0 and rounded[0, 6] == 0  # zero and NaN
    assert rounded[0, 1] == 16 * 2.0**shift  # more than 16 octaves down: the grid's least value
    assert rounded[0, 2:6].tolist() == [1.0, 1.0625, 1.125, 120.0]
    assert (rounded[0, 2:6] >= peaks[0, 2:6]).all()
    with pytest.raises(ValueError, match="off their group's grid"):
        latent.encode_peaks(rounded * np.float32(1.01))
    assert latent.peak_shift(1e38) == latent.MAX_SHIFT and latent.peak_shift(1e-38) == latent.MIN_SHIFT


@pytest.mark.parametrize("code_bits", [(5, 5, 5), (4, 3, 4), (2, 2, 2), (16, 16, 16), (9, 8, 9)])
def test_latent_round_trip_error_is_half_a_step(code_bits):
    x = np.random.default_rng(sum(code_bits)).standard_normal((2, 3, 1, 50)).astype(np.float32)
    p = params(*code_bits)
    codes, peaks = latent.quantize(x, p)
    assert codes.dtype == (np.int8 if max(code_bits) <= 8 else np.int16) and peaks.dtype == np.float32
    limits = np.array([2 ** (b - 1) - 1 for b in code_bits])
    assert (np.abs(codes).max(axis=(0, 2, 3)) <= limits).all()
    step = latent.steps(peaks, p)
    assert step.dtype == np.float32
    np.testing.assert_array_equal(step, peaks / limits.astype(np.float32))
    error = np.abs(latent.dequantize(codes, step) - x)
    assert (error <= step[..., None, None] / 2 * (1 + 1e-5)).all()


def test_zero_and_non_finite_channels():
    x = np.zeros((1, 2, 1, 4), np.float32)
    x[0, 1] = [[np.nan, np.inf, -np.inf, 0.5]]
    codes, peaks = latent.quantize(x, params(8, 8))
    assert peaks.tolist() == [[0.0, 0.5]] and codes[0, 0].tolist() == [[0, 0, 0, 0]]
    assert codes[0, 1].tolist() == [[0, 0, 0, 127]]
    assert np.isfinite(latent.dequantize(codes, latent.steps(peaks, params(8, 8)))).all()


def test_codes_follow_the_spec_formula():
    # a peak of 120 is on the grid: step 120 / 127 (float32), codes rint(x / step), half to even
    x = np.array([[[[120.0, -60.0, 0.5, 3.0]]]], np.float32)
    codes, peaks = latent.quantize(x, params(8))
    step = np.float32(120.0) / np.float32(127.0)
    assert peaks.tolist() == [[120.0]]
    assert codes.ravel().tolist() == np.rint(x / step).astype(int).ravel().tolist() == [127, -64, 1, 3]
    # beyond the largest shift's grid: the peak is the grid's top, codes clip to +-U
    codes, peaks = latent.quantize(np.array([[[[1e38, 4e36, -1e38]]]], np.float32), params(3))
    assert peaks.tolist() == [[np.float32(30 * 2.0**115)]] and codes.ravel().tolist() == [3, 3, -3]


def test_each_latent_channel_has_its_own_code_bits():
    x = np.random.default_rng(5).standard_normal((2, 3, 1, 40)).astype(np.float32)
    codes, peaks = latent.quantize(x, params(3, 4, 2))
    assert [int(np.abs(codes[:, k]).max()) for k in range(3)] == [3, 7, 1]
    uniform_codes, uniform_peaks = latent.quantize(x[:, 1:2], params(4))
    np.testing.assert_array_equal(codes[:, 1:2], uniform_codes)
    np.testing.assert_array_equal(peaks[:, 1:2], uniform_peaks)
    assert latent.channel_code_bits(4, 5, (3, 1, 0, 2, 4), 2) == (4, 3, 4, 3, 4)
    with pytest.raises(ValueError, match="code bits must be 2..16"):
        latent.code_limit(17)


@pytest.mark.parametrize("bits", [8, 16])
def test_phase_round_trip(bits):
    phase = np.linspace(-np.pi, np.pi, 1001, dtype=np.float32)
    restored = stored_phase.dequantize(stored_phase.quantize(phase, bits), bits)
    error = np.angle(np.exp(1j * (restored - phase)))
    assert np.abs(error).max() <= np.pi / 2**bits * 1.0001
    assert restored.min() > -np.pi and restored.max() <= np.pi


def test_residual_rows_follow_the_header_formula():
    layer = ResidualLayer(bins=40, stride=2, step=0.5, band_start=8, band_growth=round(2 ** 0.25 * GROWTH_ONE))
    edges = layer.row_edges
    assert edges[:9] == tuple(range(9)) and edges[-1] == 40
    for low, high in zip(edges[8:], edges[9:]):
        assert high == min(40, max(low + 1, (low * layer.band_growth + 2**15) >> 16))
    assert layer.rows == len(edges) - 1 and layer.code_rows == layer.rows and layer.columns(13) == 6
    hinted = ResidualLayer(bins=40, stride=2, step=0.5, band_start=8, fine_bins=4, fine_step=0.25, hint_bins=4,
                           hint_delay=4, hint_turns=4)
    assert hinted.rows == 4 * 2 + 36 and hinted.code_rows == hinted.rows + 2
    assert hinted.hints(512).bins == 4 and layer.hints(512) is None


@pytest.mark.parametrize("step", [0.5, 1.0, 1.5])
def test_residual_brings_the_decoded_log_magnitude_within_half_a_step(step):
    rng = np.random.default_rng(3)
    original = rng.uniform(RESIDUAL_FLOOR, 6, (2, 8, 40)).astype(np.float32)
    decoded = original + rng.normal(0, 2, original.shape).astype(np.float32)
    decoded = np.maximum(decoded, RESIDUAL_FLOOR)  # the stated bound holds above the floor
    codes = quantize_residual(original, decoded, step)
    assert codes.dtype == np.int8 and codes.shape == original.shape
    corrected = decoded + dequantize_residual(codes, step)
    assert np.abs(corrected - original).max() <= step / 2 * (1 + 1e-5)


def test_residual_floor_rounding_clamp_and_non_finite_values():
    floor = RESIDUAL_FLOOR
    original = np.array([floor - 5, floor - 1, floor + 2.5, floor + 3.5, 400.0, np.nan], np.float32)
    decoded = np.array([floor - 9, floor + 1, floor, floor, -400.0, 0.0], np.float32)
    codes = quantize_residual(original, decoded, 1.0)
    # below the floor on both sides: 0; towards the floor; half to even; clamped to +-127; NaN: 0
    assert codes.tolist() == [0, -1, 2, 4, 127, 0]
    assert dequantize_residual(codes, 0.5).tolist() == [0.0, -0.5, 1.0, 2.0, 63.5, 0.0]


def test_rows_code_one_energy_gain_per_band_and_single_bins_as_before():
    rng = np.random.default_rng(5)
    decoded = rng.uniform(-3.0, 2.0, (1, 24, 7)).astype(np.float32)
    original = decoded + rng.normal(0.0, 1.0, decoded.shape).astype(np.float32)
    original[:, 16:24] = decoded[:, 16:24] + np.float32(1.5)  # a band raised by 1.5 in every bin
    edges = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24]
    codes = quantize_residual(original, decoded, 0.5, edges)
    assert codes.shape == (1, 11, 7)
    assert np.array_equal(codes[:, :8], quantize_residual(original, decoded, 0.5)[:, :8])
    assert (codes[:, 10] == 3).all()
    per_bin = expand_rows(codes, edges)
    assert per_bin.shape == decoded.shape
    for row, (low, high) in enumerate(zip(edges, edges[1:])):
        assert (per_bin[:, low:high] == codes[:, row : row + 1]).all()
    # every band's corrected energy lies within half a step (in log-magnitude) of the original's
    corrected = decoded + dequantize_residual(per_bin, 0.5)
    for low, high in zip(edges[8:], edges[9:]):
        energy = [np.log(np.exp(2.0 * x[:, low:high].astype(np.float64)).sum(axis=1)) / 2 for x in (corrected, original)]
        assert np.abs(energy[0] - energy[1]).max() <= 0.25 + 1e-6


def test_residual_columns_are_interpolated_between_and_held_after_the_last():
    columns = np.array([[[0.0, 4.0, 8.0], [1.0, 1.0, -1.0]]], np.float32)
    assert upsample_residual(columns, 1) is columns
    frames = upsample_residual(columns, 2)
    assert frames.dtype == np.float32 and frames.shape == (1, 2, 6)
    assert frames[0].tolist() == [[0, 2, 4, 6, 8, 8], [1, 1, 1, 0, -1, -1]]
    assert upsample_residual(columns, 4)[0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]
    assert upsample_residual(columns[..., :0], 2).shape == (1, 2, 0)


def test_residual_steps_widen_below_the_loudest_row_of_each_column_up_to_the_span():
    decoded = np.full((1, 6, 3), RESIDUAL_FLOOR, np.float32)
    decoded[0, 0] = [2.0, 0.0, -9.0]  # row 0: one bin
    decoded[0, 1] = [1.0, 1.0, -9.0]  # row 1: one bin
    decoded[0, 2:6, 0] = np.log([1.0, 1.0, 1.0, 5.0])  # row 2: four bins, mean power (1 + 1 + 1 + 25) / 4 = 7
    edges = [0, 1, 2, 6]
    steps = residual_steps(decoded, 0.5, edges, 0.25, 3.0)
    assert steps.shape == (1, 3, 3) and steps.dtype == np.float64
    level_2 = np.log(7.0) / 2
    np.testing.assert_allclose(steps[0, :, 0], 0.5 * np.exp(0.25 * np.array([0.0, 1.0, 2.0 - level_2])))
    # column 1: row 1 is loudest; row 2 is at the floor 5 below it, beyond the span of 3
    np.testing.assert_allclose(steps[0, :, 1], 0.5 * np.exp(0.25 * np.array([1.0, 0.0, 3.0])))
    # column 2: all at the floor (the first two held there), so one step everywhere
    np.testing.assert_allclose(steps[0, :, 2], [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(residual_steps(decoded, 0.5, edges, 0.0, 3.0), np.full((1, 3, 3), 0.5))


def decoded_and_original(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random log-magnitudes (2 channels, 12 bins, 8 frames) as a decoder predicts them, and the truth."""
    rng = np.random.default_rng(seed)
    decoded = rng.uniform(-3.0, 4.0, (2, 12, 8)).astype(np.float32)
    return decoded, decoded + rng.normal(0.0, 1.5, decoded.shape).astype(np.float32)


@pytest.mark.parametrize("slope", [0.0, 0.3])
def test_fine_bins_are_corrected_at_every_frame_in_their_own_step(slope):
    decoded, original = decoded_and_original(8)
    coarse = layer_of(slope)
    layer = layer_of(slope, fine_bins=3, fine_step=0.2)
    codes = layer.quantize(original, decoded, decoded)
    # each fine bin takes two rows (its even frames, then its odd ones) ahead of the other nine
    assert codes.shape == (2, 15, 4)
    np.testing.assert_array_equal(codes[:, 6:], coarse.quantize(original, decoded, decoded)[:, 3:])
    steps = np.broadcast_to(layer.frame_steps(decoded), decoded.shape)
    corrected = decoded + layer.correction(codes, decoded)
    error = np.abs(corrected - np.maximum(original, RESIDUAL_FLOOR))
    # every frame of a fine bin lands within half its step; other bins only at the columns
    assert (error[:, :3] <= steps[:, :3] / 2 * (1 + 1e-5)).all()
    assert (error[:, 3:, ::2] <= steps[:, 3:, ::2] / 2 * (1 + 1e-5)).all()
    # the fine step scales as the other rows' step does: by the same growth at that frame
    growth = residual_steps(decoded, 1.0, list(range(13)), layer.slope_value, 4.0) if slope else np.ones(decoded.shape)
    np.testing.assert_allclose(steps[:, :3], 0.2 * growth[:, :3], rtol=1e-6)
    np.testing.assert_allclose(steps[:, 3:, ::2], 0.5 * growth[:, 3:, ::2], rtol=1e-6)
    # bin 1's odd frames are its second row: a code there moves only that bin and frame
    bumped = codes.copy()
    bumped[0, 3, 2] += 1
    change = layer.correction(bumped, decoded) - layer.correction(codes, decoded)
    assert np.flatnonzero(change).tolist() == [np.ravel_multi_index((0, 1, 5), change.shape)]


@pytest.mark.parametrize("slope", [0.0, 0.3])
def test_residual_layer_corrections_land_within_half_their_own_step(slope):
    decoded, original = decoded_and_original(7)
    layer = layer_of(slope)
    codes = layer.quantize(original, decoded, decoded)
    assert codes.shape == (2, 12, 4)
    steps = layer.frame_steps(decoded)
    corrected = decoded + layer.correction(codes, decoded)
    columns = slice(None, None, 2)
    error = np.abs(corrected - np.maximum(original, RESIDUAL_FLOOR))[..., columns]
    bound = (np.broadcast_to(steps, decoded.shape)[..., columns] / 2) * (1 + 1e-5)
    assert (error <= bound).all()
    if slope:  # quieter rows get wider steps, so fewer code values than with one step
        assert np.ptp(steps) > 0.5
        assert np.abs(codes).sum() < np.abs(layer_of(0.0).quantize(original, decoded, decoded)).sum()
    else:
        assert steps == 0.5
