"""``nac train``: a fine-tune end to end on the bundled clip, and the recipes of the shipped models."""

import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from nac.audio import write_audio
from nac.cli import app
from nac.lab import pipeline, recipe
from nac.settings import EncoderSettings
from nac.model import manifest

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_a_tiny_fine_tune_makes_a_model_that_encodes(tmp_path):
    data = tmp_path / "voice"
    data.mkdir()
    shutil.copy(ROOT / "samples" / "speech-en-allison.flac", data)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(data), "--from", "nac-speech-16k-v5", "-o", str(run), "--steps", "1",
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    row = json.loads((run / "run.json").read_text())
    assert row["fine_tuned_from"] == "nac-speech-16k-v5" and row["git_commit"] and row["before"] and row["after"]
    assert "| 12k |" in (run / "metrics.md").read_text() and "lsd_db lower is better" in (run / "metrics.md").read_text()
    entry = manifest.find_entry(str(run))
    assert entry.name == "run" and [p.name for p in entry.ladder] == ["6k", "8k", "12k", "16k", "24k"]
    assert entry.parameters == manifest.find_entry("nac-speech-16k-v5").parameters
    assert entry.code_tables and entry.residual_tables and entry.phase_init and len(entry.channel_order) == 48
    listed = runner.invoke(app, ["models", str(run)])
    assert listed.exit_code == 0 and "* run" in listed.output and "--bitrate  12k" in listed.output
    clip = ROOT / "samples" / "speech-en-allison.flac"
    encoded = runner.invoke(app, ["encode", str(clip), "-o", str(tmp_path / "a.nac"), "-m", str(run), "-r", "8k"])
    assert encoded.exit_code == 0, encoded.output
    decoded = runner.invoke(app, ["decode", str(tmp_path / "a.nac"), "-o", str(tmp_path / "a.wav"), "-m", str(run)])
    assert decoded.exit_code == 0, decoded.output
    refused = runner.invoke(app, ["decode", str(tmp_path / "a.nac"), "-o", str(tmp_path / "b.wav")])
    assert refused.exit_code == 6  # the file names a model that is not shipped
    (tmp_path / "coded").mkdir()
    (tmp_path / "originals").mkdir()
    shutil.copy(tmp_path / "a.nac", tmp_path / "coded")
    shutil.copy(clip, tmp_path / "originals" / "a.flac")
    scored = runner.invoke(app, ["report", str(tmp_path / "coded"), "--originals", str(tmp_path / "originals"),
                                 "--metrics", "-m", str(run), "--format", "json"])  # the size report decodes with it
    assert scored.exit_code == 0, scored.output
    [row] = json.loads(scored.output)["files"]
    assert row["model"] == "run" and row["scores"]["snr_db"] > 0
    batched = runner.invoke(app, ["batch", str(tmp_path / "originals"), str(tmp_path / "batch"), "-m", str(run),
                                  "-j", "1", "--format", "json"])
    assert batched.exit_code == 0, batched.output
    assert [row["model"] for row in json.loads(batched.output[batched.output.index("{"):])["files"]] == ["run"]
    from nac.lab import evaluate

    [system] = evaluate.nac_systems([str(run)], ["8k"], [], [])  # nac eval -m RUN
    assert system.setting == "run 8k" and system.settings == entry.point("8k").settings
    weights = (run / "models" / "run.safetensors").read_bytes()
    again = runner.invoke(app, ["train", str(data), "--from", "nac-speech-16k-v5", "-o", str(run), "--steps", "1",
                                "--threads", "1"])
    assert again.exit_code == 0 and "model made before" in again.output
    assert (run / "models" / "run.safetensors").read_bytes() == weights  # files coded with it still decode
    other = runner.invoke(app, ["train", str(data), "--from", "nac-speech-16k-v5", "-o", str(run), "--steps", "2"])
    assert other.exit_code == 2 and "holds a run asked for otherwise (steps 1, now 2)" in other.output
    twice = runner.invoke(app, ["train", str(data), "--from", str(run), "-o", str(tmp_path / "b")])
    assert twice.exit_code == 2 and "starts from a shipped model" in twice.output
    copy = tmp_path / "copy"  # a run copied before it finished goes on under its new name
    shutil.copytree(run, copy)
    (copy / "finished").unlink()
    resumed = runner.invoke(app, ["train", str(data), "--from", "nac-speech-16k-v5", "-o", str(copy), "--steps", "1",
                                  "--threads", "1"])
    assert resumed.exit_code == 0, resumed.output
    assert [entry.name for entry in manifest.list_models(copy / "models")] == ["copy"]


