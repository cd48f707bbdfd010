"""Training a model's phase initializer (:class:`nac.model.networks.LowBandPhase`): the low band's starting
phase for Griffin-Lim.

:func:`prepare` codes training files at the model's ladder points and keeps
each file's reference beside its ``.nac``: what a decoder will have, and the
truth. The reference is kept at ``TRUTH_RATE`` (mono FLAC): its band under
2 kHz is all the loss needs. :func:`train` decodes each pair as ``nac
decode`` does up to the phase iterations (latents, residual layer), then
fits the initializer to the original phase with a magnitude-weighted cosine
loss, and keeps the weights that score best on held-out pairs.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from safetensors.torch import save_file

from .. import api, codec
from ..audio import resample, write_audio
from ..errors import UsageError
from ..model import manifest, zoo
from ..model.networks import LowBandPhase, TorchDecoder
from ..settings import EncoderSettings
from . import evaluate

INIT_BINS, MAGNITUDE_BINS = 32, 64  # 0-1 kHz initialized, 0-2 kHz seen, at 16 kHz / 512-point STFT
TRUTH_RATE = 4000
CROP_FRAMES = 128
HELD_OUT = 20  # every HELD_OUT-th pair scores the weights
DONE = "done"  # in a pairs folder: prepare finished it


def prepare(model: str, files: list[Path], pairs: Path, points: list[EncoderSettings], minutes: float) -> int:
    """Code ``files`` (in a seeded order, each at the next of ``points``) into ``pairs`` until ``minutes`` of
    audio; returns the number of pairs. A run stopped part way goes on from its last whole pair when run again
    (a pair is whole once its reference, written last, is in place); a finished set is marked ``done``."""
    rate = zoo.load_model(model).net.config.sample_rate
    pairs.mkdir(parents=True, exist_ok=True)
    seconds, count = 0.0, 0
    for count, index in enumerate(np.random.default_rng(0).permutation(len(files)), start=1):
        name = pairs / f"{count:05d}"
        truth = name.with_suffix(".flac")
        if truth.is_file():
            frames = soundfile.info(truth).frames
        else:
            reference = evaluate.load_reference(files[index], rate)
            name.with_suffix(".nac").write_bytes(api.encode(reference, rate, points[count % len(points)],
                                                            model=model))
            truth_audio = resample(reference, rate, TRUTH_RATE)
            write_audio(truth, truth_audio, TRUTH_RATE)  # atomic: a stopped run leaves no half-written pair
            frames = truth_audio.shape[-1]
        seconds += frames / TRUTH_RATE
        if seconds >= minutes * 60:
            break
    (pairs / DONE).write_text(f"{count}\n")
    return count


def decoder_view(model: str | None, net, data: bytes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden, synthesized log-magnitude, head phase) a decoder has for a stream, whole."""
    stream, _ = api.open_stream(data, model)
    decoder = codec.Decoder(TorchDecoder(net), stream.info, phase_init=False)
    features = decoder.synthesis.features(*decoder.whole_stream([stream.chunk(i)
                                                                for i in range(stream.info.chunk_count)]))
    return tuple(torch.from_numpy(x) for x in (features.hidden[0], features.log_mag[0, :MAGNITUDE_BINS],
                                               features.phase[0]))


def load_pair(model: str | None, path: Path) -> dict[str, torch.Tensor] | None:
    """One pair as training tensors (each (channels, frames)); None if shorter than a crop."""
    torch.set_num_threads(1)
    net = zoo.load_model(model).net.eval()
    hidden, log_mag, phase = decoder_view(model, net, path.read_bytes())
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


def train(model: str, pairs: Path, out: Path, minutes: float, steps: int = 0, device: str = "cpu", batch: int = 64,
          channels: int = 128, lr: float = 1e-3, every: int = 200, workers: int = 1,
          log=print) -> float | None:
    """Fit an initializer to ``pairs`` for ``minutes`` (or ``steps``) and write the best one on the held-out
    pairs to ``out`` (float16 safetensors); returns its held-out score, None if no step beat the phase head
    (nothing written)."""
    torch.manual_seed(0)
    net = zoo.load_model(model).net.eval()
    started = time.time()
    cache = pairs / "decoded.pt"
    if cache.exists():  # written below by an earlier run on these pairs
        items = torch.load(cache, weights_only=True)
    else:
        items = load_pairs(model, pairs, workers)
        torch.save(items, cache.with_suffix(".tmp"))
        cache.with_suffix(".tmp").replace(cache)
    if len(items) < 2:
        raise UsageError(f"{pairs}: {len(items)} coded pair(s); the phase initializer needs two or more (one held "
                         "out): give it more minutes of pairs")
    held = stack(items[::HELD_OUT], device)
    data = stack([item for index, item in enumerate(items) if index % HELD_OUT], device)
    log(f"{len(items)} pairs, {data['hidden'].shape[-1]} frames, loaded in {time.time() - started:.0f} s")
    initializer = LowBandPhase(net.config.width, INIT_BINS, MAGNITUDE_BINS, channels).to(device)
    best, best_state = held_out_score(initializer, held), None
    log(f"held out: phase head {best:.4f}")
    optimizer = torch.optim.AdamW(initializer.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    step, begin = 0, time.time()

    def progress() -> float:  # the share of the budget spent: minutes of wall clock or steps, whichever first
        return max((time.time() - begin) / (minutes * 60 or math.inf), step / (steps or math.inf))

    elapsed = progress()
    while elapsed < 1:
        for group in optimizer.param_groups:  # cosine decay over the budget
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * elapsed))
        loss = 1.0 - phase_score(initializer, crops(data, batch, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        elapsed = progress()
        if step % every == 0 or elapsed >= 1:  # the weights it ends with are scored too
            score = held_out_score(initializer, held)
            if score > best:
                best, best_state = score, {k: v.detach().cpu().clone() for k, v in initializer.state_dict().items()}
            log(f"step {step}: train {1 - loss.item():.4f} held out {score:.4f} (best {best:.4f})")
    if best_state is None:
        return None
    config = {"hidden": net.config.width, "bins": INIT_BINS, "magnitude_bins": MAGNITUDE_BINS, "channels": channels}
    save_file({k: v.half().contiguous() for k, v in best_state.items()},  # float16: half the bytes
              str(out), metadata={"phase_init": json.dumps(config), "steps": str(step), "held_out_cos": f"{best:.4f}"})
    return best


def record(model: str, path: Path, models_dir: Path) -> None:
    """List ``path`` (in ``models_dir``) as the model's phase initializer in its manifest row."""
    name = manifest.find_entry(model, models_dir).name
    manifest.update_manifest_row(name, {"phase_init": path.name,
                                        "phase_init_sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
                                 models_dir)
