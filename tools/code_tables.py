"""Build a model's static code tables for the rANS coder (codec/entropy.py) from training audio.

    python tools/code_tables.py nac-speech-16k-v5 CORPUS --files 300

Encodes ``--files`` files of the corpus's train split (evenly spread) with the
model at each ``--code-bits``, counts each latent channel's codes by the code
before them (counts start at 1/2), and writes integer tables ``u{U}``
(latent_channels, 2U+1, 2U+1) to ``models/<model>.codes.safetensors``, with
the file and its sha256 in the model's manifest row. Encoders then code
those ranges with rANS (format 3.0). Prints the bytes the tables take on
``--dev-files`` dev files next to zstd's.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import zstandard  # noqa: E402
from safetensors.torch import save  # noqa: E402

from codec import api, bitstream, entropy, quantize, zoo  # noqa: E402
from codec.evaluate import collect_inputs, load_reference, spread  # noqa: E402
from codec.settings import EncoderSettings  # noqa: E402


def stream_codes(model: str, files: list[Path], code_bits: int, models_dir: Path) -> list[np.ndarray]:
    """Per file, its codes as (rows, frames), rows in body order (audio channel, latent channel, height)."""
    rows, rate = [], zoo.find_entry(model, models_dir).sample_rate
    for path in files:
        _, chunks = api.unpack(api.encode(load_reference(path), rate, EncoderSettings(code_bits=code_bits), model=model))
        codes = np.concatenate([chunk.codes for chunk in chunks], axis=-1)
        rows.append(codes.reshape(-1, codes.shape[-1]).astype(np.int64))
    return rows


def count(rows_per_file: list[np.ndarray], channels: int, height: int, code_range: int) -> np.ndarray:
    """(channels, contexts, codes) counts, each starting at 1/2: a latent channel's rows share its table."""
    size = 2 * code_range + 1
    counts = np.full((channels, size, size), 0.5)
    for rows in rows_per_file:
        previous = np.concatenate([np.zeros((rows.shape[0], 1), np.int64), rows[:, :-1]], axis=1)
        for row in range(rows.shape[0]):
            np.add.at(counts[row // height % channels], (previous[row] + code_range, rows[row] + code_range), 1)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name in the manifest")
    parser.add_argument("corpus", type=Path, help="corpus folder with MANIFEST.tsv")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--dev-files", type=int, default=100)
    parser.add_argument("--code-bits", default="3,4,5", help="comma-separated code bits to build tables for")
    parser.add_argument("--models-dir", type=Path, default=zoo.MODELS_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = zoo.load_model(args.model, args.models_dir).net.config
    train = spread(collect_inputs([args.corpus], "train", "speech_wb"), args.files)
    dev = spread(collect_inputs([args.corpus], "dev", "speech_wb"), args.dev_files)
    compressor = zstandard.ZstdCompressor(level=bitstream.ZSTD_LEVEL_LATENT)
    tensors = {}
    for code_bits in (int(value) for value in args.code_bits.split(",")):
        code_range = quantize.levels_within(code_bits, 8)
        counts = count(stream_codes(args.model, train, code_bits, args.models_dir), config.latent_channels,
                       config.latent_height, code_range)
        freq = entropy.tables_from_counts(counts)
        entropy.check_tables(freq, code_range)
        tensors[f"u{code_range}"] = torch.from_numpy(freq.astype(np.int32))
        rans = zstd = 0
        for rows in stream_codes(args.model, dev, code_bits, args.models_dir):
            tables = np.arange(rows.shape[0]) // config.latent_height % config.latent_channels
            rans += len(entropy.encode(rows, tables, freq))
            zstd += len(compressor.compress(rows.astype(np.int8).tobytes()))
        print(f"code bits {code_bits} (U = {code_range}): rANS {rans} bytes, zstd {zstd} bytes on {len(dev)} dev "
              f"files ({100 * (1 - rans / zstd):.1f} % fewer)", flush=True)
    data = save(tensors, metadata={"model": args.model, "train_files": str(len(train))})
    name = f"{args.model}.codes.safetensors"
    (args.models_dir / name).write_bytes(data)
    zoo.update_manifest_row(args.model, {"code_tables": name, "code_tables_sha256": hashlib.sha256(data).hexdigest()},
                            args.models_dir)
    print(f"wrote {args.models_dir / name} ({len(data)} bytes) and its manifest row")


if __name__ == "__main__":
    main()
