"""Loading models: the weights and companions the manifest (:mod:`nac.model.manifest`) lists, or a file by path.

Every model has an explicit numeric id that is never reused; a ``.nac`` file
records that id and the first 8 bytes of the weights' sha256, and the hash of
every companion file its decoding depends on (code tables, residual tables,
phase initializer), so a decoder refuses a file made with other data.
Weights load from safetensors (the config is JSON in the file's metadata);
nothing is ever unpickled. They load as numpy arrays: the torch networks are
built from them on first use (encoding, training), and decoding a short
stream runs them in numpy (:mod:`nac.model.inference`) without torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_safetensors

from ..errors import FormatError, ModelError
from ..format import rans
from ..format.container import Tables
from ..format.header import Companion, StreamInfo
from .config import ModelConfig
from .inference import NumpyDecoder, phase_init_shapes, spec1d_shapes
from .manifest import CUSTOM_MODEL_ID, MODELS_DIR, ModelEntry, find_entry, list_models, models_folder

MAX_WEIGHTS_BYTES = 64 * 1024 * 1024
# Spans up to this long (seconds, over all coded channels) decode in numpy where torch is not loaded yet: below it
# torch's start-up (importing it, then numba for its phase step: 1.5-2 s) outweighs its faster networks (whole
# processes cross near 120 s; docs/results.md).
NUMPY_DECODE_SECONDS = 120.0


def read_weights_file(path: Path) -> tuple[bytes, ModelConfig, int]:
    """(file bytes, config, model id) of a nac safetensors file, validated."""
    try:
        size = path.stat().st_size
        if size > MAX_WEIGHTS_BYTES:
            raise ModelError(f"{path}: weights file too large ({size} bytes)")
        data = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read model ({err.strerror or err})") from None
    metadata = _safetensors_metadata(data, path)
    try:
        config = ModelConfig.from_json(metadata["nac_config"])
        model_id = int(metadata.get("nac_model_id", CUSTOM_MODEL_ID))
    except (KeyError, ValueError, TypeError) as err:
        raise ModelError(f"{path}: not a nac model ({err})") from None
    return data, config, model_id


def _safetensors_metadata(data: bytes, path: Path) -> dict:
    if len(data) < 8:
        raise ModelError(f"{path}: not a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ModelError(f"{path}: not a safetensors file")
    try:
        header = json.loads(data[8 : 8 + header_len])
        metadata = header.get("__metadata__", {})
    except (ValueError, AttributeError):
        raise ModelError(f"{path}: not a safetensors file") from None
    if not isinstance(metadata, dict):
        raise ModelError(f"{path}: malformed safetensors metadata")
    return metadata


def _tensors(data: bytes, source: Path, what: str = "weights") -> dict:
    """The named arrays of safetensors bytes."""
    try:
        return load_safetensors(data)
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise ModelError(f"{source}: unreadable {what} ({err})") from None


@dataclass(frozen=True, eq=False)
class Weights:
    """A model's config and tensors as stored, and its phase initializer's (tensors and sizes), if it has one."""

    config: ModelConfig
    tensors: dict
    source: Path
    phase_init: tuple[dict, dict] | None = None
    phase_init_source: Path | None = None

    def __post_init__(self) -> None:
        """ModelError unless the tensors are the config's, names and shapes (a spec1d model's checked here without
        torch; a seed2d model's by building it)."""
        if self.config.arch != "spec1d":
            torch_network(self)
            return
        if not _shaped(self.tensors, spec1d_shapes(self.config)):
            raise ModelError(f"{self.source}: weights do not match the model config")
        if self.phase_init is not None:
            tensors, sizes = self.phase_init
            if not _shaped(tensors, phase_init_shapes(sizes["hidden"], sizes["bins"], sizes["magnitude_bins"],
                                                      sizes["channels"])):
                raise ModelError(f"{self.phase_init_source}: phase initializer weights do not match its shape")


def _shaped(tensors: dict, expected: dict) -> bool:
    """Whether ``tensors`` are exactly the ``expected`` names and shapes."""
    return set(tensors) == set(expected) and all(tensors[name].shape == shape for name, shape in expected.items())


def torch_loaded() -> bool:
    """Whether this process has imported torch (then its networks cost no start-up)."""
    return "torch" in sys.modules


@functools.lru_cache(maxsize=4)
def torch_network(weights: Weights):
    """The torch model of ``weights`` in eval mode, with its phase initializer; ModelError where the tensors do not
    match the config (:class:`Weights` checks a spec1d model's before; a seed2d model's are checked here)."""
    import torch

    from .networks import LowBandPhase, build_model

    def loaded(module: torch.nn.Module, tensors: dict) -> torch.nn.Module:
        module.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in tensors.items()})
        return module.eval()

    config = weights.config
    try:
        net = loaded(build_model(config), weights.tensors)
    except RuntimeError:  # missing, unexpected or misshapen tensors
        raise ModelError(f"{weights.source}: weights do not match the model config") from None
    if weights.phase_init is not None:
        tensors, shape = weights.phase_init
        net.phase_init = loaded(LowBandPhase(config.width, shape["bins"], shape["magnitude_bins"], shape["channels"]),
                                tensors)
    return net


