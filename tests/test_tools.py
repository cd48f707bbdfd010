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

    result = run_tool("eval.py", corpus, "--out", out, "--bits", "16", "--store-phase", "--keep", "0")
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


def test_record_rates_writes_operating_points_and_quality(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "manifest.json").write_text(json.dumps({"default": "m", "models": [{"id": 7, "name": "m"}]}))

    def system(setting, kbps, pesq, codec="nac"):
        return {"codec": codec, "setting": setting, "kbps": kbps, "files": 3, "pesq_wb": pesq, "visqol": None,
                "stoi": 0.9, "lsd_db": 6.0}

    report = {"systems": [system("m default", 8.0, 2.2), system("m cb3", 5.0, 1.9), system("m cb5", 8.0, 2.2),
                          system("m cb4+coarse12", 4.0, 1.8),
                          system("m bits16", 25.0, 2.3), system("m store_phase", 260.0, 3.5),
                          system("m cb8", 13.0, 2.2), system("m cb4+res1000+step0.7", 14.0, 3.3),
                          system("m res2000+step0.7", 24.0, 3.4), system("m res2000", 24.0, 3.5),
                          system("m cb4+res4000+bands1000+oct8", 15.0, 3.6),
                          system("m cb4+res4000+bands1000+oct8+it64", 15.0, 3.9),
                          system("other cb3", 4.0, 1.0), system("12 kbps", 11.0, 3.7, codec="opus")]}
    (tmp_path / "eval.json").write_text(json.dumps(report))
    result = run_tool("record_rates.py", "m", tmp_path / "eval.json", "--models-dir", models)
    assert result.returncode == 0, result.stderr
    row = json.loads((models / "manifest.json").read_text())["models"][0]
    # cb8 (no better than the cheaper default), bits16 (worse than res2000 below it), res2000+step0.7
    # (worse than res2000 at the same rate, listed first) and it64 (a decoder setting) are left out
    assert [(p["bits"], p["code_bits"], p.get("residual_hz"), p["kbps"]) for p in row["rates"]] == [
        (8, 4, None, 4.0), (8, 3, None, 5.0), (8, 5, None, 8.0), (8, 4, 1000.0, 14.0), (8, 4, 4000.0, 15.0)]
    assert row["rates"][0]["coarse_channels"] == 12 and "coarse_channels" not in row["rates"][1]
    assert row["rates"][3]["residual_step"] == 0.7 and "residual_bands_hz" not in row["rates"][3]
    assert (row["rates"][4]["residual_bands_hz"], row["rates"][4]["bands_per_octave"]) == (1000.0, 8.0)
    assert row["rates"][1]["scores"] == {"pesq_wb": 1.9, "stoi": 0.9}
    assert row["quality"]["dev_kbps"] == 8.0 and row["quality"]["pesq_wb"] == 2.2
    # a newer report, listed first, measured cb3 again (fewer bits, say): its point replaces the older one's
    (tmp_path / "newer.json").write_text(json.dumps({"systems": [system("m cb3", 4.5, 1.95)]}))
    result = run_tool("record_rates.py", "m", tmp_path / "newer.json", tmp_path / "eval.json", "--models-dir", models)
    assert result.returncode == 0, result.stderr
    rates = json.loads((models / "manifest.json").read_text())["models"][0]["rates"]
    assert [(p["code_bits"], p["kbps"], p["scores"]["pesq_wb"]) for p in rates[:2]] == [(4, 4.0, 1.8), (3, 4.5, 1.95)]
    # with --keep-others a report of one setting updates that point and keeps the manifest's others
    (tmp_path / "one.json").write_text(json.dumps({"systems": [system("m cb5", 7.5, 2.25)]}))
    result = run_tool("record_rates.py", "m", tmp_path / "one.json", "--models-dir", models, "--keep-others")
    assert result.returncode == 0, result.stderr
    kept = json.loads((models / "manifest.json").read_text())["models"][0]["rates"]
    assert [(p["code_bits"], p["kbps"]) for p in kept] == [(4, 4.0), (3, 4.5), (5, 7.5), (4, 14.0), (4, 15.0)]
    assert kept[2]["scores"]["pesq_wb"] == 2.25


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
        ways = diagnose.rebuilds(net, torch.from_numpy(audio), 5, codec.RESIDUAL_PHASE_ITERS,
                                 decoded_only=True, coded=api.open_stream(stream))
        plain = diagnose.rebuilds(net, torch.from_numpy(audio), 4, codec.RESIDUAL_PHASE_ITERS, decoded_only=True)
    decoded, _ = api.decode(stream)
    assert np.abs(ways["decoded"].numpy() - decoded).max() < 1e-3  # the residual layer applied, as nac decode does
    assert np.abs(plain["decoded"].numpy() - decoded).max() > 1e-2

    result = run_tool("diagnose.py", tmp_path / "in", "--files", "1", "--preset", "cb4+res4000+step0.5")
    assert result.returncode == 0, result.stderr
    assert "preset cb4+res4000+step0.5" in result.stdout and "64 Griffin-Lim iterations" in result.stdout
    assert "true magnitude at 2000-4000 Hz" in result.stdout
    refused = run_tool("diagnose.py", tmp_path / "in", "--preset", "cb4", "--checkpoint", tmp_path / "last.pt")
    assert refused.returncode == 2 and "needs a shipped model" in refused.stderr


def test_diagnose_judges_a_training_checkpoint(tmp_path):
    import torch

    from nac.model.networks import ModelConfig, build_model
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
