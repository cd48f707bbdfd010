"""Train a model's phase initializer (codec.model.LowBandPhase): the low band's starting phase for Griffin-Lim.

    python tools/train_phase.py prepare CORPUS PAIRS [--model NAME] [--minutes 30] [--points 8k,12k,16k,24k]
    python tools/train_phase.py train PAIRS OUT.safetensors [--model NAME] [--minutes 8] [--device cuda] [--record]

``prepare`` codes train-split files through ``nac encode`` at the model's
rate points (in turn, a file each) and writes each file's reference beside
its ``.nac``: what a decoder will have, and the truth. The reference is kept
at ``TRUTH_RATE`` (mono FLAC): its band under 2 kHz is all the loss needs,
at a quarter of the bytes.
``train`` decodes each pair as ``nac decode`` does up to the phase iterations
(latents, residual layer), then fits the initializer to the original phase with a
magnitude-weighted cosine loss. It keeps the weights that score best on the
held-out pairs and prints that score beside the phase head's own; with
``--record`` it lists them as the model's phase initializer in the manifest.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac.audio import resample
from nac import api, codec  # noqa: E402

from nac.lab import evaluate  # noqa: E402



from nac.model import manifest, zoo  # noqa: E402
from nac.model.networks import LowBandPhase  # noqa: E402

INIT_BINS, MAGNITUDE_BINS = 32, 64  # 0-1 kHz initialized, 0-2 kHz seen, at 16 kHz / 512-point STFT
TRUTH_RATE = 4000
CROP_FRAMES = 128
HELD_OUT = 20  # every HELD_OUT-th pair scores the weights


def prepare(args: argparse.Namespace) -> None:
    loaded = zoo.load_model(args.model)
    entry = manifest.find_entry(args.model)
    settings = [entry.point(name).settings for name in args.points.split(",")]
    files = evaluate.collect_inputs([args.corpus], "train", "speech_wb")
    rng = np.random.default_rng(0)
    args.pairs.mkdir(parents=True, exist_ok=True)
    seconds, count = 0.0, 0
    for count, path in enumerate(rng.permutation(len(files)), start=1):
        reference = evaluate.load_reference(files[path])
        name = args.pairs / f"{count:05d}"
        data = api.encode(reference, evaluate.SCORE_RATE, settings[count % len(settings)], model=loaded.name)
        name.with_suffix(".nac").write_bytes(data)
        truth = resample(reference, evaluate.SCORE_RATE, TRUTH_RATE)
        soundfile.write(name.with_suffix(".flac"), truth[0], TRUTH_RATE)
        seconds += reference.shape[-1] / evaluate.SCORE_RATE
        if seconds >= args.minutes * 60:
            break
    print(f"{count} pairs, {seconds / 60:.1f} min in {args.pairs}")


def decoder_view(net, data: bytes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden, synthesized log-magnitude, head phase) a decoder has for a stream, whole."""
    stream, _ = api.open_stream(data)
    decoder = codec.Decoder(net, stream.info, phase_init=False)
    with torch.inference_mode():
        features = decoder.synthesis.features(*decoder.whole_stream([stream.chunk(i)
                                                                    for i in range(stream.info.chunk_count)]))
    return features.hidden[0], features.log_mag[0, :MAGNITUDE_BINS], features.phase[0]


def load_pair(model: str | None, path: Path) -> dict[str, torch.Tensor] | None:
    """One pair as training tensors (each (channels, frames)); None if shorter than a crop."""
    torch.set_num_threads(1)
    net = zoo.load_model(model).net.eval()
    hidden, log_mag, phase = decoder_view(net, path.read_bytes())
    audio, rate = soundfile.read(path.with_suffix(".flac"), dtype="float32")
    reference = resample(audio[None], rate, net.config.sample_rate)
    with torch.inference_mode():
        truth = net.spectrum(torch.from_numpy(np.ascontiguousarray(reference)))[0, :INIT_BINS]
    frames = min(truth.shape[-1], hidden.shape[-1])
    if frames < CROP_FRAMES:
        return None
    return {"hidden": hidden[:, :frames], "log_mag": log_mag[:, :frames], "phase": phase[:, :frames],
            "truth": truth[:, :frames]}


def load_pairs(model: str | None, pairs: Path, workers: int) -> list[dict[str, torch.Tensor]]:
    paths = sorted(pairs.glob("*.nac"))
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        loaded = pool.map(functools.partial(load_pair, model), paths, chunksize=8)
        return [item for item in loaded if item is not None]


def stack(items: list[dict], device: str) -> dict[str, torch.Tensor]:
    """The pairs joined along time (crops never cross a pair: starts are drawn per pair)."""
    joined = {key: torch.cat([item[key] for item in items], dim=-1).to(device) for key in items[0]}
    starts, offset = [], 0
    for item in items:
        frames = item["hidden"].shape[-1]
        starts.append(torch.arange(offset, offset + frames - CROP_FRAMES + 1))
        offset += frames
    joined["starts"] = torch.cat(starts).to(device)
    return joined


