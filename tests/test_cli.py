"""The CLI through typer's CliRunner: outputs, exit codes and one-line messages."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nac.format import container
from nac.audio import read_audio
from nac.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def clip(tmp_path: Path, short_speech) -> Path:
    from nac.audio import write_audio

    audio, rate = short_speech
    path = tmp_path / "clip.wav"
    write_audio(path, audio, rate)
    return path


@pytest.fixture()
def encoded(clip: Path) -> Path:
    assert run("encode", clip).exit_code == 0
    return clip.with_suffix(".nac")


def test_encode_inspect_decode(clip: Path, encoded: Path):
    result = run("inspect", encoded, "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["all_crc_ok"] and info["header"]["channels"] == 1 and info["model_name"]
    assert run("inspect", encoded).exit_code == 0
    result = run("decode", encoded)
    assert result.exit_code == 0, result.output
    decoded, rate = read_audio(clip.with_suffix(".decoded.wav"))
    original, original_rate = read_audio(clip)
    assert rate == original_rate and decoded.shape == original.shape


def test_existing_output_needs_force(clip: Path, encoded: Path):
    before = encoded.read_bytes()
    result = run("encode", clip)
    assert result.exit_code == 7 and "already exists" in result.output and "-f" in result.output
    assert encoded.read_bytes() == before
    assert run("encode", clip, "-f").exit_code == 0


def test_output_equal_to_input_is_refused(clip: Path):
    result = run("encode", clip, clip, "-f")
    assert result.exit_code == 7 and "overwrite the input" in result.output


@pytest.mark.parametrize("command, name", [("encode", "nope.wav"), ("decode", "nope.nac"), ("inspect", "nope.nac")])
def test_missing_input(tmp_path: Path, command: str, name: str):
    result = run(command, tmp_path / name)
    assert result.exit_code == 3
    assert result.output.strip() == f"nac: error: {tmp_path / name}: no such file"


def test_non_audio_input(tmp_path: Path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio\n")
    result = run("encode", bogus)
    assert result.exit_code == 3 and "notes.wav" in result.output and "not a readable audio file" in result.output
    assert not (tmp_path / "notes.nac").exists()


def test_not_a_nac_file_and_no_partial_output(tmp_path: Path, sample_path: Path):
    shutil.copy(sample_path, tmp_path / "speech.nac")
    result = run("decode", tmp_path / "speech.nac")
    assert result.exit_code == 4 and "speech.nac" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.nac"]


def test_corrupt_chunk_fails_decode_and_inspect(encoded: Path):
    data = bytearray(encoded.read_bytes())
    data[bitstream.HEADER_SIZE + 40] ^= 0x01
    encoded.write_bytes(bytes(data))
    result = run("decode", encoded)
    assert result.exit_code == 4 and "CRC" in result.output
    result = run("inspect", encoded)
    assert result.exit_code == 4 and "CRC MISMATCH" in result.output


def test_future_major_version(encoded: Path):
    data = bytearray(encoded.read_bytes())
    data[8] = 0x90
    encoded.write_bytes(bytes(data))
    assert run("decode", encoded).exit_code == 5


def test_unknown_model_and_bad_bits(clip: Path):
    result = run("encode", clip, "--model", "no-such-model")
    assert result.exit_code == 6 and "no-such-model" in result.output
    result = run("encode", clip, "--bits", "12")
    assert result.exit_code == 2 and "bits" in result.output


def test_usage_error_exit_code():
    assert run("encode").exit_code == 2


def test_models_lists_the_default():
    result = run("models")
    assert result.exit_code == 0 and "*" in result.stdout


def test_batch_and_report(tmp_path: Path, short_speech):
    from nac.audio import write_audio

    audio, rate = short_speech
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    write_audio(source / "a.wav", audio[:, :rate], rate)
    write_audio(source / "sub" / "b.wav", audio[:, rate : 2 * rate], rate)
    result = run("batch", source, tmp_path / "out", "--jobs", "1", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "sub" / "b.nac").is_file()
    assert result.stdout.splitlines()[0].startswith("file,duration_s") and len(result.stdout.splitlines()) == 3
    (source / "sub" / "c.wav").write_text("not audio")
    result = run("batch", source, tmp_path / "out", "--jobs", "1", "--resume")
    assert result.exit_code == 9 and "c.wav" in result.output and "2 skipped" in result.output
    result = run("report", tmp_path / "out", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["summary"]["files"] == 2
    assert run("report", tmp_path / "out", "--metrics").exit_code == 2
    assert run("report", tmp_path / "nowhere").exit_code == 3
    (source / "a.wav").unlink()
    (source / "sub" / "b.wav").unlink()
    assert run("batch", source, tmp_path / "out2", "--jobs", "1").exit_code == 10


def test_pipes_and_seeking(clip: Path, tmp_path: Path):
    encoded = runner.invoke(app, ["encode", "-", "-"], input=clip.read_bytes())
    assert encoded.exit_code == 0, encoded.output
    nac_bytes = encoded.stdout_bytes
    assert nac_bytes.startswith(b"\x89NAC")
    decoded = runner.invoke(app, ["decode", "-", "-o", "-", "--start", "1", "--duration", "2"], input=nac_bytes)
    assert decoded.exit_code == 0
    out = tmp_path / "piped.wav"
    out.write_bytes(decoded.stdout_bytes)
    audio, rate = read_audio(out)
    assert audio.shape == (1, 2 * rate)
    assert runner.invoke(app, ["encode", "-"], input=clip.read_bytes()).exit_code == 2
    assert runner.invoke(app, ["decode", "-", "-o", "-", "--start", "-3"], input=nac_bytes).exit_code == 2


def test_phase_iterations_option(encoded: Path, tmp_path: Path):
    fast = run("decode", encoded, "-o", tmp_path / "fast.wav", "--phase-iters", "0")
    assert fast.exit_code == 0
    assert run("decode", encoded, "-o", tmp_path / "bad.wav", "--phase-iters", "-1").exit_code == 2
    assert not (tmp_path / "bad.wav").exists()


def test_bitrate_picks_a_smaller_setting_for_a_lower_target(clip: Path, tmp_path: Path):
    low, high = tmp_path / "low.nac", tmp_path / "high.nac"
    assert run("encode", clip, low, "--bitrate", "6k").exit_code == 0
    assert run("encode", clip, high, "--bitrate", "30k").exit_code == 0
    assert low.stat().st_size < high.stat().st_size
    assert "bitrates" in run("models").output


def test_coarse_channels_option(clip: Path, tmp_path: Path):
    plain, coarse = tmp_path / "plain.nac", tmp_path / "coarse.nac"
    assert run("encode", clip, plain, "--code-bits", "4").exit_code == 0
    result = run("encode", clip, coarse, "--code-bits", "4", "--coarse-channels", "12")
    assert result.exit_code == 0, result.output
    assert coarse.stat().st_size < plain.stat().st_size
    result = run("encode", clip, tmp_path / "bad.nac", "--coarse-channels", "99")
    assert result.exit_code == 2 and "coarse channels must be 0..48" in result.output
    assert not (tmp_path / "bad.nac").exists()


def test_residual_layer_options(clip: Path, tmp_path: Path):
    coded = tmp_path / "residual.nac"
    result = run("encode", clip, coded, "--residual-hz", "1000", "--residual-step", "0.75")
    assert result.exit_code == 0, result.output
    info = json.loads(run("inspect", coded, "--json").stdout)
    assert info["header"]["version"] == "4.0" and info["header"]["residual_bins"] == 32
    assert info["header"]["residual_step"] == 0.75
    assert run("decode", coded).exit_code == 0
    for extra, message in ((["--residual-step", "0"], "residual step 0 is outside"),
                           (["--residual-hz", "-5"], "residual band -5 Hz is outside")):
        result = run("encode", clip, tmp_path / "bad.nac", "--residual-hz", "1000", *extra)
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "bad.nac").exists()


def test_banded_residual_options(clip: Path, tmp_path: Path):
    per_bin, banded = tmp_path / "per_bin.nac", tmp_path / "banded.nac"
    assert run("encode", clip, per_bin, "--code-bits", "4", "--residual-hz", "4000").exit_code == 0
    result = run("encode", clip, banded, "--code-bits", "4", "--residual-hz", "4000", "--residual-bands-hz", "1000",
                 "--bands-per-octave", "8")
    assert result.exit_code == 0, result.output
    assert banded.stat().st_size < 0.75 * per_bin.stat().st_size
    info = json.loads(run("inspect", banded, "--json").stdout)
    header = info["header"]
    assert (header["residual_bins"], header["residual_band_start"], header["residual_band_growth"]) == (128, 32, 71468)
    assert run("decode", banded).exit_code == 0
    for extra, message in ((["--residual-bands-hz", "1000"], "residual bands from 1000 Hz need a residual band above"),
                           (["--residual-hz", "800", "--residual-bands-hz", "1000"], "up to 800 Hz"),
                           (["--residual-hz", "4000", "--residual-bands-hz", "1000", "--bands-per-octave", "0.5"],
                            "bands per octave must be 1..48, not 0.5")):
        result = run("encode", clip, tmp_path / "bad.nac", *extra)
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "bad.nac").exists()


def test_bitrate_with_bits_or_code_bits_is_a_usage_error(clip: Path):
    for extra in (["--bits", "8"], ["--code-bits", "4"], ["--residual-hz", "500"], ["--residual-step", "0.5"],
                  ["--coarse-channels", "12"], ["--residual-bands-hz", "1000"], ["--bands-per-octave", "8"]):
        result = run("encode", clip, "-f", "--bitrate", "6k", *extra)
        assert result.exit_code == 2 and "give one or the other" in result.output


LAYER_OPTIONS = ["--code-bits", "4", "--residual-hz", "4000", "--residual-bands-hz", "1000"]


@pytest.mark.parametrize("options, fields, rejected", [
    (["--residual-slope", "0.15", "--residual-span", "6"], {"residual_step_slope": 614, "residual_step_span": 1536},
     ((["--residual-slope", "0.2"], "a residual slope needs the residual layer"),
      ([*LAYER_OPTIONS, "--residual-slope", "1.5"], "residual slope 1.5 is outside 0..1"),
      ([*LAYER_OPTIONS, "--residual-slope", "0.0001"], "below the format's resolution 1/4096"),
      ([*LAYER_OPTIONS, "--residual-slope", "0.2", "--residual-span", "17"],
       "residual span 17 is outside 0.00390625..16"))),
    (["--residual-fine-hz", "500", "--residual-fine-step", "0.25"],
     {"residual_fine_bins": 16, "residual_fine_step": 0.25},
     ((["--residual-hz", "4000", "--residual-fine-hz", "500", "--residual-fine-step", "0"],
       "residual fine step 0 is outside (0, 16]"),
      ([*LAYER_OPTIONS, "--residual-fine-hz", "2000"],
       "fine residual bins under 2000 Hz need residual bins of one row each up there"),
      (["--residual-fine-hz", "500"], "fine residual bins under 500 Hz need"))),
    (["--residual-fine-hz", "500", "--phase-hint-hz", "1000"],
     {"version": "8.0", "phase_hint_bins": 32, "phase_hint_delay": 4, "phase_hint_turns": 4},
     (([*LAYER_OPTIONS, "--phase-hint-hz", "1000"], "phase hints under 1000 Hz need the fine residual bins"),
      ([*LAYER_OPTIONS, "--residual-fine-hz", "500", "--phase-hint-hz", "-5"],
       "phase hints under -5 Hz need the fine residual bins"))),
], ids=["slope", "fine", "hints"])
def test_residual_step_options(clip: Path, tmp_path: Path, options, fields, rejected):
    out = tmp_path / "layer.nac"
    result = run("encode", clip, out, *LAYER_OPTIONS, *options)
    assert result.exit_code == 0, result.output
    header = json.loads(run("inspect", out, "--json").stdout)["header"]
    assert {name: header[name] for name in fields} == fields
    assert run("decode", out).exit_code == 0
    for extra, message in rejected:
        result = run("encode", clip, tmp_path / "bad.nac", *extra)
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "bad.nac").exists()
