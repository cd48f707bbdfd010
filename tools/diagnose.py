"""Where does a model lose quality? PESQ-WB of decodes with parts of the truth swapped in.

    python tools/diagnose.py CORPUS [--model NAME|PATH | --checkpoint RUN/last.pt] [--files 12] [--code-bits 5]
        [--preset PRESET] [--phase-iters N] [--decoded-only]

For evenly spread dev files, codes each one with the model (``--code-bits``
codes, as ``nac encode``; or with ``--preset``, a ``nac eval`` preset such as
``--bitrate 24k``'s settings, through ``nac encode`` itself, residual layer
included), then rebuilds the waveform several ways and prints mean PESQ-WB
(and STOI) per way:

- ``decoded``: what ``nac decode`` does (predicted magnitude and phase, the
  model's Griffin-Lim iterations);
- ``predicted phase, no refinement``: the starting phase as is (the phase
  head's, and the model's phase initializer's under 1 kHz where it has one);
- ``true phase``: decoded magnitude under the original phase, as is, and with
  the Griffin-Lim iterations run from it;
- ``true magnitude``: the original magnitude with the predicted phase and
  Griffin-Lim (how good phase recovery is when the magnitude is right);
- ``true phase under 1000 Hz as the start``: the decode with the original
  phase under 1 kHz as the iterations' start (what a phase initializer could give);
- ``true magnitude at A-B Hz``: decoded magnitude with the bins from A to B
  replaced by the original's (which frequencies the metric hangs on; at a
  rate point, where the bits would buy most).

A research aid: the truth is only available here, never to a decoder. With
``--checkpoint`` it judges a training checkpoint without exporting it, and
``--decoded-only`` scores just the first way: a quick gate between runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac import api, codec  # noqa: E402
from nac.lab import evaluate, metrics, train  # noqa: E402
from nac.layers import latent as latent_layer  # noqa: E402
from nac.layers.latent import LatentParams  # noqa: E402
from nac.model import zoo  # noqa: E402
from nac.model.networks import TorchDecoder  # noqa: E402
from nac.model.stft import from_log_magnitude, griffin_lim, log_magnitude, magnitude_from_log, polar  # noqa: E402

BAND_EDGES_HZ = (0, 500, 1000, 2000, 4000)  # and the top bin: the bands "true magnitude at A-B Hz" swaps
START_TEST_HZ = 1000  # "true phase under F Hz as the start": how much a better starting phase there could give


def rebuilds(net, wave: torch.Tensor, code_bits: int, phase_iters: int | None = None,
             decoded_only: bool = False, coded: tuple | None = None) -> dict[str, torch.Tensor]:
    """Waveforms (1, T) rebuilt each way from ``wave`` (1, T); ``phase_iters`` overrides the model's.

    With ``coded``, the stream ``nac encode`` made of ``wave`` with ``net`` (:func:`nac.api.open_stream`), the
    decoded spectrum is the stream's (``code_bits`` unused).
    """
    length = wave.shape[-1]
    spec = net.spectrum(wave)
    if coded is None:
        latent = net.encode_spectrum(spec).numpy()
        params = LatentParams(latent.shape[1], latent.shape[2], (code_bits,) * latent.shape[1], False)
        codes, peaks = latent_layer.quantize(latent, params)
        coded_latent = latent_layer.dequantize(codes, latent_layer.steps(peaks, params))
        spectrum = codec.Synthesis(TorchDecoder(net), None, net.phase_init is not None).spectrum(coded_latent)
    else:
        stream, used = coded
        decoder = codec.Decoder(TorchDecoder(net), stream.info, used.phase_init)
        spectrum = decoder.synthesis.spectrum(*decoder.whole_stream([stream.chunk(i)
                                                                      for i in range(stream.info.chunk_count)]))
    log_mag, phase = torch.from_numpy(spectrum.log_mag), torch.from_numpy(spectrum.phase)
    slack = None if spectrum.slack is None else torch.from_numpy(spectrum.slack)
    decoded = net.synthesize(log_mag, phase, length, phase_iters, slack)
    if decoded_only:
        return {"decoded": decoded}
    true_log_mag, true_phase = log_magnitude(spec), torch.angle(spec)
    iters = net.config.phase_iters if phase_iters is None else phase_iters
    stft = net.stft
    ways = {
        "decoded": decoded,
        "predicted phase, no refinement": stft.synthesize(from_log_magnitude(log_mag, phase), length),
        "true phase": stft.synthesize(polar(magnitude_from_log(log_mag), true_phase), length),
        f"true phase + {iters} Griffin-Lim": griffin_lim(stft, magnitude_from_log(log_mag), true_phase, length, iters),
        "true magnitude": griffin_lim(stft, spec.abs(), phase, length, iters),
    }
    start_bins = round(START_TEST_HZ * net.config.n_fft / net.config.sample_rate)
    start = torch.cat([true_phase[:, :start_bins], phase[:, start_bins:]], dim=1)
    ways[f"true phase under {START_TEST_HZ} Hz as the start"] = net.synthesize(log_mag, start, length, phase_iters, slack)
    bin_hz = net.config.sample_rate / net.config.n_fft
    edges = [round(hz / bin_hz) for hz in BAND_EDGES_HZ] + [net.stft.bins]
    bands_hz = zip(BAND_EDGES_HZ, (*BAND_EDGES_HZ[1:], net.config.sample_rate // 2))
    for (low_hz, high_hz), low, high in zip(bands_hz, edges, edges[1:]):
        mixed = torch.cat([log_mag[:, :low], true_log_mag[:, low:high], log_mag[:, high:]], dim=1)
        held = None if slack is None else torch.cat([slack[:, :low], 0 * slack[:, low:high], slack[:, high:]], dim=1)
        ways[f"true magnitude at {low_hz}-{high_hz} Hz"] = net.synthesize(mixed, phase, length, phase_iters, held)
    return ways


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="corpus folder with MANIFEST.tsv, or audio files' folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="shipped model name/id or a .safetensors path")
    source.add_argument("--checkpoint", type=Path, default=None, help="a training checkpoint (RUN/last.pt)")
    parser.add_argument("--files", type=int, default=12, help="files evenly spread over the split")
    parser.add_argument("--code-bits", type=int, default=5)
    parser.add_argument("--preset", default=None,
                        help="code with nac encode at this eval preset (e.g. a rate point's settings), not --code-bits")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--kind", default="speech_wb")
    parser.add_argument("--phase-iters", type=int, default=None, help="Griffin-Lim iterations [default: the model's]")
    parser.add_argument("--decoded-only", action="store_true", help="score only the decode nac makes")
    args = parser.parse_args()
    if args.preset is not None and args.checkpoint is not None:
        parser.error("--preset codes through nac encode, which needs a shipped model (--model), not --checkpoint")
    torch.set_num_threads(1)
    if args.checkpoint is not None:
        net, state = train.model_from_checkpoint(args.checkpoint)
        model_name = f"{args.checkpoint} (step {state['step']})"
    else:
        net = zoo.load_model(args.model).net
        model_name = args.model or "default"
    net.eval()
    rate = net.config.sample_rate
    if rate != evaluate.SCORE_RATE:
        raise SystemExit(f"{model_name}: diagnose handles {evaluate.SCORE_RATE} Hz models only")
    settings, phase_iters, coding = None, args.phase_iters, f"--code-bits {args.code_bits}"
    if args.preset is not None:
        settings, preset_iters = evaluate.parse_preset(args.preset)
        phase_iters = next((n for n in (args.phase_iters, preset_iters) if n is not None),
                           codec.default_phase_iters(net, bool(settings.residual_hz)))
        coding = f"preset {args.preset}"
    files = evaluate.spread(evaluate.collect_inputs([args.corpus], args.split, args.kind), args.files)
    scores: dict[str, list[tuple[float, float]]] = {}
    for path in files:
        reference = evaluate.load_reference(path)  # mono at the model's rate
        coded = None
        if settings is not None:
            coded = api.open_stream(api.encode(reference, rate, settings, model=args.model), model=args.model)
        with torch.inference_mode():
            ways = rebuilds(net, torch.from_numpy(reference), args.code_bits, phase_iters, args.decoded_only, coded)
        for name, wave in ways.items():
            estimate = wave.numpy()
            pesq = metrics.pesq_wb(reference, estimate, rate)
            stoi = metrics.stoi(reference, estimate, rate)
            scores.setdefault(name, []).append((np.nan if pesq is None else pesq, np.nan if stoi is None else stoi))
    iters = net.config.phase_iters if phase_iters is None else phase_iters
    print(f"{len(files)} files, model {model_name}, {coding}, {iters} Griffin-Lim iterations")
    print(f"{'rebuilt with':40s} PESQ-WB  STOI")
    for name, values in scores.items():
        table = np.asarray(values)
        print(f"{name:40s} {np.nanmean(table[:, 0]):7.3f} {np.nanmean(table[:, 1]):6.3f}")


if __name__ == "__main__":
    main()
