"""Tests for nac/lab/train.py and nac/lab/export.py on a tiny model and a tiny corpus.

A few optimizer steps on 1.5 s of synthetic audio: checkpoints are written,
load with ``weights_only``, resume, and export to a safetensors model that
codes audio through the public API. Nothing here judges quality.
"""

import contextlib
import dataclasses
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nac import api

from nac.format import container

from nac.lab import losses

from nac.model import zoo
from nac.lab.adversarial import Adversary
from nac.lab.export import export
from nac.audio import write_audio
from nac.errors import ModelError, TrainingError
from nac.model.config import ModelConfig
from nac.model.networks import build_model, parameter_count
from nac.lab.train import (
    TrainSettings, initial_model, list_training_files, load_checkpoint, parse_args, train, training_loss,
)

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
TINY = ModelConfig(width=16, latent_channels=4)
SEED = ModelConfig(arch="seed2d", width=8, latent_channels=2, downsample=1)




def tone_and_noise(seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    tones = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]
    return np.asarray([tone + 0.05 * rng.standard_normal(t.size) for tone in tones], np.float32)


def run(settings: TrainSettings) -> tuple[Path, str]:
    """train(settings), returning the checkpoint and what it printed (progress goes to stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(io.StringIO()) as stdout:
        checkpoint = train(settings)
    assert not stdout.getvalue()
    return checkpoint, out.getvalue()


def settings(data: Path, run_dir: Path, config: ModelConfig, steps: int) -> TrainSettings:
    # threads=1: on a busy machine torch's default thread pool can make these steps 100x slower
    return TrainSettings(
        data=data, run_dir=run_dir, config=config, crop_seconds=0.25, batch_size=2, steps=steps,
        save_every=2, log_every=1, threads=1,
    )


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    """train(threads=1) sets torch's global thread count; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """1.5 s of tone plus noise in two wavs (one nested), and a file that is not audio."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "spk1").mkdir()
    write_audio(root / "a.wav", tone_and_noise(0.75, seed=1), RATE)
    write_audio(root / "spk1" / "b.wav", tone_and_noise(0.75, seed=2), RATE)
    (root / "notes.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def spec1d_run(corpus, tmp_path_factory) -> dict:
    """A 3-step run, then the same run resumed to 5 steps; the step-3 checkpoint is kept aside."""
    run_dir = tmp_path_factory.mktemp("runs") / "spec1d"
    first, first_out = run(settings(corpus, run_dir, TINY, steps=3))
    after3 = run_dir.parent / "after3.pt"
    shutil.copy(first, after3)
    second, second_out = run(settings(corpus, run_dir, TINY, steps=5))
    return {"after3": after3, "first_out": first_out, "checkpoint": second, "second_out": second_out,
            "first_path": first}


def test_training_files_are_every_audio_file_without_a_manifest(corpus):
    files = list_training_files(corpus, "train", "speech_wb", 0)
    assert [p.relative_to(corpus).as_posix() for p in files] == ["a.wav", "spk1/b.wav"]
    assert len(list_training_files(corpus, "train", "speech_wb", 1)) == 1


def test_first_run_writes_a_weights_only_checkpoint_at_its_last_step(spec1d_run):
    assert spec1d_run["first_path"].name == "last.pt"
    state = load_checkpoint(spec1d_run["after3"])
    assert state["step"] == 3
    assert ModelConfig.from_json(state["config"]) == TINY
    out = spec1d_run["first_out"]
    assert "resumed" not in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("step ")] == ["1", "2", "3"]
    assert "saved" in out and "at step 3" in out


def test_second_run_resumes_from_the_checkpoint(spec1d_run):
    state = load_checkpoint(spec1d_run["checkpoint"])
    assert state["step"] == 5
    out = spec1d_run["second_out"]
    assert "resumed" in out and "at step 3" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("step ")] == ["4", "5"]
    # the optimizer state came back too: Adam has taken 5 steps on every parameter
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {5}
    before = load_checkpoint(spec1d_run["after3"])["model"]
    assert any(not (before[k] == state["model"][k]).all() for k in before)


def test_seed_design_trains(corpus, tmp_path):
    checkpoint, out = run(settings(corpus, tmp_path / "seed2d", SEED, steps=2))
    state = load_checkpoint(checkpoint)
    assert state["step"] == 2 and ModelConfig.from_json(state["config"]) == SEED
    assert out.startswith("seed2d:") and "resumed" not in out
    assert re.search(r"step 2 .* steps/s, 0:00:00 left", out)  # log_every 1: the last step leaves nothing
    assert re.search(r"step 1 .* steps/s, \d+:\d\d:\d\d left", out)


