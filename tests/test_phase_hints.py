"""Phase hints (format 8.0): the encoder's choice, the decoder's rule, and what they do on real speech."""

from dataclasses import replace

import numpy as np
import torch

from conftest import phase_closeness

from nac import api, codec
from nac.layers.residual import HINT_DELAY_RANGE, HINT_ROWS, PhaseHints
from nac.model import manifest, zoo
from nac.model.networks import TorchDecoder

HINTS = PhaseHints(bins=6, delay_step=3, turns=4, n_fft=64, stride=2)


def hinted_spectrum(start: np.ndarray, codes: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """A spectrum whose phase is ``start`` turned by ``codes`` (the decoder's rule written out)."""
    bins = np.arange(start.shape[1])[None, :, None]
    delay = np.repeat(codes[:, 0], HINTS.stride, axis=-1)[:, None, :]
    turn = np.repeat(codes[:, 1], HINTS.stride, axis=-1)[:, None, :]
    shift = 2 * np.pi * (turn / HINTS.turns + bins * delay * HINTS.delay_step / HINTS.n_fft)
    return magnitude * np.exp(1j * (start + shift))


def test_the_encoder_finds_a_known_delay_and_turn_and_the_decoder_applies_them():
    rng = np.random.default_rng(0)
    start = rng.uniform(-np.pi, np.pi, (2, 6, 10))
    codes = np.stack([rng.integers(-HINT_DELAY_RANGE, HINT_DELAY_RANGE + 1, (2, 5)),
                      rng.integers(-1, 3, (2, 5))], axis=1)
    spectrum = hinted_spectrum(start, codes, rng.uniform(0.5, 2.0, start.shape))
    chosen = HINTS.choose(spectrum, start)
    assert chosen.dtype == np.int8 and chosen.shape == (2, 2, 5)
    np.testing.assert_array_equal(chosen, codes)
    turned = HINTS.apply(chosen, start)
    np.testing.assert_allclose(np.cos(turned - np.angle(spectrum)), 1.0, atol=1e-5)


def test_bins_above_the_hints_keep_their_phase():
    phase = np.random.default_rng(2).uniform(-3, 3, (1, 9, 4)).astype(np.float32)
    turned = HINTS.apply(np.array([[[2, -3], [1, 2]]], np.int8), phase)
    assert np.array_equal(turned[:, 6:], phase[:, 6:]) and not np.array_equal(turned[:, :6], phase[:, :6])


def test_columns_under_the_residual_floor_get_zero_codes():
    rng = np.random.default_rng(1)
    start = rng.uniform(-np.pi, np.pi, (1, 6, 4))
    spectrum = hinted_spectrum(start, np.array([[[3, 3], [1, 1]]]), np.full(start.shape, 1.0))
    spectrum[..., 2:] *= 1e-3  # the second column is quiet
    chosen = HINTS.choose(spectrum, start)
    np.testing.assert_array_equal(chosen[0, :, 0], [3, 1])
    np.testing.assert_array_equal(chosen[0, :, 1], [0, 0])


def starting_phase(data: bytes, hinted: bool = True) -> torch.Tensor:
    """The phase a decoder starts its iterations from for a whole stream (the library's stages)."""
    stream, used = api.open_stream(data)
    decoder = codec.Decoder(TorchDecoder(used.loaded.net), stream.info, used.phase_init)
    chunks = [stream.chunk(i) for i in range(stream.info.chunk_count)]
    return torch.from_numpy(decoder.synthesis.spectrum(*decoder.whole_stream(chunks)).phase)


def test_hints_start_the_phase_iterations_nearer_the_original_on_real_speech(speech):
    """The bundled clip at the 24 kbps point with hints under 1 kHz: the same residual codes and two more rows,
    whose starting phase under 1 kHz is nearer the original's (magnitude-weighted cosine measured 0.83
    against 0.77 without the hints)."""
    audio, rate = speech
    clip = audio[:, : 6 * rate]
    settings = replace(manifest.find_entry(None).point("24k").settings, phase_hint_hz=0.0)
    net = zoo.load_model().net
    plain_data = api.encode(clip, rate, settings)
    hinted_data = api.encode(clip, rate, replace(settings, phase_hint_hz=1000.0))
    (plain_info, plain), (info, hinted) = api.unpack(plain_data), api.unpack(hinted_data)
    layer = info.residual
    assert (layer.hint_bins, layer.hint_delay, layer.hint_turns) == (32, codec.HINT_DELAY, codec.HINT_TURNS)
    assert layer.code_rows == plain_info.residual.code_rows + HINT_ROWS == layer.rows + HINT_ROWS
    for a, b in zip(plain, hinted):
        np.testing.assert_array_equal(b.residual[:, : layer.rows], a.residual)
    start_plain, start_hinted = starting_phase(plain_data), starting_phase(hinted_data)
    truth = net.spectrum(torch.from_numpy(clip))[0, :32]
    assert phase_closeness(truth, start_hinted) > phase_closeness(truth, start_plain) + 0.04
    assert torch.equal(start_hinted[:, 32:], start_plain[:, 32:])
    decoded, out_rate = api.decode(hinted_data)
    assert out_rate == rate and decoded.shape == clip.shape
