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
from nac.errors import ModelError, UsageError
from nac.format import container
from nac.model import manifest, zoo
from nac.model.config import ModelConfig
from nac.model.networks import build_model, parameter_count
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


@pytest.mark.parametrize("name", [r["name"] for r in manifest_json()["models"] if r.get("ladder")])
def test_shipped_model_parameter_count_config_and_size(name):
    row = next(r for r in manifest_json()["models"] if r["name"] == name)
    path = manifest.MODELS_DIR / row["file"]
    loaded = zoo.load_model(name)
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


def test_inspect_says_a_file_of_a_model_given_by_path_needs_it(tmp_path):
    from nac import info
    from nac.cli import format_inspection

    path = write_model(tmp_path / "ok.safetensors", tiny_tensors(), {"nac_config": TINY.to_json()})
    data = api.encode(np.zeros((1, 4000), np.float32), 16000, model=str(path))
    described = info.inspect(data)
    assert described["model_name"] is None and described["header"]["model_id"] == manifest.CUSTOM_MODEL_ID
    assert "made by a custom model: pass it with --model PATH" in format_inspection(Path("a.nac"), described)


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
# The rate ladder and --bitrate
# --------------------------------------------------------------------------


def test_the_default_model_has_a_ladder_of_named_measured_points():
    entry = manifest.find_entry(None)
    names = [point.name for point in entry.ladder]
    assert 5 <= len(names) <= 7 and entry.default_point in names
    assert all(point.kbps <= point.nominal_kbps for point in entry.ladder)  # each point within its name
    assert [p.nominal_kbps for p in entry.ladder] == sorted(p.nominal_kbps for p in entry.ladder)
    assert all(point.settings.check().code_bits is not None for point in entry.ladder)
    assert all(dict(point.scores).get("pesq_wb") for point in entry.ladder)


def ladder(*points):
    """A model entry with a ladder of (name, code bits, measured kbps)."""
    return manifest.ModelEntry(1, "m", "m.safetensors", "00" * 32, 16000, 1, default_point=points[0][0],
                               ladder=tuple(manifest.RatePoint(name, EncoderSettings(code_bits=bits), kbps)
                                            for name, bits, kbps in points))


def test_a_ladder_point_reads_and_describes_itself():
    row = {"id": 9, "name": "m", "file": "m.safetensors", "sha256": "00" * 32, "sample_rate": 16000,
           "parameters": 1, "default_point": "12k", "channel_order": [2, 0, 1],
           "ladder": [{"name": "12k", "settings": {"bits": 8, "code_bits": 4, "residual_hz": 1000,
                                                    "residual_step": 0.7, "coarse_channels": 12},
                       "kbps": 11.8, "scores": {"pesq_wb": 3.3}},
                      {"name": "6k", "settings": {"bits": 8, "code_bits": 3}, "kbps": 5.2}]}
    entry = manifest._entry(row)
    assert entry.channel_order == (2, 0, 1) and [p.name for p in entry.ladder] == ["6k", "12k"]
    assert entry.point().name == "12k" and entry.point("6k").settings == EncoderSettings(code_bits=3)
    assert entry.point("12k").settings == EncoderSettings(code_bits=4, coarse_channels=12, residual_hz=1000.0,
                                                          residual_step=0.7)
    assert entry.point("12k").describe() == " 12k  11.80 kbps  pesq_wb 3.30"
    with pytest.raises(ModelError, match="no point '8k'"):
        entry.point("8k")
    with pytest.raises(Exception, match="unknown setting"):
        manifest._entry({**row, "ladder": [{"name": "6k", "settings": {"kbps": 1}, "kbps": 1}]})


