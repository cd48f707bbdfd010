#!/usr/bin/env bash
# Build the wheel, install it in a fresh venv and round-trip the bundled clip from a folder outside the
# checkout: the models must travel as package data, and nothing may depend on the source tree.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$root"
"$work/venv/bin/pip" install -q torch==2.13.0 "$work"/dist/nac-*.whl
cd "$work"
"$work/venv/bin/nac" --version
"$work/venv/bin/nac" encode "$root/samples/speech-en-allison.flac" -o clip.nac
"$work/venv/bin/nac" inspect clip.nac > /dev/null
"$work/venv/bin/nac" decode clip.nac -o clip.wav
"$work/venv/bin/python" -c "
import nac, soundfile
original, decoded = soundfile.info('$root/samples/speech-en-allison.flac'), soundfile.info('clip.wav')
assert (decoded.frames, decoded.samplerate, decoded.channels) == (original.frames, original.samplerate, original.channels)
print('wheel round trip ok:', nac.__version__, decoded.frames, 'samples')
"
