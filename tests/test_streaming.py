"""Windowed inference against whole-file inference, boundary continuity, and seeking."""

import os
import threading

import numpy as np
import pytest
import torch

from nac import api, codec
from nac.audio import read_audio, resample, write_audio, write_audio_blocks
from nac.format.records import Chunk
from nac.model import zoo
from nac.model.networks import TorchDecoder
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
def loaded():
    return zoo.load_model()


def info_for(loaded, samples: int, monkeypatch, group_chunks: int = 1):
    """A plain stream's description with chunks of ``CHUNK`` latent frames."""
    frame_seconds = loaded.net.config.hop_length * loaded.net.config.time_stride / loaded.net.config.sample_rate
    monkeypatch.setattr(codec, "CHUNK_SECONDS", CHUNK * frame_seconds)
    monkeypatch.setattr(codec, "GROUP_CHUNKS", group_chunks)
    return codec.stream_info(loaded, EncoderSettings(), 1, 16000, samples)


def test_windowed_encoder_matches_whole_file(loaded, long_speech, monkeypatch):
    audio, _ = long_speech
    with torch.inference_mode():
        whole = loaded.net.encode(torch.from_numpy(audio)).numpy()
    info = info_for(loaded, audio.shape[1], monkeypatch, group_chunks=2)
    encoder = codec.Encoder(loaded, info, EncoderSettings())
    blocks = np.array_split(audio, 37, axis=1)  # odd block sizes exercise the sliding buffer
    source = codec.SampleWindow(blocks, audio.shape[0], audio.shape[1])
    windowed = np.concatenate([window.latent[..., window.own] for window in encoder.windows(source)], axis=-1)
    assert windowed.shape == whole.shape
    assert np.abs(windowed - whole).max() < LATENT_BOUND


@pytest.mark.parametrize("window", [CHUNK, codec.DECODE_WINDOW])  # one chunk per window, or several
def test_windowed_decoder_matches_whole_file_without_clicks(loaded, long_speech, window, monkeypatch):
    monkeypatch.setattr(codec, "DECODE_WINDOW", window)
    audio, _ = long_speech
    info = info_for(loaded, audio.shape[1], monkeypatch)
    synthesis = codec.Synthesis(TorchDecoder(loaded.net), info, phase_init=False)
    with torch.inference_mode():
        latent = loaded.net.encode(torch.from_numpy(audio)).numpy()
    whole = synthesis.waveform(synthesis.spectrum(latent), audio.shape[1])
    ones = np.ones((1, latent.shape[1]), np.float32)  # float "codes" with steps of 1: the latents as they are
    chunks = [Chunk(i, min(CHUNK, latent.shape[-1] - i * CHUNK), ones, latent[..., i * CHUNK : (i + 1) * CHUNK])
              for i in range(info.chunk_count)]
    pieces = codec.Decoder(TorchDecoder(loaded.net), info, phase_init=False).blocks(lambda i: chunks[i])
    windowed = np.concatenate(list(pieces), axis=-1)[:, : audio.shape[1]]
    assert np.abs(windowed - whole).max() < WAVE_BOUND
    # No clicks: at every chunk boundary the sample step is the one the
    # whole-file decode has there (the speech itself may jump at a boundary).
    span = CHUNK * info.samples_per_frame
    boundaries = np.arange(span, windowed.shape[1] - 1, span) - 1
    added = np.abs(np.diff(windowed[0]))[boundaries] - np.abs(np.diff(whole[0]))[boundaries]
    assert added.max() < 2 * WAVE_BOUND


@pytest.mark.parametrize("rate,residual_hz", [(16000, 0.0), (44100, 0.0), (16000, 1000.0)])
def test_seek_matches_a_cut_of_the_full_decode(long_speech, rate, residual_hz):
    audio, source_rate = long_speech
    audio = resample(audio, source_rate, rate)
    data = api.encode(audio, rate, EncoderSettings(residual_hz=residual_hz))
    full, _ = api.decode(data)
    part, out_rate = api.decode(data, start=17.25, duration=3.0)
    first = round(17.25 * rate)
    assert out_rate == rate and part.shape == (1, 3 * rate)
    assert np.abs(part - full[:, first : first + 3 * rate]).max() < WAVE_BOUND
    tail, _ = api.decode(data, start=29.0)
    assert tail.shape[1] == full.shape[1] - 29 * rate


def test_seek_decodes_only_the_chunks_it_needs(long_speech, monkeypatch):
    audio, rate = long_speech
    data = api.encode(audio, rate)
    decoded = []
    original = codec.Decoder.blocks

    def counting(self, chunk_at, *args, **kwargs):
        return original(self, lambda i: decoded.append(i) or chunk_at(i), *args, **kwargs)

    monkeypatch.setattr(codec.Decoder, "blocks", counting)
    api.decode(data, start=17.25, duration=3.0)
    assert 4 <= len(set(decoded)) <= 6  # the span's chunks and a context chunk on each side: not the file's 31


def test_encode_file_streams_blocks_to_the_same_bytes(tmp_path, long_speech):
    audio, rate = long_speech
    stereo = np.concatenate([audio, 0.5 * audio], axis=0)
    path = tmp_path / "long.flac"
    write_audio(path, resample(stereo, rate, 44100), 44100)
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


def test_a_pipe_gets_the_wav_as_it_is_decoded(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    received, first = bytearray(), threading.Event()

    def reader():
        with open(fifo, "rb") as pipe:
            while chunk := pipe.read1(1 << 16):
                received.extend(chunk)
                if len(received) >= 44 + 2 * 1000:
                    first.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    block = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)[None]

    def blocks():
        yield block
        assert first.wait(20), "the first block did not reach the pipe before the second was made"
        yield block

    write_audio_blocks(fifo, blocks(), 16000, 1, frames=2000)
    thread.join(20)
    gathered = tmp_path / "file.wav"
    write_audio(gathered, np.concatenate([block, block], axis=1), 16000)
    assert bytes(received) == gathered.read_bytes()  # the same bytes as libsndfile's file


@pytest.mark.parametrize("options", [[], ["--start", "1.3", "--duration", "2.01"], ["--keep-model-rate"]],
                         ids=["whole", "seek", "model-rate"])
def test_decoding_to_stdout_gives_the_file_s_bytes(tmp_path, short_speech, options):
    from typer.testing import CliRunner
    from nac.cli import app

    audio, rate = short_speech
    stereo = resample(np.stack([audio[0], np.roll(audio[0], 400)]), rate, 44100)  # the fullband model
    coded = tmp_path / "a.nac"
    coded.write_bytes(api.encode(stereo, 44100))
    runner = CliRunner()
    piped = runner.invoke(app, ["decode", str(coded), "-o", "-", *options])
    assert piped.exit_code == 0, piped.output
    assert runner.invoke(app, ["decode", str(coded), "-o", str(tmp_path / "a.wav"), *options]).exit_code == 0
    assert piped.stdout_bytes == (tmp_path / "a.wav").read_bytes()
