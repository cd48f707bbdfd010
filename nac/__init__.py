"""nac: a neural audio codec. ``import nac`` is cheap; the library loads when first used.

    import nac
    data = nac.encode(audio, 44100, bitrate="12k")   # float32 (channels, time) -> .nac bytes
    audio, rate = nac.decode(data)
    nac.encode_file("in.wav", "out.nac"); nac.decode_file("out.nac", "out.wav")
    nac.inspect(data)                                # header, layers, chunks, damage
"""

from __future__ import annotations

import importlib

__version__ = "0.3.2"

_PUBLIC = {
    "encode": "api", "decode": "api", "encode_file": "api", "decode_file": "api", "decode_salvage": "api",
    "decode_blocks": "api", "encode_parts": "api", "choose_settings": "api", "EncodeReport": "api",
    "DecodeReport": "api", "Salvaged": "api", "inspect": "info", "EncoderSettings": "settings",
    "NacError": "errors", "UsageError": "errors", "InputError": "errors", "FormatError": "errors",
    "VersionError": "errors", "ModelError": "errors", "OutputError": "errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'nac' has no attribute {name!r}")
