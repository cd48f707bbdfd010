"""Train a nac model on a folder of audio (``python -m nac.lab.train`` / ``tools/train.py``).

The seed's knobs are options whose defaults come from the environment:
MAX_TRAIN_FILES, MAX_AUDIO_SECONDS, MODEL_CHANNELS, MEL_LOSS_WEIGHT, EPOCHS.
Training audio is decoded once and cached as one int16 array, so a step costs
only the STFT and the network.

Distributed: run under ``torchrun --nproc_per_node N -m nac.lab.train ...``;
each rank draws crops from its own shard of the audio, gradients are averaged
by DistributedDataParallel (gloo on CPU, NCCL on GPU), and only rank 0 writes
checkpoints and logs. Every rank resumes from the same ``last.pt``. Checkpoints (``results/<run>/last.pt``) hold
tensors, the step count and the JSON config; they load with
``torch.load(weights_only=True)`` and a run resumes from them by default.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import distributed as dist

from . import losses
from .adversarial import Adversary
from ..audio import read_audio
from ..errors import TrainingError
from ..model.config import ModelConfig
from ..model.networks import build_model, parameter_count
from ..model.stft import from_log_magnitude, log_magnitude


def _env(name: str, default, kind=float):
    value = os.environ.get(name)
    return kind(value) if value not in (None, "") else default


SYNTHESIS_PHASES = ("true", "predicted", "decoded", "residual")


@dataclass
class TrainSettings:
    data: Path
    run_dir: Path
    config: ModelConfig
    max_files: int = 0  # 0 = all
    crop_seconds: float = 1.0
    batch_size: int = 16
    epochs: int = 80
    steps: int = 0  # 0 = derived from epochs
    minutes: float = 0.0  # 0 = no wall-clock limit
    learning_rate: float = 1e-3
    final_learning_rate: float | None = None  # cosine decay to this over the run; None = constant
    mel_weight: float = 1.0
    phase_weight: float = 1.0
    low_band_weight: float = 1.0  # magnitude-loss weight of bins under low_band_hz
    low_band_hz: float = 1000.0
    # The waveform the mel/STFT/waveform losses judge: predicted magnitude under
    # the "true" phase (the phase head has only its own loss), under the
    # "predicted" phase as is, or "decoded" as the decoder will (the predicted
    # phase refined by the model's phase_iters Griffin-Lim iterations);
    # "residual" refines the predicted phase on the original magnitude, as a
    # file with a residual layer decodes (only the phase head is judged there).
    synthesis_phase: str = "true"
    waveform_weight: float = 10.0
    stft_weight: float = 1.0
    code_bits: int = 8  # quantization noise of this code precision (nac encode --code-bits)
    split: str = "train"
    kind: str = "speech_wb"
    seed: int = 0
    threads: int = 0
    log_every: int = 25
    save_every: int = 200
    device: str = "auto"  # auto = cuda when available, else cpu
    # A fresh run (no last.pt yet) may start from another run's weights; modules
    # its config adds (the low-band refiner) start as identity.
    init_from: Path | None = None
    refiner_lr_scale: float = 1.0  # the refiner's learning rate over the rest's
    widen_latent: int = 0  # with init_from: grow the latent to this many channels; 0 = keep
    phase_iters: int | None = None  # Griffin-Lim iterations of the model from here on; None = keep its own
    # Adversarial loss on the decoded low band (nac/lab/adversarial.py); 0 = off.
    adversarial_weight: float = 0.0
    feature_matching_weight: float = 0.0
    adversarial_hz: float = 3000.0  # the discriminator sees the bins under this

    def __post_init__(self) -> None:
        if self.synthesis_phase not in SYNTHESIS_PHASES:
            raise ValueError(f"synthesis_phase must be one of {', '.join(SYNTHESIS_PHASES)}")

    def bin_weight(self, bins: int, sample_rate: int) -> torch.Tensor | None:
        """Per-bin magnitude-loss weights, or None when every bin counts alike."""
        if self.low_band_weight == 1.0:
            return None
        return losses.low_band_weight(bins, sample_rate, self.low_band_hz, self.low_band_weight)


def list_training_files(data: Path, split: str, kind: str, max_files: int) -> list[Path]:
    """Files of ``split`` and ``kind`` (comma-separated kinds) from a corpus MANIFEST.tsv, the files a ``.txt``
    lists one a line, or every audio file under ``data``."""
    manifest = data / "MANIFEST.tsv"
    if data.suffix == ".txt" and data.is_file():
        files = [Path(line) for line in data.read_text().splitlines() if line.strip()]
    elif manifest.is_file():
        with manifest.open(newline="") as handle:
            rows = csv.DictReader(handle, delimiter="\t")
            kinds = kind.split(",")
            files = [data / r["file"] for r in rows if r.get("split") == split and r.get("kind") in kinds]
    else:
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3"})
    return files[:max_files] if max_files > 0 else files


def load_waveforms(files: list[Path], sample_rate: int, cache_dir: Path) -> np.ndarray:
    """All files as one int16 mono stream at ``sample_rate``, cached on disk by file list."""
    key = hashlib.sha256("\n".join(map(str, files)).encode() + str(sample_rate).encode()).hexdigest()[:16]
    cache = cache_dir / f"waves-{key}.npy"
    if cache.is_file():
        return np.load(cache, mmap_mode="r")
    parts = []
    for path in files:
        audio, rate = read_audio(path)
        mono = audio.mean(axis=0)
        if rate != sample_rate:
            mono = soxr.resample(mono, rate, sample_rate)
        parts.append((np.clip(mono, -1, 1) * 32767).astype(np.int16))
    stream = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, stream)
    return stream


class CropSampler:
    """Random fixed-length crops from the cached stream, with random gain."""

    def __init__(self, stream: np.ndarray, crop: int, seed: int):
        if len(stream) <= crop:
            raise ValueError("not enough training audio for one crop")
        self.stream, self.crop = stream, crop
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> torch.Tensor:
        starts = self.rng.integers(0, len(self.stream) - self.crop, size)
        waves = np.stack([self.stream[s : s + self.crop] for s in starts]).astype(np.float32) / 32768.0
        gain_db = self.rng.uniform(-18.0, 6.0, (size, 1))
        waves = np.clip(waves * 10 ** (gain_db / 20), -1.0, 1.0)
        return torch.from_numpy(waves.astype(np.float32))


def quantization_noise(latent: torch.Tensor, code_bits: int) -> torch.Tensor:
    """Training stand-in for quantize+dequantize: uniform noise of one code step.

    The step is the per-(item, channel) max-norm over all but the first two
    axes divided by the code range ``2**(code_bits-1) - 1``, as the encoder's
    quantizer does with that many code bits.
    """
    reduce_dims = tuple(range(2, latent.dim()))
    step = latent.detach().abs().amax(dim=reduce_dims, keepdim=True) / (2 ** (code_bits - 1) - 1)
    return latent + (torch.rand_like(latent) - 0.5) * step


def training_loss(
    model, wave: torch.Tensor, settings: TrainSettings, adversary: Adversary | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """The seed's losses plus multi-resolution STFT (and adversarial ones); returns (total, parts)."""
    spec = model.spectrum(wave)
    latent = quantization_noise(model.encode_spectrum(spec), settings.code_bits)
    log_mag, phase = model.decode_spectrum(latent)
    if settings.synthesis_phase in ("decoded", "residual"):
        synthesis_mag = log_mag if settings.synthesis_phase == "decoded" else log_magnitude(spec)
        recon = model.synthesize(synthesis_mag, phase, wave.shape[-1])
    else:
        synthesis = torch.angle(spec) if settings.synthesis_phase == "true" else phase
        recon = model.stft.synthesize(from_log_magnitude(log_mag, synthesis), wave.shape[-1])
    rate = model.config.sample_rate
    parts = {
        "mag": losses.magnitude_loss(log_mag, spec, settings.bin_weight(model.stft.bins, model.config.sample_rate)),
        "phase": settings.phase_weight * losses.phase_loss(phase, spec),
        "wave": settings.waveform_weight * losses.waveform_l1(recon, wave),
        "mel": settings.mel_weight
        * 0.5
        * (losses.mel_loss(recon, wave, rate, 256, 40) + losses.mel_loss(recon, wave, rate, 1024, 80)),
        "stft": settings.stft_weight * losses.multi_resolution_stft_loss(recon, wave),
    }
    if adversary is not None:
        decoded = log_magnitude(model.stft.analyze(recon, spec.shape[-1]))
        adversarial, matching = adversary.generator_losses(log_magnitude(spec), decoded)
        parts["adv"] = settings.adversarial_weight * adversarial
        parts["fm"] = settings.feature_matching_weight * matching
    total = sum(parts.values())
    return total, {name: value.item() for name, value in parts.items()}


