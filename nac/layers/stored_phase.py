"""The stored-phase layer (a research mode): the STFT phase itself, uniform over a full turn.

Codes are unsigned, ``2**bits`` levels per turn (format_spec.md section 7.3).
"""

from __future__ import annotations

import numpy as np

PHASE_DTYPES = {8: np.uint8, 16: np.uint16}


def quantize(phase: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes ``floor(phi * P / 2pi + 0.5) mod P`` with ``P = 2**bits``."""
    steps = 2**bits
    codes = np.floor(np.asarray(phase, dtype=np.float64) * (steps / (2 * np.pi)) + 0.5)
    return np.mod(codes, steps).astype(PHASE_DTYPES[bits])


def dequantize(codes: np.ndarray, bits: int) -> np.ndarray:
    """Phase in radians, wrapped to (-pi, pi]."""
    turns = codes.astype(np.float64) / 2**bits
    turns = np.where(turns > 0.5, turns - 1.0, turns)
    return (turns * 2 * np.pi).astype(np.float32)