@functools.lru_cache(maxsize=4)
def numpy_decoder(weights: Weights) -> NumpyDecoder:
    """The numpy decoder of ``weights`` (a spec1d model's)."""
    phase_init = None
    if weights.phase_init is not None:
        tensors, shape = weights.phase_init
        phase_init = (tensors, shape["bins"], shape["magnitude_bins"])
    return NumpyDecoder(weights.config, weights.tensors, phase_init)


def _read_listed(path: Path, sha256: str, what: str) -> bytes:
    """The bytes of a file the manifest lists (``what`` it holds), checked against its sha256 there."""
    try:
        if path.stat().st_size > MAX_WEIGHTS_BYTES:
            raise ModelError(f"{path}: {what} file too large")
        data = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read {what} ({err.strerror})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelError(f"{path}: {what} do not match their sha256 in the manifest (file altered?)")
    return data


@functools.lru_cache(maxsize=4)
def _load_entry(entry: ModelEntry, models_dir: Path) -> Weights:
    path = models_dir / entry.file
    data, config, model_id = read_weights_file(path)
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ModelError(f"{path}: weights do not match their sha256 in the manifest (file altered?)")
    if model_id != entry.id:
        raise ModelError(f"{path}: model id {model_id} does not match the manifest's {entry.id}")
    if not entry.phase_init:
        return Weights(config, _tensors(data, path), path)
    phase_path = models_dir / entry.phase_init
    return Weights(config, _tensors(data, path), path, _load_phase_init(phase_path, entry.phase_init_sha256, config),
                   phase_path)


def _load_phase_init(path: Path, sha256: str, config: ModelConfig) -> tuple[dict, dict]:
    """The phase initializer in ``path`` (tensors, sizes), checked against its sha256 and the model it starts."""
    data = _read_listed(path, sha256, "phase initializer weights")
    try:
        shape = {key: int(value) for key, value in json.loads(_safetensors_metadata(data, path)["phase_init"]).items()}
        tensors = load_safetensors(data)
    except Exception as err:  # a missing key, a malformed shape, or safetensors' own error types
        raise ModelError(f"{path}: not a phase initializer ({err})") from None
    bins = config.n_fft // 2 + 1
    if (config.arch != "spec1d" or shape.get("hidden") != config.width or not 0 < shape.get("bins", 0) <= bins
            or not 0 < shape.get("magnitude_bins", 0) <= bins or not 0 < shape.get("channels", 0) <= 1024):
        raise ModelError(f"{path}: phase initializer does not fit its model")
    return tensors, shape


@dataclass(frozen=True)
class LoadedModel:
    """A ready model with the identity a ``.nac`` header records."""

    weights: Weights
    model_id: int
    hash_prefix: bytes
    name: str
    channel_order: tuple[int, ...] = ()  # from the manifest; none for a model given by path
    code_tables: dict = field(default_factory=dict)  # code range U -> rANS tables (latent_channels, 2U+1, 2U+1)
    residual_counts: np.ndarray | None = None  # the residual coder's starting counts (contexts, symbols)
    companions: dict = field(default_factory=dict)  # Companion role -> first 8 bytes of the file's SHA-256

    def __hash__(self) -> int:
        return hash((self.model_id, self.hash_prefix, self.name))

    @property
    def config(self) -> ModelConfig:
        return self.weights.config

    @property
    def net(self):
        """The torch model (built on first use: importing torch takes a second or more)."""
        return torch_network(self.weights)

    def decoding_network(self, seconds: float):
        """What decodes ``seconds`` of audio soonest: the numpy decoder for a spec1d model up to
        :data:`NUMPY_DECODE_SECONDS` while torch is not loaded yet, else the torch model."""
        if self.config.arch == "spec1d" and seconds <= NUMPY_DECODE_SECONDS and not torch_loaded():
            return numpy_decoder(self.weights)
        from .networks import TorchDecoder

        return TorchDecoder(self.net)


@functools.lru_cache(maxsize=4)
def _load_tables(entry: ModelEntry, models_dir: Path) -> dict:
    """Code range -> tables from the entry's tables file, checked against its sha256 and the model."""
    path = models_dir / entry.code_tables
    tensors = _tensors(_read_listed(path, entry.code_tables_sha256, "code tables"), path, "code tables")
    tables = {}
    for name, tensor in tensors.items():
        code_range = int(name.removeprefix("u")) if name.startswith("u") and name[1:].isdigit() else -1
        freq = tensor.astype(np.int64)
        try:
            rans.check_tables(freq, code_range)
        except ValueError as err:
            raise ModelError(f"{path}: code table {name}: {err}") from None
        tables[code_range] = freq
    return tables


