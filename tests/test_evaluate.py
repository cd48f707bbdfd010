"""nac eval: the Ogg Opus payload counter, Opus alignment, the new metrics, the engine and its CLI."""

import csv
import json
import shutil
import struct
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from nac import api

from nac.lab import evaluate, metrics, opus
from nac.audio import read_audio, write_audio
from nac.cli import app
from nac.errors import FormatError, UsageError
from nac.settings import EncoderSettings

needs_opus = pytest.mark.skipif(not (shutil.which("opusenc") and shutil.which("opusdec")), reason="opus-tools missing")
RATE = 16000


def tone(seconds=1.0, rate=RATE):
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)


@pytest.fixture(scope="module")
def opus_tone():
    """(Ogg Opus bytes, stats) of a 1 s 440 Hz tone through opusenc at 12 kbps."""
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        pytest.skip("opus-tools missing")
    result = opus.code(tone(), RATE, 12)
    return result


# ---------------------------------------------------------------- Ogg Opus payload


@needs_opus
def test_payload_of_a_real_opusenc_file_is_its_audio_packets(opus_tone, tmp_path):
    stats = opus_tone.stats
    payload_kbps, file_kbps = stats.audio_bytes * 8 / 1000, stats.file_bytes * 8 / 1000  # 1 s of audio
    assert payload_kbps < file_kbps
    assert abs(payload_kbps - 12) < 3  # a VBR target: close, not exact
    assert stats.channels == 1 and stats.input_sample_rate == RATE
    assert stats.pre_skip > 0 and stats.duration_s == pytest.approx(1.0)
    assert stats.audio_packets == -(-(48000 + stats.pre_skip) // 960)  # 20 ms packets cover pre-skip + 1 s


@needs_opus
def test_ogg_overhead_is_page_headers_and_lacing(tmp_path):
    write_audio(tmp_path / "in.wav", tone(), RATE)
    import subprocess

    subprocess.run(["opusenc", "--quiet", "--bitrate", "12", str(tmp_path / "in.wav"), str(tmp_path / "x.opus")],
                   check=True)
    data = (tmp_path / "x.opus").read_bytes()
    packets, pages, granule = opus.ogg_packets(data)
    stats = opus.read_ogg_opus(data)
    assert packets[0].startswith(b"OpusHead") and packets[1].startswith(b"OpusTags")
    # every page costs 27 bytes plus its lacing values; a packet of n bytes takes n // 255 + 1 of them
    assert stats.ogg_overhead_bytes == 27 * pages + sum(len(p) // 255 + 1 for p in packets)
    assert stats.header_bytes + stats.audio_bytes + stats.ogg_overhead_bytes == len(data)
    assert stats.audio_bytes == sum(map(len, packets[2:])) and granule == stats.final_granule


@needs_opus
def test_ogg_parser_rejects_damage(tmp_path):
    write_audio(tmp_path / "in.wav", tone(0.3), RATE)
    import subprocess

    subprocess.run(["opusenc", "--quiet", str(tmp_path / "in.wav"), str(tmp_path / "x.opus")], check=True)
    data = (tmp_path / "x.opus").read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(FormatError, match="CRC"):
        opus.read_ogg_opus(bytes(flipped))
    with pytest.raises(FormatError, match="truncated"):
        opus.read_ogg_opus(data[:-10])
    with pytest.raises(FormatError, match="capture"):
        opus.read_ogg_opus(b"RIFF" + data[4:])
    with pytest.raises(FormatError):
        opus.read_ogg_opus(b"")


def test_ogg_crc_matches_the_known_check_value():
    # CRC-32/MPEG-2 without its init/xorout: the Ogg variant's check value for "123456789"
    assert opus.ogg_crc(b"123456789") == 0x89A1897F


def test_missing_opus_tools_say_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(opus.OpusToolsMissing, match="apt-get install opus-tools"):
        opus.find_tools()
    assert opus.OpusToolsMissing.exit_code == UsageError.exit_code


# ---------------------------------------------------------------- alignment


@needs_opus
def test_opusdec_output_is_aligned_with_the_input(short_speech):
    """Pre-skip trimmed by opusdec: the cross-correlation peaks within a sample, even searched over 50 ms."""
    audio, rate = short_speech
    clip = audio[:, : 2 * rate]
    for kbps in (6, 24):
        result = opus.code(clip, rate, kbps)
        assert result.audio.shape == clip.shape
        assert abs(evaluate.estimate_lag(clip, result.audio, 800)) <= 1


def test_estimate_lag_and_shift_undo_a_delay():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((1, 4000))
    late = np.concatenate([np.zeros((1, 7)), signal[:, :-7]], axis=1)
    assert evaluate.estimate_lag(signal, late, 16) == 7
    assert evaluate.estimate_lag(late, signal, 16) == -7
    np.testing.assert_array_equal(evaluate.shift(late, 7)[:, :-7], signal[:, :-7])
    np.testing.assert_array_equal(evaluate.shift(signal, -7), late)
    assert evaluate.estimate_lag(np.zeros((1, 100)), signal[:, :100], 16) == 0


# ---------------------------------------------------------------- metrics


def test_mel_distance_is_zero_for_identical_and_grows_with_noise(short_speech):
    audio, rate = short_speech
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(audio.shape)
    small, large = (metrics.mel_distance_db(audio, audio + level * noise, rate) for level in (1e-3, 3e-2))
    assert metrics.mel_distance_db(audio, audio, rate) == 0.0
    assert 0.0 < small < large
    assert metrics.mel_distance_db(np.zeros((1, 5000)), np.zeros((1, 5000)), rate) == 0.0
    loud = 0.1 * noise  # every band far above the floor: a gain of 1/2 is 6.02 dB in every band
    assert metrics.mel_distance_db(loud, 0.5 * loud, rate) == pytest.approx(20 * np.log10(2), rel=1e-6)


def test_mel_bank_has_no_empty_band():
    for n_fft, n_mels in metrics.MEL_RESOLUTIONS:
        bank = metrics._mel_bank(n_fft, n_mels, RATE)
        assert bank.shape == (n_mels, n_fft // 2 + 1) and bank.max() <= 1.0
        assert np.all(bank.sum(axis=1) > 0)


def test_visqol_ranks_clean_above_noisy(short_speech):
    pytest.importorskip("visqol")
    audio, rate = short_speech
    clip = audio[:, : 3 * rate]
    noisy = clip + 0.02 * np.random.default_rng(2).standard_normal(clip.shape)
    clean_score, noisy_score = metrics.visqol_speech(clip, clip, rate), metrics.visqol_speech(clip, noisy, rate)
    assert clean_score > 4.0 and 1.0 <= noisy_score < clean_score
    assert metrics.visqol_speech(np.zeros((1, 8000)), clip[:, :8000], rate) is None


def test_missing_metric_packages_are_notes_not_crashes(monkeypatch, short_speech):
    audio, rate = short_speech
    monkeypatch.setitem(sys.modules, "pesq", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "pystoi", None)
    monkeypatch.setattr(metrics, "_VISQOL_APIS", {"speech": (None, None), "audio": (None, None)})
    scores = evaluate.score(audio[:, :RATE], audio[:, :RATE])
    assert scores["pesq_wb"] is None and scores["stoi"] is None and scores["visqol"] is None
    assert scores["mel_db"] == 0.0
    notes = " ".join(evaluate.metric_notes())
    assert "PESQ-WB skipped" in notes and "STOI and ESTOI skipped" in notes and "ViSQOL skipped" in notes
    stereo = np.concatenate([audio[:, :RATE]] * 2)
    music = evaluate.score_music(stereo, stereo, RATE)
    assert music["visqol_audio"] is None and music["visqol_audio_lr"] is None
    music_notes = " ".join(evaluate.metric_notes(evaluate.MUSIC))
    assert "ViSQOL-audio skipped" in music_notes and "PESQ" not in music_notes  # speech metrics play no part


# ---------------------------------------------------------------- planning


def test_presets_and_bitrates_parse():
    def preset(phase_iters=None, **fields):
        return evaluate.Preset(EncoderSettings(**fields), phase_iters)

    assert evaluate.parse_preset("default") == preset()
    assert evaluate.parse_preset("bits16+store_phase") == preset(bits=16, store_phase=True)
    assert evaluate.parse_preset("cb4") == preset(code_bits=4)
    assert evaluate.parse_preset("cb4+res1000+step0.7") == preset(code_bits=4, residual_hz=1000.0, residual_step=0.7)
    assert evaluate.parse_bitrates("6, 12k,32") == (6.0, 12.0, 32.0)
    for bad in ("5", "x", ""):
        with pytest.raises(UsageError):
            evaluate.parse_bitrates(bad)
    assert evaluate.parse_preset("res375+step0.85") == preset(residual_hz=375.0, residual_step=0.85)
    assert evaluate.parse_preset("cb4+coarse12") == preset(code_bits=4, coarse_channels=12)
    assert evaluate.parse_preset("res4000+bands1000+oct8") == preset(residual_hz=4000.0, residual_bands_hz=1000.0,
                                                                     bands_per_octave=8.0)
    assert evaluate.parse_preset("res4000+bands1000+fine500+fstep0.2") == preset(
        residual_hz=4000.0, residual_bands_hz=1000.0, residual_fine_hz=500.0, residual_fine_step=0.2)
    assert evaluate.parse_preset("res4000+bands1000+fine500+hint1000") == preset(
        residual_hz=4000.0, residual_bands_hz=1000.0, residual_fine_hz=500.0, phase_hint_hz=1000.0)
    assert evaluate.parse_preset("cb4+it64") == preset(64, code_bits=4)
    assert evaluate.parse_preset("it0") == preset(0)
    for bad in ("bits4", "res", "res-5", "step.5", "cb17", "res100x", "coarse1.5", "coarse", "bands", "oct-2",
                "it", "it1.5", "it-4", "fine", "fstep", "hint"):
        with pytest.raises(UsageError, match="unknown preset"):
            evaluate.parse_preset(bad)
    with pytest.raises(UsageError, match="'it257': Griffin-Lim iterations must be in 0..256"):
        evaluate.parse_preset("cb4+it257")
    with pytest.raises(UsageError, match="preset 'res1000\\+step20': residual step 20 is outside"):
        evaluate.parse_preset("res1000+step20")


def test_cli_rejects_bad_options(tmp_path):
    write_audio(tmp_path / "a.wav", tone(0.2), RATE)
    runner = CliRunner()
    for args, message in (
        (["--against", "mp3"], "only opus"),
        (["--presets", "fast"], "unknown preset"),
        (["--bitrates", "300"], "outside"),
        (["--excerpt", "-1"], "negative"),
        (["--points", "abc"], "has no point 'abc'"),
    ):
        result = runner.invoke(app, ["eval", str(tmp_path / "a.wav"), "-o", str(tmp_path / "o"), *args])
        assert result.exit_code == UsageError.exit_code, result.output
        assert message in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "a.wav"), "--mode", "fullband"])
    assert result.exit_code == UsageError.exit_code
    assert "--mode: 'fullband' is not one of speech, music" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "missing.wav")])
    assert result.exit_code == 3 and "no such file" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.wav")])
    assert result.exit_code == 7 and "not a folder" in result.output