def test_a_diverging_loss_stops_the_training_with_its_error(corpus, tmp_path):
    diverging = dataclasses.replace(settings(corpus, tmp_path / "nan", SEED, steps=2), mel_weight=1e39)
    with pytest.raises(TrainingError, match="training diverged at step 1: the loss is inf"):
        run(diverging)
    assert TrainingError.exit_code == 11 and not (tmp_path / "nan" / "last.pt").exists()


@pytest.mark.parametrize("half", [False, True], ids=["float32", "float16"])
def test_exported_model_loads_by_path_and_codes_audio(spec1d_run, tmp_path, half):
    models = tmp_path / "models"
    entry = export(spec1d_run["checkpoint"], "tiny-test", 42, models, description="a test model", half=half,
                   make_default=True)
    path = models / entry["file"]
    manifest = json.loads((models / "manifest.json").read_text())
    assert manifest["default"] == "tiny-test" and manifest["models"] == [entry]
    assert entry["trained_steps"] == 5

    loaded = zoo.load_model(str(path))
    assert loaded.model_id == 42 and loaded.net.config == TINY
    assert parameter_count(loaded.net) == entry["parameters"]
    assert loaded.hash_prefix.hex() == entry["sha256"][:16]
    assert zoo.load_model("tiny-test", models_dir=models).hash_prefix == loaded.hash_prefix

    audio = tone_and_noise(0.5, seed=3)
    data = api.encode(audio, RATE, model=str(path))
    info = container.read_info(data)[0]
    assert (info.model_id, info.weights_hash, info.latent.latent_channels) == (42, loaded.hash_prefix, 4)
    decoded, rate = api.decode(data, model=str(path))
    assert rate == RATE and decoded.shape == audio.shape and np.isfinite(decoded).all()
    with pytest.raises(ModelError):  # id 42 is not a shipped model
        api.decode(data)


def test_export_refuses_to_reuse_an_id(spec1d_run, tmp_path):
    export(spec1d_run["checkpoint"], "first", 7, tmp_path)
    with pytest.raises(ModelError, match="never reused"):
        export(spec1d_run["checkpoint"], "second", 7, tmp_path)


def test_env_variables_give_the_cli_defaults(monkeypatch, tmp_path):
    for name in ("MODEL_CHANNELS", "MAX_AUDIO_SECONDS", "MAX_TRAIN_FILES", "MEL_LOSS_WEIGHT", "EPOCHS"):
        monkeypatch.delenv(name, raising=False)
    plain = parse_args([str(tmp_path)])
    assert (plain.config.latent_channels, plain.crop_seconds) == (48, 1.0)

    monkeypatch.setenv("MODEL_CHANNELS", "6")
    monkeypatch.setenv("MAX_AUDIO_SECONDS", "0.5")
    monkeypatch.setenv("MAX_TRAIN_FILES", "3")
    monkeypatch.setenv("MEL_LOSS_WEIGHT", "2.5")
    monkeypatch.setenv("EPOCHS", "7")
    from_env = parse_args([str(tmp_path)])
    assert from_env.data == tmp_path
    assert (from_env.config.latent_channels, from_env.crop_seconds) == (6, 0.5)
    assert (from_env.max_files, from_env.mel_weight, from_env.epochs) == (3, 2.5, 7)

    flags = parse_args([str(tmp_path), "--model-channels", "5", "--crop-seconds", "0.75"])
    assert (flags.config.latent_channels, flags.crop_seconds) == (5, 0.75)  # flags beat the environment

    monkeypatch.setenv("MODEL_CHANNELS", "")
    assert parse_args([str(tmp_path)]).config.latent_channels == 48  # empty means unset


def test_low_band_weight_marks_the_bins_under_its_frequency():
    weight = losses.low_band_weight(257, RATE, 1000.0, 4.0)
    assert weight.shape == (257, 1)
    assert weight[:32].eq(4.0).all() and weight[32:].eq(1.0).all()  # bin 32 is exactly 1 kHz
    log_mag = torch.zeros(1, 257, 3)
    target = torch.ones(1, 257, 3, dtype=torch.complex64)  # log-magnitude 0 + tiny epsilon
    target[:, :32] *= np.e  # log-magnitude 1 below 1 kHz: error 1 there, ~0 above
    assert losses.magnitude_loss(log_mag, target).item() == pytest.approx(32 / 257, rel=1e-4)
    assert losses.magnitude_loss(log_mag, target, weight).item() == pytest.approx(4 * 32 / 257, rel=1e-4)


