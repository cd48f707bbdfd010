"""The fullband layers: the 48 kHz STFT, the high-band layer and the stereo layer, alone and through the codec."""

import numpy as np
import pytest

from nac import api
from nac.errors import FormatError
from nac.format import container
from nac.format.header import LayerType
from nac.layers import fullband
from nac.layers.high_band import HighBandLayer
from nac.layers.stereo import StereoLayer
from nac.model import zoo
from nac.settings import EncoderSettings

RATE = 48000
FRAME = 3 * fullband.HOP  # one latent frame of a 16 kHz core at 48 kHz
LEVEL_STEP = 1.5
CORE = {"code_bits": 4, "residual_hz": 4000.0, "residual_step": 0.5}
FULLBAND = EncoderSettings(**CORE, high_band_hz=20000.0, stereo_bands=20)


def noise(channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((channels, int(seconds * RATE)))).astype(np.float32)


def band_levels_db(audio: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    spec = fullband.analyze(audio[:, : audio.shape[1] // FRAME * FRAME])
    return 10 * np.log10(fullband.band_energy(spec, np.array(edges), spec.shape[1] // 1).mean(-1))


def test_the_fullband_stft_gives_the_signal_back():
    audio = noise(2, 0.5)[:, : 40 * fullband.HOP]
    spec = fullband.analyze(audio)
    assert spec.shape == (2, 41, fullband.BINS)
    np.testing.assert_allclose(fullband.synthesize(spec), audio, atol=2e-6)


def test_the_high_band_is_rebuilt_at_its_coded_levels():
    layer = HighBandLayer.spanning(7500, 20000, 10, LEVEL_STEP)
    assert layer.problem() is None and layer.width % 2 == 0
    spec = fullband.analyze(noise(1, 1.0)[:, : 93 * fullband.HOP])[:, :93]
    power = layer.power(layer.codes(layer.levels(spec, 3)))
    true = fullband.band_energy(spec, np.array(layer.edges), 3)
    assert np.abs(10 * np.log10(power / true)).max() <= LEVEL_STEP / 2 + 1e-6
    low = spec.copy()
    low[..., layer.start :] = 0
    for source in (low, np.zeros_like(spec)):  # copied from below, or noise where the copy is silent
        rebuilt = fullband.band_energy(layer.apply(source, power, 3), np.array(layer.edges), 3)
        np.testing.assert_allclose(10 * np.log10(rebuilt), 10 * np.log10(power), atol=1e-3)
    silent = layer.apply(low, np.zeros_like(power), 3)
    assert not silent[..., layer.start :].any()


def test_a_quiet_band_beside_a_loud_one_keeps_its_mean():
    power = np.full((1, 3, fullband.BINS), 1e-20)
    power[..., :100] = 1e4
    bins = np.array([0, 100, 200, 300, 300])  # the last band is empty
    means = fullband.band_mean(power, bins, 3)[0, :, 0]
    np.testing.assert_allclose(means, [1e4, 1e-20, 1e-20, 0.0], rtol=1e-12)


def test_digital_silence_inside_a_chunk_decodes_silent_above_the_core():
    """A tone, silence and the tone again in one chunk: the silence must not come back as loud noise (the
    high band's scale once divided by band energies lost next to noise-filled bands)."""
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE // 2) / RATE)
    audio = np.concatenate([tone, np.zeros(RATE), tone])[None].astype(np.float32)
    decoded, _ = api.decode(api.encode(audio, RATE, FULLBAND))
    gap = decoded[:, int(0.6 * RATE) : int(1.4 * RATE)]
    assert np.abs(gap).max() < 1e-3


def test_the_stereo_layer_keeps_levels_and_correlation():
    layer = StereoLayer.with_bands(20, LEVEL_STEP)
    assert layer.problem() is None
    common, other = noise(1, 1.0, 1)[:, : 93 * fullband.HOP], noise(1, 1.0, 2)[:, : 93 * fullband.HOP]
    left, right = fullband.analyze(0.9 * common + 0.2 * other), fullband.analyze(0.4 * common - 0.1 * other)
    codes = layer.codes(left[:, :93], right[:, :93], 3)
    out = layer.upmix(layer.downmix(left, right, 3), codes, 3)
    bins = np.array(layer.edges)

    def ild(a, b):
        return 10 * np.log10(fullband.band_energy(a[:, :93], bins, 3) / fullband.band_energy(b[:, :93], bins, 3))

    assert np.abs(ild(left, right) - ild(out[:1], out[1:])).mean() < 1.0
    same = layer.upmix(layer.downmix(left, left, 3), layer.codes(left[:, :93], left[:, :93], 3), 3)
    np.testing.assert_array_equal(same[0], same[1])
    np.testing.assert_allclose(same[0], left[0], atol=1e-5)


def test_a_fullband_stereo_file_round_trips_with_both_layers():
    audio = noise(2, 1.2)
    audio[1] = 0.5 * audio[0] + 0.5 * noise(1, 1.2, 3)[0]
    data = api.encode(audio, RATE, FULLBAND)
    info = container.read_info(data)[0]
    assert info.version == (9, 1) and info.coded_channels == 1
    assert info.layer_order == (LayerType.LATENT, LayerType.RESIDUAL, LayerType.HIGH_BAND, LayerType.STEREO)
    decoded, rate = api.decode(data)
    assert rate == RATE and decoded.shape == audio.shape
    assert data == api.encode(audio, RATE, FULLBAND)  # deterministic
    high = band_levels_db(decoded, info.high_band.edges) - band_levels_db(audio, info.high_band.edges)
    assert np.abs(high).max() < 3.0  # the band above the core comes back at about its level


def test_the_high_band_keeps_its_level_in_every_chunk():
    audio = 0.05 * noise(1, 3.2)  # several chunks at a level far from the codes' floor
    data = api.encode(audio, RATE, FULLBAND)
    info = container.read_info(data)[0]
    decoded, _ = api.decode(data)
    for second in range(3):
        part = slice(second * RATE, (second + 1) * RATE)
        error = band_levels_db(decoded[:, part], info.high_band.edges) - band_levels_db(audio[:, part],
                                                                                         info.high_band.edges)
        assert np.abs(error).max() < 2.0, (second, error)


def test_identical_channels_decode_identical_and_cost_about_a_mono_file():
    mono = noise(1, 2.0)
    dual = np.concatenate([mono, mono])
    stereo_data, mono_data = api.encode(dual, RATE, FULLBAND), api.encode(mono, RATE, FULLBAND)
    decoded, _ = api.decode(stereo_data)
    np.testing.assert_array_equal(decoded[0], decoded[1])
    assert len(stereo_data) < 1.3 * len(mono_data)


def test_stereo_codes_out_of_range_are_refused(monkeypatch):
    data = api.encode(noise(2, 0.6), RATE, FULLBAND)
    info, chunks = api.unpack(data)
    tables = zoo.for_stream(info).tables
    chunks[0].stereo = chunks[0].stereo.copy()
    chunks[0].stereo[0, info.stereo.bands, 0] = 8  # past the last correlation level
    with pytest.raises(ValueError, match="stereo codes"):
        container.pack(info, chunks, tables)
    monkeypatch.setattr(container, "_check_chunk", lambda *args: None)  # a writer that does not check
    with pytest.raises(FormatError, match="stereo codes outside"):
        api.decode(container.pack(info, chunks, tables))


def test_the_stereo_image_survives_synthesis():
    layer = StereoLayer.with_bands(20, LEVEL_STEP)
    audio = noise(2, 1.0, 3)[:, : 93 * fullband.HOP] * np.array([[1.0], [0.3]], np.float32)  # uncorrelated, ~10 dB
    spec = fullband.analyze(audio)
    out = fullband.synthesize(layer.upmix(layer.downmix(spec[:1], spec[1:], 3), layer.codes(spec[:1], spec[1:], 3), 3))
    again = fullband.analyze(out)  # the waveform's levels: a decorrelator that loses power in synthesis skews them
    bins = np.array(layer.edges)

    def ild(x):
        return 10 * np.log10(fullband.band_energy(x[:1, 3:90], bins, 3) / fullband.band_energy(x[1:, 3:90], bins, 3))

    assert np.abs(ild(spec) - ild(again))[:, 1:].mean() < 1.0  # the lowest band (4 bins) is left out
    assert abs(np.corrcoef(out)[0, 1]) < 0.1