def test_train_checks_its_data_and_options_before_training(tmp_path, monkeypatch):
    data, run = tmp_path / "voice", tmp_path / "run"
    data.mkdir()
    write_audio(data / "short.wav", np.zeros((1, 16000), np.float32), 16000)

    def train(*args: str):
        return runner.invoke(app, ["train", str(data), "--from", "nac-speech-16k-v5", "-o", str(run), *args])

    result = train()
    assert result.exit_code == 3 and "1.0 s of audio; training needs at least 10 s" in result.output
    (data / "bad.wav").write_text("not audio")
    result = train()
    assert result.exit_code == 3 and "bad.wav: not a readable audio file" in result.output
    (data / "bad.wav").unlink()
    write_audio(data / "long.wav", np.zeros((1, 16000 * 12), np.float32), 16000)
    result = train()
    assert result.exit_code == 3 and "all digital silence" in result.output and not run.exists()
    for args, message in ((("--device", "tpu"), "give auto, cpu, cuda"), (("--threads", "-3"), "--threads"),
                          (("--steps", "-1"), "--steps")):
        result = train(*args)
        assert result.exit_code == 2 and message in result.output, args
    write_audio(data / "long.wav", 0.1 * np.random.default_rng(0).standard_normal((1, 16000 * 12)), 16000)
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["train", str(data), "--from", "nac-speech-16k-v5", "-o", str(elsewhere)])
    assert result.exit_code == 7 and "not a nac train run folder" in result.output
    assert sorted(p.name for p in elsewhere.iterdir()) == ["notes.txt"]
    missing = runner.invoke(app, ["train", str(tmp_path / "nowhere"), "--from", "nac-speech-16k-v5", "-o", str(run)])
    assert missing.exit_code == 3 and "no such folder" in missing.output