def test_unknown_synthesis_phase_is_refused(tmp_path):
    with pytest.raises(ValueError, match="synthesis_phase"):
        dataclasses.replace(settings(tmp_path, tmp_path, TINY, 1), synthesis_phase="measured")


@pytest.mark.parametrize("synthesis", ["true", "predicted", "decoded", "residual"])
def test_waveform_losses_reach_the_phase_head_unless_judged_under_the_true_phase(synthesis, tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY)
    run_settings = dataclasses.replace(settings(tmp_path, tmp_path, TINY, 1), phase_weight=0.0,
                                       synthesis_phase=synthesis)
    wave = torch.from_numpy(tone_and_noise(0.25))
    loss, _ = training_loss(model, wave, run_settings)
    loss.backward()
    bins = model.stft.bins
    phase_rows = model.decoder[-1].weight.grad[bins:]  # the cos and sin outputs
    assert (phase_rows.abs().sum().item() > 0) == (synthesis != "true")


def test_refiner_config_needs_both_its_width_and_its_band():
    with pytest.raises(ValueError, match="refine_bins"):
        ModelConfig(refine_channels=8)
    with pytest.raises(ValueError, match="refine_bins"):
        ModelConfig(refine_bins=40)
    with pytest.raises(ValueError, match="refine_bins"):
        ModelConfig(refine_channels=8, refine_bins=258)  # more bins than a 512-point STFT has
    assert parse_args(["data", "--refine-channels", "8", "--refine-hz", "2000"]).config.refine_bins == 65


def test_refiner_corrects_only_its_band():
    torch.manual_seed(0)
    refined = build_model(dataclasses.replace(TINY, refine_channels=4, refine_bins=33))
    for parameter in refined.refiner.parameters():  # its last layer starts at zero: move it off identity
        torch.nn.init.normal_(parameter, std=0.1)
    log_mag = torch.randn(2, refined.stft.bins, 12)
    change = refined.refiner(log_mag) - log_mag
    assert change[:, :33].abs().min() > 0 and change[:, 33:].eq(0).all()
    # level-invariant: a louder input gets the same correction
    assert torch.allclose(refined.refiner(log_mag + 3.0) - (log_mag + 3.0), change, atol=1e-5)


def test_init_from_adds_an_identity_refiner_to_a_trained_model(spec1d_run, corpus, tmp_path):
    config = dataclasses.replace(TINY, refine_channels=4, refine_bins=33)
    start = dataclasses.replace(settings(corpus, tmp_path / "refined", config, steps=7),
                                init_from=spec1d_run["checkpoint"], refiner_lr_scale=10.0)
    model, resumed, step = initial_model(start)
    assert resumed is None and step == 5 and model.config == config
    plain = build_model(TINY)
    plain.load_state_dict(load_checkpoint(spec1d_run["checkpoint"])["model"])
    latent = torch.randn(1, TINY.latent_channels, 1, 6)
    assert torch.equal(model.decode_spectrum(latent)[0], plain.decode_spectrum(latent)[0])
    checkpoint, out = run(start)
    assert f"started from {spec1d_run['checkpoint']} at step 5" in out
    state = load_checkpoint(checkpoint)
    assert state["step"] == 7 and ModelConfig.from_json(state["config"]) == config
    assert state["model"]["refiner.net.6.weight"].abs().sum() > 0  # the refiner learned


def test_init_from_refuses_to_drop_or_reshape_trained_weights(corpus, tmp_path):
    refined = dataclasses.replace(TINY, refine_channels=4, refine_bins=33)
    checkpoint, _ = run(settings(corpus, tmp_path / "refined", refined, steps=1))
    for config in (TINY, dataclasses.replace(refined, refine_channels=8)):  # no refiner; another width
        start = dataclasses.replace(settings(corpus, tmp_path / "next", config, steps=1), init_from=checkpoint)
        with pytest.raises(ValueError, match="does not fit this model"):
            initial_model(start)


