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


def test_pesq_scores_a_long_signal_in_parts(monkeypatch):
    """Minutes of audio at once crash the PESQ library; parts of at most PESQ_MAX_S are scored instead."""
    pytest.importorskip("pesq")
    x = speechlike()
    monkeypatch.setattr(metrics, "PESQ_MAX_S", 3)
    long = np.tile(x, 8)[: 16 * RATE]  # as minutes in 60 s parts, in less time: six parts of 2.67 s
    noisy = with_noise_at(long, 5.0)
    parts = [metrics.pesq_wb(a, b, RATE) for a, b in zip(np.array_split(long, 6), np.array_split(noisy, 6))]
    assert metrics.pesq_wb(long, noisy, RATE) == pytest.approx(np.mean(parts), abs=1e-6)
    assert metrics.pesq_wb(long, long, RATE) > 4.0
    monkeypatch.undo()
    minutes = np.tile(x, 100)  # 200 s: one call would crash the process
    assert metrics.pesq_wb(minutes, with_noise_at(minutes, 5.0), RATE) < 3.0


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


# ---------------------------------------------------------------- music and fullband (48 kHz)

FULLBAND = 48000


def fullband_noise(seconds=1.0, channels=2, seed=0):
    return 0.1 * np.random.default_rng(seed).standard_normal((channels, round(seconds * FULLBAND)))


def lowpass(audio, hz, rate=FULLBAND):
    spectrum = np.fft.rfft(audio, axis=-1)
    spectrum[..., np.fft.rfftfreq(audio.shape[-1], 1 / rate) > hz] = 0
    return np.fft.irfft(spectrum, audio.shape[-1], axis=-1)


@pytest.mark.parametrize("cutoff", [4000.0, 8000.0, 15000.0])
def test_bandwidth_of_lowpassed_noise_is_its_cutoff_to_a_third_octave(cutoff):
    x = fullband_noise()
    kept = metrics.bandwidth_hz(x, lowpass(x, cutoff), FULLBAND)
    assert cutoff <= kept <= cutoff * 2 ** (1 / 3)
    assert metrics.reference_bandwidth_hz(lowpass(x, cutoff), FULLBAND) == kept  # the highest band with content


def test_bandwidth_of_a_full_copy_silence_and_a_quiet_band():
    x = fullband_noise()
    assert metrics.bandwidth_hz(x, x, FULLBAND) == metrics.reference_bandwidth_hz(x, FULLBAND) == FULLBAND / 2
    assert metrics.bandwidth_hz(x, np.zeros_like(x), FULLBAND) == 0.0
    assert metrics.bandwidth_hz(np.zeros_like(x), x, FULLBAND) is None
    assert metrics.bandwidth_hz(x, 2 * x, FULLBAND) == FULLBAND / 2  # 6 dB off is within the 10 dB tolerance
    muffled = x + (0.1 - 1) * (x - lowpass(x, 6000))  # 20 dB down above 6 kHz: lost from there
    assert 6000 <= metrics.bandwidth_hz(x, muffled, FULLBAND) <= 6000 * 2 ** (1 / 3)


def test_stereo_image_errors_of_identical_swapped_and_collapsed_channels():
    x = fullband_noise(seconds=1.5)
    dual_mono = np.stack([x[0], x[0]])
    assert metrics.stereo_image_errors(dual_mono, dual_mono, FULLBAND) == (0.0, 0.0)
    assert metrics.channel_correlation(dual_mono) == pytest.approx(1.0)
    panned = np.stack([x[0], 0.3 * x[0]])  # ILD 10.5 dB in every band, ICC 1
    ild_error, icc_error = metrics.stereo_image_errors(panned, panned[::-1], FULLBAND)
    assert ild_error == pytest.approx(2 * 20 * np.log10(1 / 0.3), abs=0.01)
    assert icc_error == pytest.approx(0.0, abs=1e-9)
    ild_error, icc_error = metrics.stereo_image_errors(x, np.stack([x.mean(axis=0)] * 2), FULLBAND)
    assert ild_error > 1.0 and icc_error > 0.7  # unrelated channels made one: ICC 1 where it was near 0
    assert abs(metrics.channel_correlation(x)) < 0.05
    assert metrics.channel_correlation(np.stack([x[0], -x[0]])) == pytest.approx(-1.0)


def test_stereo_image_is_none_without_two_channels_or_content():
    x = fullband_noise(channels=1)
    assert metrics.stereo_image_errors(x, x, FULLBAND) is None and metrics.channel_correlation(x) is None
    assert metrics.stereo_image_errors(np.zeros((2, 4800)), fullband_noise(0.1), FULLBAND) is None
    assert metrics.channel_correlation(np.stack([x[0], np.zeros_like(x[0])])) == 0.0


def test_mel_distance_at_48k_stops_at_its_max_hz():
    x = fullband_noise(channels=1)
    above = x - lowpass(x, 20500)  # only what lies above the bank's 20 kHz top
    for n_fft, n_mels in metrics.MUSIC_MEL_RESOLUTIONS:
        assert np.all(metrics._mel_bank(n_fft, n_mels, FULLBAND, metrics.MUSIC_MEL_MAX_HZ).sum(axis=1) > 0)

    def distance(estimate, **kwargs):
        return metrics.mel_distance_db(x, estimate, FULLBAND, metrics.MUSIC_MEL_RESOLUTIONS, **kwargs)

    assert distance(x - above, max_hz=metrics.MUSIC_MEL_MAX_HZ) < 0.01
    assert distance(x - above) > 1.0  # the bank up to Nyquist sees the loss
    assert distance(0.5 * x, max_hz=metrics.MUSIC_MEL_MAX_HZ) == pytest.approx(20 * np.log10(2), rel=1e-6)


def test_visqol_audio_ranks_clean_above_lowpassed_and_refuses_short_input():
    pytest.importorskip("visqol")
    t = np.arange(2 * 44100) / 44100
    tones = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220.0, 1760.0, 7040.0, 14080.0), 1))
    x = np.stack([0.2 * tones, 0.1 * tones]) + 0.01 * np.random.default_rng(3).standard_normal((2, t.size))
    clean = metrics.visqol_audio(x, x, 44100)  # resampled to 48 kHz
    assert clean > 4.0 and metrics.visqol_audio(x, lowpass(x, 4000, 44100), 44100) < clean - 0.5
    assert metrics.visqol_audio(x[:, :4000], x[:, :4000], 44100) is None
    assert metrics.visqol_mapping("audio") == "svr"


def test_visqol_audio_on_each_channel_hears_a_wrong_stereo_image():
    pytest.importorskip("visqol")
    t = np.arange(2 * 44100) / 44100
    rng = np.random.default_rng(4)
    left, right = (sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate(fs, 1))
                   for fs in ((220.0, 1760.0, 7040.0), (330.0, 2640.0, 10560.0)))
    x = 0.2 * np.stack([left, right]) + 0.01 * rng.standard_normal((2, t.size))
    swapped = x[::-1].copy()  # the same channel mean, the image mirrored
    assert metrics.visqol_audio(x, swapped, 44100) > 4.0
    assert metrics.visqol_audio_channels(x, x, 44100) > 4.0
    assert metrics.visqol_audio_channels(x, swapped, 44100) < metrics.visqol_audio_channels(x, x, 44100) - 1.0
    assert metrics.visqol_audio_channels(x[:1], x[:1], 44100) is None  # one channel: not defined
