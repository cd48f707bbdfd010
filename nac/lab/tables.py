"""A model's entropy tables, counted from training audio: the latent codes' rANS tables and the residual
coder's starting counts (companion files of the model, named by hash in every stream that uses them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import api
from ..format import container, rans
from ..settings import EncoderSettings
from .evaluate import load_reference

RESIDUAL_TOTAL = 4096  # each context's starting counts sum to this: how firmly it starts (docs/results.md)


def latent_rows(model: str, files: list[Path], code_bits: int, sample_rate: int) -> list[np.ndarray]:
    """Per file, its latent codes as (rows, frames), rows in body order (audio channel, latent channel, height)."""
    rows = []
    for path in files:
        _, chunks = api.unpack(api.encode(load_reference(path, sample_rate), sample_rate,
                                          EncoderSettings(code_bits=code_bits), model=model), model)
        codes = np.concatenate([chunk.codes for chunk in chunks if not chunk.silent], axis=-1)
        rows.append(codes.reshape(-1, codes.shape[-1]).astype(np.int64))
    return rows


def latent_counts(rows_per_file: list[np.ndarray], channels: int, height: int, code_range: int) -> np.ndarray:
    """(channels, contexts, codes) counts, each starting at 1/2: a latent channel's rows share its table."""
    size = 2 * code_range + 1
    counts = np.full((channels, size, size), 0.5)
    for rows in rows_per_file:
        previous = np.concatenate([np.zeros((rows.shape[0], 1), np.int64), rows[:, :-1]], axis=1)
        for row in range(rows.shape[0]):
            np.add.at(counts[row // height % channels], (previous[row] + code_range, rows[row] + code_range), 1)
    return counts


def residual_histogram(model: str, files: list[Path], settings: list[EncoderSettings],
                       sample_rate: int) -> np.ndarray:
    """(contexts, symbols) counts of the residual codes of ``files`` coded at each of ``settings``."""
    histogram = np.zeros((rans.RESIDUAL_MODELS, rans.RESIDUAL_SYMBOLS), np.int64)
    for path in files:
        audio = load_reference(path, sample_rate)
        for setting in settings:
            info, chunks = api.unpack(api.encode(audio, sample_rate, setting, model=model), model)
            contexts = container.residual_contexts(info)
            for chunk in chunks:
                if chunk.residual is not None:
                    context, symbol = rans.residual_symbols(chunk.residual, *contexts)
                    np.add.at(histogram, (context, symbol), 1)
    return histogram