def test_adversary_trains_the_generator_and_the_discriminator_apart():
    torch.manual_seed(0)
    adversary = Adversary(bins=20)
    real = torch.randn(2, 33, 10)
    fake = torch.randn(2, 33, 10, requires_grad=True)
    adversarial, matching = adversary.generator_losses(real, fake)
    (adversarial + matching).backward()
    assert fake.grad[:, :20].abs().sum() > 0 and fake.grad[:, 20:].eq(0).all()  # only its band is judged
    assert all(p.grad is None for p in adversary.discriminator.parameters())
    before = [p.detach().clone() for p in adversary.discriminator.parameters()]
    assert adversary.step() > 0
    assert all(not torch.equal(b, p) for b, p in zip(before, adversary.discriminator.parameters()))
    with pytest.raises(RuntimeError, match="generator_losses first"):
        adversary.step()  # each decoded batch is judged once


def test_adversarial_run_keeps_its_discriminator_in_the_checkpoint(corpus, tmp_path):
    adversarial = dataclasses.replace(settings(corpus, tmp_path / "gan", TINY, steps=2),
                                      adversarial_weight=0.5, feature_matching_weight=1.0)
    checkpoint, out = run(adversarial)
    assert all(name in out for name in ("adv=", "fm=", "disc="))
    first = load_checkpoint(checkpoint)["adversary"]
    assert set(first) == {"discriminator", "optimizer"}
    _, out = run(dataclasses.replace(adversarial, steps=3))
    assert "resumed" in out
    after = load_checkpoint(checkpoint)["adversary"]
    assert {int(s["step"]) for s in after["optimizer"]["state"].values()} == {3}  # its Adam state came back
    assert not set(build_model(TINY).state_dict()) & set(after["discriminator"])  # never part of the model


def test_widen_latent_grows_a_trained_model_that_still_decodes_the_same(spec1d_run, corpus, tmp_path):
    start = dataclasses.replace(settings(corpus, tmp_path / "wide", TINY, steps=6),
                                init_from=spec1d_run["checkpoint"], widen_latent=7)
    wide, _, _ = initial_model(start)
    narrow = build_model(TINY)
    narrow.load_state_dict(load_checkpoint(spec1d_run["checkpoint"])["model"])
    wave = torch.from_numpy(tone_and_noise(0.25))
    with torch.no_grad():
        latent = wide.encode(wave)
        assert latent.shape[1] == 7 and torch.equal(latent[:, :4], narrow.encode(wave))
        assert torch.equal(wide.decode_spectrum(latent)[0], narrow.decode_spectrum(latent[:, :4])[0])
    checkpoint, _ = run(start)
    assert ModelConfig.from_json(load_checkpoint(checkpoint)["config"]).latent_channels == 7
    with pytest.raises(ValueError, match="narrower"):
        initial_model(dataclasses.replace(start, run_dir=tmp_path / "narrow", widen_latent=3))


def test_phase_iters_setting_replaces_the_models_own(spec1d_run, corpus, tmp_path):
    resumed = dataclasses.replace(settings(corpus, spec1d_run["checkpoint"].parent, TINY, steps=5), phase_iters=3)
    model, state, step = initial_model(resumed)
    assert model.config.phase_iters == 3 and ModelConfig.from_json(state["config"]).phase_iters == TINY.phase_iters
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), state["model"].values()))
    assert parse_args(["data", "--phase-iters", "32"]).phase_iters == 32


def test_an_interrupted_run_saves_and_resumes_on_its_schedule(corpus, tmp_path, monkeypatch):
    """Ctrl-C saves a checkpoint; the resumed run's learning rates are the uninterrupted run's, and each step is
    logged once."""

    from nac.lab import train as train_module

    def decaying(run_dir: Path) -> TrainSettings:
        return dataclasses.replace(settings(corpus, run_dir, TINY, steps=6), final_learning_rate=1e-5, save_every=100)

    def rates(printed: str) -> dict[int, str]:
        return {int(step): rate for step, rate in re.findall(r"step (\d+) .*lr=(\S+)", printed)}

    whole = rates(run(decaying(tmp_path / "whole"))[1])
    calls = {"n": 0}
    agreed = train_module._agreed

    def interrupted(progress, place):
        calls["n"] += 1
        if calls["n"] == 4:  # after three steps
            raise KeyboardInterrupt
        return agreed(progress, place)

    monkeypatch.setattr(train_module, "_agreed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(decaying(tmp_path / "parts"))
    assert load_checkpoint(tmp_path / "parts" / "last.pt")["step"] == 3
    monkeypatch.undo()
    _, printed = run(decaying(tmp_path / "parts"))
    assert "resumed" in printed and {s: r for s, r in rates(printed).items()} == {s: whole[s] for s in (4, 5, 6)}
    logged = [json.loads(line)["step"] for line in (tmp_path / "parts" / "losses.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]
