"""The fuzz harness (tools/fuzz.py): a short fixed-seed run, and the inputs it once crashed on.

The CI run is about 30 s of the same loop as ``python tools/fuzz.py --count
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

from nac import api

from nac.format import container

from nac.model import zoo
from nac.settings import EncoderSettings
from conftest import load_tool

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "vectors" / "bad"
CI_SECONDS = 30
CI_SEED = 20261125


fuzz = load_tool("fuzz")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with api.torch_threads(1):
        yield


def test_short_fuzz_run_finds_no_crash(tmp_path: Path):
    command = [sys.executable, str(ROOT / "tools" / "fuzz.py"), "--seconds", str(CI_SECONDS),
               "--seed", str(CI_SEED), "--save-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=CI_SECONDS + 120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "crashes: 0" in output and "RLIMIT_AS" in output
    tried = int(output.split("inputs: ")[1].split()[0])
    assert tried >= 500, output  # the loop really ran
    assert list(tmp_path.iterdir()) == []


BAD_INPUTS = sorted(BAD.glob("*.nac"))


def test_every_bad_input_is_described():
    readme = (BAD / "README.md").read_text()
    assert BAD_INPUTS and all(path.name in readme for path in BAD_INPUTS)


@pytest.mark.parametrize("path", BAD_INPUTS, ids=lambda p: p.stem)
def test_bad_input_now_has_a_clean_outcome(path: Path):
    outcomes = fuzz.run_one(path.read_bytes(), full_salvage=True, time_limit=2.0)
    assert not [f"{stage}: {o}" for stage, o in outcomes.items() if o.startswith("CRASH")]


def test_huge_scales_decode_to_finite_audio(speech):
    """Regression (fuzzing): scales near float32's maximum are valid but overflowed the model to NaN."""
    audio, rate = speech
    header, chunks = api.unpack(api.encode(audio[:, : rate // 2], rate, EncoderSettings(code_bits=8)))
    for chunk in chunks:
        chunk.scales[:] = np.float32(3.4e38)
        chunk.codes[:] = 127
    data = bitstream.pack(header, chunks)
    decoded, _ = api.decode(data)
    assert decoded.shape == (1, rate // 2) and np.isfinite(decoded).all()


@pytest.mark.parametrize("fine_hz", [0.0, 500.0])
def test_huge_scales_with_level_adaptive_steps_decode_to_finite_audio_without_warnings(speech, fine_hz):
    """The v5 / v6 steps follow the prediction, which such scales overflow: they must stay finite and quiet."""
    audio, rate = speech
    settings = EncoderSettings(code_bits=4, residual_hz=4000, residual_bands_hz=1000, residual_slope=0.2,
                               residual_fine_hz=fine_hz)
    header, chunks = api.unpack(api.encode(audio[:, : rate // 2], rate, settings))
    for chunk in chunks:
        chunk.scales[:] = np.float32(3.4e38)
    data = bitstream.pack(header, chunks, zoo.load_model().tables_for(header))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded, _ = api.decode(data)
    assert decoded.shape == (1, rate // 2) and np.isfinite(decoded).all()


def test_mutations_are_reproducible():
    seeds = fuzz.load_seeds()

    def draw():
        rng = random.Random(5)
        return [fuzz.mutate(rng, seeds) for _ in range(50)]

    assert draw() == draw()