def crops(data: dict, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    pick = torch.randint(len(data["starts"]), (batch,), generator=generator, device=data["starts"].device)
    index = data["starts"][pick, None] + torch.arange(CROP_FRAMES, device=pick.device)
    return {key: value[:, index].permute(1, 0, 2) for key, value in data.items() if key != "starts"}


def phase_score(initializer: LowBandPhase, part: dict) -> torch.Tensor:
    """Magnitude-weighted mean cosine of the initializer's phase error in its bins (1 is exact)."""
    phase = initializer(part["hidden"], part["log_mag"], part["phase"])[:, :INIT_BINS]
    weight = part["truth"].abs()
    return (weight * torch.cos(phase - torch.angle(part["truth"]))).sum() / weight.sum()


def held_out_score(initializer: LowBandPhase, held: dict) -> float:
    with torch.no_grad():
        part = {key: value[None] for key, value in held.items() if key != "starts"}
        return float(phase_score(initializer, part))


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    net = zoo.load_model(args.model).net.eval()
    started = time.time()
    cache = args.pairs / "decoded.pt"
    if cache.exists():  # written below by an earlier run on these pairs
        items = torch.load(cache, weights_only=True)
    else:
        items = load_pairs(args.model, args.pairs, args.workers)
        torch.save(items, cache.with_suffix(".tmp"))
        cache.with_suffix(".tmp").replace(cache)
    held = stack(items[::HELD_OUT], args.device)
    data = stack([item for index, item in enumerate(items) if index % HELD_OUT], args.device)
    print(f"{len(items)} pairs, {data['hidden'].shape[-1]} frames, loaded in {time.time() - started:.0f} s", flush=True)
    initializer = LowBandPhase(net.config.width, INIT_BINS, MAGNITUDE_BINS, args.channels).to(args.device)
    best, best_state = held_out_score(initializer, held), None
    print(f"held out: phase head {best:.4f}", flush=True)
    optimizer = torch.optim.AdamW(initializer.parameters(), lr=args.lr, weight_decay=1e-4)
    generator = torch.Generator(device=args.device).manual_seed(0)
    step, begin = 0, time.time()
    while (elapsed := max((time.time() - begin) / (args.minutes * 60), step / (args.steps or math.inf))) < 1:
        for group in optimizer.param_groups:  # cosine decay over the budget
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * elapsed))
        loss = 1.0 - phase_score(initializer, crops(data, args.batch, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % args.every == 0:
            score = held_out_score(initializer, held)
            if score > best:
                best, best_state = score, {k: v.detach().cpu().clone() for k, v in initializer.state_dict().items()}
            print(f"step {step}: train {1 - loss.item():.4f} held out {score:.4f} (best {best:.4f})", flush=True)
    if best_state is None:
        print("no step beat the phase head; nothing written")
        return
    config = {"hidden": net.config.width, "bins": INIT_BINS, "magnitude_bins": MAGNITUDE_BINS,
              "channels": args.channels}
    save_file({k: v.half().contiguous() for k, v in best_state.items()},  # float16: half the bytes
              str(args.out), metadata={"phase_init": json.dumps(config), "steps": str(step),
                                       "held_out_cos": f"{best:.4f}"})
    print(f"wrote {args.out}: held-out weighted cos {best:.4f}, {step} steps")
    if args.record:
        name = zoo.load_model(args.model).name
        manifest.update_manifest_row(name, {"phase_init": args.out.name,
                                       "phase_init_sha256": hashlib.sha256(args.out.read_bytes()).hexdigest()})
        print(f"listed as {name}'s phase initializer in {manifest.MODELS_DIR / 'manifest.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    first = sub.add_parser("prepare")
    first.add_argument("corpus", type=Path)
    first.add_argument("pairs", type=Path)
    first.add_argument("--minutes", type=float, default=30.0)
    first.add_argument("--points", default="8k,12k,16k,24k", help="the model's ladder points to code at, in turn")
    second = sub.add_parser("train")
    second.add_argument("pairs", type=Path)
    second.add_argument("out", type=Path)
    second.add_argument("--minutes", type=float, default=8.0)
    second.add_argument("--steps", type=int, default=0, help="stop after this many steps, if sooner (0: no limit)")
    second.add_argument("--device", default="cpu")
    second.add_argument("--batch", type=int, default=64)
    second.add_argument("--channels", type=int, default=128, help="the initializer's width")
    second.add_argument("--lr", type=float, default=1e-3)
    second.add_argument("--every", type=int, default=200, help="steps between held-out scores")
    second.add_argument("--record", action="store_true",
                        help="list OUT (in the models folder) as the model's phase initializer in the manifest")
    second.add_argument("--workers", type=int, default=os.cpu_count(), help="processes decoding the pairs")
    for each in (first, second):
        each.add_argument("--model", default=None)
    args = parser.parse_args()
    if args.command == "train" and args.record and args.out.resolve().parent != manifest.MODELS_DIR.resolve():
        parser.error(f"--record needs OUT in the models folder {manifest.MODELS_DIR}")
    {"prepare": prepare, "train": train}[args.command](args)


if __name__ == "__main__":
    main()
