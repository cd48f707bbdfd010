"""The numpy decoder (nac.model.inference) against the torch model it mirrors, and decoding without torch."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from nac import api
from nac.model import zoo
from nac.model.config import ModelConfig
from nac.model.inference import NumpyDecoder, gelu, phase_init_shapes, spec1d_shapes
from nac.model.networks import LowBandPhase, TorchDecoder, build_model
from nac.model.stft import griffin_lim


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - other) ** 2)))


def test_gelu_is_torchs_exact_gelu():
    x = np.linspace(-12, 12, 100001, dtype=np.float32)
    assert np.abs(gelu(x) - torch.nn.functional.gelu(torch.from_numpy(x)).numpy()).max() < 2e-6


def test_every_stage_matches_the_torch_model():
    loaded = zoo.load_model("nac-speech-16k-v5")
    ours, reference = zoo.numpy_decoder(loaded.weights), TorchDecoder(loaded.net)
    latent = np.random.default_rng(1).standard_normal((2, 48, 1, 40)).astype(np.float32) * 0.5
    stages = []
    for decoder in (ours, reference):
        hidden = decoder.decode_hidden(latent)
        log_mag, phase = decoder.spectrum_from_hidden(hidden)
        start = decoder.phase_init(hidden, log_mag, phase)
        stages.append((hidden, log_mag, start, decoder.synthesize(log_mag, start, 40 * 512, 16)))
    (hidden, log_mag, start, wave), (hidden_t, log_mag_t, start_t, wave_t) = stages
    for ours_stage, reference_stage in ((hidden, hidden_t), (log_mag, log_mag_t)):
        assert np.abs(ours_stage - reference_stage).max() < 1e-5 * np.abs(reference_stage).max()
    assert np.abs(np.angle(np.exp(1j * (start - start_t)))).max() < 1e-2
    assert snr_db(wave_t, wave) > 50


@pytest.mark.parametrize("bitrate", ["6k", "24k"])
def test_numpy_and_torch_decodes_agree(short_speech, monkeypatch, bitrate):
    audio, rate = short_speech
    data = api.encode(audio, rate, bitrate=bitrate)
    reference, _ = api.decode(data)  # torch is loaded here: its networks decode
    monkeypatch.setattr(zoo, "torch_loaded", lambda: False)
    ours, _ = api.decode(data)
    assert ours.shape == reference.shape and not np.array_equal(ours, reference)  # another decoder ran
    assert snr_db(reference, ours) > 40


def test_a_short_decode_imports_neither_torch_nor_numba(tmp_path, short_speech, monkeypatch):
    encoded = tmp_path / "clip.nac"
    encoded.write_bytes(api.encode(*short_speech, bitrate="24k"))
    script = (f"import sys; from nac import api; api.decode_file({str(encoded)!r}, {str(tmp_path / 'out.wav')!r}); "
              "print(sorted({'torch', 'numba'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    monkeypatch.setattr(zoo, "torch_loaded", lambda: False)  # the same decoder here
    api.decode_file(encoded, tmp_path / "here.wav")
    assert (tmp_path / "out.wav").read_bytes() == (tmp_path / "here.wav").read_bytes()


@pytest.mark.parametrize("config", [ModelConfig(width=8, latent_channels=2, downsample=1), ModelConfig(downsample=0),
                                    ModelConfig(n_fft=256, hop_length=64, refine_channels=4, refine_bins=20)])
def test_spec1d_shapes_are_the_torch_models(config):
    assert spec1d_shapes(config) == {name: tuple(tensor.shape) for name, tensor in build_model(config).state_dict().items()}


def test_phase_init_shapes_are_the_torch_initializers():
    expected = {name: tuple(tensor.shape) for name, tensor in LowBandPhase(160, 32, 64, 8).state_dict().items()}
    assert phase_init_shapes(160, 32, 64, 8) == expected


def test_the_numpy_decoder_decodes_short_spans_of_spec1d_models_where_torch_is_not_loaded(monkeypatch):
    speech, seed = zoo.load_model("nac-speech-16k-v5"), zoo.load_model("nac-seed2d-16k-v2")
    assert isinstance(speech.decoding_network(10.0), TorchDecoder)  # torch is loaded in this process
    monkeypatch.setattr(zoo, "torch_loaded", lambda: False)
    assert isinstance(speech.decoding_network(zoo.NUMPY_DECODE_SECONDS), NumpyDecoder)
    assert isinstance(speech.decoding_network(zoo.NUMPY_DECODE_SECONDS + 1), TorchDecoder)
    assert isinstance(seed.decoding_network(10.0), TorchDecoder)  # no numpy copy of the seed2d decoder


@pytest.mark.parametrize("setting, workers", [("1", 1), ("3", 3), ("", None), ("many", None), ("0", None)])
def test_the_numpy_decoder_runs_as_many_windows_as_omp_num_threads_says(monkeypatch, setting, workers):
    monkeypatch.setenv("OMP_NUM_THREADS", setting)
    with zoo.numpy_decoder(zoo.load_model().weights).parallel() as count:
        assert count == (workers or os.cpu_count())


@pytest.mark.parametrize("config", [
    ModelConfig(width=8, latent_channels=2, downsample=1, refine_channels=4, refine_bins=3),  # taps past every row
    ModelConfig(n_fft=256, hop_length=96, width=16, latent_channels=3, downsample=0, refine_channels=2,
                refine_bins=40),  # a hop that does not divide the frame
])
def test_models_of_other_sizes_decode_as_torch_does(config):
    torch.manual_seed(0)
    net = build_model(config).eval()
    with torch.no_grad():
        for parameter in net.parameters():  # the refiner's last layer starts at zero: make it do something
            parameter.normal_(0.0, 0.2)
    ours, reference = NumpyDecoder(config, {k: v.numpy() for k, v in net.state_dict().items()}), TorchDecoder(net)
    latent = np.random.default_rng(2).standard_normal((2, config.latent_channels, 1, 6)).astype(np.float32)
    length = 6 * config.time_stride * config.hop_length
    waves = [decoder.synthesize(*decoder.spectrum_from_hidden(decoder.decode_hidden(latent)), length, 8)
             for decoder in (ours, reference)]
    assert snr_db(waves[1], waves[0]) > 50


def test_phase_iterations_keep_a_bin_of_nan_magnitude_finite_as_torch_does():
    config = ModelConfig()
    magnitude = np.abs(np.random.default_rng(3).standard_normal((1, 257, 40))).astype(np.float32)
    magnitude[0, 10, 20] = np.nan
    phase = np.zeros_like(magnitude)
    ours = zoo.numpy_decoder(zoo.load_model().weights).spectral.griffin_lim(magnitude, phase, 40 * 128, 4)
    with torch.inference_mode():
        reference = griffin_lim(config.stft, torch.from_numpy(magnitude), torch.from_numpy(phase), 40 * 128, 4).numpy()
    assert np.isfinite(reference).all() and np.isfinite(ours).all()
    assert snr_db(reference, ours) > 50
