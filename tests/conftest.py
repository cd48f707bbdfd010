"""Shared fixtures: the bundled real speech clip and small helpers."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from codec.audio_io import read_audio

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "speech-en-allison.flac"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """(audio (1, T) float32, 16000) of the bundled clip."""
    return read_audio(SAMPLE)


@pytest.fixture(scope="session")
def short_speech(speech) -> tuple[np.ndarray, int]:
    """The first 4 s of the clip: enough speech, quick to code."""
    audio, rate = speech
    return audio[:, : 4 * rate], rate


def load_tool(name: str):
    """``tools/<name>.py`` as a module (tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
