"""``nac train``: every step that makes a usable model, as one command.

Fine-tuning (:func:`fine_tune`) starts from a shipped model and trains it on a
folder of one's own audio; a recipe (:func:`from_recipe`) trains a model from
nothing, stage by stage. Both then make the model usable (:func:`finish`):
export to ``OUT/models`` (a models folder: ``nac encode -m OUT``), the
channel order, the entropy tables, the phase initializer, and the rate
ladder measured on held-out audio. ``OUT`` also gets ``run.json`` (what was
run, the git commit), ``metrics.md`` (the held-out scores before and after)
and ``loss.png``. Every step resumes: a stage that finished is not run
again, and training resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import api
from ..audio import AUDIO_SUFFIXES, audio_info, read_audio, resample
from ..errors import InputError, NacError, OutputError, UsageError
from ..model import manifest, zoo
from ..model.config import ModelConfig
from ..settings import EncoderSettings
from . import companions, export, metrics, phase_init, train
from .evaluate import spread
from .recipe import Recipe, Stage

HELD_OUT_EVERY = 10  # a plain folder's every tenth file (in sorted order) is held out
SCORES = ("pesq_wb", "stoi", "lsd_db", "mel_db")
MUSIC_SCORES = ("visqol_audio", "bandwidth_khz", "ild_error_db", "mel_db")
EXCERPT_S = 20.0  # a fullband ladder is measured on the middle of each held-out file (music runs minutes)
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Data:
    """The audio a run trains on and measures on."""

    train: list[Path]
    held_out: list[Path]
    source: str  # what it is, for run.json


def folder_data(folder: Path, log: Log = print) -> Data:
    """Every audio file under ``folder`` (nested folders too), each checked readable; every tenth held out (the
    last one, if fewer than ten; with one file, it is trained on and measured on, said in ``log``)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{folder}: no audio files (wav, flac, ogg, mp3, ...) under it")
    seconds = 0.0
    for path in files:  # a bad file fails now, not after the training
        frames, rate, _ = audio_info(path)
        seconds += frames / rate
    if seconds < MIN_TRAIN_S:
        raise InputError(f"{folder}: {seconds:.1f} s of audio; training needs at least {MIN_TRAIN_S:g} s")
    held = files[HELD_OUT_EVERY - 1 :: HELD_OUT_EVERY] or files[-1:]
    train_files = [f for f in files if f not in held] or files
    if train_files == held:
        log(f"warning: {folder} holds one file: the scores before and after are measured on the training file")
    return Data(train_files, held, f"{Path(folder).resolve()}: {len(train_files)} files to train on, "
                                   f"{len(held)} held out")


MIN_TRAIN_S = 10.0  # the least audio a fine-tune trains on (a few crops)


def _check_not_silent(files: list[Path]) -> None:
    """:class:`InputError` if every file is digital silence (nothing to learn, and no code statistics)."""
    for path in files:
        audio, _ = read_audio(path)
        if np.any(audio):
            return
    raise InputError(f"{len(files)} training files: all digital silence")


