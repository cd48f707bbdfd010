"""Tests for codec/zoo.py: the manifest, weight hashes, and refusing bad model files.

A model file is only ever read as safetensors; anything else (a pickle, a
torch checkpoint, a file whose config or shapes are wrong) is a ModelError,
and nothing is unpickled on the way.
"""

import dataclasses
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save

from nac import api
from nac.errors import ModelError
from nac.format import container
from nac.model import manifest, zoo
from nac.model.networks import ModelConfig, build_model, parameter_count
from nac.settings import EncoderSettings

VECTOR = Path(__file__).resolve().parent / "vectors" / "speech-0.25s.nac"
MAX_SHIPPED_BYTES = 4 * 1024 * 1024
TINY = ModelConfig(width=8, latent_channels=2, downsample=1)


def manifest_json() -> dict:
    return json.loads((manifest.MODELS_DIR / "manifest.json").read_text())


def default_row() -> dict:
    data = manifest_json()
    return next(row for row in data["models"] if row["name"] == data["default"])


def tiny_tensors(config: ModelConfig = TINY) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in build_model(config).state_dict().items()}


def write_model(path: Path, tensors: dict, metadata: dict) -> Path:
    path.write_bytes(save(tensors, metadata=metadata))
    return path


def forged(**changes) -> bytes:
    """The speech vector with header fields changed (the container stays valid)."""
    info, chunks = api.unpack(VECTOR.read_bytes())
    return container.pack(dataclasses.replace(info, **changes), chunks, zoo.for_stream(info).tables)


# --------------------------------------------------------------------------
# The shipped model and its manifest
# --------------------------------------------------------------------------