@functools.lru_cache(maxsize=4)
def _load_residual_counts(entry: ModelEntry, models_dir: Path) -> np.ndarray:
    """The entry's residual starting counts, checked against their sha256 and shape."""
    path = models_dir / entry.residual_tables
    data = _read_listed(path, entry.residual_tables_sha256, "residual tables")
    try:
        counts = load_safetensors(data)["counts"].astype(np.int64)
        rans.check_counts(counts)
    except Exception as err:  # a missing tensor, a wrong shape, or safetensors' own error types
        raise ModelError(f"{path}: not residual tables ({err})") from None
    return counts


def load_model(key: str | int | None = None, models_dir: Path = MODELS_DIR) -> LoadedModel:
    """A shipped model by name or id (default model for None), a models folder's default model, or a
    safetensors file by path."""
    key, models_dir = models_folder(key, models_dir)
    if key is not None and str(key).endswith(".safetensors"):
        path = Path(key)
        data, config, model_id = read_weights_file(path)
        digest = hashlib.sha256(data).hexdigest()
        shipped = next((entry for entry in list_models(models_dir) if entry.sha256 == digest), None)
        if shipped is not None:  # a shipped model's weights by path: with its companions
            return load_model(shipped.name, models_dir)
        return LoadedModel(Weights(config, _tensors(data, path), path), model_id, bytes.fromhex(digest)[:8], path.stem)
    entry = find_entry(key, models_dir)
    tables, counts, companions = {}, None, {}
    if entry.code_tables:
        tables = _load_tables(entry, models_dir)
        companions[Companion.CODE_TABLES] = bytes.fromhex(entry.code_tables_sha256)[:8]
    if entry.residual_tables:
        counts = _load_residual_counts(entry, models_dir)
        companions[Companion.RESIDUAL_TABLES] = bytes.fromhex(entry.residual_tables_sha256)[:8]
    if entry.phase_init:
        companions[Companion.PHASE_INIT] = bytes.fromhex(entry.phase_init_sha256)[:8]
    return LoadedModel(_load_entry(entry, models_dir), entry.id, entry.hash_prefix, entry.name, entry.channel_order,
                       tables, counts, companions)


@dataclass(frozen=True)
class StreamModel:
    """What decoding a stream takes from its model: the model, the entropy tables, whether the phase
    initializer is used (the stream lists it, or a legacy stream's model has one)."""

    loaded: LoadedModel
    tables: Tables
    phase_init: bool


def for_stream(info: StreamInfo, override: str | None = None) -> StreamModel:
    """The model that made a stream (its id, or ``override``), checked against everything the header
    records before any chunk is read: weights hash, every companion's hash, and the model's sizes."""
    loaded = load_model(override if override is not None else _id_or_fail(info.model_id))
    if loaded.hash_prefix != info.weights_hash:
        raise ModelError(
            f"model {loaded.name} (id {loaded.model_id}) has weights {loaded.hash_prefix.hex()}, "
            f"but the file was made by weights {info.weights_hash.hex()}"
        )
    for role, digest in info.companions:
        have = loaded.companions.get(role)
        if digest is not None and have != digest:
            raise ModelError(f"model {loaded.name} has {Companion(role).name.lower().replace('_', ' ')} "
                             f"{have.hex() if have else 'none'}, but the file was made with {digest.hex()}")
    _check_sizes(info, loaded.config)
    listed_counts = info.companion(Companion.RESIDUAL_TABLES)[0]
    tables = Tables(loaded.code_tables, loaded.residual_counts if listed_counts else None)
    listed, _ = info.companion(Companion.PHASE_INIT)
    return StreamModel(loaded, tables, listed and Companion.PHASE_INIT in loaded.companions)


def _check_sizes(info: StreamInfo, config: ModelConfig) -> None:
    """FormatError unless the stream's sizes are its model's: a forged header cannot make the reader decode
    bodies no model could use."""
    expected = {
        "model_sample_rate": config.sample_rate,
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "time_stride": config.time_stride,
    }
    wrong = [name for name, value in expected.items() if getattr(info, name) != value]
    if (info.latent.latent_channels, info.latent.latent_height) != (config.latent_channels, config.latent_height):
        wrong.append("latent size")
    if wrong:
        raise FormatError(f"header does not match its model in {', '.join(wrong)}")
    frames = config.frame_count(info.model_sample_count)
    if info.latent_frames * config.time_stride != frames:
        raise FormatError("latent frame count does not match the sample count")


def _id_or_fail(model_id: int) -> int:
    if model_id == CUSTOM_MODEL_ID:
        raise ModelError("the file was made by a custom model: pass it with --model PATH")
    return model_id