def test_cli_lists_a_file_it_cannot_read_and_scores_the_others(tmp_path):
    write_audio(tmp_path / "a.wav", tone(0.5), RATE)
    (tmp_path / "b.wav").write_text("not audio")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--points", "6k",
                                      "-o", str(tmp_path / "o")])
    assert result.exit_code == 9 and "nac: failed:" in result.output and "b.wav" in result.output
    again = CliRunner().invoke(app, ["eval", str(tmp_path / "a.wav"), "--points", "6k", "-o", str(tmp_path / "o")])
    assert again.exit_code == 7 and "holds a report already (use -f to overwrite)" in again.output
    forced = CliRunner().invoke(app, ["eval", str(tmp_path / "a.wav"), "--points", "6k", "-o", str(tmp_path / "o"),
                                      "-f"])
    assert forced.exit_code == 0, forced.output


# ---------------------------------------------------------------- the engine, end to end


@needs_opus
def test_eval_against_opus_writes_the_report(tmp_path, speech):
    audio, rate = speech
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(2):  # two 1.5 s clips of real speech
        start = index * 3 * rate
        write_audio(inputs / f"utt{index}.wav", audio[:, start : start + int(1.5 * rate)], rate)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["eval", str(inputs), "--against", "opus", "--bitrates", "6,12", "-o", str(out), "--keep", "1"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    labels = [s["label"] for s in report["settings"]["systems"]]
    assert labels[-2:] == ["opus 6 kbps", "opus 12 kbps"] and all(lb.startswith("nac ") for lb in labels[:-2])
    assert len(report["files"]) == 2 * len(labels) and report["failed"] == []
    for row in report["files"]:
        assert row["kbps"] == pytest.approx(row["bytes"] * 8 / row["duration_s"] / 1000)
        assert all(np.isfinite(row[k]) for k in ("snr_db", "si_sdr_db", "lsd_db", "mel_db"))
        if row["codec"] == "opus":
            assert row["kbps"] < row["file_kbps"] and abs(row["lag_samples"]) <= 1
        else:
            assert row["bytes"] == row["file_bytes"] and row["lag_samples"] == 0
    summary = {s["setting"]: s for s in report["systems"]}
    assert summary["12 kbps"]["kbps"] > summary["6 kbps"]["kbps"] and summary["12 kbps"]["files"] == 2
    if summary["12 kbps"]["pesq_wb"] is not None:
        assert summary["12 kbps"]["pesq_wb"] > summary["6 kbps"]["pesq_wb"]

    with (out / "eval.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["files"]) and {"file", "codec", "setting", "kbps", "pesq_wb"} <= set(rows[0])
    markdown = (out / "summary.md").read_text()
    assert "| opus | 12 kbps | 2 |" in markdown and "| nac |" in markdown
    assert "| codec | setting | files | kbps |" in result.stdout  # the table is printed too
    recons = sorted(p.name for p in out.glob("recon_*.wav"))
    assert len(recons) == len(labels) and all(name.startswith("recon_utt0_") for name in recons)
    ref, ref_rate = read_audio(out / "ref_utt0.wav")
    assert ref_rate == RATE and ref.shape == (1, int(1.5 * rate))
    if "png" in report_paths(out):
        assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", (out / "rd.png").read_bytes()[16:24])
        assert width >= 1200 and height >= 600


def report_paths(out):
    return {p.suffix.lstrip(".") for p in out.iterdir()}


def test_eval_of_a_stereo_22k_file_scores_it_at_16k_mono(tmp_path):
    t = np.arange(int(0.6 * 22050)) / 22050
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 500 * t)]).astype(np.float32)
    write_audio(tmp_path / "s.wav", stereo, 22050)
    options = evaluate.EvalOptions(inputs=[tmp_path / "s.wav"], out_dir=tmp_path / "o", keep=0)
    report = evaluate.run(options)
    assert [r["duration_s"] for r in report.rows] == [pytest.approx(0.6)] * len(report.rows)
    assert not list((tmp_path / "o").glob("*.wav"))
    assert report.systems[0]["files"] == 1 and (tmp_path / "o" / "summary.md").is_file()


