"""Encoder settings: the range checks and the JSON form (settings files, ladder points)."""

import json
import re

import pytest

from nac.errors import UsageError
from nac.settings import EncoderSettings

LAYERED = EncoderSettings(code_bits=4, coarse_channels=12, residual_hz=4000.0, residual_step=0.45,
                          residual_bands_hz=1250.0, bands_per_octave=12.0)


@pytest.mark.parametrize("fields, message", [
    ({"bits": 12}, "bits must be 8 or 16, not 12"),
    ({"code_bits": 9}, r"code bits must be 2\.\.8, not 9"),
    ({"bits": 16, "code_bits": 1}, r"code bits must be 2\.\.16, not 1"),
    ({"residual_hz": 96001.0}, r"residual band 96001 Hz is outside 0\.\.96000 Hz"),
    ({"residual_hz": 1000.0, "residual_bands_hz": 1000.0}, "residual bands from 1000 Hz need a residual band above"),
    ({"bands_per_octave": 49.0}, r"bands per octave must be 1\.\.48, not 49"),
    ({"residual_step": 16.5}, r"residual step 16.5 is outside \(0, 16\]"),
    ({"residual_step": float("nan")}, "residual step nan is outside"),
    ({"closed_loop": True}, "a closed loop needs the residual layer"),
])
def test_out_of_range_settings_are_usage_errors(fields, message):
    with pytest.raises(UsageError, match=message):
        EncoderSettings(**fields).check()


def test_valid_settings_check_as_themselves():
    assert EncoderSettings().check() == EncoderSettings()
    assert LAYERED.check() is LAYERED


def test_code_bits_default_by_width():
    assert EncoderSettings().effective_code_bits == 5
    assert EncoderSettings(bits=16).effective_code_bits == 16
    assert LAYERED.effective_code_bits == 4


def test_json_form_names_only_what_is_set_and_reads_back():
    assert EncoderSettings().to_json() == {"bits": 8}
    assert EncoderSettings(residual_step=0.3, bands_per_octave=6.0).to_json() == {"bits": 8}  # no layer: unused
    assert LAYERED.to_json() == {"bits": 8, "code_bits": 4, "coarse_channels": 12, "residual_hz": 4000.0,
                                 "residual_step": 0.45, "residual_bands_hz": 1250.0, "bands_per_octave": 12.0}
    for settings in (EncoderSettings(), LAYERED, EncoderSettings(bits=16, store_phase=True, code_bits=10),
                     EncoderSettings(residual_hz=1000.0, closed_loop=True)):
        assert EncoderSettings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize("row, message", [
    ({"kbps": 1.0}, "unknown setting(s) kbps"),
    ({"code_bits": 4.5}, "code_bits must be a whole number"),
    ({"code_bits": 10**400}, "code_bits is out of range"),
    ({"residual_hz": 10**400}, "residual_hz is out of range"),
    ({"closed_loop": 1}, "closed_loop must be true or false"),
    ({"residual_hz": "1000"}, "residual_hz must be a number"),
    ({"coarse_channels": -3}, "coarse channels must be 0 or more"),
    ({"bits": 12}, "bits must be 8 or 16"),
    ([4], "must be a JSON object"),
])
def test_json_form_refuses_what_it_does_not_know(row, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        EncoderSettings.from_json(row, "my.json")
    with pytest.raises(UsageError, match="^my.json: "):
        EncoderSettings.from_json(row, "my.json")


def test_settings_files(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(LAYERED.to_json()))
    assert EncoderSettings.from_file(path) == LAYERED
    path.write_bytes(b" " * 70000)
    with pytest.raises(UsageError, match="larger than"):
        EncoderSettings.from_file(path)
    with pytest.raises(UsageError, match="cannot read settings"):
        EncoderSettings.from_file(tmp_path / "none.json")
    path.write_text('{"a": ' * 5000 + "1" + "}" * 5000)  # under the size cap
    with pytest.raises(UsageError, match="nested too deeply"):
        EncoderSettings.from_file(path)


@pytest.mark.parametrize("settings, message", [
    (EncoderSettings(code_bits="4"), "code_bits must be a whole number, not '4'"),
    (EncoderSettings(residual_hz=None), "residual_hz must be a number, not None"),
    (EncoderSettings(coarse_channels=2.5), "coarse_channels must be a whole number"),
    (EncoderSettings(closed_loop="yes"), "closed_loop must be true or false"),
])
def test_settings_made_in_python_are_checked_as_a_file_s(settings, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        settings.check()