def corpus_data(corpus: Path, kinds: tuple[str, ...], dev_files: int) -> Data:
    """A corpus's MANIFEST.tsv: its train split of ``kinds``, and ``dev_files`` of each kind's dev split held
    out."""
    import csv

    with (Path(corpus) / "MANIFEST.tsv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r.get("kind") in kinds]
    train_files = [Path(corpus) / r["file"] for r in rows if r.get("split") == "train"]
    held = [path for kind in kinds for path in spread(
        [Path(corpus) / r["file"] for r in rows if r.get("split") == "dev" and r["kind"] == kind], dev_files)]
    return Data(train_files, held, f"{corpus} ({', '.join(kinds)}): {len(train_files)} train, {len(held)} dev files")


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SeedKnobs:
    """The research seed's training knobs, for a fine-tune; None keeps the fine-tune's own choice."""

    max_files: int | None = None  # MAX_TRAIN_FILES: train on the first this many files (0: all)
    crop_seconds: float | None = None  # MAX_AUDIO_SECONDS: the length of a training crop
    mel_weight: float | None = None  # MEL_LOSS_WEIGHT
    epochs: int | None = None  # EPOCHS: passes over the audio, in place of minutes or steps
    model_channels: int | None = None  # MODEL_CHANNELS: a fine-tune keeps its base's latent width

    def request(self) -> dict:
        """The knobs set, for ``request.json`` (none set adds nothing: runs from before knobs resume)."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    def stage_fields(self) -> dict:
        """The knobs set that a training stage takes (:class:`Stage` fields)."""
        return {key: value for key in ("epochs", "crop_seconds", "mel_weight")
                if (value := getattr(self, key)) is not None}

    def without_defaults(self, latent_channels: int) -> SeedKnobs:
        """These knobs, each set to what the fine-tune uses anyway counted as not set (a rerun that names a
        default is the same run)."""
        defaults = {"max_files": 0, "crop_seconds": Stage.crop_seconds, "mel_weight": Stage.mel_weight,
                    "model_channels": latent_channels}
        return dataclasses.replace(self, **{key: None for key, value in defaults.items()
                                            if getattr(self, key) == value})


def fine_tune(data: Data, base: str, out: Path, minutes: float, steps: int = 0, threads: int = 0,
              device: str = "auto", name: str | None = None, log: Log = print, knobs: SeedKnobs = SeedKnobs()) -> Path:
    """Train ``base`` further on ``data`` for ``minutes`` (or ``steps``, or ``knobs.epochs``), then
    :func:`finish` it as ``name`` (``OUT``'s folder name) in ``out``. The base's ladder settings are measured
    again on the held-out files."""
    if manifest.models_folder(base)[1] != manifest.MODELS_DIR:
        raise UsageError(f"--from {base}: fine-tuning starts from a shipped model (nac models), not a run folder")
    entry = manifest.find_entry(base)
    if not entry.ladder:
        raise UsageError(f"model {entry.name} has no rate ladder to measure a fine-tune at")
    if knobs.model_channels is not None and knobs.model_channels != len(entry.channel_order):
        raise UsageError(f"--model-channels (MODEL_CHANNELS) {knobs.model_channels}: a fine-tune keeps "
                         f"{entry.name}'s {len(entry.channel_order)} latent channels (a new width trains from "
                         f"nothing: python -m nac.lab.train)")
    knobs = knobs.without_defaults(len(entry.channel_order))
    if knobs.max_files:
        data = dataclasses.replace(data, train=data.train[: knobs.max_files],
                                   source=f"{data.source}, the first {knobs.max_files} trained on")
    stage = Stage("fine-tune", minutes=minutes, lr=5e-5, lr_final=5e-6, synthesis_phase="decoded",
                  low_band_weight=4.0, phase_weight=0.3, waveform_weight=0.0, code_bits=4)
    stage = dataclasses.replace(stage, **knobs.stage_fields())
    seconds = sum(frames / rate for frames, rate, _ in map(audio_info, data.train))
    if seconds <= stage.crop_seconds:
        raise UsageError(f"a training crop of {stage.crop_seconds:g} s (--crop-seconds, MAX_AUDIO_SECONDS) needs "
                         f"more than the {seconds:.1f} s of audio trained on")
    _check_not_silent(data.train)
    out = Path(out)
    claim(out, {"from": entry.name, "data": data.source, "minutes": None if steps or knobs.epochs else minutes,
                "steps": steps, **knobs.request()})
    if (out / FINISHED).is_file():
        log("model made before")
        return out / "models"
    start = out / "stages" / "base.pt"
    if not start.is_file():
        start.parent.mkdir(parents=True, exist_ok=True)
        _checkpoint_of(base, start)
    checkpoint = _run_stage(stage, data, out / "stages" / "01-fine-tune", start, None, threads, device, steps, log)
    if not train.Distributed.from_environment().leader:
        return out / "models"  # under torchrun the first process alone makes the model
    ladder = {point.name: point.settings for point in entry.ladder}
    return finish(checkpoint, out, name or out.resolve().name, 0, data, ladder, entry.default_point,
                  description=f"{entry.name} fine-tuned on {data.source}", base=base, log=log,
                  run={"fine_tuned_from": entry.name, "stage": dataclasses.asdict(stage), "steps": steps})


def from_recipe(recipe: Recipe, data: Data, out: Path, threads: int = 0, device: str = "auto",
                log: Log = print) -> Path:
    """Train ``recipe``'s stages on ``data`` in turn (each from the one before), then :func:`finish`."""
    out = Path(out)
    claim(out, {"recipe": recipe.name, "data": data.source})
    if (out / FINISHED).is_file():
        log("model made before")
        return out / "models"
    previous: Path | None = None
    if recipe.base:
        previous = out / "stages" / "base.pt"
        if not previous.is_file():
            previous.parent.mkdir(parents=True, exist_ok=True)
            _checkpoint_of(recipe.base, previous)
    config = ModelConfig(**recipe.network) if recipe.network else ModelConfig()
    for number, stage in enumerate(recipe.stages, start=1):
        previous = _run_stage(stage, data, out / "stages" / f"{number:02d}-{stage.name}", previous,
                              config if previous is None else None, threads, device, 0, log)
    if previous is None:
        raise UsageError(f"recipe {recipe.name} has no stages")
    if not train.Distributed.from_environment().leader:
        return out / "models"
    return finish(previous, out, recipe.name, recipe.model_id, data, recipe.ladder_settings(), recipe.default_point,
                  description=recipe.description, base=recipe.base or None, recipe=recipe, log=log,
                  run={"recipe": dataclasses.asdict(recipe)})


FINISHED = "finished"  # in a run folder: the model is made (a rerun changes nothing)
REQUEST = "request.json"  # in a run folder: what it was asked to make


def claim(out: Path, request: dict) -> None:
    """Make ``out`` the folder of a run asked for as ``request``, or check that it is one: a folder that
    holds another run, or anything else, is refused rather than mixed with."""
    path = out / REQUEST
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if path.is_file():
        before = json.loads(path.read_text())
        if before != request:
            changed = "; ".join(f"{key} {before.get(key)!r}, now {request.get(key)!r}" for key in sorted(
                set(before) | set(request)) if before.get(key) != request.get(key))
            raise UsageError(f"{out}: holds a run asked for otherwise ({changed}); name another -o to start anew")
        return
    if out.is_dir() and any(out.iterdir()) and not (out / "stages").is_dir():  # (a run from before REQUEST)
        raise OutputError(f"{out}: not empty and not a nac train run folder; name a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(request, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise OutputError(f"{out}: cannot write ({err.strerror or err})") from None


def _run_stage(stage: Stage, data: Data, run_dir: Path, start: Path | None, config: ModelConfig | None,
               threads: int, device: str, steps: int, log: Log) -> Path:
    """Train one stage (resuming its last checkpoint); a stage that finished before is not run again."""
    done = run_dir / "done"
    if done.is_file():
        log(f"stage {stage.name}: done before")
        return run_dir / "last.pt"
    run_dir.mkdir(parents=True, exist_ok=True)
    listed = run_dir / "files.txt"
    listed.write_text("".join(f"{path}\n" for path in data.train))
    if config is None:
        config = ModelConfig.from_json(train.load_checkpoint(start)["config"])
    if stage.refine_channels:
        bins = round(stage.refine_hz / config.sample_rate * config.n_fft) + 1
        config = dataclasses.replace(config, refine_channels=stage.refine_channels, refine_bins=bins)
    limit = steps or stage.until_step  # else the stage's epochs, else its minutes
    settings = train.TrainSettings(
        data=listed, run_dir=run_dir, config=config, crop_seconds=stage.crop_seconds, batch_size=stage.batch_size,
        steps=limit or (0 if stage.epochs else 10**9), epochs=stage.epochs,
        minutes=0.0 if limit or stage.epochs else stage.minutes,
        learning_rate=stage.lr, final_learning_rate=stage.lr_final, mel_weight=stage.mel_weight,
        phase_weight=stage.phase_weight, low_band_weight=stage.low_band_weight, low_band_hz=stage.low_band_hz,
        waveform_weight=stage.waveform_weight, synthesis_phase=stage.synthesis_phase, code_bits=stage.code_bits,
        seed=stage.seed, threads=threads, device=device, init_from=start, phase_iters=stage.phase_iters,
        refiner_lr_scale=stage.refiner_lr_scale, log_every=10, save_every=100)
    log(f"stage {stage.name}: training in {run_dir}")
    checkpoint = train.train(settings)
    done.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return checkpoint


def _checkpoint_of(model: str, path: Path) -> None:
    """A shipped model's weights as a training checkpoint (its phase initializer is a companion, not trained)."""
    loaded = zoo.load_model(model)
    weights = {k: v for k, v in loaded.net.state_dict().items() if not k.startswith("phase_init.")}
    entry = manifest.find_entry(model)
    torch.save({"model": weights, "config": loaded.net.config.to_json(), "step": 0, "from": entry.name}, path)


# --------------------------------------------------------------------------
# From a checkpoint to a usable model
# --------------------------------------------------------------------------


def finish(checkpoint: Path, out: Path, name: str, model_id: int, data: Data, ladder: dict[str, EncoderSettings],
           default_point: str, description: str = "", base: str | None = None, recipe: Recipe | None = None,
           run: dict | None = None, log: Log = print) -> Path:
    """Export ``checkpoint`` into ``OUT/models`` with its companions and measured ladder; write run.json,
    metrics.md and loss.png. A fine-tune (``base``) keeps the base's channel order and phase initializer and
    counts its entropy tables again; a recipe counts and trains them all (but one from a ``base`` model keeps
    the base's channel order and phase initializer, as a fine-tune does)."""
    models = Path(out) / "models"
    folder = str(models)
    if models.is_dir() and _names_in(models) != {name}:  # copied with the run folder under another name
        shutil.rmtree(models)
    export.export(checkpoint, name, model_id, models, description=description, make_default=True,
                  training_data=data.source,
                  extra={**({"recipe": f"recipes/{name}.json"} if recipe else {}),
                         **({"fine_tuned_from": base} if base else {})})
    table_points = [ladder[p] for p in (recipe.table_points if recipe else ladder) if p in ladder]
    if base is not None:
        _copy_companions(base, models, name)
    else:
        log("channel order")
        companions.channel_order(folder, spread(data.train, recipe.channel_order_files), models)
    train_files = spread(data.train, recipe.table_files if recipe else 300)
    dev_files = spread(data.held_out, recipe.table_dev_files if recipe else 20)
    log("latent code tables")
    dev_bytes = companions.latent_tables(folder, train_files, dev_files, models)
    log("latent code tables: " + ", ".join(f"{bits}-bit codes {size:,} bytes" for bits, size in dev_bytes.items())
        + f" (held-out files: {len(dev_files)})")
    if any(setting.residual_hz for setting in table_points):
        log("residual tables")
        before, after = companions.residual_tables(folder, train_files, dev_files,
                                                   [s for s in table_points if s.residual_hz], models)
        log(f"residual tables: {before:,} -> {after:,} bytes (held-out files: {len(dev_files)})")
    if recipe is not None and recipe.phase_init is not None:
        _train_phase_init(recipe, folder, models, data, ladder, out, log)
    log("measuring the ladder on the held-out files")
    after = measure(folder, data.held_out, ladder)
    manifest.update_manifest_row(name, {"ladder": [
        {"name": point, "settings": ladder[point].to_json(), "kbps": round(after[point]["kbps"], 2),
         "scores": {k: round(v, 3) for k, v in after[point].items()
                    if k in ("pesq_wb", "stoi", "visqol_audio", "bandwidth_khz") and v is not None},
         "measured_on": f"{len(data.held_out)} held-out files"
                        + (f", the middle {EXCERPT_S:g} s of each" if is_fullband(ladder) else "")} for point in ladder],
        "default_point": default_point}, models)
    before = measure(base, data.held_out, ladder) if base is not None else None
    _report(Path(out), name, data, after, before, base, run, log)
    (Path(out) / FINISHED).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return models


def _names_in(models: Path) -> set[str]:
    """The names of the models in a models folder (none if it has no readable manifest)."""
    try:
        return {entry.name for entry in manifest.list_models(models)}
    except NacError:
        return set()


def _copy_companions(base: str, models: Path, name: str) -> None:
    """The base model's channel order and phase initializer, for a fine-tune of it (whose parameter count is
    then the base's: the same networks and initializer)."""
    entry = manifest.find_entry(base)
    fields: dict = {"channel_order": list(entry.channel_order), "parameters": entry.parameters}
    if entry.phase_init:
        target = models / f"{name}.phase.safetensors"
        shutil.copyfile(manifest.MODELS_DIR / entry.phase_init, target)
        fields.update(phase_init=target.name, phase_init_sha256=entry.phase_init_sha256)
    manifest.update_manifest_row(name, fields, models)


def _train_phase_init(recipe: Recipe, folder: str, models: Path, data: Data, ladder: dict[str, EncoderSettings],
                      out: Path, log: Log) -> None:
    spec = recipe.phase_init
    target = models / f"{recipe.name}.phase.safetensors"
    if not target.is_file():
        pairs = Path(out) / "phase-pairs"
        if not (pairs / phase_init.DONE).is_file():
            log("phase initializer: coding pairs")
            phase_init.prepare(folder, data.train, pairs, [ladder[p] for p in spec.points if p in ladder],
                               spec.pair_minutes)
        log("phase initializer: training")
        if phase_init.train(folder, pairs, target, spec.minutes, spec.steps, batch=spec.batch, lr=spec.lr,
                            log=log) is None:
            return
    phase_init.record(folder, target, models)  # again on a resumed finish: the export above wrote a new row


def is_fullband(ladder: dict[str, EncoderSettings]) -> bool:
    """Whether a ladder's points carry the fullband layers (then it is measured on audio as it is)."""
    return any(setting.high_band_hz or setting.stereo_bands for setting in ladder.values())


def measure(model: str, files: list[Path], ladder: dict[str, EncoderSettings]) -> dict[str, dict]:
    """Per ladder point: whole-file kbps and mean scores (PESQ-WB and STOI with the [eval] extra) of ``files``
    coded by ``model`` as mono at its rate; a fullband ladder, :func:`measure_fullband`."""
    if is_fullband(ladder):
        return measure_fullband(model, files, ladder)
    rate = zoo.load_model(model).net.config.sample_rate
    results = {}
    for point, settings in ladder.items():
        bits, seconds, scores = 0, 0.0, {key: [] for key in SCORES}
        for path in files:
            audio, source_rate = read_audio(path)
            audio = resample(audio.mean(axis=0, keepdims=True), source_rate, rate)
            data = api.encode(audio, rate, settings, model=model)
            decoded, _ = api.decode(data, model=model)
            bits, seconds = bits + 8 * len(data), seconds + audio.shape[1] / rate
            for key, value in (("pesq_wb", metrics.pesq_wb(audio, decoded, rate)),
                               ("stoi", metrics.stoi(audio, decoded, rate)),
                               ("lsd_db", metrics.lsd_db(audio, decoded, rate)),
                               ("mel_db", metrics.mel_distance_db(audio, decoded, rate))):
                if value is not None and np.isfinite(value):
                    scores[key].append(value)
        results[point] = {"kbps": bits / max(seconds, 1e-9) / 1000,
                          **{key: (float(np.mean(v)) if v else None) for key, v in scores.items()}}
    return results


def measure_fullband(model: str, files: list[Path], ladder: dict[str, EncoderSettings]) -> dict[str, dict]:
    """Per ladder point: kbps and mean music scores (:func:`nac.lab.evaluate.score_music`; ViSQOL with the
    [eval] extra) of the middle :data:`EXCERPT_S` seconds of ``files``, coded at their own rate and channels."""
    from .evaluate import MUSIC, load_clip, score_music

    clips = [load_clip(path, MUSIC, EXCERPT_S) for path in files]
    results = {}
    for point, settings in ladder.items():
        bits, seconds, scores = 0, 0.0, {key: [] for key in MUSIC_SCORES}
        for clip in clips:
            data = api.encode(clip.source, clip.source_rate, settings, model=model)
            decoded, rate = api.decode(data, model=model)
            bits, seconds = bits + 8 * len(data), seconds + clip.source.shape[1] / clip.source_rate
            decoded = resample(decoded, rate, MUSIC.rate)[:, : clip.reference.shape[1]]
            decoded = np.pad(decoded, ((0, 0), (0, clip.reference.shape[1] - decoded.shape[1])))
            row = score_music(clip.reference, decoded, MUSIC.rate)
            for key in MUSIC_SCORES:
                if row.get(key) is not None and np.isfinite(row[key]):
                    scores[key].append(row[key])
        results[point] = {"kbps": bits / max(seconds, 1e-9) / 1000,
                          **{key: (float(np.mean(v)) if v else None) for key, v in scores.items()}}
    return results


LOWER_IS_BETTER = {"lsd_db", "mel_db", "ild_error_db"}  # of SCORES and MUSIC_SCORES; higher is better for the rest


def _report(out: Path, name: str, data: Data, after: dict, before: dict | None, base: str | None,
            run: dict | None, log: Log = print) -> None:
    """run.json, metrics.md and loss.png in ``out``; the main score before and after in ``log``."""
    record = {"model": name, "data": data.source, "train_files": len(data.train),
              "held_out_files": len(data.held_out), "from": base, **(run or {}), "git_commit": _git_commit(),
              "after": after, "before": before, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    keys = SCORES if any("pesq_wb" in scores for scores in after.values()) else MUSIC_SCORES
    direction = ", ".join(f"{key} {'lower' if key in LOWER_IS_BETTER else 'higher'} is better" for key in keys)
    lines = [f"# {name}: held-out scores", "", f"{data.source}; the mean over the {len(data.held_out)} held-out "
             f"files ({direction})", "",
             "| point | " + " | ".join(f"{key} {when}" for key in ("kbps", *keys)
                                      for when in (("before", "after") if before else ("",))) + " |",
             "|---|" + "---:|" * ((1 + len(keys)) * (2 if before else 1))]
    for point, scores in after.items():
        cells = []
        for key in ("kbps", *keys):
            for side in ((before[point], scores) if before else (scores,)):
                value = side.get(key)
                cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {point} | " + " | ".join(cells) + " |")
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    _loss_plot(out)
    main = keys[0]
    for point, scores in after.items():
        was = f"{before[point].get(main):.3f} -> " if before and before[point].get(main) is not None else ""
        if scores.get(main) is not None:
            log(f"{point}: {main} {was}{scores[main]:.3f} at {scores['kbps']:.2f} kbps (held out)")


def _loss_plot(out: Path) -> None:
    """The training loss of every stage against the step (needs matplotlib: the [train] extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axis = plt.subplots(figsize=(8, 4))
    for log in sorted((out / "stages").glob("*/losses.jsonl")):
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if rows:
            axis.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=log.parent.name)
    axis.set_xlabel("step")
    axis.set_ylabel("training loss")
    if axis.lines:
        axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "loss.png", dpi=100)
    plt.close(figure)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
