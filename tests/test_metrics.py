"""Known-answer tests for nac.lab.metrics."""

import sys

import numpy as np
import pytest

from nac.lab import metrics
from nac.lab.metrics import MAX_DB, align_lengths, lsd_db, si_sdr_db, snr_db

RATE = 16000


def noise(seconds=1.0, channels=None, seed=0, scale=0.1):
    shape = (round(seconds * RATE),) if channels is None else (channels, round(seconds * RATE))
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def speechlike(seconds=2.0, seed=0):
    """Noise bursts shaped by a 4 Hz syllable envelope: enough for PESQ's voice activity detector."""
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    carrier = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 660 * t) + noise(seconds, seed=seed)
    return (0.3 * envelope * carrier).astype(np.float32)


def with_noise_at(reference, snr, seed=1):
    n = noise(reference.shape[-1] / RATE, seed=seed).astype(np.float64)
    n *= np.sqrt(np.sum(reference.astype(np.float64) ** 2) / np.sum(n**2) / 10 ** (snr / 10))
    return reference + n


@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0, 20.0, 40.0])
def test_snr_of_noise_added_at_a_known_level(target):
    x = noise()
    assert snr_db(x, with_noise_at(x, target)) == pytest.approx(target, abs=0.1)


def test_snr_counts_gain_as_noise():
    x = noise()
    assert snr_db(x, 2 * x) == pytest.approx(0.0, abs=1e-9)
    assert snr_db(x, np.zeros_like(x)) == pytest.approx(0.0, abs=1e-9)


def test_si_sdr_known_answer_with_orthogonal_noise():
    r = noise(seed=2).astype(np.float64)
    r -= r.mean()
    n = noise(seed=3).astype(np.float64)
    n -= n.mean()
    n -= np.dot(n, r) / np.dot(r, r) * r
    n *= np.sqrt(np.sum(r**2) / np.sum(n**2) / 10 ** (15 / 10))
    assert si_sdr_db(r, r + n) == pytest.approx(15.0, abs=1e-6)


def test_si_sdr_ignores_gain_and_offset():
    x = noise()
    y = with_noise_at(x, 12.0)
    base = si_sdr_db(x, y)
    assert base == pytest.approx(12.0, abs=0.2)
    for gain in (0.01, 0.5, 3.0, 100.0, -1.0):
        assert si_sdr_db(x, gain * y) == pytest.approx(base, abs=1e-6)
    assert si_sdr_db(x, y + 0.25) == pytest.approx(base, abs=1e-6)


def test_identical_signals():
    x = noise(channels=2)
    assert snr_db(x, x) == MAX_DB
    assert si_sdr_db(x, x) == pytest.approx(MAX_DB)
    assert lsd_db(x, x, RATE) == 0.0


def test_silence_gives_finite_capped_values():
    silent = np.zeros(RATE, np.float32)
    x = noise()
    values = {
        "snr silent/silent": (snr_db(silent, silent), MAX_DB),
        "snr silent/noise": (snr_db(silent, x), -MAX_DB),
        "si-sdr silent/silent": (si_sdr_db(silent, silent), MAX_DB),
        "si-sdr silent/noise": (si_sdr_db(silent, x), -MAX_DB),
        "si-sdr noise/silent": (si_sdr_db(x, silent), -MAX_DB),
        "lsd silent/silent": (lsd_db(silent, silent, RATE), 0.0),
        "snr empty": (snr_db(silent[:0], silent[:0]), MAX_DB),
        "lsd empty": (lsd_db(silent[:0], silent[:0], RATE), 0.0),
    }
    for name, (value, expected) in values.items():
        assert value == expected, name
    assert np.isfinite(lsd_db(silent, x, RATE)) and lsd_db(silent, x, RATE) > 50


def test_lsd_of_a_gain_is_its_level_in_db():
    x = noise()
    assert lsd_db(x, 2 * x, RATE) == pytest.approx(20 * np.log10(2), abs=1e-6)
    assert lsd_db(x, 0.5 * x, RATE, n_fft=256) == pytest.approx(20 * np.log10(2), abs=1e-3)


def test_lsd_leaves_out_frames_silent_in_both():
    x = np.concatenate([noise(0.5), np.zeros(5 * RATE, np.float32)])
    assert lsd_db(x, 2 * x, RATE) == pytest.approx(20 * np.log10(2), abs=0.01)


def test_lsd_max_hz_limits_the_band():
    x = noise()
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.size, 1 / RATE) > 4000] = 0
    lowpassed = np.fft.irfft(spectrum, x.size)
    assert lsd_db(x, lowpassed, RATE) > 20
    assert lsd_db(x, lowpassed, RATE, max_hz=3000) < 1


def test_shapes_1d_and_channels_first_agree():
    x, y = noise(), with_noise_at(noise(), 10.0)
    for metric in (snr_db, si_sdr_db):
        assert metric(x, y) == pytest.approx(metric(x[None], y[None]))
    assert lsd_db(x, y, RATE) == pytest.approx(lsd_db(x[None], y[None], RATE))


def test_multichannel_si_sdr_is_the_channel_mean():
    x = noise(channels=2)
    y = np.stack([with_noise_at(x[0], 5.0), with_noise_at(x[1], 25.0, seed=4)])
    assert si_sdr_db(x, y) == pytest.approx((si_sdr_db(x[0], y[0]) + si_sdr_db(x[1], y[1])) / 2)


def test_channel_mismatch_raises():
    with pytest.raises(ValueError, match="channel"):
        snr_db(noise(channels=2), noise(channels=1))


def test_lengths_are_aligned_to_the_shorter():
    x = noise()
    a, b = align_lengths(x[None], x[:100])
    assert a.shape == (1, 100) and b.shape == (100,)
    assert snr_db(x, x[:-10]) == MAX_DB


def test_pesq_scores_identity_high_and_noise_lower():
    pytest.importorskip("pesq")
    x = speechlike()
    clean = metrics.pesq_wb(x, x, RATE)
    noisy = metrics.pesq_wb(x, with_noise_at(x, 5.0), RATE)
    assert clean > 4.0 and noisy < clean - 1.0


def test_pesq_resamples_and_mixes_channels():
    pytest.importorskip("pesq")
    import soxr

    x = speechlike()
    stereo = np.stack([x, x])
    stereo_44k = soxr.resample(stereo.T, RATE, 44100).T
    assert metrics.pesq_wb(stereo_44k, stereo_44k, 44100) > 4.0


def test_pesq_none_for_silence_or_missing_package(monkeypatch):
    pytest.importorskip("pesq")
    assert metrics.pesq_wb(np.zeros(RATE), np.zeros(RATE), RATE) is None
    monkeypatch.setitem(sys.modules, "pesq", None)
    assert metrics.pesq_wb(speechlike(), speechlike(), RATE) is None


def test_stoi():
    pytest.importorskip("pystoi")
    x = speechlike()
    assert metrics.stoi(x, x, RATE) == pytest.approx(1.0, abs=1e-6)
    assert metrics.stoi(x, with_noise_at(x, -5.0), RATE) < 0.95
    assert metrics.stoi(x, x, RATE, extended=True) == pytest.approx(1.0, abs=1e-6)
    assert metrics.stoi(x[:2000], x[:2000], RATE) is None  # too short
    assert metrics.stoi(np.zeros(RATE), np.zeros(RATE), RATE) is None
