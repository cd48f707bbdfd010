"""Build a model's static code tables for the rANS coder (codec/entropy.py) from training audio.

    python tools/code_tables.py nac-speech-16k-v5 CORPUS --files 300 -o models/nac-speech-16k-v5.codes.safetensors

Encodes ``--files`` files of the corpus's train split (evenly spread) with the
model at each code range, counts each latent channel's codes by the code
before them, and writes integer tables ``u{U}`` (latent_channels, 2U+1,
2U+1) that :func:`codec.entropy.check_tables` accepts. Prints the bytes the
tables would take on ``--dev-files`` dev files next to zstd's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from codec import api, bitstream, entropy, quantize, zoo  # noqa: E402
from codec.evaluate import collect_inputs, load_reference, spread  # noqa: E402


def stream_codes(model: str, files: list[Path], code_bits: int) -> list[np.ndarray]:
    """Per file, its codes as (rows, frames): rows are (channel, height) pairs of the latent."""
    rows, rate = [], zoo.find_entry(model).sample_rate
    for path in files:
        _, chunks = bitstream.unpack(api.encode(load_reference(path), rate, model=model, code_bits=code_bits))
        codes = np.concatenate([chunk.codes[0] for chunk in chunks], axis=-1)
        rows.append(codes.reshape(-1, codes.shape[-1]).astype(np.int64))
    return rows


def count(rows_per_file: list[np.ndarray], channels: int, code_range: int) -> np.ndarray:
    """(channels, contexts, codes) counts, each starting at 1/2: a channel's rows share its table."""
    size = 2 * code_range + 1
    counts = np.full((channels, size, size), 0.5)
    for rows in rows_per_file:
        per_channel = rows.shape[0] // channels
        previous = np.concatenate([np.zeros((rows.shape[0], 1), np.int64), rows[:, :-1]], axis=1)
        for row in range(rows.shape[0]):
            np.add.at(counts[row // per_channel], (previous[row] + code_range, rows[row] + code_range), 1)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--dev-files", type=int, default=100)
    parser.add_argument("--code-bits", default="3,4,5,6")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = spread(collect_inputs([args.corpus], "train", "speech_wb"), args.files)
    dev = spread(collect_inputs([args.corpus], "dev", "speech_wb"), args.dev_files)
    tensors = {}
    for code_bits in (int(v) for v in args.code_bits.split(",")):
        code_range = quantize.levels_within(code_bits, 8)
        train_rows = stream_codes(args.model, train, code_bits)
        channels = zoo.load_model(args.model).net.config.latent_channels
        freq = entropy.tables_from_counts(count(train_rows, channels, code_range))
        entropy.check_tables(freq, code_range)
        tensors[f"u{code_range}"] = torch.from_numpy(freq.astype(np.int32))
        rans = zstd = 0
        for rows in stream_codes(args.model, dev, code_bits):
            tables = np.arange(rows.shape[0]) // (rows.shape[0] // channels)
            rans += len(entropy.encode(rows, tables, freq))
            zstd += len(bitstream.zstandard.ZstdCompressor(level=bitstream.ZSTD_LEVEL_LATENT).compress(
                rows.astype(np.int8).tobytes()))
        print(f"code bits {code_bits} (U = {code_range}): rANS {rans} bytes, zstd {zstd} bytes on {len(dev)} dev files "
              f"({100 * (1 - rans / zstd):.1f} % fewer)", flush=True)
    save_file(tensors, str(args.output), metadata={"model": args.model, "train_files": str(len(train))})


if __name__ == "__main__":
    main()
