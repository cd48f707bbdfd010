"""Shared fixtures: the bundled real speech clip and small helpers."""

import importlib.util
import os
import sys
from pathlib import Path

# The golden vectors are re-encoded from audio and compared byte for byte, so the
# float work must round alike on every machine. MKL picks its kernels by CPU, and on
# an AVX-512 machine its own ones round otherwise (7 of 8 vectors came out changed).
# Pinned to its SSE4.2 kernels, all re-encode exactly; tools/make_vectors.py pins the
# same. It must be set before torch loads MKL.
os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")

import numpy as np
import pytest
import torch

from nac.audio import read_audio

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


def phase_closeness(truth, phase, bins: int = 32) -> float:
    """Magnitude-weighted mean cosine between ``phase`` (1, >= bins, frames) and the phase of the complex
    ``truth`` (>= bins, frames) in the lowest ``bins`` bins: 1 where they agree, about 0 for unrelated phase."""
    weight = truth[:bins].abs()
    return float((weight * torch.cos(phase[0, :bins] - torch.angle(truth[:bins]))).sum() / weight.sum())