def test_the_seed_knobs_reach_the_training_as_options_or_from_the_environment(tmp_path, monkeypatch):
    data, run = tmp_path / "voice", tmp_path / "run"
    data.mkdir()
    noise = np.random.default_rng(0).standard_normal((1, 32000)).astype(np.float32) * 0.1
    for number in range(12):  # 11 to train on, the tenth held out
        write_audio(data / f"{number:02d}.wav", noise, 16000)
    seen = {}

    def training(settings):
        seen["settings"], seen["files"] = settings, settings.data.read_text().split()
        return settings.run_dir / "last.pt"

    monkeypatch.setattr(pipeline.train, "train", training)
    monkeypatch.setattr(pipeline, "finish", lambda *args, **kwargs: run / "models")
    monkeypatch.setenv("EPOCHS", "3")
    monkeypatch.setenv("MEL_LOSS_WEIGHT", "0.5")
    monkeypatch.setenv("MAX_TRAIN_FILES", "9")  # the option below wins
    result = runner.invoke(app, ["train", str(data), "--from", "nac-speech-16k-v5", "-o", str(run),
                                 "--max-files", "4", "--crop-seconds", "2"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.epochs, settings.steps, settings.minutes) == (3, 0, 0.0)
    assert (settings.mel_weight, settings.crop_seconds) == (0.5, 2.0)
    assert [Path(f).name for f in seen["files"]] == ["00.wav", "01.wav", "02.wav", "03.wav"]
    request = json.loads((run / "request.json").read_text())
    assert (request["epochs"], request["max_files"], request["minutes"]) == (3, 4, None)

    def refused(*args: str, **environment: str) -> str:
        with monkeypatch.context() as patch:
            for variable in ("EPOCHS", "MEL_LOSS_WEIGHT", "MAX_TRAIN_FILES"):
                patch.delenv(variable)
            for variable, value in environment.items():
                patch.setenv(variable, value)
            result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "other"), *args])
        assert result.exit_code == 2, result.output
        return result.output

    base = ("--from", "nac-speech-16k-v5")
    assert "MAX_TRAIN_FILES='two': not an integer" in refused(*base, MAX_TRAIN_FILES="two")
    assert "--model-channels (MODEL_CHANNELS) 32: a fine-tune keeps nac-speech-16k-v5's 48 latent channels" in \
        refused(*base, MODEL_CHANNELS="32")
    assert "give --epochs or --steps, not both" in refused(*base, "--steps", "5", "--epochs", "2")
    assert "give --epochs or --minutes, not both" in refused(*base, "--epochs", "2", "--minutes", "5")
    assert "--minutes must be above 0" in refused(*base, "--minutes", "-1", "--steps", "1")
    assert "--crop-seconds: must be 0.1 to 30" in refused(*base, "--crop-seconds", "0")
    assert "MEL_LOSS_WEIGHT='nan': must be 0 to 100" in refused(*base, MEL_LOSS_WEIGHT="nan")
    assert "--mel-weight: must be 0 to 100" in refused(*base, "--mel-weight", "1e39")  # trained NaN weights
    assert "a training crop of 5 s (--crop-seconds, MAX_AUDIO_SECONDS) needs more than the 2.0 s of audio " \
           "trained on" in refused(*base, "--max-files", "1", "--crop-seconds", "5")  # a traceback, after the check
    assert "--epochs: a recipe sets its own training" in refused(
        "--recipe", str(ROOT / "recipes" / "nac-speech-16k-v5.json"), "--epochs", "2")
    recipe_run = runner.invoke(app, ["train", str(data), "--recipe", str(ROOT / "recipes" / "nac-speech-16k-v5.json"),
                                     "-o", str(tmp_path / "other")])  # the environment's knobs, ignored
    assert "warning: MAX_TRAIN_FILES, MEL_LOSS_WEIGHT, EPOCHS not used: a recipe sets its own training" in \
        recipe_run.output, recipe_run.output
    assert recipe_run.exit_code == 3 and "a recipe trains on a corpus folder with MANIFEST.tsv" in recipe_run.output
    assert not (tmp_path / "other").exists()

    monkeypatch.delenv("MEL_LOSS_WEIGHT")
    monkeypatch.delenv("MAX_TRAIN_FILES")
    monkeypatch.setenv("EPOCHS", "4")  # an environment fallback gives way to an option
    plain = tmp_path / "plain"
    assert runner.invoke(app, ["train", str(data), *base, "-o", str(plain), "--steps", "5"]).exit_code == 0
    assert (seen["settings"].steps, seen["settings"].epochs) == (5, 0)
    named = runner.invoke(app, ["train", str(data), *base, "-o", str(plain), "--steps", "5", "--model-channels",
                                "48", "--crop-seconds", "1", "--max-files", "0", "--mel-weight", "1"])
    assert named.exit_code == 0, named.output  # the defaults named: the same run, not another one