def test_manifest_lists_the_default_model_and_its_hash_matches_the_file():
    row = default_row()
    data = (manifest.MODELS_DIR / row["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == row["sha256"]
    entry = manifest.find_entry(None)
    assert (entry.name, entry.id, entry.sha256) == (row["name"], row["id"], row["sha256"])
    assert entry.hash_prefix == hashlib.sha256(data).digest()[:8]


def test_manifest_ids_and_names_are_unique():
    rows = manifest_json()["models"]
    assert len({r["id"] for r in rows}) == len(rows) and len({r["name"] for r in rows}) == len(rows)
    assert all(1 <= r["id"] <= 65535 for r in rows)  # 0 is reserved for models given by path


def test_shipped_model_parameter_count_config_and_size():
    row = default_row()
    path = manifest.MODELS_DIR / row["file"]
    loaded = zoo.load_model()
    assert parameter_count(loaded.net) == row["parameters"]
    assert json.loads(loaded.net.config.to_json()) == row["config"]
    assert loaded.net.config.sample_rate == row["sample_rate"]
    _, config, model_id = zoo.read_weights_file(path)
    assert model_id == row["id"] and config == loaded.net.config
    assert path.stat().st_size <= MAX_SHIPPED_BYTES


def test_tampered_weights_are_refused(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(manifest.MODELS_DIR, models)
    assert zoo.load_model(models_dir=models).model_id == default_row()["id"]  # the intact copy loads

    tampered = tmp_path / "tampered"
    shutil.copytree(manifest.MODELS_DIR, tampered)
    weights = tampered / default_row()["file"]
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data: still a valid safetensors file
    weights.write_bytes(bytes(data))
    zoo.read_weights_file(weights)  # parses fine; only the hash gives it away
    with pytest.raises(ModelError, match="sha256"):
        zoo.load_model(models_dir=tampered)


# --------------------------------------------------------------------------
# A .nac file names its model: id and weights hash are checked at decode
# --------------------------------------------------------------------------


def test_the_shipped_model_decodes_the_vector_by_id_and_by_path():
    data = VECTOR.read_bytes()
    assert api.decode(data)[0].shape == (1, 4000)
    path = manifest.MODELS_DIR / default_row()["file"]
    assert api.decode(data, model=str(path))[0].shape == (1, 4000)


@pytest.mark.parametrize("forge", ["zeros", "ones", "last-bit"])
def test_file_made_by_other_weights_is_refused(forge):
    real = container.read_info(VECTOR.read_bytes())[0].weights_hash
    weights_hash = {"zeros": bytes(8), "ones": b"\xff" * 8, "last-bit": real[:7] + bytes([real[7] ^ 1])}[forge]
    assert weights_hash != real
    data = forged(weights_hash=weights_hash)
    with pytest.raises(ModelError, match=weights_hash.hex()):
        api.decode(data)
    with pytest.raises(ModelError):  # naming the model explicitly does not bypass the check
        api.decode(data, model=str(manifest.MODELS_DIR / default_row()["file"]))


@pytest.mark.parametrize("model_id", [999, 65535])
def test_unknown_model_id_is_refused(model_id):
    assert model_id not in {row["id"] for row in manifest_json()["models"]}
    with pytest.raises(ModelError, match="unknown model"):
        api.decode(forged(model_id=model_id))


def test_retired_model_id_is_refused_by_name():
    retired = manifest_json()["retired"][0]
    with pytest.raises(ModelError, match=f"{retired['name']} .id {retired['id']}. was retired"):
        api.decode(forged(model_id=retired["id"]))


def test_custom_model_id_needs_the_model_by_path():
    with pytest.raises(ModelError, match="custom model"):
        api.decode(forged(model_id=manifest.CUSTOM_MODEL_ID))


def test_unknown_model_name_is_refused():
    with pytest.raises(ModelError, match="unknown model"):
        zoo.load_model("no-such-model")
    with pytest.raises(ModelError):
        api.encode(np.zeros(1600, np.float32), 16000, model="no-such-model")


# --------------------------------------------------------------------------
# Model files are never unpickled
# --------------------------------------------------------------------------


class _Gadget:
    """A pickle whose loading creates ``marker``: the shape of a malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_gadget_really_runs_when_unpickled(tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Gadget(control))).close()
    assert control.exists()


def test_pickles_passed_as_models_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"a": 1}, tmp_path / "plain.safetensors")
    torch.save({"model": _Gadget(marker)}, tmp_path / "evil.safetensors")
    (tmp_path / "raw.safetensors").write_bytes(pickle.dumps(_Gadget(marker)))
    torch.save({"model": _Gadget(marker)}, tmp_path / "evil.pt")
    for name in ("plain.safetensors", "evil.safetensors", "raw.safetensors", "evil.pt"):
        path = str(tmp_path / name)
        with pytest.raises(ModelError):
            zoo.load_model(path)
        with pytest.raises(ModelError):
            api.decode(VECTOR.read_bytes(), model=path)
        with pytest.raises(ModelError):
            api.encode(np.zeros(1600, np.float32), 16000, model=path)
    assert not marker.exists()


# --------------------------------------------------------------------------
# Malformed safetensors model files
# --------------------------------------------------------------------------


def test_a_well_formed_custom_model_loads_by_path(tmp_path):
    path = write_model(tmp_path / "ok.safetensors", tiny_tensors(), {"nac_config": TINY.to_json()})
    loaded = zoo.load_model(str(path))
    assert loaded.net.config == TINY and loaded.model_id == manifest.CUSTOM_MODEL_ID
    assert loaded.hash_prefix == hashlib.sha256(path.read_bytes()).digest()[:8]


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"nac_config": "{not json"},
        {"nac_config": "[1, 2]"},
        {"nac_config": "null"},
        {"nac_config": json.dumps({**json.loads(TINY.to_json()), "bogus": 1})},
        {"nac_config": json.dumps({**json.loads(TINY.to_json()), "width": 0})},
        {"nac_config": json.dumps({**json.loads(TINY.to_json()), "width": "wide"})},
        {"nac_config": json.dumps({**json.loads(TINY.to_json()), "arch": "transformer"})},
        {"nac_config": TINY.to_json(), "nac_model_id": "one"},
    ],
    ids=["missing", "not-json", "list", "null", "unknown-field", "bad-value", "bad-type", "bad-arch", "bad-id"],
)
def test_malformed_config_is_refused(tmp_path, metadata):
    path = write_model(tmp_path / "bad.safetensors", tiny_tensors(), metadata)
    with pytest.raises(ModelError):
        zoo.load_model(str(path))


@pytest.mark.parametrize("field, value", [("width", 8.0), ("phase_iters", 1.5), ("latent_channels", True)])
def test_wrongly_typed_config_field_is_refused(tmp_path, field, value):
    config = {**json.loads(TINY.to_json()), field: value}
    path = write_model(tmp_path / "float.safetensors", tiny_tensors(), {"nac_config": json.dumps(config)})
    with pytest.raises(ModelError):
        zoo.load_model(str(path))


def _drop_one(tensors):
    return dict(list(tensors.items())[1:])


def _add_one(tensors):
    return {**tensors, "extra.weight": torch.zeros(3)}


def _other_width(tensors):
    return tiny_tensors(dataclasses.replace(TINY, width=16))


def _other_latent_channels(tensors):
    return tiny_tensors(dataclasses.replace(TINY, latent_channels=3))


@pytest.mark.parametrize("change", [_drop_one, _add_one, _other_width, _other_latent_channels])
def test_tensors_that_do_not_match_the_config_are_refused(tmp_path, change):
    path = write_model(tmp_path / "bad.safetensors", change(tiny_tensors()), {"nac_config": TINY.to_json()})
    with pytest.raises(ModelError, match="do not match"):
        zoo.load_model(str(path))


@pytest.mark.parametrize(
    "data",
    [b"", b"short", (2**40).to_bytes(8, "little") + b"{}", (2).to_bytes(8, "little") + b"{}" + b"\x00" * 8,
     (9).to_bytes(8, "little") + b"[1, 2, 3]", (11).to_bytes(8, "little") + b"not json!!!"],
    ids=["empty", "short", "header-past-end", "no-metadata", "header-list", "header-not-json"],
)
def test_files_that_are_not_safetensors_are_refused(tmp_path, data):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(data)
    with pytest.raises(ModelError):
        zoo.load_model(str(path))


def test_a_missing_model_file_is_refused(tmp_path):
    with pytest.raises(ModelError):
        zoo.load_model(str(tmp_path / "absent.safetensors"))


# --------------------------------------------------------------------------
# Measured operating points and --bitrate
# --------------------------------------------------------------------------


def test_shipped_model_lists_rates_from_about_5_to_25_kbps():
    entry = manifest.find_entry(None)
    kbps = [point.kbps for point in entry.rates]
    assert kbps == sorted(kbps) and kbps[0] < 6.0 and kbps[-1] > 20.0
    assert all(point.settings.check().code_bits is not None for point in entry.rates)  # valid, code bits named


def test_a_rate_point_with_the_residual_layer_and_coarse_channels_reads_and_describes_it():
    row = {"id": 9, "name": "m", "file": "m.safetensors", "sha256": "00" * 32, "sample_rate": 16000,
           "parameters": 1, "rates": [{"bits": 8, "code_bits": 4, "residual_hz": 1000, "residual_step": 0.7,
                                       "coarse_channels": 12, "kbps": 14.8, "scores": {"pesq_wb": 3.3}},
                                      {"bits": 8, "code_bits": 3, "kbps": 5.2},
                                      {"bits": 8, "code_bits": 4, "residual_hz": 4000, "residual_step": 0.5,
                                       "residual_bands_hz": 1000, "bands_per_octave": 8, "kbps": 11.5}],
           "channel_order": [2, 0, 1]}
    entry = manifest._entry(row)
    assert entry.channel_order == (2, 0, 1)
    plain, banded, residual = entry.rates
    assert plain.settings == EncoderSettings(code_bits=3)
    assert residual.settings == EncoderSettings(code_bits=4, coarse_channels=12, residual_hz=1000.0, residual_step=0.7)
    assert "--coarse-channels 12 --residual-hz 1000 --residual-step 0.7" in residual.describe()
    assert "residual" not in plain.describe() and "coarse" not in plain.describe()
    assert banded.settings == EncoderSettings(code_bits=4, residual_hz=4000.0, residual_step=0.5,
                                              residual_bands_hz=1000.0, bands_per_octave=8.0)
    assert manifest._entry({**row, "rates": [point.settings.to_json() | {"kbps": point.kbps} for point in entry.rates]}
                      ).rates == tuple(manifest.RatePoint(point.settings, point.kbps) for point in entry.rates)
    assert banded.options().endswith("--residual-hz 4000 --residual-step 0.5 --residual-bands-hz 1000 "
                                     "--bands-per-octave 8")


def points(*rates):
    return manifest.ModelEntry(1, "m", "m.safetensors", "00" * 32, 16000, 1,
                          rates=tuple(manifest.RatePoint(EncoderSettings(code_bits=bits), kbps) for bits, kbps in rates))


@pytest.mark.parametrize("target, code_bits", [(6.0, 3), (7.0, 4), (7.5, 4), (100.0, 6), (1.0, 3)])
def test_rate_point_is_the_highest_at_or_below_the_target_else_the_lowest(target, code_bits):
    entry = points((3, 5.0), (4, 7.0), (6, 10.0))
    assert manifest.rate_point(entry, target).settings.code_bits == code_bits


def test_a_model_without_rates_refuses_a_bitrate():
    with pytest.raises(ModelError, match="no measured bitrates"):
        manifest.rate_point(points(), 6.0)


@pytest.mark.parametrize("text", ["6k", "6 kbps", "6", "6.0K", " 6kbit/s "])
def test_bitrate_text_is_read_as_kbps(text):
    expected = manifest.rate_point(manifest.find_entry(None), 6.0)
    assert api.bitrate_settings(text) == expected.settings and expected.settings.code_bits is not None


@pytest.mark.parametrize("text", ["", "fast", "0k", "-6k", "6 Mbps", "2000k"])
def test_a_bitrate_that_is_not_kbps_is_a_usage_error(text):
    from nac.errors import UsageError

    with pytest.raises(UsageError, match="bitrate"):
        api.bitrate_settings(text)
