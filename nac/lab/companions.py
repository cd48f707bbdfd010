"""What a trained model needs beside its weights, measured on training audio: the latent channels' order,
the latent codes' rANS tables and the residual coder's starting counts (written as companion files and
manifest fields of the model's folder).

``model`` is anything :func:`nac.api.encode` takes (a name, or a models folder for its default model);
``models_dir`` is the folder whose manifest row is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import zstandard
from safetensors.torch import save

from .. import api
from ..format import container, rans
from ..layers import latent as latent_layer
from ..layers.latent import LatentParams, code_limit
from ..layers.residual import RESIDUAL_FLOOR
from ..model import manifest, zoo
from ..model.stft import log_magnitude
from ..settings import EncoderSettings
from . import tables
from .evaluate import load_reference


def channel_order(model: str, files: list[Path], models_dir: Path, code_bits: int = 4) -> list[int]:
    """Rank the model's latent channels, cheapest to code one bit coarser first, and record the order.

    Each channel in turn gets one bit fewer than ``code_bits`` while the others
    keep it; its cost is the rise of the decoded log-magnitude's mean squared
    error (floored at the residual layer's floor), its gain the zstd bytes its
    codes shed, summed over ``files``.
    """
    net = zoo.load_model(model, models_dir).net
    channels = net.config.latent_channels
    compressor = zstandard.ZstdCompressor(level=container.ZSTD_LEVEL_CODES)
    rise, saved = np.zeros(channels), np.zeros(channels)

    def decoded_error(latent: np.ndarray, widths: np.ndarray, target: torch.Tensor) -> tuple[float, np.ndarray]:
        params = LatentParams(channels, latent.shape[2], tuple(int(b) for b in widths), False)
        codes, peaks = latent_layer.quantize(latent, params)
        coded = latent_layer.dequantize(codes, latent_layer.steps(peaks, params))
        log_mag, _ = net.decode_spectrum(torch.from_numpy(coded))
        return float((log_mag.clamp(min=RESIDUAL_FLOOR) - target).square().mean()), codes

    with torch.inference_mode():
        for path in files:
            spec = net.spectrum(torch.from_numpy(load_reference(path, net.config.sample_rate)))
            target = log_magnitude(spec).clamp(min=RESIDUAL_FLOOR)
            latent = net.encode_spectrum(spec).numpy()
            uniform = np.full(channels, code_bits)
            base_error, base_codes = decoded_error(latent, uniform, target)
            for channel in range(channels):
                coarser = uniform.copy()
                coarser[channel] = code_bits - 1
                error, codes = decoded_error(latent, coarser, target)
                rise[channel] += error - base_error
                saved[channel] += (len(compressor.compress(base_codes[:, channel].tobytes()))
                                   - len(compressor.compress(codes[:, channel].tobytes())))
    order = [int(k) for k in np.argsort(rise / np.maximum(saved, 1), kind="stable")]
    manifest.update_manifest_row(_name(model, models_dir), {"channel_order": order}, models_dir)
    return order


def latent_tables(model: str, train: list[Path], dev: list[Path], models_dir: Path,
                  code_bits: tuple[int, ...] = (3, 4, 5)) -> dict[int, int]:
    """The latent codes' rANS tables for each code width, counted on ``train``, written as the model's code
    tables; returns the bytes of codes each width gives on ``dev``."""
    loaded = zoo.load_model(model, models_dir)
    config, rate = loaded.net.config, loaded.net.config.sample_rate
    tensors, dev_bytes = {}, {}
    for bits in code_bits:
        code_range = code_limit(bits)
        counts = tables.latent_counts(tables.latent_rows(model, train, bits, rate), config.latent_channels,
                                      config.latent_height, code_range)
        freq = rans.tables_from_counts(counts)
        tensors[f"u{code_range}"] = torch.from_numpy(freq.astype(np.int32))
        dev_bytes[bits] = sum(
            len(rans.encode(rows, np.arange(rows.shape[0]) // config.latent_height % config.latent_channels, freq))
            for rows in tables.latent_rows(model, dev, bits, rate))
    _write(model, models_dir, "code_tables", "codes", tensors, len(train))
    return dev_bytes


def residual_tables(model: str, train: list[Path], dev: list[Path], points: list[EncoderSettings],
                    models_dir: Path) -> tuple[int, int]:
    """The residual coder's starting counts, counted on ``train`` coded at ``points``, written as the model's
    residual tables; returns the residual bytes of ``dev`` from the default counts and from these."""
    rate = zoo.load_model(model, models_dir).net.config.sample_rate
    counts = rans.counts_from_histogram(tables.residual_histogram(model, train, points, rate), tables.RESIDUAL_TOTAL)
    before = after = 0
    for path in dev:
        audio = load_reference(path, rate)
        for setting in points:
            info, chunks = api.unpack(api.encode(audio, rate, setting, model=model), model)
            contexts = container.residual_contexts(info)
            for chunk in chunks:
                if chunk.residual is not None:
                    before += len(rans.encode_residual(chunk.residual, *contexts))
                    after += len(rans.encode_residual(chunk.residual, *contexts, counts=counts))
    _write(model, models_dir, "residual_tables", "residual", {"counts": torch.from_numpy(counts.astype(np.int32))},
           len(train))
    return before, after


def _name(model: str, models_dir: Path) -> str:
    return manifest.find_entry(model, models_dir).name


def _write(model: str, models_dir: Path, field: str, suffix: str, tensors: dict, files: int) -> Path:
    """Save a companion file beside the model and list it, with its hash, in the model's manifest row."""
    name = _name(model, models_dir)
    data = save(tensors, metadata={"model": name, "train_files": str(files)})
    path = models_dir / f"{name}.{suffix}.safetensors"
    path.write_bytes(data)
    manifest.update_manifest_row(name, {field: path.name, f"{field}_sha256": hashlib.sha256(data).hexdigest()},
                                 models_dir)
    return path