def test_excerpt_scores_the_middle_of_each_file(tmp_path):
    t = np.arange(3 * RATE) / RATE
    clip = (0.3 * np.sin(2 * np.pi * (200 + 100 * (t > 1) + 100 * (t > 2)) * t)).astype(np.float32)[None]
    write_audio(tmp_path / "a.wav", clip, RATE)
    options = evaluate.EvalOptions(inputs=[tmp_path / "a.wav"], out_dir=tmp_path / "o", keep=1, excerpt=0.5)
    report = evaluate.run(options)
    assert [r["duration_s"] for r in report.rows] == [pytest.approx(0.5)] * len(report.rows)
    reference, _ = read_audio(tmp_path / "o" / "ref_a.wav")
    np.testing.assert_allclose(reference, clip[:, round(1.25 * RATE) : round(1.75 * RATE)], atol=1e-4)
    assert "the middle 0.5 s of each" in (tmp_path / "o" / "summary.md").read_text()
    whole = evaluate.load_clip(tmp_path / "a.wav", evaluate.mode_named("music"), excerpt=10.0)
    assert whole.source.shape == clip.shape


def stereo_music(seconds=1.5, rate=44100, seed=0):
    """Tones panned left over hiss that the channels partly share: a stereo image with level and correlation."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t + f) for f in (220.0 * (seed + 1), 1320.0, 5000.0, 12000.0))
    tones *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    hiss = 0.05 * rng.standard_normal(t.size)
    left, right = 0.2 * tones + hiss, 0.1 * tones + 0.7 * hiss + 0.03 * rng.standard_normal(t.size)
    return np.stack([left, right]).astype(np.float32)


HAS_VISQOL = metrics.visqol_mapping("audio") is not None
MUSIC_KEYS = ("visqol_audio", "visqol_audio_lr") * HAS_VISQOL + ("bandwidth_khz", "ref_bandwidth_khz", "ild_error_db", "icc_error",
                                               "lr_correlation_in", "lr_correlation_out", "si_sdr_db", "mel_db")


@needs_opus
def test_eval_music_mode_scores_stereo_44k_files_at_48k_with_their_channels(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "report"
    inputs.mkdir()
    for index in range(2):
        write_audio(inputs / f"m{index}.wav", stereo_music(seed=index), 44100)
    result = CliRunner().invoke(app, ["eval", str(inputs), "--mode", "music", "--against", "opus",
                                      "--bitrates", "16,48", "-o", str(out), "--keep", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["settings"]["mode"] == "music" and report["settings"]["score_rate"] == 48000
    assert [s["label"] for s in report["settings"]["systems"]][-2:] == ["opus 16 kbps", "opus 48 kbps"]
    assert report["failed"] == [] and len(report["files"]) == 2 * len(report["settings"]["systems"])
    for row in report["files"]:
        assert all(np.isfinite(row[key]) for key in MUSIC_KEYS), row
        assert "pesq_wb" not in row and "stoi" not in row
        assert row["channels"] == 2 and (row["codec"] == "nac" or row["decoded_rate"] == 48000)
        assert row["duration_s"] == pytest.approx(1.5)
    summary = {s["setting"]: s for s in report["systems"]}
    assert all(summary["48 kbps"][key] is not None for key in MUSIC_KEYS)
    if HAS_VISQOL:
        assert summary["48 kbps"]["visqol_audio"] > summary["16 kbps"]["visqol_audio"]
    assert summary["48 kbps"]["bandwidth_khz"] == pytest.approx(summary["48 kbps"]["ref_bandwidth_khz"])
    markdown = (out / "summary.md").read_text()
    assert "ViSQOL-audio | ViSQOL-audio L/R | " * HAS_VISQOL + "bandwidth kHz | ref bandwidth kHz | ILD err dB | ICC err |" in markdown
    assert "at 48 kHz with its channels" in markdown and "`opusdec --rate 48000 --float`" in markdown
    assert "PESQ" not in markdown and "| L/R corr in | L/R corr out |" in result.stdout
    ref, ref_rate = read_audio(out / "ref_m0.wav")
    assert ref_rate == 48000 and ref.shape == (2, 72000)
    if "png" in report_paths(out):
        assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_opus
def test_music_mode_has_its_own_opus_bitrates(tmp_path):
    write_audio(tmp_path / "a.wav", stereo_music(0.2), 44100)
    for given, expected in ((None, [16, 24, 32, 48, 64]), ((12.0,), [12])):
        options = evaluate.EvalOptions(inputs=[tmp_path / "a.wav"], out_dir=tmp_path, mode="music", against_opus=True,
                                       bitrates=given)
        _, systems = evaluate.plan(options)
        assert [s.bitrate_kbps for s in systems if s.codec == "opus"] == expected


def test_music_outputs_are_made_to_match_the_reference_with_notes():
    mono = tone(0.5, 16000)
    matched = evaluate.conform(mono, 16000, (2, 24001), 48000)
    assert matched.shape == (2, 24001) and np.array_equal(matched[0], matched[1]) and not matched[:, -1].any()
    rows = [{"file": "a", "codec": "nac", "setting": "m 12k", "channels": 2, "decoded_channels": 1,
             "decoded_rate": 16000, "ild_error_db": 1.0},
            {"file": "b", "codec": "opus", "setting": "16 kbps", "channels": 1, "decoded_channels": 1,
             "decoded_rate": 48000, "ild_error_db": None}]
    notes = evaluate._conform_notes(rows, 48000) + evaluate._undefined_notes(rows, evaluate.MUSIC)
    assert notes == ["outputs decoded at 16000 Hz were resampled to 48000 Hz (soxr) to be scored",
                     ("nac m 12k: output with another channel count than the reference's; mixed to mono and copied "
                      "to each channel to be scored"),
                     ("ILD/ICC errors and L/R correlation undefined for 1 of 2 files (not two channels); means leave "
                      "them out")]


def test_it_preset_decodes_with_that_many_griffin_lim_iterations(short_speech):
    audio, _ = short_speech
    clip = audio[:, :16000]
    plain, iterated = (evaluate.nac_systems(["nac-speech-16k-v5"], [], [], [preset])[0] for preset in ("cb4", "cb4+it2"))
    assert iterated.phase_iters == 2 and plain.phase_iters is None
    data = api.encode(clip, 16000, EncoderSettings(code_bits=4), model="nac-speech-16k-v5")
    expected, _ = api.decode(data, model="nac-speech-16k-v5", phase_iters=2)
    _, decoded = evaluate.code_and_score(iterated, clip)
    _, default = evaluate.code_and_score(plain, clip)
    np.testing.assert_array_equal(decoded, expected)
    assert np.abs(default - decoded).max() > 1e-3


def test_a_corpus_manifest_picks_files_and_any_other_folder_is_scanned(tmp_path):
    for name in ("a.wav", "b.wav", "c.flac"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "MANIFEST.tsv").write_text("file\tsplit\tkind\na.wav\tdev\tmusic\nb.wav\ttrain\tmusic\n")
    assert evaluate.collect_inputs([tmp_path], "dev", "music") == [tmp_path / "a.wav"]
    (tmp_path / "MANIFEST.tsv").write_text("file\tlicense\na.wav\tGPL-2+\n")  # a list of sources, not a corpus
    assert evaluate.collect_inputs([tmp_path], "dev", "music") == [tmp_path / n for n in ("a.wav", "b.wav", "c.flac")]


def test_max_files_spreads_over_the_list():
    files = [f"f{i}" for i in range(10)]
    assert evaluate.spread(files, 4) == ["f0", "f2", "f5", "f7"]
    assert evaluate.spread(files, 0) == files and evaluate.spread(files, 20) == files


def test_rd_curves_separate_residual_banded_and_stored_phase_presets():
    systems = [{"setting": f"m {preset}", "kbps": kbps, "pesq_wb": pesq} for preset, kbps, pesq in
               (("cb4", 7.0, 2.6), ("default", 8.7, 2.7), ("cb4+res1000+step0.7", 10.7, 3.3),
                ("res2000", 16.0, 3.6), ("store_phase", 260.0, 3.6), ("cb4+res4000+bands1000", 11.5, 3.7),
                ("cb4+res4000+bands1000+it64", 11.5, 3.8))]
    assert evaluate._nac_curves(systems, "pesq_wb") == {
        "m": [(7.0, 2.6), (8.7, 2.7)], "m + residual": [(10.7, 3.3), (16.0, 3.6)], "m store_phase": [(260.0, 3.6)],
        "m + banded residual": [(11.5, 3.7)], "m + banded residual, 64 Griffin-Lim iterations": [(11.5, 3.8)]}
    assert evaluate._frontier([(5.0, 2.0), (6.0, 1.9), (7.0, 2.5), (8.0, 2.5), (9.0, 2.7)]) == [
        (5.0, 2.0), (7.0, 2.5), (9.0, 2.7)]
