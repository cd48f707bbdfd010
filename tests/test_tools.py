"""The scripts in tools/, run as subprocesses the way a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nac.audio import read_audio, write_audio
from nac.errors import OutputError, UsageError
from nac.settings import EncoderSettings

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def run_tool(name, *args, cwd=None):
    return subprocess.run(
        [sys.executable, str(TOOLS / name), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def tiny_wav(path, seconds=0.3, rate=16000, channels=1, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    audio = [0.3 * np.sin(2 * np.pi * (200 + 100 * c) * t) + 0.01 * rng.standard_normal(t.size)
             for c in range(channels)]
    write_audio(path, np.asarray(audio, np.float32), rate)
    return path


@pytest.fixture
def source(tmp_path):
    """Ten tiny wavs in nested folders, plus files that are not audio."""
    root = tmp_path / "src"
    for i in range(10):
        tiny_wav(root / f"spk{i % 3}" / f"utt{i}.wav", seconds=0.01, seed=i)
    (root / "spk0" / "notes.txt").write_text("not audio")
    (root / "README").write_text("not audio")
    return root


def linked(folder):
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_symlink()}


def test_prepare_split_makes_symlinks_at_the_ratio(source, tmp_path):
    out = tmp_path / "out"
    result = run_tool("prepare_split.py", "--source", source, "--train-ratio", "0.7", "--seed", "42", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "train: 7 files" in result.stdout and "test: 3 files" in result.stdout
    train, test = linked(out / "train"), linked(out / "test")
    assert len(train) == 7 and len(test) == 3 and not set(train) & set(test)
    every = {p.relative_to(source).as_posix() for p in source.rglob("*.wav")}
    assert set(train) | set(test) == every
    for rel, link in {**train, **test}.items():
        assert Path(os.readlink(link)).is_absolute()
        assert link.resolve() == (source / rel).resolve()
    assert not [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]  # no copies


def test_prepare_split_is_reproducible_and_seeded(source, tmp_path):
    def split(seed, out):
        result = run_tool("prepare_split.py", "--source", source, "--seed", seed, "--out", tmp_path / out)
        assert result.returncode == 0, result.stderr
        return set(linked(tmp_path / out / "train"))

    first, again, other = split(42, "a"), split(42, "b"), split(7, "c")
    assert first == again and len(first) == 5
    assert other != first


def test_prepare_split_rerun_replaces_stale_links(source, tmp_path):
    out = tmp_path / "out"
    run_tool("prepare_split.py", "--source", source, "--train-ratio", "0.2", "--out", out)
    result = run_tool("prepare_split.py", "--source", source, "--train-ratio", "0.8", "--out", out)
    assert result.returncode == 0, result.stderr
    train, test = linked(out / "train"), linked(out / "test")
    assert len(train) == 8 and len(test) == 2 and not set(train) & set(test)


def test_prepare_split_refuses_to_overwrite_files(source, tmp_path):
    out = tmp_path / "out"
    for name in ("train", "test"):
        (out / name / "spk0").mkdir(parents=True)
        (out / name / "spk0" / "utt0.wav").write_text("mine")
    result = run_tool("prepare_split.py", "--source", source, "--out", out)
    assert result.returncode == OutputError.exit_code
    assert "refusing to overwrite" in result.stderr
    assert (out / "train" / "spk0" / "utt0.wav").read_text() == "mine"
    assert not linked(out)


def test_prepare_split_rejects_a_bad_ratio(source, tmp_path):
    result = run_tool("prepare_split.py", "--source", source, "--train-ratio", "1.5", "--out", tmp_path / "o")
    assert result.returncode == UsageError.exit_code and "train-ratio" in result.stderr


def test_eval_scores_manifest_rows_and_plain_files(tmp_path):
    """tools/eval.py is a wrapper of `nac eval` that still takes the old flags."""
    pytest.importorskip("nac.api")
    corpus = tmp_path / "corpus"
    rows = [("a.flac", "speech_wb", "dev"), ("b.flac", "speech_wb", "train"), ("c.flac", "music", "dev")]
    for i, (name, _, _) in enumerate(rows):
        tiny_wav(corpus / "speech" / name, seed=i)
    lines = ["file\tkind\tsplit"] + [f"speech/{n}\t{k}\t{s}" for n, k, s in rows]
    (corpus / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    stereo = tiny_wav(tmp_path / "stereo.wav", rate=22050, channels=2)
    out = tmp_path / "eval"

    result = run_tool("eval.py", corpus, stereo, "--out", out, "--keep", "1", "--pesq")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "eval.json").read_text())
    systems = report["settings"]["systems"]
    assert all(s["codec"] == "nac" and s["settings"]["bits"] == 8 and not s["settings"]["store_phase"] for s in systems)
    assert sorted(Path(r["file"]).name for r in report["files"]) == ["a.flac"] * len(systems) + ["stereo.wav"] * len(
        systems
    )
    assert report["failed"] == []
    for row in report["files"]:
        assert row["bytes"] > 0 and row["kbps"] == pytest.approx(row["bytes"] * 8 / row["duration_s"] / 1000)
        assert row["duration_s"] == pytest.approx(0.3)
        assert all(np.isfinite(row[k]) for k in ("snr_db", "si_sdr_db", "lsd_db", "mel_db"))
        assert "pesq_wb" in row and "stoi" in row  # None is allowed: the clips are too short
    assert report["systems"][0]["files"] == 2
    assert set(report["systems"][0]) >= {"kbps", "snr_db", "si_sdr_db", "lsd_db", "pesq_wb", "stoi", "visqol"}
    assert sorted(p.name for p in out.glob("ref_*.wav")) == ["ref_a.wav"]
    audio, rate = read_audio(out / "ref_a.wav")
    assert rate == 16000 and audio.shape == (1, 4800)
    assert len(list(out.glob("recon_a_*.wav"))) == len(systems)
    assert "| nac |" in result.stdout

    result = run_tool("eval.py", corpus, "--out", out, "--bits", "16", "--store-phase", "--keep", "0", "-f")
    assert result.returncode == 0, result.stderr
    systems = json.loads((out / "eval.json").read_text())["settings"]["systems"]
    assert all(s["settings"]["bits"] == 16 and s["settings"]["store_phase"] and s["setting"].endswith("bits16+store_phase") for s in systems)


def test_eval_without_inputs_is_a_usage_error(tmp_path):
    pytest.importorskip("nac.api")
    (tmp_path / "empty").mkdir()
    result = run_tool("eval.py", tmp_path / "empty", "--out", tmp_path / "eval")
    assert result.returncode == UsageError.exit_code and "no input files" in result.stderr


def test_smoke_test_writes_recon_and_residual(tmp_path):
    pytest.importorskip("nac.api")
    result = run_tool("smoke_test.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "near_lossless" in result.stdout and "degraded" in result.stdout
    for setting in ("near_lossless", "degraded"):
        for part in ("recon", "residual"):
            audio, rate = read_audio(tmp_path / "results" / f"smoke_{setting}_{part}.wav")
            assert rate == 16000 and audio.shape == (1, 16000)


def test_record_rates_writes_the_measured_ladder(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    ladder = [{"name": name, "settings": {"code_bits": bits}, "kbps": 0.0, "scores": {}}
              for name, bits in (("6k", 3), ("12k", 4), ("24k", 5))]
    (models / "manifest.json").write_text(json.dumps({"default": "m", "models": [{"id": 7, "name": "m", "ladder": ladder}]}))

    def system(setting, kbps, pesq, codec="nac"):
        return {"codec": codec, "setting": setting, "kbps": kbps, "files": 3, "pesq_wb": pesq, "visqol": None,
                "stoi": 0.9}

    report = {"systems": [system("m 6k", 5.5, 2.8), system("m 12k", 11.1, 4.0), system("other 24k", 20.0, 1.0),
                          system("12 kbps", 11.0, 3.7, codec="opus")]}
    (tmp_path / "eval.json").write_text(json.dumps(report))
    result = run_tool("record_rates.py", "m", tmp_path / "eval.json", "--models-dir", models)
    assert result.returncode == 0, result.stderr
    assert "not in the report, kept as they were: 24k" in result.stdout
    row = json.loads((models / "manifest.json").read_text())["models"][0]
    assert [(p["name"], p["settings"], p["kbps"]) for p in row["ladder"]] == [
        ("6k", {"code_bits": 3}, 5.5), ("12k", {"code_bits": 4}, 11.1), ("24k", {"code_bits": 5}, 0.0)]
    assert row["ladder"][1]["scores"] == {"pesq_wb": 4.0, "stoi": 0.9}
    # a report without any of the model's points changes nothing and fails
    (tmp_path / "other.json").write_text(json.dumps({"systems": [system("other 6k", 5.0, 2.0)]}))
    result = run_tool("record_rates.py", "m", tmp_path / "other.json", "--models-dir", models)
    assert result.returncode != 0 and "no ladder point of m scored" in result.stderr


def _report(files, *systems):
    return {"settings": {"files": len(files), "opus_version": None}, "notes": [],
            "systems": [{"codec": codec, "setting": setting, "kbps": kbps, "target_kbps": 12.0, "pesq_wb": 2.0,
                         "visqol": 3.0}
                        for codec, setting, kbps in systems],
            "files": [{"file": name} for name in files]}


def test_rd_plot_merges_reports_of_the_same_files(tmp_path):
    from conftest import load_tool

    rd_plot = load_tool("rd_plot")
    first = _report(["a.wav", "b.wav"], ("nac", "m default", 8.0), ("opus", "12 kbps", 11.0))
    second = _report(["b.wav", "a.wav"], ("nac", "m cb3", 5.0), ("nac", "m default", 9.0))
    merged = rd_plot.merged([first, second])
    assert [(s["setting"], s["kbps"]) for s in merged.systems] == [("m default", 8.0), ("12 kbps", 11.0),
                                                                   ("m cb3", 5.0)]
    with pytest.raises(SystemExit, match="different files"):
        rd_plot.merged([first, _report(["c.wav"], ("nac", "m cb4", 6.0))])
    pytest.importorskip("matplotlib")
    for index, report in enumerate((first, second)):
        (tmp_path / f"{index}.json").write_text(json.dumps(report))
    result = run_tool("rd_plot.py", tmp_path / "0.json", tmp_path / "1.json", "-o", tmp_path / "rd.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diagnose_rebuilds_match_the_decoder_and_print_a_table(tmp_path):
    import torch
    from conftest import load_tool

    from nac import api
    from nac.model import zoo

    diagnose = load_tool("diagnose")
    wav = tiny_wav(tmp_path / "in" / "tone.wav", seconds=1.0)
    audio, rate = read_audio(wav)
    net = zoo.load_model().net.eval()
    with torch.inference_mode():
        ways = diagnose.rebuilds(net, torch.from_numpy(audio), code_bits=5)
    assert "decoded" in ways and "true magnitude at 500-1000 Hz" in ways and "true magnitude at 4000-8000 Hz" in ways
    assert all(w.shape == audio.shape and torch.isfinite(w).all() for w in ways.values())
    decoded, _ = api.decode(api.encode(audio, rate, EncoderSettings(code_bits=5)))
    assert np.abs(ways["decoded"].numpy() - decoded).max() < 1e-3  # the same decode as nac's

    result = run_tool("diagnose.py", tmp_path / "in", "--files", "1")
    assert result.returncode == 0, result.stderr
    assert "1 files" in result.stdout and "true phase" in result.stdout

    with torch.inference_mode():
        quick = diagnose.rebuilds(net, torch.from_numpy(audio), code_bits=5, phase_iters=2, decoded_only=True)
    two, _ = api.decode(api.encode(audio, rate, EncoderSettings(code_bits=5)), phase_iters=2)
    assert list(quick) == ["decoded"] and np.abs(quick["decoded"].numpy() - two).max() < 1e-3


def test_diagnose_at_a_rate_point_decodes_the_stream_as_nac_does(tmp_path):
    import torch
    from conftest import load_tool

    from nac import api, codec
    from nac.model import zoo

    diagnose = load_tool("diagnose")
    wav = tiny_wav(tmp_path / "in" / "tone.wav", seconds=1.0)
    audio, rate = read_audio(wav)
    settings = EncoderSettings(code_bits=4, residual_hz=4000, residual_step=0.5)
    stream = api.encode(audio, rate, settings)
    net = zoo.load_model().net.eval()
    with torch.inference_mode():
        iters = codec.default_phase_iters(net, residual=True)
        ways = diagnose.rebuilds(net, torch.from_numpy(audio), 5, iters, decoded_only=True,
                                 coded=api.open_stream(stream))
        plain = diagnose.rebuilds(net, torch.from_numpy(audio), 4, iters, decoded_only=True)
    decoded, _ = api.decode(stream)
    assert np.abs(ways["decoded"].numpy() - decoded).max() < 1e-3  # the residual layer applied, as nac decode does
    assert np.abs(plain["decoded"].numpy() - decoded).max() > 1e-2

    result = run_tool("diagnose.py", tmp_path / "in", "--files", "1", "--preset", "cb4+res4000+step0.5")
    assert result.returncode == 0, result.stderr
    assert "preset cb4+res4000+step0.5" in result.stdout and "32 Griffin-Lim iterations" in result.stdout
    assert "true magnitude at 2000-4000 Hz" in result.stdout
    refused = run_tool("diagnose.py", tmp_path / "in", "--preset", "cb4", "--checkpoint", tmp_path / "last.pt")
    assert refused.returncode == 2 and "needs a shipped model" in refused.stderr


def test_diagnose_judges_a_training_checkpoint(tmp_path):
    import torch

    from nac.model.config import ModelConfig
    from nac.model.networks import build_model
    from nac.lab.train import save_checkpoint

    tiny_wav(tmp_path / "in" / "tone.wav", seconds=1.0)
    model = build_model(ModelConfig(width=16, latent_channels=4))
    save_checkpoint(tmp_path / "last.pt", model, torch.optim.AdamW(model.parameters()), 7)
    result = run_tool("diagnose.py", tmp_path / "in", "--checkpoint", tmp_path / "last.pt", "--files", "1",
                      "--decoded-only", "--phase-iters", "3")
    assert result.returncode == 0, result.stderr
    assert "(step 7)" in result.stdout and "3 Griffin-Lim iterations" in result.stdout
    assert "decoded" in result.stdout and "true phase" not in result.stdout


def test_channel_order_ranks_every_latent_channel_into_the_manifest(tmp_path):
    from nac.model import manifest, zoo

    entry = manifest.find_entry(None)
    models = tmp_path / "models"
    models.mkdir()
    (models / entry.file).write_bytes((manifest.MODELS_DIR / entry.file).read_bytes())
    row = {key: getattr(entry, key) for key in ("id", "name", "file", "sha256", "sample_rate", "parameters")}
    (models / "manifest.json").write_text(json.dumps({"default": entry.name, "models": [row]}))
    corpus = tmp_path / "corpus"
    for i in range(2):
        tiny_wav(corpus / f"{i}.wav", seconds=1.0, seed=i)
    (corpus / "MANIFEST.tsv").write_text("file\tkind\tsplit\n0.wav\tspeech_wb\ttrain\n1.wav\tspeech_wb\ttrain\n")
    result = run_tool("channel_order.py", entry.name, corpus, "--files", "2", "--models-dir", models)
    assert result.returncode == 0, result.stderr
    order = json.loads((models / "manifest.json").read_text())["models"][0]["channel_order"]
    channels = zoo.load_model(None).net.config.latent_channels
    assert sorted(order) == list(range(channels))


def test_decode_stages_prints_a_cost_for_every_stage_of_each_point():
    result = run_tool("decode_stages.py", "--seconds", "1", "--points", "6k,24k", "--repeat", "1")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| 6k") or
            line.startswith("| 24k")]
    assert [row[0].strip() for row in rows] == ["6k", "24k"]
    for row in rows:
        costs = [float(cell.split()[0]) for cell in row[1:]]
        assert len(costs) == 6 and all(cost > 0 for cost in costs)
        assert row[-1].split()[1] == "(32)"  # the stream's phase iterations
