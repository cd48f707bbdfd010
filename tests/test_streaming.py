"""Chunk-windowed inference against whole-file inference, boundary continuity, and seeking."""

import numpy as np
import pytest
import torch

from nac import api, codec

from nac.model import zoo
from nac.settings import EncoderSettings

CHUNK = 64  # latent frames: short chunks put many boundaries in a short clip
# Measured on the bundled clip (x2, 30 s): latents differ by ~1.5e-6 (float
# noise), waveforms by at most ~4e-4 of a 0.75 peak; bounds keep a margin.
LATENT_BOUND = 1e-4
WAVE_BOUND = 3e-3


@pytest.fixture(scope="module")
def long_speech(speech):
    audio, rate = speech
    return np.tile(audio, 2), rate


@pytest.fixture(scope="module")
def net():
    return zoo.load_model().net


def test_windowed_encoder_matches_whole_file(net, long_speech):
    audio, _ = long_speech
    with torch.inference_mode():
        whole = net.encode(torch.from_numpy(audio)).numpy()
    blocks = np.array_split(audio, 37, axis=1)  # odd block sizes exercise the sliding buffer
    source = codec.SampleWindow(blocks, audio.shape[0], audio.shape[1])
    windowed = np.concatenate([part.latent for part in codec.encode_chunks(net, source, CHUNK)], axis=-1)
    assert windowed.shape == whole.shape
    assert np.abs(windowed - whole).max() < LATENT_BOUND


@pytest.mark.parametrize("window", [CHUNK, codec.DECODE_WINDOW])  # one chunk per window, or several
def test_windowed_decoder_matches_whole_file_without_clicks(net, long_speech, window, monkeypatch):
    monkeypatch.setattr(streaming, "DECODE_WINDOW", window)
    audio, _ = long_speech
    with torch.inference_mode():
        latent = net.encode(torch.from_numpy(audio))
        whole = net.decode(latent, audio.shape[1]).numpy()
    latent = latent.numpy()
    chunks = -(-latent.shape[-1] // CHUNK)
    pieces = codec.decode_chunks(net, chunks, CHUNK, lambda i: latent[..., i * CHUNK : (i + 1) * CHUNK])
    windowed = np.concatenate(list(pieces), axis=-1)[:, : audio.shape[1]]
    assert np.abs(windowed - whole).max() < WAVE_BOUND
    # No clicks: at every chunk boundary the sample step is the one the
    # whole-file decode has there (the speech itself may jump at a boundary).
    span = CHUNK * net.config.hop_length * net.config.time_stride
    boundaries = np.arange(span, windowed.shape[1] - 1, span) - 1
    added = np.abs(np.diff(windowed[0]))[boundaries] - np.abs(np.diff(whole[0]))[boundaries]
    assert added.max() < 2 * WAVE_BOUND


@pytest.mark.parametrize("rate,residual_hz", [(16000, 0.0), (44100, 0.0), (16000, 1000.0)])
def test_seek_matches_a_cut_of_the_full_decode(long_speech, rate, residual_hz):
    audio, source_rate = long_speech
    audio = api.resample(audio, source_rate, rate)
    data = api.encode(audio, rate, EncoderSettings(residual_hz=residual_hz))
    full, _ = api.decode(data)
    part, out_rate = api.decode(data, start=17.25, duration=3.0)
    first = round(17.25 * rate)
    assert out_rate == rate and part.shape == (1, 3 * rate)
    assert np.abs(part - full[:, first : first + 3 * rate]).max() < WAVE_BOUND
    tail, _ = api.decode(data, start=29.0)
    assert tail.shape[1] == full.shape[1] - 29 * rate


def test_encode_file_streams_blocks_to_the_same_bytes(tmp_path, long_speech):
    from nac.audio import write_audio

    audio, rate = long_speech
    stereo = np.concatenate([audio, 0.5 * audio], axis=0)
    at_44k = api.resample(stereo, rate, 44100)
    path = tmp_path / "long.flac"
    write_audio(path, at_44k, 44100)
    from nac.audio import read_audio

    stored, _ = read_audio(path)
    api.encode_file(path, tmp_path / "long.nac")
    assert (tmp_path / "long.nac").read_bytes() == api.encode(stored, 44100)


def test_seek_rejects_bad_spans(short_speech):
    audio, rate = short_speech
    data = api.encode(audio, rate)
    with pytest.raises(api.UsageError):
        api.decode(data, start=-1.0)
    with pytest.raises(api.UsageError):
        api.decode(data, start=60.0)
    assert api.decode(data, start=1.0, duration=0.0)[0].shape == (1, 0)