def test_train_needs_a_base_or_a_recipe(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--from MODEL" in result.output


def test_every_shipped_model_has_its_recipe():
    for entry in manifest.list_models():
        made = recipe.load(ROOT / entry.recipe)
        assert (made.name, made.model_id) == (entry.name, entry.id)
        assert made.ladder_settings() == {point.name: point.settings for point in entry.ladder}


def test_a_fullband_ladder_is_measured_on_audio_as_it_is(tmp_path):
    rng = np.random.default_rng(0)
    stereo = (0.05 * rng.standard_normal((2, 44100 * 2))).astype(np.float32)
    write_audio(tmp_path / "m.wav", stereo, 44100)
    layers = EncoderSettings(code_bits=4, high_band_hz=20000.0, stereo_bands=20)
    assert pipeline.is_fullband({"a": layers}) and not pipeline.is_fullband({"a": EncoderSettings()})
    scores = pipeline.measure("nac-speech-16k-v5", [tmp_path / "m.wav"], {"a": layers})["a"]
    assert 0 < scores["kbps"] < 40 and scores["bandwidth_khz"] > 15 and scores["ild_error_db"] is not None
    assert "pesq_wb" not in scores


def test_a_tiny_recipe_trains_from_nothing_into_a_usable_model(tmp_path):
    """nac train --recipe end to end on a corpus folder: stages in turn, companions, the phase initializer, the
    measured ladder; then the model codes audio and a rerun leaves it alone."""
    from nac.audio import read_audio

    clip, rate = read_audio(ROOT / "samples" / "speech-en-allison.flac")
    corpus = tmp_path / "corpus"
    (corpus / "speech").mkdir(parents=True)
    rows = ["file\tkind\tsplit"]
    for number in range(5):  # 3 s each: three to train on, two held out
        name = f"speech/{number}.wav"
        write_audio(corpus / name, clip[:, number * 3 * rate : (number + 1) * 3 * rate], rate)
        rows.append(f"{name}\tspeech_wb\t{'dev' if number >= 3 else 'train'}")
    (corpus / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    point = {"bits": 8, "code_bits": 4, "residual_hz": 2000.0, "residual_step": 0.5}
    tiny = {
        "name": "tiny", "model_id": 200, "description": "a recipe test", "kinds": ["speech_wb"],
        "network": {"arch": "spec1d", "width": 16, "latent_channels": 4, "downsample": 2},
        "stages": [{"name": "first", "until_step": 2, "batch_size": 2, "crop_seconds": 0.5},
                   {"name": "predicted", "until_step": 3, "batch_size": 2, "crop_seconds": 0.5, "lr_final": 1e-5,
                    "synthesis_phase": "predicted", "low_band_weight": 4.0, "phase_weight": 0.3,
                    "waveform_weight": 0.0},
                   {"name": "refiner", "until_step": 4, "batch_size": 2, "crop_seconds": 0.5,
                    "synthesis_phase": "decoded", "phase_iters": 2, "refine_channels": 2, "refine_hz": 3000.0,
                    "refiner_lr_scale": 20.0}],  # the shapes of v5's recipe
        "channel_order_files": 2, "table_files": 2, "table_dev_files": 1, "table_points": ["lo"],
        "phase_init": {"pair_minutes": 0.1, "points": ["lo"], "minutes": 0, "steps": 2, "batch": 8},
        "ladder": {"lo": point}, "default_point": "lo", "dev_files": 1,
    }
    recipe_file = tmp_path / "tiny.json"
    recipe_file.write_text(json.dumps(tiny))
    run = tmp_path / "run"
    command = ["train", str(corpus), "--recipe", str(recipe_file), "-o", str(run), "--threads", "1"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "latent code tables: 3-bit codes" in result.output and "(held-out files: 1)" in result.output
    stages = sorted(p.name for p in (run / "stages").iterdir() if p.is_dir() and (p / "done").is_file())
    assert stages == ["01-first", "02-predicted", "03-refiner"]
    entry = manifest.find_entry(str(run))
    assert (entry.name, entry.id, [p.name for p in entry.ladder]) == ("tiny", 200, ["lo"])
    assert entry.code_tables and entry.residual_tables and len(entry.channel_order) == 4 and entry.phase_init
    assert json.loads((run / "run.json").read_text())["recipe"]["name"] == "tiny"
    encoded = runner.invoke(app, ["encode", str(corpus / "speech" / "4.wav"), "-o", str(tmp_path / "a.nac"),
                                  "-m", str(run)])
    assert encoded.exit_code == 0, encoded.output
    decoded = runner.invoke(app, ["decode", str(tmp_path / "a.nac"), "-o", str(tmp_path / "a.wav"), "-m", str(run)])
    assert decoded.exit_code == 0, decoded.output
    weights = (run / "models" / "tiny.safetensors").read_bytes()
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and "model made before" in again.output
    assert (run / "models" / "tiny.safetensors").read_bytes() == weights
    (run / "finished").unlink()  # as if stopped while measuring the ladder: the finish runs again
    resumed = runner.invoke(app, command)
    assert resumed.exit_code == 0, resumed.output
    assert "phase initializer: training" not in resumed.output
    assert manifest.find_entry(str(run)).phase_init_sha256 == entry.phase_init_sha256
