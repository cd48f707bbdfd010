"""The fuzz harness (tools/fuzz.py): a short fixed-seed run, and the inputs it once crashed on.

The CI run is about 15 s of the same loop as ``python tools/fuzz.py --count
100000``, in a subprocess so that its address-space limit (RLIMIT_AS) binds
the harness alone. Every crashing input found so far is kept in
``tests/vectors/bad/`` (see its README) and must now give a clean outcome.
"""

import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import load_tool

from nac import api, codec
from nac.format import container
from nac.layers import latent as latent_layer
from nac.model import zoo
from nac.settings import EncoderSettings

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "vectors" / "bad"
CI_SECONDS = 15
CI_SEED = 20261125


fuzz = load_tool("fuzz")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with codec.torch_threads(1):
        yield


def test_short_fuzz_run_finds_no_crash(tmp_path: Path):
    command = [sys.executable, str(ROOT / "tools" / "fuzz.py"), "--seconds", str(CI_SECONDS),
               "--seed", str(CI_SEED), "--save-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=CI_SECONDS + 120,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "crashes: 0" in output and "RLIMIT_AS" in output
    tried = int(output.split("inputs: ")[1].split()[0])
    assert tried >= 250, output  # the loop really ran
    assert list(tmp_path.iterdir()) == []


BAD_INPUTS = sorted(BAD.glob("*.nac"))


def test_every_bad_input_is_described():
    readme = (BAD / "README.md").read_text()
    assert BAD_INPUTS and all(path.name in readme for path in BAD_INPUTS)


@pytest.mark.parametrize("path", BAD_INPUTS, ids=lambda p: p.stem)
def test_bad_input_now_has_a_clean_outcome(path: Path):
    outcomes = fuzz.run_one(path.read_bytes(), full_salvage=True, time_limit=2.0)
    assert not [f"{stage}: {o}" for stage, o in outcomes.items() if o.startswith("CRASH")]


@pytest.mark.parametrize("path", BAD_INPUTS, ids=lambda p: p.stem)
def test_a_bad_input_that_fails_to_decode_is_named_in_one_line(path: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from nac.cli import app

    result = CliRunner().invoke(app, ["decode", str(path), "-o", str(tmp_path / "out.wav")])
    if result.exit_code:
        assert result.output.startswith(f"nac: error: {path}: ") and result.output.count("\n") == 1, result.output
        assert not (tmp_path / "out.wav").exists()


def largest_peaks(info, chunks):
    """Every chunk's peaks at the grid's largest value (the largest shift) and its codes at their limits."""
    top = latent_layer.decode_peaks(latent_layer.MAX_SHIFT, np.full((info.channels, info.latent.latent_channels), 255))
    limits = info.latent.limits.reshape(1, -1, 1, 1)
    for chunk in chunks:
        chunk.peaks = top
        chunk.steps = latent_layer.steps(top, info.latent)
        chunk.codes = np.broadcast_to(limits, chunk.codes.shape).astype(info.latent.code_dtype)
    return chunks


def test_huge_peaks_decode_to_finite_audio(speech):
    """Regression (fuzzing): peaks near float32's maximum are valid but overflowed the model to NaN."""
    audio, rate = speech
    info, chunks = api.unpack(api.encode(audio[:, : rate // 2], rate, EncoderSettings(code_bits=8)))
    assert not info.latent.entropy_coded  # zstd codes: no tables needed to repack
    data = container.pack(info, largest_peaks(info, chunks))
    decoded, _ = api.decode(data)
    assert decoded.shape == (1, rate // 2) and np.isfinite(decoded).all()


@pytest.mark.parametrize("fine_hz", [0.0, 500.0])
def test_huge_peaks_with_level_adaptive_steps_decode_to_finite_audio_without_warnings(speech, fine_hz):
    """The residual steps follow the prediction, which such peaks overflow: they must stay finite and quiet."""
    audio, rate = speech
    settings = EncoderSettings(code_bits=4, residual_hz=4000, residual_bands_hz=1000, residual_slope=0.2,
                               residual_fine_hz=fine_hz)
    info, chunks = api.unpack(api.encode(audio[:, : rate // 2], rate, settings))
    data = container.pack(info, largest_peaks(info, chunks), zoo.for_stream(info).tables)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded, _ = api.decode(data)
    assert decoded.shape == (1, rate // 2) and np.isfinite(decoded).all()


@pytest.fixture(scope="module")
def seeds():
    return fuzz.load_seeds()


def test_seeds_cover_the_format(seeds):
    """The fresh seeds hold several chunks and scale groups, non-carrier and silent chunks, every layer."""
    seeds = [seed for seed in seeds if seed.name.startswith("fresh-")]
    assert len(seeds) == 7 and all(seed.info.version[0] == 9 and seed.info.chunk_count > 2 for seed in seeds)
    assert sum(seed.info.chunk_count > seed.info.group_chunks for seed in seeds) >= 5
    records = [record for seed in seeds for record in seed.parsed]
    assert any(not record.peaks for record in records) and any(not record.parts for record in records)
    assert {kind for seed in seeds for kind in seed.info.parts} == set(fuzz.LAYER_SCHEMAS)
    assert any(seed.info.residual and seed.info.residual.hint_bins for seed in seeds)


def test_mutations_are_reproducible(seeds):
    def draw():
        rng = random.Random(5)
        return [fuzz.mutate(rng, seeds) for _ in range(50)]

    assert draw() == draw()
