"""Rank a model's latent channels by how little they matter, for ``nac encode --coarse-channels N``.

    python tools/channel_order.py nac-speech-16k-v5 CORPUS --files 30

For ``--files`` files of the corpus's train split (evenly spread), each
latent channel in turn is coded with one bit fewer than ``--code-bits``
while the others keep it; the cost is the rise of the decoded log-magnitude's
mean squared error (both sides floored at the residual layer's floor), the
gain the zstd bytes the channel's codes shed. Channels are ranked by cost per
byte saved, cheapest first, and the order is written to the model's manifest
row as ``channel_order`` (the encoder gives the first N one bit fewer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import zstandard  # noqa: E402

from nac.format import container  # noqa: E402
from nac.layers import latent as latent_layer  # noqa: E402
from nac.layers.latent import LatentParams  # noqa: E402
from nac.layers.residual import RESIDUAL_FLOOR  # noqa: E402
from nac.model import manifest, zoo  # noqa: E402
from nac.lab.evaluate import collect_inputs, load_reference, spread  # noqa: E402
from nac.model.stft import log_magnitude  # noqa: E402


def channel_costs(net: torch.nn.Module, files: list[Path], code_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent channel: summed log-magnitude MSE rise and zstd bytes saved, over ``files``."""
    channels = net.config.latent_channels
    floor = RESIDUAL_FLOOR
    compressor = zstandard.ZstdCompressor(level=container.ZSTD_LEVEL_CODES)
    rise, saved = np.zeros(channels), np.zeros(channels)

    def decoded_error(latent: np.ndarray, per_channel: np.ndarray, target: torch.Tensor) -> tuple[float, np.ndarray]:
        params = LatentParams(channels, latent.shape[2], tuple(int(b) for b in per_channel), False)
        codes, peaks = latent_layer.quantize(latent, params)
        coded = latent_layer.dequantize(codes, latent_layer.steps(peaks, params))
        log_mag, _ = net.decode_spectrum(torch.from_numpy(coded))
        return float((log_mag.clamp(min=floor) - target).square().mean()), codes

    with torch.inference_mode():
        for path in files:
            spec = net.spectrum(torch.from_numpy(load_reference(path)))
            target = log_magnitude(spec).clamp(min=floor)
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
    return rise, saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name in the manifest")
    parser.add_argument("corpus", type=Path, help="corpus folder with MANIFEST.tsv")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--code-bits", type=int, default=4)
    parser.add_argument("--models-dir", type=Path, default=manifest.MODELS_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = zoo.load_model(args.model, args.models_dir).net
    files = spread(collect_inputs([args.corpus], "train", "speech_wb"), args.files)
    rise, saved = channel_costs(net, files, args.code_bits)
    order = [int(k) for k in np.argsort(rise / np.maximum(saved, 1), kind="stable")]
    for k in order:
        print(f"channel {k:3d}: error +{rise[k] / len(files):.5f} for {saved[k] / len(files):.1f} bytes a file")
    manifest_path = manifest.update_manifest_row(args.model, {"channel_order": order}, args.models_dir)
    print(f"wrote channel_order of {args.model} ({len(order)} channels) to {manifest_path}")


if __name__ == "__main__":
    main()
