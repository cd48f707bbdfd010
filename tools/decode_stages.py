"""Where a decode's time goes: each decoding stage timed alone, in ms per second of audio, on one thread.

    python tools/decode_stages.py [--input FILE] [--seconds 10] [--points 12k,24k] [--model NAME] [--repeat 5]
        [--decoder torch|numpy]

Codes the first ``--seconds`` of the input (the bundled speech clip, repeated
if shorter) at each point, then times the decoder's stages on the whole
window in one process, best of ``--repeat``: the decoder network's trunk and
head, the low-band refiner, the phase initializer, the starting phase as
:class:`nac.codec.Synthesis` builds it (initializer and phase hints), and the
phase iterations. ``--decoder`` picks the torch model (the reference) or the
numpy decoder (:mod:`nac.model.inference`, what short decodes run). Start-up,
entropy decoding and file writing are not in it (``tools/bench.py`` times
whole processes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nac import api, codec  # noqa: E402
from nac.audio import read_audio, resample  # noqa: E402
from nac.model import manifest, zoo  # noqa: E402
from nac.model.networks import TorchDecoder  # noqa: E402

SAMPLE = ROOT / "samples" / "speech-en-allison.flac"


def best_ms(stage, repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` runs of ``stage()`` in ms (after one warm-up run), and its result."""
    result, best = stage(), float("inf")
    for _ in range(repeat):
        begin = time.perf_counter()
        result = stage()
        best = min(best, time.perf_counter() - begin)
    return best * 1000, result


def torch_stages(net) -> dict:
    """The torch model's stages, each on its own inputs (torch tensors)."""
    return {"trunk": lambda latent: net.decode_hidden(torch.from_numpy(latent)), "head": net.decode_head,
            "refiner": net.refiner, "phase initializer": net.phase_init}


def numpy_stages(decoder) -> dict:
    """The numpy decoder's stages, each on its own inputs."""
    return {"trunk": decoder.decode_hidden, "head": decoder.decode_head, "refiner": decoder.refiner,
            "phase initializer": decoder.phase_init}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=SAMPLE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--points", default="12k,24k")
    parser.add_argument("--model", default=None, help="[the default model]")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--decoder", choices=("torch", "numpy"), default="torch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    entry = manifest.find_entry(args.model)
    loaded = zoo.load_model(entry.name)
    net = TorchDecoder(loaded.net) if args.decoder == "torch" else zoo.numpy_decoder(loaded.weights)
    stages = torch_stages(loaded.net) if args.decoder == "torch" else numpy_stages(net)
    rate = net.config.sample_rate
    audio, input_rate = read_audio(args.input)
    mono = resample(audio.mean(axis=0, keepdims=True), input_rate, rate)
    length = int(args.seconds * rate)
    mono = np.tile(mono, (1, -(-length // mono.shape[1])))[:, :length]
    print(f"{entry.name} ({args.decoder}), {args.seconds:g} s of {args.input.name}, ms per second of audio, one thread, "
          f"best of {args.repeat}")
    print("| point | trunk | head | refiner | phase initializer | start phase (all) | phase iterations |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for point in args.points.split(","):
        data = api.encode(mono, rate, entry.point(point).settings, model=entry.name)
        stream, _ = api.open_stream(data, entry.name)
        decoder = codec.Decoder(net, stream.info, phase_init=True)
        latent, residual = decoder.whole_stream([stream.chunk(i) for i in range(stream.info.chunk_count)])
        synthesis = decoder.synthesis
        costs = []
        with torch.inference_mode():
            cost, hidden = best_ms(lambda: stages["trunk"](latent), args.repeat)
            costs.append(cost)
            cost, (log_mag, phase) = best_ms(lambda: stages["head"](hidden), args.repeat)
            costs.append(cost)
            refiner, initializer = stages["refiner"], stages["phase initializer"]
            costs.append(best_ms(lambda: refiner(log_mag), args.repeat)[0] if refiner else float("nan"))
            costs.append(best_ms(lambda: initializer(hidden, log_mag, phase), args.repeat)[0]
                         if initializer else float("nan"))
        features = synthesis.features(latent, residual)
        cost, spectrum = best_ms(lambda: synthesis.start(features, residual), args.repeat)
        costs.append(cost)
        costs.append(best_ms(lambda: synthesis.waveform(spectrum, length), args.repeat)[0])
        cells = " | ".join(f"{cost / args.seconds:.2f}" for cost in costs[:-1])
        print(f"| {point} | {cells} | {costs[-1] / args.seconds:.2f} ({synthesis.phase_iters}) |")


if __name__ == "__main__":
    main()
