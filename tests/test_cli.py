"""The command line: outputs, exit codes, one-line messages, and the same bytes as the API and batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import pytest
from typer.testing import CliRunner

from nac import api
from nac.audio import read_audio, resample, write_audio
from nac.cli import app
from nac.model import manifest
from nac.settings import EncoderSettings

runner = CliRunner()
POINTS = [point.name for point in manifest.find_entry(None).ladder]


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def nac_process(*args, **kwargs) -> subprocess.CompletedProcess:
    """``nac`` as users run it: its own process, through :func:`nac.cli.main`."""
    return subprocess.run([sys.executable, "-m", "nac.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kwargs)


@pytest.fixture()
def clip(tmp_path: Path, short_speech) -> Path:
    audio, rate = short_speech
    path = tmp_path / "clip.wav"
    write_audio(path, audio[:, : 2 * rate], rate)
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
    assert info["header"]["version"] == "9.0" and info["header"]["residual"]  # the default point has the layer
    assert run("inspect", encoded).exit_code == 0
    result = run("decode", encoded)
    assert result.exit_code == 0, result.output
    decoded, rate = read_audio(clip.with_suffix(".decoded.wav"))
    original, original_rate = read_audio(clip)
    assert rate == original_rate and decoded.shape == original.shape


def test_encode_says_which_point_it_chose(clip: Path, tmp_path: Path):
    result = run("encode", clip, tmp_path / "a.nac")
    assert result.exit_code == 0 and f"nac: {manifest.find_entry(None).default_point} point" in result.output
    assert run("encode", clip, tmp_path / "b.nac", "-q").output == ""


@pytest.mark.parametrize("point", POINTS)
def test_cli_batch_and_api_write_the_same_bytes_at_every_point(short_speech, tmp_path: Path, point):
    audio, rate = short_speech
    source = tmp_path / "in"
    source.mkdir()
    write_audio(source / "speech.wav", audio[:, :rate], rate)
    stored, _ = read_audio(source / "speech.wav")
    assert run("encode", source / "speech.wav", tmp_path / "cli.nac", "--bitrate", point).exit_code == 0
    assert run("batch", source, tmp_path / "out", "--bitrate", point, "-j", "1", "-q").exit_code == 0
    expected = api.encode(stored, rate, bitrate=point)
    assert expected == api.encode(stored, rate, manifest.find_entry(None).point(point).settings)
    assert (tmp_path / "cli.nac").read_bytes() == expected == (tmp_path / "out" / "speech.nac").read_bytes()


def test_bitrate_is_for_the_whole_file(clip: Path, tmp_path: Path):
    audio, rate = read_audio(clip)
    stereo = tmp_path / "stereo.wav"
    write_audio(stereo, np.concatenate([audio, 0.5 * audio]), rate)
    result = run("encode", stereo, tmp_path / "s.nac", "--bitrate", "24k")  # the fullband model's stereo layer
    assert result.exit_code == 0, result.output
    assert "24k point of nac-fullband-48k-v1 (the default for stereo" in result.output
    assert "for each of" not in result.output and "stereo image" not in result.output
    result = run("encode", stereo, tmp_path / "low.nac", "--bitrate", "8k")
    assert result.exit_code == 2 and "below what" in result.output and "12-36 kbps" in result.output
    assert not (tmp_path / "low.nac").exists()
    result = run("encode", stereo, tmp_path / "s.nac", "-f", "--bitrate", "24k", "-m", "nac-speech-16k-v5")
    assert result.exit_code == 0, result.output
    assert "12k point" in result.output and "for each of 2 channels" in result.output
    assert "stereo image" in result.output  # what is lost, said
    result = run("encode", stereo, tmp_path / "low.nac", "--bitrate", "10k", "-m", "nac-speech-16k-v5")
    assert result.exit_code == 2 and "12-48 kbps for 2 channels" in result.output
    result = run("encode", clip, tmp_path / "top.nac", "--bitrate", "100k")
    assert result.exit_code == 0 and "above the model's top point" in result.output
    assert run("encode", clip, tmp_path / "x.nac", "--bitrate", "fast").exit_code == 2


def test_content_above_the_models_band_is_warned_of(tmp_path: Path, short_speech):
    audio, rate = short_speech
    wide = resample(audio[:, :rate], rate, 44100)
    wide += 0.1 * np.sin(2 * np.pi * 12000 * np.arange(wide.shape[1]) / 44100).astype(np.float32)
    write_audio(tmp_path / "wide.wav", wide, 44100)
    result = run("encode", tmp_path / "wide.wav", "-m", "nac-speech-16k-v5")
    assert result.exit_code == 0 and "lies above 8 kHz, which this model does not code" in result.output
    result = run("encode", tmp_path / "wide.wav", "-f")  # the fullband default codes it
    assert result.exit_code == 0 and "nac-fullband-48k-v1" in result.output and "warning" not in result.output


def test_settings_file(clip: Path, tmp_path: Path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"code_bits": 4, "residual_hz": 2000}))
    result = run("encode", clip, tmp_path / "s.nac", "--settings", settings)
    assert result.exit_code == 0, result.output
    info = json.loads(run("inspect", tmp_path / "s.nac", "--json").stdout)["header"]
    assert info["latent"]["code_bits"] == [4] * 48 and info["residual"]["bins"] == 64
    for text, message in (('{"code_bits": 4, "colour": 1}', "unknown setting(s) colour"),
                          ('{"code_bits": "four"}', "code_bits must be a whole number"),
                          ('{"residual_hz": -1}', "residual band -1 Hz is outside"), ("[1, 2", "not JSON")):
        settings.write_text(text)
        result = run("encode", clip, tmp_path / "bad.nac", "--settings", settings)
        assert result.exit_code == 2 and message in result.output and "settings.json" in result.output
        assert not (tmp_path / "bad.nac").exists()
    settings.write_text("{}")
    result = run("encode", clip, tmp_path / "both.nac", "--settings", settings, "--bitrate", "12k")
    assert result.output.strip() == "nac: error: give --bitrate or --settings, not both"  # a usage error, no file
    assert result.exit_code == 2


def test_encode_has_few_options():
    help_text = run("encode", "--help").output
    options = {line.split()[0] for line in help_text.splitlines() if line.strip().startswith("--")}
    assert options <= {"--output", "--bitrate", "--settings", "--model", "--force", "--quiet", "--help"}
    assert len(options) <= 10


def test_several_inputs_each_get_their_own_output(clip: Path, tmp_path: Path):
    other = tmp_path / "other.wav"
    shutil.copy(clip, other)
    result = run("encode", clip, other, "-q")
    assert result.exit_code == 0 and clip.with_suffix(".nac").is_file() and other.with_suffix(".nac").is_file()
    assert run("decode", clip.with_suffix(".nac"), other.with_suffix(".nac"), "-q").exit_code == 0
    assert other.with_name("other.decoded.wav").is_file()
    assert run("encode", clip, other, "-o", tmp_path / "one.nac").exit_code == 2


def test_a_failing_input_among_several_does_not_stop_the_others(clip: Path, tmp_path: Path):
    broken, other = tmp_path / "broken.wav", tmp_path / "other.wav"
    broken.write_text("not audio")
    shutil.copy(clip, other)
    result = run("encode", clip, broken, other, "-q")
    assert result.exit_code == 3 and result.output.count("nac: error:") == 1 and "broken.wav" in result.output
    assert clip.with_suffix(".nac").is_file() and other.with_suffix(".nac").is_file()
    assert not broken.with_suffix(".nac").exists()


def test_existing_output_needs_force(clip: Path, encoded: Path):
    before = encoded.read_bytes()
    result = run("encode", clip)
    assert result.exit_code == 7 and "already exists" in result.output and "-f" in result.output
    assert encoded.read_bytes() == before
    assert run("encode", clip, "-f").exit_code == 0


def test_output_equal_to_input_is_refused(clip: Path):
    result = run("encode", clip, "-o", clip, "-f")
    assert result.exit_code == 7 and "overwrite the input" in result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX signals")
def test_sigterm_stops_an_encode_without_leaving_a_partial_file(tmp_path: Path):
    import signal
    import time

    source = tmp_path / "long.wav"
    write_audio(source, 0.1 * np.random.default_rng(0).standard_normal((1, 16000 * 120)).astype(np.float32), 16000)
    process = subprocess.Popen([sys.executable, "-m", "nac.cli", "encode", source, "-q"], stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".long.nac.*.part")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX signals")
def test_sigterm_stops_a_parallel_batch(tmp_path: Path):
    import signal
    import time

    source = tmp_path / "in"
    source.mkdir()
    noise = 0.1 * np.random.default_rng(0).standard_normal((1, 16000 * 600)).astype(np.float32)
    for name in "abcd":  # each takes seconds to code: two running, two waiting when the signal comes
        write_audio(source / f"{name}.wav", noise, 16000)
    process = subprocess.Popen([sys.executable, "-m", "nac.cli", "batch", source, tmp_path / "out", "-j", "2", "-q"],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob(".*.part")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert list((tmp_path / "out").iterdir()) == []  # nothing finished, nothing half-written


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_as_output_is_written_through_not_replaced(clip: Path, encoded: Path, tmp_path: Path):
    import threading

    pipe = tmp_path / "pipe.wav"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    result = run("decode", encoded, "-o", pipe, "-q")  # no -f needed: nothing is overwritten
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert pipe.is_fifo() and received[0][:4] == b"RIFF"
    audio, rate = read_audio(clip)
    assert len(received[0]) == 44 + 2 * audio.shape[1]  # a whole 16-bit WAV


@pytest.mark.parametrize("command, name", [("encode", "nope.wav"), ("decode", "nope.nac"), ("inspect", "nope.nac")])
def test_missing_input(tmp_path: Path, command: str, name: str):
    result = run(command, tmp_path / name)
    assert result.exit_code == 3
    assert result.output.strip() == f"nac: error: {tmp_path / name}: no such file"


@pytest.mark.parametrize("channels, rate, message", [(9, 16000, "9 channels: nac codes 1 to 8"),
                                                     (1, 4000, "sample rate 4000 Hz is outside")])
def test_an_input_nac_cannot_code_is_an_input_error(tmp_path: Path, channels: int, rate: int, message: str):
    source = tmp_path / "odd.wav"
    write_audio(source, np.zeros((channels, rate // 10), np.float32), rate)
    result = run("encode", source)
    assert result.exit_code == 3 and result.output.startswith(f"nac: error: {source}: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.wav"]


def test_a_folder_as_input(tmp_path: Path):
    result = run("encode", tmp_path)
    assert result.exit_code == 3 and result.output.strip() == f"nac: error: {tmp_path}: is a folder, not an audio file"


def test_non_audio_input(tmp_path: Path, capfd):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio\n")
    result = run("encode", bogus)
    assert result.exit_code == 3 and "notes.wav" in result.output and "not a readable audio file" in result.output
    assert not (tmp_path / "notes.nac").exists()
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(bytes(range(256)) * 40)
    result = run("encode", garbage)
    assert result.exit_code == 3 and "not a regular file" not in result.output  # libsndfile's words for it
    assert capfd.readouterr().err == ""  # libmpg123's own notes on the bad frames are kept off the terminal
    song = tmp_path / "tone.mp3"
    sf.write(song, 0.3 * np.sin(np.arange(48000) / 16000 * 2 * np.pi * 440), 16000)
    assert run("encode", song).exit_code == 0 and (tmp_path / "tone.nac").is_file()


def test_raw_bytes_on_stdin_are_named_stdin(tmp_path: Path):
    result = runner.invoke(app, ["encode", "-", str(tmp_path / "x.nac")], input=b"\x01\x02" * 500)
    assert result.exit_code == 3 and "<stdin>: not a readable audio file" in result.output
    assert "BytesIO" not in result.output and "0x" not in result.output


def test_not_a_nac_file_and_no_partial_output(tmp_path: Path, sample_path: Path):
    shutil.copy(sample_path, tmp_path / "speech.nac")
    result = run("decode", tmp_path / "speech.nac")
    assert result.exit_code == 4 and "speech.nac" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.nac"]


def test_corrupt_chunk_fails_decode_and_inspect(encoded: Path):
    data = bytearray(encoded.read_bytes())
    data[-60] ^= 0x01  # in the last chunk
    encoded.write_bytes(bytes(data))
    result = run("decode", encoded)
    assert result.exit_code == 4 and "CRC" in result.output
    result = run("inspect", encoded)
    assert result.exit_code == 4 and "CRC MISMATCH" in result.output


def test_future_major_version(encoded: Path):
    data = bytearray(encoded.read_bytes())
    data[8] = 0xA0
    encoded.write_bytes(bytes(data))
    assert run("decode", encoded).exit_code == 5


def test_unknown_model(clip: Path):
    result = run("encode", clip, "--model", "no-such-model")
    assert result.exit_code == 6 and "no-such-model" in result.output


def test_usage_errors_are_one_line_with_exit_2_and_debug_keeps_the_code(tmp_path: Path):
    result = nac_process("decode")
    assert result.returncode == 2 and result.stderr.strip().startswith("nac: error: Missing argument")
    assert len(result.stderr.strip().splitlines()) == 1
    result = nac_process("encode", tmp_path / "nope.wav", env={**os.environ, "NAC_DEBUG": "1"})
    assert result.returncode == 3 and "Traceback" in result.stderr and "no such file" in result.stderr


def test_version_and_help_start_without_torch():
    result = nac_process("--version")
    assert result.returncode == 0 and result.stdout.startswith("nac ")
    probe = ("import sys; sys.argv = ['nac', 'inspect', sys.argv[1]]\nimport nac.cli\n"
             "try:\n    nac.cli.app()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    vector = Path(__file__).parent / "vectors" / "speech-0.25s.nac"
    result = subprocess.run([sys.executable, "-c", probe, str(vector)], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("False"), result.stdout + result.stderr


def test_encoding_and_decoding_import_no_training_or_evaluation(tmp_path: Path, clip: Path):
    probe = ("import sys\nimport nac.cli\n"
             "for argv in (['encode', sys.argv[1], '-o', sys.argv[2]], ['decode', sys.argv[2], '-o', sys.argv[3]]):\n"
             "    sys.argv = ['nac', *argv]\n"
             "    try:\n        nac.cli.app()\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('nac.lab', 'matplotlib', 'pesq', 'tools'))))")
    result = subprocess.run([sys.executable, "-c", probe, str(clip), str(tmp_path / "a.nac"), str(tmp_path / "a.wav")],
                            capture_output=True, text=True, timeout=300)
    assert (tmp_path / "a.wav").exists(), result.stderr
    assert result.stdout.strip().endswith("[]"), result.stdout


def test_models_lists_the_default_first_in_short_lines():
    result = run("models")
    lines = result.stdout.splitlines()
    assert result.exit_code == 0 and lines[0].startswith("* ") and manifest.find_entry(None).name in lines[0]
    assert max(map(len, lines)) <= 100 and "(default)" in result.stdout
    assert lines[1] == "    default for mono (or 3+ channels) up to 16 kHz"
    fullband = manifest.find_entry(None, kind=manifest.FULLBAND).name
    assert f"* {fullband}  id" in result.stdout and "    default for stereo or above 16 kHz" in lines


def test_decoding_to_a_pipe_whose_reader_leaves_early_stops_quietly(tmp_path: Path):
    source = tmp_path / "noise.wav"
    write_audio(source, 0.1 * np.random.default_rng(0).standard_normal((1, 16000 * 5)).astype(np.float32), 16000)
    assert run("encode", source, "-q").exit_code == 0
    process = subprocess.Popen([sys.executable, "-m", "nac.cli", "decode", source.with_suffix(".nac"), "-o", "-"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    process.stdout.read(10)  # as `| head -c 10` (or a player that quits) does: 10 of 160,044 bytes, then gone
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141 and stderr == b""  # as SIGPIPE would, and as printed text does


def test_closed_standard_streams_give_one_line_errors(tmp_path: Path, clip: Path):
    coded = tmp_path / "a.nac"
    assert run("encode", clip, coded, "-q").exit_code == 0

    def shell(command: str) -> subprocess.CompletedProcess:
        nac = f"{sys.executable} -m nac.cli"
        return subprocess.run(["bash", "-c", command.replace("nac ", nac + " ", 1)], capture_output=True, text=True,
                              cwd=tmp_path)

    closed_out = shell(f"nac decode {coded} -o - >&-")
    assert closed_out.returncode == 7 and closed_out.stderr == "nac: error: <stdout>: closed\n"
    closed_in = shell("nac encode - -o b.nac <&-")
    assert closed_in.returncode == 3 and closed_in.stderr == "nac: error: <stdin>: closed\n"
    assert shell(f"nac encode {clip} -o c.nac 2>&-").returncode == 0 and (tmp_path / "c.nac").is_file()
    assert shell("nac models >&-").returncode == 0
    named = shell(f"nac decode {coded} -o /dev/stdout > d.wav")  # stdout a file: the name means standard output
    assert named.returncode == 0 and (tmp_path / "d.wav").read_bytes()[:4] == b"RIFF"
    piped_mp3 = tmp_path / "tone.mp3"
    sf.write(piped_mp3, 0.3 * np.sin(np.arange(48000) / 16000 * 2 * np.pi * 440), 16000)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(piped_mp3.read_bytes()[:300] + bytes(range(256)) * 8)
    quiet = shell(f"nac encode - -o e.nac < {garbage}")
    assert quiet.returncode == 3 and quiet.stderr.count("\n") == 1  # libmpg123's notes kept off stderr


def test_a_reader_that_goes_away_ends_nac_quietly():
    process = subprocess.Popen([sys.executable, "-m", "nac.cli", "models"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # as `nac models | head -0` does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141 and stderr == b""


def test_batch_checks_its_options_and_input_before_any_file(tmp_path: Path, clip: Path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    result = run("batch", source, out)
    assert result.exit_code == 3 and "no audio files" in result.output and str(source) in result.output
    shutil.copy(clip, source / "a.wav")
    kept = tmp_path / "kept.txt"
    kept.write_text("an earlier report")
    for args, code, message in ((("-r", "abc"), 2, "bitrate"), (("-j", "-1"), 2, "--jobs"),
                                (("--report", tmp_path / "nowhere" / "r.txt"), 7, "no folder"),
                                (("--report", kept), 7, "already exists (use -f")):
        result = run("batch", source, out, *args)
        assert result.exit_code == code and message in result.output, (args, result.output)
        assert not out.exists()
    assert kept.read_text() == "an earlier report"
    result = run("batch", source, out, "--report", kept, "-f", "-q")
    assert result.exit_code == 0 and "a.nac" in kept.read_text()


def test_batch_refuses_to_overwrite_and_resumes(tmp_path: Path, short_speech):
    audio, rate = short_speech
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    write_audio(source / "a.wav", audio[:, :rate], rate)
    write_audio(source / "sub" / "b.wav", audio[:, rate : 2 * rate], rate)
    result = run("batch", source, tmp_path / "out", "--jobs", "1", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "sub" / "b.nac").is_file()
    assert result.stdout.splitlines()[0].startswith("file,duration_s") and len(result.stdout.splitlines()) == 3
    before = (tmp_path / "out" / "a.nac").read_bytes()
    result = run("batch", source, tmp_path / "out", "--jobs", "1", "--bitrate", "6k")
    assert result.exit_code == 7 and "already exists" in result.output and "-f" in result.output
    assert (tmp_path / "out" / "a.nac").read_bytes() == before
    (source / "sub" / "c.wav").write_text("not audio")
    result = run("batch", source, tmp_path / "out", "--jobs", "1", "--resume")
    assert result.exit_code == 9 and "c.wav" in result.output and "2 skipped" in result.output
    assert run("batch", source, tmp_path / "out", "--jobs", "1", "-f", "-r", "6k").exit_code == 9
    assert (tmp_path / "out" / "a.nac").read_bytes() != before
    result = run("report", tmp_path / "out", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["summary"]["files"] == 2
    assert run("report", tmp_path / "out", "--metrics").exit_code == 2
    assert run("report", tmp_path / "nowhere").exit_code == 3
    (tmp_path / "out" / "junk.nac").write_text("not a nac file")
    result = run("report", tmp_path / "out", "--format", "json")
    assert result.exit_code == 9 and "nac: failed:" in result.stderr and "junk.nac" in result.stderr
    assert json.loads(result.stdout)["summary"]["files"] == 2
    (tmp_path / "out" / "junk.nac").unlink()
    (source / "a.wav").unlink()
    (source / "sub" / "b.wav").unlink()
    assert run("batch", source, tmp_path / "out2", "--jobs", "1").exit_code == 10


def test_pipes_and_seeking(clip: Path, tmp_path: Path):
    encoded = runner.invoke(app, ["encode", "-", "-", "-q"], input=clip.read_bytes())
    assert encoded.exit_code == 0, encoded.output
    nac_bytes = encoded.stdout_bytes
    assert nac_bytes.startswith(b"\x89NAC")
    decoded = runner.invoke(app, ["decode", "-", "-o", "-", "--start", "0.5", "--duration", "1"], input=nac_bytes)
    assert decoded.exit_code == 0
    out = tmp_path / "piped.wav"
    out.write_bytes(decoded.stdout_bytes)
    audio, rate = read_audio(out)
    assert audio.shape == (1, rate)
    assert runner.invoke(app, ["encode", "-"], input=clip.read_bytes()).exit_code == 2
    assert runner.invoke(app, ["decode", "-", "-o", "-", "--start", "-3"], input=nac_bytes).exit_code == 2


def test_no_binary_to_a_terminal(clip: Path):
    probe = ("import os, pty, sys\nmain, secondary = pty.openpty()\nos.dup2(secondary, 1)\n"
             "sys.argv = ['nac', 'encode', sys.argv[1], '-']\nimport nac.cli\ntry:\n    nac.cli.app()\n"
             "except SystemExit as done:\n    os.write(2, f'exit {done.code}'.encode())")
    result = subprocess.run([sys.executable, "-c", probe, str(clip)], capture_output=True, text=True, timeout=60)
    assert "refusing to write .nac bytes to a terminal" in result.stderr and "exit 2" in result.stderr


def test_phase_iterations_option(encoded: Path, tmp_path: Path):
    assert run("decode", encoded, "-o", tmp_path / "fast.wav", "--phase-iters", "0").exit_code == 0
    assert run("decode", encoded, "-o", tmp_path / "bad.wav", "--phase-iters", "-1").exit_code == 2
    assert not (tmp_path / "bad.wav").exists()


def test_bitrate_picks_a_smaller_point_for_a_lower_target(clip: Path, tmp_path: Path):
    low, high = tmp_path / "low.nac", tmp_path / "high.nac"
    assert run("encode", clip, low, "--bitrate", "6k").exit_code == 0
    assert run("encode", clip, high, "--bitrate", "30k").exit_code == 0
    assert low.stat().st_size < high.stat().st_size


def test_the_seed_research_modes_stay_available(clip: Path, tmp_path: Path):
    settings = tmp_path / "seed.json"
    settings.write_text(json.dumps(EncoderSettings(bits=16, store_phase=True).to_json()))
    result = run("encode", clip, tmp_path / "seed.nac", "--settings", settings)
    assert result.exit_code == 0, result.output
    header = json.loads(run("inspect", tmp_path / "seed.nac", "--json").stdout)["header"]
    assert header["stored_phase_bits"] == 16 and header["latent"]["code_bits"] == [16] * 48
    assert run("decode", tmp_path / "seed.nac").exit_code == 0


def test_inspect_names_the_retired_model_of_an_old_file():
    old = Path(__file__).parent / "vectors" / "bad" / "huge-scales-nan.nac"  # format 1.x, model id 1
    text = run("inspect", str(old))
    assert text.exit_code == 0
    assert "model nac-speech-16k-v1 (id 1) was retired" in text.output.splitlines()[0]
    described = json.loads(run("inspect", str(old), "--json").output)
    assert described["model_name"] is None and "nac-speech-16k-v1" in described["model_problem"]
    [row] = json.loads(run("report", str(old), "--format", "json").output)["files"]
    assert row["model"] == "nac-speech-16k-v1 (retired)"

