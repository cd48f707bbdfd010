"""Folder batches and the size report (nac.batch)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from nac import batch, report
from nac.errors import InputError, OutputError
from nac.audio import write_audio


@pytest.fixture()
def folder(tmp_path: Path, short_speech) -> Path:
    audio, rate = short_speech
    source = tmp_path / "in"
    (source / "nested" / "deeper").mkdir(parents=True)
    write_audio(source / "a.wav", audio[:, :rate], rate)
    write_audio(source / "nested" / "b.flac", audio[:, rate : 2 * rate], rate)
    write_audio(source / "nested" / "deeper" / "c.wav", audio[:, : rate // 2], rate)
    (source / "nested" / "broken.wav").write_bytes(b"RIFF but not really a wav")
    (source / "notes.txt").write_text("ignored: not audio by extension")
    return source


def test_plan_mirrors_the_tree(folder: Path, tmp_path: Path):
    tasks = batch.plan(folder, tmp_path / "out", batch.Options())
    targets = sorted(str(t.target.relative_to(tmp_path / "out")) for t in tasks)
    assert targets == ["a.nac", "nested/b.nac", "nested/broken.nac", "nested/deeper/c.nac"]


def test_a_folder_scan_takes_every_format_libsndfile_reads(tmp_path: Path, short_speech):
    audio, rate = short_speech
    source = tmp_path / "in"
    source.mkdir()
    kinds = {"a.caf": ("CAF", "ALAC_16"), "b.w64": ("W64", "FLOAT"), "c.au": ("AU", "PCM_16"),
             "d.aifc": ("AIFF", "PCM_16"), "e.oga": ("OGG", "VORBIS")}
    for name, (container, subtype) in kinds.items():
        soundfile.write(source / name, audio[0, : rate // 2], rate, format=container, subtype=subtype)
    result = batch.run_batch(batch.plan(source, tmp_path / "out", batch.Options()), batch.Options(), 1)
    assert sorted(Path(o.target).name for o in result if not o.error) == ["a.nac", "b.nac", "c.nac", "d.nac", "e.nac"]


def test_two_inputs_with_one_output_name_are_refused(folder: Path, tmp_path: Path):
    (folder / "a.flac").write_bytes((folder / "nested" / "b.flac").read_bytes())  # beside a.wav: both a.nac
    with pytest.raises(OutputError, match=r"a\.nac: would be written from both .*a\.flac and .*a\.wav"):
        batch.plan(folder, tmp_path / "out", batch.Options(overwrite=True))


def test_batch_records_failures_and_goes_on(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    outcomes = batch.run_batch(batch.plan(folder, out, batch.Options()), batch.Options(), jobs=1)
    failed = [o for o in outcomes if o.error]
    assert len(failed) == 1 and "broken.wav" in failed[0].error
    assert not (out / "nested" / "broken.nac").exists()
    assert sum(o.seconds for o in outcomes if not o.error) == pytest.approx(2.5, abs=0.01)


def test_two_jobs_give_identical_files_and_resume_skips(folder: Path, tmp_path: Path):
    one, two = tmp_path / "one", tmp_path / "two"
    batch.run_batch(batch.plan(folder, one, batch.Options()), batch.Options(), jobs=1)
    batch.run_batch(batch.plan(folder, two, batch.Options()), batch.Options(), jobs=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*.nac"))
    assert len(files) == 3
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    (two / "a.nac").write_bytes(b"damaged")
    resume = batch.Options(resume=True)
    again = batch.run_batch(batch.plan(folder, two, resume), resume, jobs=1)
    skipped = {Path(o.target).name for o in again if o.skipped}
    assert skipped == {"b.nac", "c.nac"}
    assert (two / "a.nac").read_bytes() == (one / "a.nac").read_bytes()


def test_existing_outputs_are_refused_unless_overwritten_or_resumed(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    batch.run_batch(batch.plan(folder, out, batch.Options()), batch.Options(), jobs=1)
    with pytest.raises(OutputError, match="already exists, with 2 more outputs"):
        batch.plan(folder, out, batch.Options())
    assert len(batch.plan(folder, out, batch.Options(overwrite=True))) == 4  # three done, one that failed
    assert len(batch.plan(folder, out, batch.Options(resume=True))) == 4


def test_decode_batch(folder: Path, tmp_path: Path):
    coded, decoded = tmp_path / "coded", tmp_path / "decoded"
    batch.run_batch(batch.plan(folder, coded, batch.Options()), batch.Options(), jobs=1)
    outcomes = batch.run_batch(batch.plan(coded, decoded, batch.Options(decode=True)), batch.Options(decode=True), jobs=1)
    assert not any(o.error for o in outcomes)
    assert sorted(str(p.relative_to(decoded)) for p in decoded.rglob("*.wav")) == [
        "a.wav", "nested/b.wav", "nested/deeper/c.wav"]


def test_report_sizes_and_formats(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    batch.run_batch(batch.plan(folder, out, batch.Options()), batch.Options(), jobs=1)
    rows, summary, failures = report.size_report([out], originals=folder, with_metrics=True)
    assert failures == [] and summary["files"] == 3 and summary["duration_s"] == pytest.approx(2.5, abs=0.01)
    by_name = {Path(r.file).name: r for r in rows}
    a = by_name["a.nac"]
    assert a.pcm16_bytes == 32000 and a.original_bytes == (folder / "a.wav").stat().st_size
    assert a.ratio_vs_pcm16 == pytest.approx(32000 / a.nac_bytes)
    assert 0 < a.overhead_bytes < a.nac_bytes and a.code_bits == 4 and a.layers == "residual" and a.model
    assert "lsd_db" in a.scores and summary["mean_lsd_db"] is not None
    assert summary["kbps"] == pytest.approx(summary["nac_bytes"] * 8 / summary["duration_s"] / 1000)
    parsed = json.loads(report.format_report(rows, summary, "json"))
    assert len(parsed["files"]) == 3
    csv_text = report.format_report(rows, summary, "csv")
    assert csv_text.splitlines()[0].startswith("file,duration_s") and len(csv_text.splitlines()) == 4
    table = report.format_report(rows, summary, "table")
    assert "TOTAL (3 files)" in table
    assert report.format_report(rows, summary, "md").splitlines()[1].startswith("|---")


def test_ray_engine_matches_the_local_engine(folder: Path, tmp_path: Path):
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    batch.run_batch(batch.plan(folder, local, batch.Options()), batch.Options(), jobs=2)
    outcomes = batch.run_batch(batch.plan(folder, on_ray, batch.Options()), batch.Options(), jobs=2, engine="ray")
    assert [Path(o.target).name for o in outcomes if o.error] == ["broken.nac"]
    files = sorted(p.relative_to(local) for p in local.rglob("*.nac"))
    assert len(files) == 3 and all((local / f).read_bytes() == (on_ray / f).read_bytes() for f in files)


def test_report_lists_bad_files_and_goes_on(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    batch.run_batch(batch.plan(folder, out, batch.Options()), batch.Options(), jobs=1)
    (out / "junk.nac").write_bytes(b"not a nac file at all")
    whole = (out / "a.nac").read_bytes()
    (out / "cut.nac").write_bytes(whole[: len(whole) - 40])
    (out / "UPPER.NAC").write_bytes(whole)
    rows, summary, failures = report.size_report([out, out / "a.nac"])  # a.nac named twice: counted once
    assert len(failures) == 1 and "junk.nac" in failures[0]
    assert json.loads(report.format_report(rows, summary, "json", failures))["failed"] == failures
    assert "UPPER.NAC" in [Path(r.file).name for r in rows]
    rows = [r for r in rows if Path(r.file).name != "UPPER.NAC"]
    assert sorted(Path(r.file).name for r in rows) == ["a.nac", "b.nac", "c.nac", "cut.nac"]
    assert [r.layers for r in rows if Path(r.file).name == "cut.nac"] == ["residual+DAMAGED"]
    with pytest.raises(InputError, match="no such folder .--originals"):
        report.size_report([out], originals=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .nac files"):
        report.size_report([tmp_path / "empty"])


def test_a_size_report_and_inspect_load_neither_networks_nor_the_entropy_coder(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    batch.run_batch(batch.plan(folder, out, batch.Options()), batch.Options(), jobs=1)
    probe = ("import sys; from pathlib import Path; from nac import cli, info, report; "
             "rows, _, _ = report.size_report([Path(sys.argv[1])]); info.inspect(Path(rows[0].file).read_bytes()); "
             "print(len(rows), 'torch' in sys.modules, 'numba' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["3", "False", "False"]  # headers alone: no torch (1.5 s), no numba (0.25 s)


def test_a_fault_in_one_file_does_not_stop_the_batch(folder: Path, tmp_path: Path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("need at least one array to stack")

    monkeypatch.setattr(batch.api, "encode_file", broken)
    task = batch.plan(folder, tmp_path / "out", batch.Options())[0]
    outcome = batch.run_task(task, batch.Options())
    assert outcome.error == f"{task.source}: internal error (ValueError: need at least one array to stack; " \
                           "please report it)"
