"""Build a model's entropy tables from training audio: the latent codes' rANS tables, or the residual coder's
starting counts.

    python tools/code_tables.py latent nac-speech-16k-v5 CORPUS --files 300 --code-bits 3,4,5
    python tools/code_tables.py residual nac-speech-16k-v5 CORPUS --files 300 --points 8k,12k,16k,24k

``latent`` encodes train-split files at each ``--code-bits``, counts each
latent channel's codes by the code before them and writes integer tables
``u{U}`` to ``<model>.codes.safetensors``. ``residual`` encodes them at each
``--points`` point and counts the residual codes by context, one-second
chunks as the container codes them, and writes ``<model>.residual.safetensors``.
Either way the file and its sha256 go into the model's manifest row, and the
bytes the new tables take on ``--dev-files`` dev files are printed next to
what the stream took before.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save  # noqa: E402

from nac import api  # noqa: E402
from nac.format import container, rans  # noqa: E402
from nac.lab import tables  # noqa: E402
from nac.lab.evaluate import collect_inputs, load_reference, spread  # noqa: E402
from nac.layers.latent import code_limit  # noqa: E402
from nac.model import manifest, zoo  # noqa: E402


def build_latent(args, train: list[Path], dev: list[Path], rate: int) -> tuple[dict, str]:
    config = zoo.load_model(args.model, args.models_dir).net.config
    tensors = {}
    for code_bits in (int(value) for value in args.code_bits.split(",")):
        code_range = code_limit(code_bits)
        counts = tables.latent_counts(tables.latent_rows(args.model, train, code_bits, rate), config.latent_channels,
                                      config.latent_height, code_range)
        freq = rans.tables_from_counts(counts)
        tensors[f"u{code_range}"] = torch.from_numpy(freq.astype(np.int32))
        coded = 0
        for rows in tables.latent_rows(args.model, dev, code_bits, rate):
            table_of = np.arange(rows.shape[0]) // config.latent_height % config.latent_channels
            coded += len(rans.encode(rows, table_of, freq))
        print(f"code bits {code_bits} (U = {code_range}): {coded} bytes of codes on {len(dev)} dev files", flush=True)
    return tensors, "codes"


def build_residual(args, train: list[Path], dev: list[Path], rate: int) -> tuple[dict, str]:
    entry = manifest.find_entry(args.model, args.models_dir)
    points = [entry.point(name).settings for name in args.points.split(",")]
    counts = rans.counts_from_histogram(tables.residual_histogram(args.model, train, points, rate),
                                        tables.RESIDUAL_TOTAL)
    before = after = 0
    for path in dev:
        audio = load_reference(path)
        for setting in points:
            info, chunks = api.unpack(api.encode(audio, rate, setting, model=args.model))
            contexts = container.residual_contexts(info)
            for chunk in chunks:
                if chunk.residual is not None:
                    before += len(rans.encode_residual(chunk.residual, *contexts))
                    after += len(rans.encode_residual(chunk.residual, *contexts, counts=counts))
    print(f"residual codes on {len(dev)} dev files at {args.points}: {before} bytes from the default counts, "
          f"{after} from these tables ({100 * (after / before - 1):+.2f} %)", flush=True)
    return {"counts": torch.from_numpy(counts.astype(np.int32))}, "residual"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("latent", "residual"))
    parser.add_argument("model", help="model name in the manifest")
    parser.add_argument("corpus", type=Path, help="corpus folder with MANIFEST.tsv")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--dev-files", type=int, default=100)
    parser.add_argument("--code-bits", default="3,4,5", help="latent: comma-separated code bits to build tables for")
    parser.add_argument("--points", default="8k,12k,16k,24k", help="residual: the ladder points to count codes at")
    parser.add_argument("--models-dir", type=Path, default=manifest.MODELS_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rate = manifest.find_entry(args.model, args.models_dir).sample_rate
    train = spread(collect_inputs([args.corpus], "train", "speech_wb"), args.files)
    dev = spread(collect_inputs([args.corpus], "dev", "speech_wb"), args.dev_files)
    tensors, suffix = (build_latent if args.kind == "latent" else build_residual)(args, train, dev, rate)
    data = save(tensors, metadata={"model": args.model, "train_files": str(len(train))})
    name = f"{args.model}.{suffix}.safetensors"
    (args.models_dir / name).write_bytes(data)
    field = "code_tables" if args.kind == "latent" else "residual_tables"
    manifest.update_manifest_row(args.model, {field: name, f"{field}_sha256": hashlib.sha256(data).hexdigest()},
                            args.models_dir)
    print(f"wrote {args.models_dir / name} ({len(data)} bytes) and its manifest row")


if __name__ == "__main__":
    main()