def learning_rate_at(settings: TrainSettings, progress: float) -> float:
    """Cosine decay from the initial to the final rate as ``progress`` goes 0 -> 1."""
    final = settings.learning_rate if settings.final_learning_rate is None else settings.final_learning_rate
    return final + (settings.learning_rate - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def save_checkpoint(path: Path, model, optimizer, step: int, adversary: Adversary | None = None,
                    first_step: int | None = None, seconds: float = 0.0) -> None:
    """Weights, optimizer and step; ``first_step`` (where this run's schedule began) and ``seconds`` (its
    training time so far) let a resumed run go on as if it had not stopped."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": model.config.to_json(),
        "first_step": step if first_step is None else first_step,
        "seconds": seconds,
    }
    if adversary is not None:
        state["adversary"] = adversary.state_dict()
    temp = path.with_suffix(".tmp")
    torch.save(state, temp)
    os.replace(temp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`; never unpickles arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(path: Path, phase_iters: int | None = None) -> tuple[torch.nn.Module, dict]:
    """(model, checkpoint) of a checkpoint's config and weights; ``phase_iters`` replaces its own."""
    state = load_checkpoint(path)
    config = ModelConfig.from_json(state["config"])
    model = build_model(_with_phase_iters(config, phase_iters))
    model.load_state_dict(state["model"])
    return model, state


def initial_model(settings: TrainSettings) -> tuple[torch.nn.Module, dict | None, int]:
    """(model, checkpoint to resume the optimizers from or None, step): from last.pt, --init-from, or fresh.

    With --init-from, the checkpoint's config gains this run's refiner fields
    (and a wider latent with --widen-latent); the weights load into every module
    they have, and any other module must be the refiner (which starts as
    identity), so nothing trained is dropped. --phase-iters applies to all three.
    """
    checkpoint = settings.run_dir / "last.pt"
    if checkpoint.is_file():
        model, state = model_from_checkpoint(checkpoint, settings.phase_iters)
        return model, state, int(state["step"])
    if settings.init_from is None:
        return build_model(_with_phase_iters(settings.config, settings.phase_iters)), None, 0
    state = load_checkpoint(settings.init_from)
    config = dataclasses.replace(
        _with_phase_iters(ModelConfig.from_json(state["config"]), settings.phase_iters),
        refine_channels=settings.config.refine_channels,
        refine_bins=settings.config.refine_bins,
    )
    weights = state["model"]
    if settings.widen_latent:
        if settings.widen_latent < config.latent_channels:
            raise ValueError(f"--widen-latent {settings.widen_latent} is narrower than the trained latent")
        config = dataclasses.replace(config, latent_channels=settings.widen_latent)
    model = build_model(config)
    if settings.widen_latent:
        weights = widened_latent(weights, model.state_dict())
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a tensor of another shape
        raise ValueError(f"{settings.init_from} does not fit this model: {error}") from None
    if unexpected or any(not name.startswith("refiner.") for name in missing):
        raise ValueError(f"{settings.init_from} does not fit this model: missing {missing}, unexpected {unexpected}")
    return model, None, int(state["step"])


def _with_phase_iters(config: ModelConfig, phase_iters: int | None) -> ModelConfig:
    return config if phase_iters is None else dataclasses.replace(config, phase_iters=phase_iters)


def widened_latent(trained: dict, fresh: dict) -> dict:
    """``trained`` weights grown into the shapes of ``fresh`` (a model with more latent channels).

    The encoder's last layer keeps its trained rows and gains freshly
    initialised ones; the decoder's first layer keeps its trained columns and
    gains zero ones, so the wider model decodes exactly as the trained one did
    until training teaches it to use the new channels.
    """
    grown = {}
    for name, tensor in trained.items():
        target = fresh.get(name)
        if target is None or target.shape == tensor.shape:
            grown[name] = tensor
        elif name.startswith("decoder.0.") and tensor.dim() > 1:
            grown[name] = torch.zeros_like(target)
            grown[name][:, : tensor.shape[1]] = tensor
        elif name.startswith("encoder."):
            grown[name] = target.clone()
            grown[name][: tensor.shape[0]] = tensor
        else:
            raise ValueError(f"cannot widen {name}: {tuple(tensor.shape)} -> {tuple(target.shape)}")
    return grown


class TrainingObjective(torch.nn.Module):
    """The codec with its loss as ``forward``, so DistributedDataParallel can wrap it."""

    def __init__(self, codec: torch.nn.Module, settings: TrainSettings, adversary: Adversary | None = None):
        super().__init__()
        self.codec, self.settings, self.adversary = codec, settings, adversary

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return training_loss(self.codec, wave, self.settings, self.adversary)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def leader(self) -> bool:
        return self.rank == 0


def _device(settings: TrainSettings, place: Distributed) -> torch.device:
    if settings.device == "auto":
        return torch.device(f"cuda:{place.local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(settings.device)


def _agreed(value: float, place: Distributed) -> float:
    """Rank 0's value on every rank (so all ranks stop at the same step)."""
    if place.world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return float(tensor)


def train(settings: TrainSettings) -> Path:
    place = Distributed.from_environment()
    device = _device(settings, place)
    if place.world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(settings, place, device)
    finally:
        if place.world > 1:
            dist.barrier()  # no rank tears gloo down while another still talks to it
            dist.destroy_process_group()


def _train(settings: TrainSettings, place: Distributed, device: torch.device) -> Path:
    torch.manual_seed(settings.seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    say = functools.partial(print, file=sys.stderr) if place.leader else (lambda *args, **kwargs: None)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = settings.run_dir / "last.pt"
    model, resumed, step = initial_model(settings)
    model, config = model.to(device), model.config
    refiner = [p for name, p in model.named_parameters() if name.startswith("refiner.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("refiner.")]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if refiner:
        groups.append({"params": refiner, "lr_scale": settings.refiner_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=1e-5)
    adversary = None
    if settings.adversarial_weight or settings.feature_matching_weight:
        if place.world > 1:
            raise ValueError("adversarial training runs in one process only")
        bins = min(model.stft.bins, round(settings.adversarial_hz / config.sample_rate * config.n_fft) + 1)
        adversary = Adversary(bins).to(device)
    first_step, trained = step, 0.0
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        if adversary is not None and "adversary" in resumed:
            adversary.load_state_dict(resumed["adversary"])
        # the schedule and the time limit go on from where they were (older checkpoints: from here)
        first_step, trained = int(resumed.get("first_step", step)), float(resumed.get("seconds", 0.0))
        if place.leader:
            _forget_losses_after(settings.run_dir / "losses.jsonl", step)
        say(f"resumed {checkpoint} at step {step}", flush=True)
    elif step:
        say(f"started from {settings.init_from} at step {step}", flush=True)
    objective = TrainingObjective(model, settings, adversary)
    if place.world > 1:
        objective = torch.nn.parallel.DistributedDataParallel(objective)

    files = list_training_files(settings.data, settings.split, settings.kind, settings.max_files)
    stream = load_waveforms(files, config.sample_rate, settings.run_dir.parent / "cache")
    shard = stream[place.rank * len(stream) // place.world : (place.rank + 1) * len(stream) // place.world]
    crop = int(settings.crop_seconds * config.sample_rate)
    sampler = CropSampler(shard, crop, settings.seed + step + 1_000_003 * place.rank)
    steps_per_epoch = max(1, len(stream) // (crop * settings.batch_size * place.world))
    total_steps = settings.steps or settings.epochs * steps_per_epoch
    say(
        f"{config.arch}: {parameter_count(model)} parameters, {len(files)} files, "
        f"{len(stream) / config.sample_rate / 3600:.2f} h audio, {place.world} process(es) on {device}, "
        f"{steps_per_epoch} steps/epoch, target "
        + (f"{settings.minutes:g} min" if settings.minutes else f"{total_steps} steps"),
        flush=True,
    )
    started, window_start, window, window_steps = time.monotonic() - trained, time.monotonic(), {}, 0

    def save() -> None:
        save_checkpoint(checkpoint, model, optimizer, step, adversary, first_step, time.monotonic() - started)

    try:
        while step < total_steps:
            progress = (step - first_step) / max(1, total_steps - first_step)
            if settings.minutes:
                progress = max(progress, (time.monotonic() - started) / (settings.minutes * 60))
            if _agreed(progress, place) >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(settings, progress) * group.get("lr_scale", 1.0)
            loss, parts = objective(sampler.batch(settings.batch_size).to(device))
            total = loss.item()
            if not math.isfinite(total):
                raise TrainingError(f"training diverged at step {step + 1}: the loss is {total} (lower the "
                                    "learning rate or the loss weights); the last checkpoint is kept")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if adversary is not None:
                parts["disc"] = adversary.step()
            step += 1
            for name, value in {"loss": total, **parts}.items():
                window[name] = window.get(name, 0.0) + value
            window_steps += 1
            if step % settings.log_every == 0:
                elapsed = time.monotonic() - window_start
                # a resumed run's first window is shorter than log_every
                means = " ".join(f"{k}={v / window_steps:.4f}" for k, v in window.items())
                rate, speed = optimizer.param_groups[0]["lr"], window_steps / elapsed
                left = settings.minutes * 60 - (time.monotonic() - started) if settings.minutes \
                    else (total_steps - step) / speed
                say(f"step {step} {means} lr={rate:.2e} {speed:.2f} steps/s, {_clock(left)} left", flush=True)
                if place.leader:
                    logged = {"step": step, **{k: v / window_steps for k, v in window.items()}}
                    with (settings.run_dir / "losses.jsonl").open("a") as log:
                        log.write(json.dumps(logged) + "\n")
                window_start, window, window_steps = time.monotonic(), {}, 0
            if step % settings.save_every == 0 and place.leader:
                save()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what was trained (the last save may be minutes ago)
        if place.leader:
            save()
            say(f"saved {checkpoint} at step {step}", flush=True)
        raise
    if place.leader:
        save()
        say(f"saved {checkpoint} at step {step}", flush=True)
    return checkpoint


def _clock(seconds: float) -> str:
    """``seconds`` as h:mm:ss."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _forget_losses_after(path: Path, step: int) -> None:
    """Drop the logged losses of steps after ``step`` (those a resumed run trains again)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if json.loads(line)["step"] <= step))


def parse_args(argv: list[str] | None = None) -> TrainSettings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="corpus folder (with MANIFEST.tsv) or any folder of audio")
    parser.add_argument("--run-dir", type=Path, default=Path("results/run"), help="checkpoints go here")
    parser.add_argument("--arch", choices=("spec1d", "seed2d"), default="spec1d")
    parser.add_argument("--model-channels", type=int, default=_env("MODEL_CHANNELS", 48, int),
                        help="latent channels (env MODEL_CHANNELS); smaller compresses harder")
    parser.add_argument("--width", type=int, default=160, help="hidden width of the network")
    parser.add_argument("--downsample", type=int, default=2, help="stride-2 stages over time")
    parser.add_argument("--refine-channels", type=int, default=0,
                        help="width of the low-band refiner (2-D convs over frequency and time); 0 = none")
    parser.add_argument("--refine-hz", type=float, default=2000.0, help="the refiner corrects bins under this")
    parser.add_argument("--refiner-lr-scale", type=float, default=1.0,
                        help="the refiner's learning rate as a multiple of --lr")
    parser.add_argument("--adversarial-weight", type=float, default=0.0,
                        help="weight of the least-squares GAN loss of a low-band spectrogram discriminator; 0 = off")
    parser.add_argument("--feature-matching-weight", type=float, default=0.0,
                        help="weight of the discriminator feature-matching L1")
    parser.add_argument("--adversarial-hz", type=float, default=3000.0, help="the discriminator sees bins under this")
    parser.add_argument("--widen-latent", type=int, default=0,
                        help="with --init-from: grow the latent to this many channels (the new ones start unused)")
    parser.add_argument("--phase-iters", type=int, default=None,
                        help="Griffin-Lim iterations of the model (what --synthesis-phase decoded trains through); "
                             "default: the checkpoint's, or 16 for a new model")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start a new run from this checkpoint's weights (a new refiner starts as identity)")
    parser.add_argument("--max-files", type=int, default=_env("MAX_TRAIN_FILES", 0, int),
                        help="use at most this many files, 0 = all (env MAX_TRAIN_FILES)")
    parser.add_argument("--crop-seconds", type=float, default=_env("MAX_AUDIO_SECONDS", 1.0),
                        help="random crop length in seconds (env MAX_AUDIO_SECONDS)")
    parser.add_argument("--mel-weight", type=float, default=_env("MEL_LOSS_WEIGHT", 1.0),
                        help="weight of the two-resolution mel loss (env MEL_LOSS_WEIGHT)")
    parser.add_argument("--phase-weight", type=float, default=1.0, help="weight of the phase-head loss")
    parser.add_argument("--low-band-weight", type=float, default=1.0,
                        help="magnitude-loss weight of bins under --low-band-hz (1 = all bins alike)")
    parser.add_argument("--low-band-hz", type=float, default=1000.0)
    parser.add_argument("--waveform-weight", type=float, default=10.0, help="weight of the waveform L1 loss")
    parser.add_argument("--synthesis-phase", choices=SYNTHESIS_PHASES, default="true",
                        help="waveform the mel/STFT/waveform losses judge: predicted magnitude under the true "
                             "phase, under the phase head's phase, as decoded (phase head + Griffin-Lim), or the "
                             "original magnitude under the decoded phase (as residual-layer files decode)")
    parser.add_argument("--epochs", type=int, default=_env("EPOCHS", 80, int), help="passes over the data (env EPOCHS)")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--minutes", type=float, default=0.0, help="stop after this many minutes")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--code-bits", type=int, default=5,
                        help="train with the quantization noise of this code precision (match nac encode's)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate at the start of this run")
    parser.add_argument("--lr-final", type=float, default=None,
                        help="cosine-decay the rate to this by the end of the run (--steps or --minutes)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads, 0 = torch's default")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument("--split", default="train", help="MANIFEST split to train on")
    parser.add_argument("--kind", default="speech_wb", help="MANIFEST kinds to train on, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--log-every", type=int, default=25)
    args = parser.parse_args(argv)
    config = ModelConfig(
        arch=args.arch, width=args.width, latent_channels=args.model_channels, downsample=args.downsample
    )
    if args.refine_channels:
        bins = round(args.refine_hz / config.sample_rate * config.n_fft) + 1
        config = dataclasses.replace(config, refine_channels=args.refine_channels, refine_bins=bins)
    return TrainSettings(
        data=args.data, run_dir=args.run_dir, config=config, max_files=args.max_files,
        crop_seconds=args.crop_seconds, batch_size=args.batch_size, epochs=args.epochs, steps=args.steps,
        minutes=args.minutes, learning_rate=args.lr, final_learning_rate=args.lr_final,
        mel_weight=args.mel_weight, phase_weight=args.phase_weight, low_band_weight=args.low_band_weight,
        low_band_hz=args.low_band_hz, waveform_weight=args.waveform_weight,
        synthesis_phase=args.synthesis_phase, split=args.split, kind=args.kind, seed=args.seed, threads=args.threads, save_every=args.save_every,
        log_every=args.log_every, device=args.device, code_bits=args.code_bits,
        init_from=args.init_from, refiner_lr_scale=args.refiner_lr_scale, widen_latent=args.widen_latent,
        phase_iters=args.phase_iters,
        adversarial_weight=args.adversarial_weight, feature_matching_weight=args.feature_matching_weight,
        adversarial_hz=args.adversarial_hz,
    )


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