@pytest.mark.parametrize("target, channels, chosen", [
    ("6k", 1, "6k"), ("7.9", 1, "6k"), (8, 1, "8k"), ("100k", 1, "12k"), ("16k", 2, "8k"), ("24 kbps", 2, "12k"),
])
def test_a_bitrate_is_a_whole_file_target(target, channels, chosen, monkeypatch):
    entry = ladder(("6k", 3, 5.5), ("8k", 4, 7.6), ("12k", 5, 11.0))
    monkeypatch.setattr(manifest, "find_entry", lambda key, kind="speech": entry)
    choice = api.choose_settings(bitrate=target, channels=channels)
    assert choice.point == chosen and choice.settings == entry.point(chosen).settings
    assert ("above the model's top point" in " ".join(choice.notes)) == (target == "100k")


def test_a_stereo_layer_codes_two_channels_for_the_price_of_one(monkeypatch):
    entry = manifest.ModelEntry(1, "m", "m.safetensors", "00" * 32, 16000, 1, default_point="16k", ladder=tuple(
        manifest.RatePoint(name, EncoderSettings(code_bits=bits, stereo_bands=20), kbps)
        for name, bits, kbps in (("16k", 3, 15.0), ("24k", 4, 23.0))))
    monkeypatch.setattr(manifest, "find_entry", lambda key, kind="speech": entry)
    assert api.choose_settings(bitrate="24k", channels=2, sample_rate=44100).point == "24k"
    assert api.choose_settings(bitrate="48k", channels=3, sample_rate=44100).point == "16k"  # three alone


def test_the_input_picks_the_default_model():
    assert manifest.input_kind(16000, 1) == manifest.SPEECH and manifest.input_kind(8000, 1) == manifest.SPEECH
    assert manifest.input_kind(44100, 1) == manifest.FULLBAND and manifest.input_kind(16000, 2) == manifest.FULLBAND
    assert manifest.input_kind(16000, 3) == manifest.SPEECH and manifest.input_kind(48000, 6) == manifest.FULLBAND


def test_a_bitrate_below_the_ladder_is_refused_naming_its_range(monkeypatch):
    entry = ladder(("6k", 3, 5.5), ("12k", 5, 11.0))
    monkeypatch.setattr(manifest, "find_entry", lambda key, kind="speech": entry)
    with pytest.raises(UsageError, match="below what m codes: 6-12 kbps$"):
        api.choose_settings(bitrate="5k")
    with pytest.raises(UsageError, match="6-12 kbps per channel .12-24 kbps for 2 channels"):
        api.choose_settings(bitrate="10k", channels=2)


def test_a_bitrate_below_the_fullband_ladder_names_a_model_that_codes_it():
    with pytest.raises(UsageError, match=r"\(-m nac-speech-16k-v5 codes from 6 kbps, at 16 kHz\)$"):
        api.choose_settings(bitrate="8k", sample_rate=44100)
    with pytest.raises(UsageError, match="12-36 kbps$"):  # named model: no other suggested
        api.choose_settings(bitrate="8k", sample_rate=44100, model="nac-fullband-48k-v1")


def test_settings_and_a_bitrate_exclude_each_other_and_a_custom_model_needs_settings():
    with pytest.raises(UsageError, match="not both"):
        api.choose_settings(EncoderSettings(), "12k")
    with pytest.raises(UsageError, match="a bitrate needs a model with a rate ladder"):
        api.choose_settings(bitrate="12k", model="custom.safetensors")
    assert api.choose_settings(model="custom.safetensors").settings == EncoderSettings()
    assert api.choose_settings().point == manifest.find_entry(None).default_point


@pytest.mark.parametrize("text", ["", "fast", "0k", "-6k", "6 Mbps", "20000k"])
def test_a_bitrate_that_is_not_kbps_is_a_usage_error(text):
    with pytest.raises(UsageError, match="bitrate"):
        api.parse_kbps(text)


def test_a_bitrate_in_bits_per_second_gets_a_hint():
    with pytest.raises(UsageError, match=r"\(12000 bit/s would be 12k\)$"):
        api.parse_kbps("12000")
