"""The evaluation engine behind ``nac eval``: nac settings (and Opus) over a set of files, scored and reported.

Speech mode (the default). Every input is mixed to mono and resampled to
16 kHz (soxr) first. That signal is the reference, and every codec under
test codes it, so all are charged for the same audio and scored in the same
domain.

Music mode (``--mode music``, for music and fullband audio). The reference
keeps the file's channels and is resampled to 48 kHz. nac codes the file as
read (its own rate and channels) and Opus codes the 48 kHz reference, which
it would otherwise resample to 48 kHz itself; opusdec decodes at 48 kHz with
the channels kept. Outputs are compared at 48 kHz; one that comes back at
another rate or channel count is resampled, or mixed to mono and copied to
each channel, with a note. Scores: ViSQOL audio mode, the bandwidth kept,
the stereo image (ILD and ICC errors, left/right correlation), SI-SDR and
the mel distance on the channel mean (:data:`MUSIC`).

Systems. A nac system is a model with one of its ladder points (``12k``), a
settings file, or a research preset (:data:`PRESETS`: ``default`` for 5-bit
codes alone, ``bits16``, ``store_phase``, ``cbN``, ``loop``, or one of
:data:`NUMBERED_PRESETS`, joined with ``+`` as in ``cb4+res4000+bands1000``).
With Opus, each target bitrate is one system (:mod:`nac.lab.opus`).

Bitrate. nac is charged for its whole ``.nac`` file (header, chunk framing,
CRCs, zstd payload): ``kbps = bytes * 8 / seconds / 1000``. Opus is charged
for its audio packets only, without Ogg pages or headers; its whole-file
kbps is kept as ``file_kbps``. A system's summary kbps is the overall rate,
total bits over total seconds, so short files do not weigh more than long
ones; per-file values are in the JSON and CSV.

Alignment. nac's output is sample-aligned by construction (the decoder
trims to the stored length; with ``store_phase``, where the phase is the
original's, the cross-correlation peaks at lag 0) and is scored as decoded.
opusdec's output is trimmed of the pre-skip, which leaves a fraction of a
sample: on the bundled speech clip its cross-correlation peaks at +1 sample
at 6-8 kbps and -1 at 12-32 kbps (16 kHz), which would cost Opus up to 2 dB
of SNR and SI-SDR (PESQ moves by 0.001). To be strict against nac,
each Opus output is shifted by its integer cross-correlation lag within
+-1 ms before scoring; the shift is recorded per file as ``lag_samples``.
(A lag is not measured for nac: with a poor predicted phase the peak lands
anywhere, and shifting by it would move STOI at random.)

Speech scores (:mod:`nac.lab.metrics`): SNR, SI-SDR, LSD, multi-resolution mel
distance, PESQ-WB, STOI, ESTOI and ViSQOL (speech mode). A metric whose
package is missing is left out with a note; one that is undefined for a file
(PESQ and STOI need about 0.4 s or more of speech) is None there and left
out of the means, with a note saying for how many files.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .. import api
from ..audio import AUDIO_SUFFIXES, read_audio, resample, write_atomic, write_audio
from ..codec import torch_threads
from ..errors import InputError, ModelError, NacError, UsageError
from ..model import manifest, zoo
from ..model.config import MAX_PHASE_ITERS
from ..settings import EncoderSettings
from . import metrics, opus

SCORE_RATE = 16000
MUSIC_RATE = 48000  # music mode scores here, ViSQOL audio mode's rate and opusdec's native one
DEFAULT_BITRATES = (6.0, 8.0, 12.0, 16.0, 24.0, 32.0)
MUSIC_BITRATES = (16.0, 24.0, 32.0, 48.0, 64.0)
OPUS_MIN_KBPS, OPUS_MAX_KBPS = 6.0, 256.0  # opusenc's --bitrate range for one channel
PRESETS = {
    "default": {},
    "bits8": {"bits": 8},
    "bits16": {"bits": 16},
    "store_phase": {"store_phase": True},
    "loop": {"closed_loop": True},  # the residual layer's closed loop (nac encode --closed-loop)
    **{f"cb{n}": {"code_bits": n} for n in range(2, 17)},  # latent code precision (nac encode --code-bits N)
}
# the residual layer's band, step and banded part (nac encode --residual-hz N --residual-step S
# --residual-bands-hz B --bands-per-octave O), the coarse channels (--coarse-channels N) and the
# decoder's Griffin-Lim iterations (nac decode --phase-iters N), any value; fineF and fstepS the fine bins
# (--residual-fine-hz F --residual-fine-step S), hintH the phase hints (--phase-hint-hz H)
NUMBERED_PRESETS = {"res": ("residual_hz", float), "step": ("residual_step", float),
                    "bands": ("residual_bands_hz", float), "oct": ("bands_per_octave", float),
                    "slope": ("residual_slope", float), "span": ("residual_span", float),
                    "fine": ("residual_fine_hz", float), "fstep": ("residual_fine_step", float),
                    "hint": ("phase_hint_hz", float),
                    "coarse": ("coarse_channels", int), "it": ("phase_iters", int)}
_NUMBERED = re.compile(r"(res|step|bands|oct|slope|span|fine|fstep|hint)(\d+(?:\.\d+)?)|(coarse|it)(\d+)")
MAX_LAG_S = 0.001  # Opus alignment search: +-1 ms
RATE_COLUMNS = (  # (summary key, heading, format): the first columns of every table
    ("kbps", "kbps", "{:.2f}"),
    ("file_kbps", "file kbps", "{:.2f}"),
)
TABLE_COLUMNS = (  # speech mode's
    *RATE_COLUMNS,
    ("pesq_wb", "PESQ-WB", "{:.2f}"),
    ("visqol", "ViSQOL", "{:.2f}"),
    ("stoi", "STOI", "{:.3f}"),
    ("estoi", "ESTOI", "{:.3f}"),
    ("si_sdr_db", "SI-SDR dB", "{:.2f}"),
    ("snr_db", "SNR dB", "{:.2f}"),
    ("lsd_db", "LSD dB", "{:.2f}"),
    ("mel_db", "mel dB", "{:.2f}"),
)
MUSIC_COLUMNS = (
    *RATE_COLUMNS,
    ("visqol_audio", "ViSQOL-audio", "{:.2f}"),
    ("visqol_audio_lr", "ViSQOL-audio L/R", "{:.2f}"),
    ("bandwidth_khz", "bandwidth kHz", "{:.1f}"),
    ("ref_bandwidth_khz", "ref bandwidth kHz", "{:.1f}"),
    ("ild_error_db", "ILD err dB", "{:.2f}"),
    ("icc_error", "ICC err", "{:.3f}"),
    ("lr_correlation_in", "L/R corr in", "{:.3f}"),
    ("lr_correlation_out", "L/R corr out", "{:.3f}"),
    ("si_sdr_db", "SI-SDR dB", "{:.2f}"),
    ("mel_db", "mel dB", "{:.2f}"),
)
EXTRA_HINT = "pip install 'nac[eval]'"


@dataclass(frozen=True)
class System:
    """One codec setting under test."""

    codec: str  # "nac" or "opus"
    setting: str  # "<model> <preset>" for nac, "<N> kbps" (the target) for opus
    model: str | None = None
    settings: EncoderSettings | None = None  # nac only
    phase_iters: int | None = None  # nac only: the decoder's Griffin-Lim iterations (None: the model's)
    bitrate_kbps: float | None = None

    @property
    def label(self) -> str:
        return f"{self.codec} {self.setting}"

    @property
    def slug(self) -> str:
        """The label as a file-name part."""
        return re.sub(r"[^A-Za-z0-9._+-]+", "-", self.label).strip("-")


class Panel(NamedTuple):
    """One panel of the rate-quality plot: a summary key against kbps."""

    key: str
    title: str
    label: str  # the y axis
    limits: tuple[float, float] | None  # None: matplotlib's
    reference: str | None = None  # a summary key drawn as a dashed line (the references' own value)


@dataclass(frozen=True)
class Mode:
    """What ``--mode`` scores and reports: :data:`SPEECH` or :data:`MUSIC`."""

    name: str
    rate: int  # references and outputs are compared at this rate
    mono: bool  # True: every input mixed to mono and coded so; False: channels kept, nac codes the file as read
    score: Callable[[np.ndarray, np.ndarray, int], dict]  # (reference, output, rate) -> scores
    columns: tuple  # of the table: RATE_COLUMNS, then one per score
    bitrates: tuple[float, ...]  # Opus targets unless given
    packages: tuple[tuple[str, str], ...]  # (optional package, the scores it gives) beyond ViSQOL
    visqol: tuple[str, str]  # (ViSQOL mode, the name of its score)
    undefined: dict[str, tuple[str, str]]  # score key -> (name, why it can be None) for the notes
    panels: tuple[tuple[Panel, ...], ...]  # per plot panel: the first choice that has values, else the next
    domain: str  # in the plot title: "16 kHz mono"
    content: str  # in the plot title: "speech"
    against: str  # summary.md: what the outputs are scored against
    definitions: str  # summary.md: what the scores are ({mapping}: ViSQOL's mapping)

    @property
    def score_keys(self) -> tuple[str, ...]:
        return tuple(key for key, _, _ in self.columns[len(RATE_COLUMNS):])


@dataclass
class EvalOptions:
    """What ``nac eval`` was asked to do."""

    inputs: list[Path]
    out_dir: Path
    models: list[str] = field(default_factory=list)  # empty: the default model
    points: list[str] = field(default_factory=list)  # ladder point names ("all": every one)
    settings_files: list[Path] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)  # none of the three: the model's default point
    against_opus: bool = False
    bitrates: tuple[float, ...] | None = None  # Opus targets; None: the mode's (DEFAULT_BITRATES, MUSIC_BITRATES)
    mode: str = "speech"  # or "music" (MODES)
    manifest_split: str = "dev"
    kind: str = "speech_wb"
    max_files: int = 0  # 0: all; else this many, evenly spaced over the list
    excerpt: float = 0.0  # seconds of each file scored, from its middle; 0: the whole file
    keep: int = 2  # files whose reference and reconstructions are written as WAV
    threads: int | None = None  # torch threads while decoding (encoding always uses 1)


@dataclass
class EvalReport:
    settings: dict
    notes: list[str]
    systems: list[dict]  # one summary per system, in run order
    rows: list[dict]  # one per (file, system)
    failed: list[dict]
    paths: dict[str, Path] = field(default_factory=dict)  # what was written: json, csv, md, png

    def to_json(self) -> dict:
        return {"settings": self.settings, "notes": self.notes, "systems": self.systems,
                "files": self.rows, "failed": self.failed}


# ---------------------------------------------------------------- planning


def parse_list(text: str, what: str) -> list[str]:
    """The comma-separated values of an option (none for an empty one); :class:`UsageError` for empty values."""
    items = [item.strip() for item in text.split(",")] if text.strip() else []
    if any(not item for item in items):
        raise UsageError(f"{what}: an empty value in {text!r}")
    return items


def parse_bitrates(text: str) -> tuple[float, ...]:
    """``"6,8,12"`` -> (6.0, 8.0, 12.0); each within opusenc's range."""
    values = []
    items = parse_list(text, "--bitrates")
    if not items:
        raise UsageError("--bitrates: give at least one")
    for item in items:
        try:
            value = float(item.lower().removesuffix("k"))
        except ValueError:
            raise UsageError(f"--bitrates: {item!r} is not a number of kbps") from None
        if not OPUS_MIN_KBPS <= value <= OPUS_MAX_KBPS:
            raise UsageError(f"--bitrates: {value:g} kbps is outside opusenc's {OPUS_MIN_KBPS:g}-{OPUS_MAX_KBPS:g}")
        values.append(value)
    return tuple(values)


class Preset(NamedTuple):
    """A preset name's encoder settings and decoder iterations (None: the model's)."""

    settings: EncoderSettings
    phase_iters: int | None


def parse_preset(name: str) -> Preset:
    """The settings of a preset name; parts joined with ``+`` combine. Out-of-range values fail here."""
    fields: dict = {}
    phase_iters = None
    for part in name.split("+"):
        numbered = _NUMBERED.fullmatch(part)
        if numbered:
            kind, value = (numbered[1], numbered[2]) if numbered[1] else (numbered[3], numbered[4])
            key, parse = NUMBERED_PRESETS[kind]
            if key == "phase_iters":
                phase_iters = parse(value)
                if phase_iters > MAX_PHASE_ITERS:
                    raise UsageError(f"preset {part!r}: Griffin-Lim iterations must be in 0..{MAX_PHASE_ITERS}")
            else:
                fields[key] = parse(value)
        elif part in PRESETS:
            fields.update(PRESETS[part])
        else:
            names = ", ".join(name for name in PRESETS if not name.startswith("cb"))
            raise UsageError(f"unknown preset {part!r}: use {names}, cbN (N = 2..16), coarseN, resHZ, stepS, "
                             "bandsHZ, octN, slopeS, spanD, itN (join with + to combine)")
    try:
        return Preset(EncoderSettings(**fields).check(), phase_iters)
    except UsageError as err:
        raise UsageError(f"preset {name!r}: {err}") from None


def nac_systems(models: list[str], points: list[str], settings_files: list[Path], presets: list[str]) -> list[System]:
    """Every model with every ladder point, settings file and preset (none at all: the model's default point);
    no models means the default model. Unknown models, points and bad files fail here."""
    systems = []
    chosen = [(path.stem, EncoderSettings.from_file(path)) for path in settings_files]
    for key in dict.fromkeys(models or [None]):
        name = zoo.load_model(key).name  # checks the weights once, before any file
        in_folder = key is not None and manifest.models_folder(key)[0] is None  # a models or run folder
        entry = manifest.find_entry(key if in_folder else name)
        wanted = [p.name for p in entry.ladder] if points == ["all"] else points
        if not (wanted or chosen or presets):
            wanted = [entry.point().name]
        for point in dict.fromkeys(wanted):
            try:
                settings = entry.point(point).settings
            except ModelError as err:  # a point the model lacks: a bad option value
                raise UsageError(str(err)) from None
            systems.append(System("nac", f"{name} {point}", model=key, settings=settings))
        for stem, settings in chosen:
            systems.append(System("nac", f"{name} {stem}", model=key, settings=settings))
        for preset in dict.fromkeys(presets):
            settings, phase_iters = parse_preset(preset)
            systems.append(System("nac", f"{name} {preset}", model=key, settings=settings, phase_iters=phase_iters))
    return systems


def opus_systems(bitrates: tuple[float, ...]) -> list[System]:
    opus.find_tools()
    return [System("opus", f"{rate:g} kbps", bitrate_kbps=rate) for rate in bitrates]


def corpus_rows(folder: Path) -> list[dict] | None:
    """The rows of ``folder``'s MANIFEST.tsv if it is a corpus manifest (file, split and kind columns), else None."""
    if not (folder / "MANIFEST.tsv").is_file():
        return None
    with (folder / "MANIFEST.tsv").open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        if not {"file", "split", "kind"} <= set(rows.fieldnames or ()):
            return None
        return list(rows)


def collect_inputs(inputs: list[Path], split: str, kind: str) -> list[Path]:
    """Files named directly, corpus MANIFEST.tsv rows of ``split``/``kind``, or audio found under folders."""
    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_file():
            files.append(item)
        elif (rows := corpus_rows(item)) is not None:
            files += [item / r["file"] for r in rows if r["split"] == split and r["kind"] == kind]
        elif item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        else:
            raise InputError(f"{item}: no such file or folder")
    return files


def spread(files: list[Path], count: int) -> list[Path]:
    """``count`` files evenly spaced over the list (every source of a sorted corpus), or all when 0."""
    if count <= 0 or count >= len(files):
        return files
    return [files[index * len(files) // count] for index in range(count)]


# ---------------------------------------------------------------- scoring


def load_reference(path: Path, sample_rate: int = SCORE_RATE) -> np.ndarray:
    """The file as float32 (1, time) mono at ``sample_rate``."""
    audio, rate = read_audio(path)
    mono = audio.mean(axis=0, keepdims=True).astype(np.float32)
    return resample(mono, rate, sample_rate)


class Clip(NamedTuple):
    """One input file: what nac codes (``source`` at ``source_rate``) and what every output is scored against."""

    source: np.ndarray
    source_rate: int
    reference: np.ndarray  # at the mode's rate


def load_clip(path: Path, mode: Mode, excerpt: float = 0.0) -> Clip:
    """Speech: nac codes the reference itself (:func:`load_reference`). Music: nac codes the file as read, and
    the reference keeps its channels at :data:`MUSIC_RATE`. With ``excerpt`` seconds, only that much of the
    file's middle."""
    if mode.mono:
        reference = middle(load_reference(path), round(excerpt * SCORE_RATE))
        return Clip(reference, SCORE_RATE, reference)
    audio, rate = read_audio(path)
    audio = middle(audio, round(excerpt * rate))
    return Clip(audio, rate, resample(audio, rate, mode.rate))


def middle(audio: np.ndarray, length: int) -> np.ndarray:
    """The middle ``length`` samples of (channels, time) ``audio``; all of it when shorter or ``length`` is 0."""
    if length <= 0 or audio.shape[1] <= length:
        return audio
    start = (audio.shape[1] - length) // 2
    return audio[:, start : start + length]


def conform(audio: np.ndarray, rate: int, shape: tuple[int, int], target_rate: int) -> np.ndarray:
    """``audio`` resampled to ``target_rate``, mixed to mono and copied to each channel if its channel count
    differs from ``shape``'s, and cut or zero-padded to its length."""
    audio = resample(audio, rate, target_rate)
    channels, length = shape
    if audio.shape[0] != channels:
        audio = np.repeat(audio.mean(axis=0, keepdims=True), channels, axis=0)
    return np.pad(audio, ((0, 0), (0, max(0, length - audio.shape[1]))))[:, :length]


def estimate_lag(reference: np.ndarray, estimate: np.ndarray, max_lag: int) -> int:
    """Samples by which ``estimate`` is late (negative: early): the cross-correlation peak within +-max_lag."""
    ref, est = np.atleast_2d(reference).mean(axis=0), np.atleast_2d(estimate).mean(axis=0)
    if not np.any(ref) or not np.any(est):
        return 0
    size = 1 << int(np.ceil(np.log2(max(ref.size + est.size, 2))))
    corr = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(corr[lags])])


def shift(audio: np.ndarray, lag: int) -> np.ndarray:
    """``audio`` moved ``lag`` samples earlier (later if negative), zero-filled, same length."""
    if lag == 0:
        return audio
    out = np.zeros_like(audio)
    if lag > 0:
        out[:, :-lag] = audio[:, lag:]
    else:
        out[:, -lag:] = audio[:, :lag]
    return out


def score(reference: np.ndarray, estimate: np.ndarray, rate: int = SCORE_RATE) -> dict:
    """Every metric of :mod:`nac.lab.metrics` on mono ``(1, time)`` signals; None where undefined or not installed."""
    return {
        "pesq_wb": metrics.pesq_wb(reference, estimate, rate),
        "visqol": metrics.visqol_speech(reference, estimate, rate),
        "stoi": metrics.stoi(reference, estimate, rate),
        "estoi": metrics.stoi(reference, estimate, rate, extended=True),
        "si_sdr_db": metrics.si_sdr_db(reference, estimate),
        "snr_db": metrics.snr_db(reference, estimate),
        "lsd_db": metrics.lsd_db(reference, estimate, rate),
        "mel_db": metrics.mel_distance_db(reference, estimate, rate),
    }


def score_music(reference: np.ndarray, estimate: np.ndarray, rate: int = MUSIC_RATE) -> dict:
    """The music metrics on ``(channels, time)`` signals: ViSQOL audio mode, the bandwidth kept and the stereo
    image from the channels, SI-SDR and the mel distance (up to 20 kHz) on the channel mean; None where undefined
    (the stereo image of a file without two channels) or not installed."""
    ref_mono, est_mono = (x.mean(axis=0, keepdims=True) for x in (reference, estimate))
    ild_error, icc_error = metrics.stereo_image_errors(reference, estimate, rate) or (None, None)
    return {
        "visqol_audio": metrics.visqol_audio(reference, estimate, rate),
        "visqol_audio_lr": metrics.visqol_audio_channels(reference, estimate, rate),
        "bandwidth_khz": _khz(metrics.bandwidth_hz(reference, estimate, rate)),
        "ref_bandwidth_khz": _khz(metrics.reference_bandwidth_hz(reference, rate)),
        "ild_error_db": ild_error,
        "icc_error": icc_error,
        "lr_correlation_in": metrics.channel_correlation(reference),
        "lr_correlation_out": metrics.channel_correlation(estimate),
        "si_sdr_db": metrics.si_sdr_db(ref_mono, est_mono),
        "mel_db": metrics.mel_distance_db(ref_mono, est_mono, rate, metrics.MUSIC_MEL_RESOLUTIONS,
                                          max_hz=metrics.MUSIC_MEL_MAX_HZ),
    }


def _khz(hz: float | None) -> float | None:
    return None if hz is None else hz / 1000


SPEECH = Mode(
    name="speech", rate=SCORE_RATE, mono=True, score=score, columns=TABLE_COLUMNS, bitrates=DEFAULT_BITRATES,
    packages=(("pesq", "PESQ-WB"), ("pystoi", "STOI and ESTOI")), visqol=("speech", "ViSQOL"),
    undefined={key: (name, "too short or silent")
               for key, name in (("pesq_wb", "PESQ-WB"), ("visqol", "ViSQOL"), ("stoi", "STOI"), ("estoi", "ESTOI"))},
    panels=((Panel("pesq_wb", "PESQ-WB (ITU-T P.862.2)", "PESQ-WB MOS-LQO", (0.9, 4.7)),),
            (Panel("visqol", "ViSQOL v3, speech mode", "ViSQOL v3 MOS-LQO", (0.9, 5.0)),
             Panel("stoi", "STOI (ViSQOL not installed)", "STOI", (0.0, 1.02)))),
    domain="16 kHz mono", content="speech", against="the original mixed to mono at 16 kHz",
    definitions="ViSQOL is v3 speech mode{mapping}. mel dB is the multi-resolution log-mel distance "
    "(lower is better), as is LSD.",
)
MUSIC = Mode(
    name="music", rate=MUSIC_RATE, mono=False, score=score_music, columns=MUSIC_COLUMNS, bitrates=MUSIC_BITRATES,
    packages=(), visqol=("audio", "ViSQOL-audio"),
    undefined={"visqol_audio": ("ViSQOL-audio", "too short or silent"),
               "visqol_audio_lr": ("ViSQOL-audio L/R", "not two channels, too short or silent"),
               "ild_error_db": ("ILD/ICC errors and L/R correlation", "not two channels")},
    panels=((Panel("visqol_audio", "ViSQOL v3, audio mode", "ViSQOL v3 MOS-LQO", (0.9, 5.0)),
             Panel("si_sdr_db", "SI-SDR, channel mean (ViSQOL not installed)", "SI-SDR dB", None)),
            (Panel("bandwidth_khz", "bandwidth kept (dashed: the references')", "bandwidth kHz",
                   (0.0, MUSIC_RATE / 2000 + 0.5), reference="ref_bandwidth_khz"),),
            (Panel("visqol_audio_lr", "ViSQOL v3, audio mode, each channel", "ViSQOL v3 MOS-LQO", (0.9, 5.0)),)),
    domain="48 kHz, channels kept", content="music",
    against="the original at 48 kHz with its channels (music mode, `--mode music`; 44.1 kHz files resampled "
    "with soxr); nac codes each file at its own rate and channels, Opus codes the 48 kHz reference, and both "
    "are compared at 48 kHz",
    definitions="ViSQOL-audio is ViSQOL v3 audio mode{mapping} on the channel mean; ViSQOL-audio L/R the mean "
    "of its scores on each channel alone (two-channel files), which also hears the stereo image. bandwidth kHz: the highest "
    "frequency up to which the output's long-term spectrum stays within 10 dB of the reference's in every "
    "1/3-octave band where the reference has content (above -70 dB re its strongest band), to a third of an "
    "octave (the upper edge of the last band kept); ref bandwidth: the references' own. ILD err dB and ICC err: "
    "mean absolute difference of the inter-channel level difference and of the inter-channel correlation, per "
    "band (20 from 100 Hz to 20 kHz) and 43 ms frame, over the band-frames where the reference has content "
    "(two-channel files only). L/R corr in and out: broadband correlation of left and right in the reference and "
    "in the output. SI-SDR and mel dB (multi-resolution log-mel distance up to 20 kHz, lower is better) on the "
    "channel mean.",
)
MODES = {mode.name: mode for mode in (SPEECH, MUSIC)}


def mode_named(name: str) -> Mode:
    """The :data:`MODES` entry of ``--mode``; :class:`UsageError` for another name."""
    if name not in MODES:
        raise UsageError(f"--mode: {name!r} is not one of {', '.join(MODES)}")
    return MODES[name]


def metric_notes(mode: Mode = SPEECH) -> list[str]:
    """One line per missing metric package, or plot library, or ViSQOL fallback."""
    notes = [f"{what} skipped: the `{package}` package is not installed ({EXTRA_HINT})"
             for package, what in mode.packages if importlib.util.find_spec(package) is None]
    visqol_mode, visqol_name = mode.visqol
    mapping = metrics.visqol_mapping(visqol_mode)
    if mapping is None:
        notes.append(f"{visqol_name} skipped: the `visqol-python` package is not installed ({EXTRA_HINT})")
    elif mapping == "polynomial":
        notes.append(
            "ViSQOL maps with its polynomial fallback, which scores degraded speech high; "
            "install visqol-python[lattice] for the C++ tool's default lattice model"
        )
    if importlib.util.find_spec("matplotlib") is None:
        notes.append(f"plot skipped: `matplotlib` is not installed ({EXTRA_HINT})")
    return notes


def code_and_score(
    system: System, reference: np.ndarray, mode: Mode = SPEECH, source: tuple[np.ndarray, int] | None = None
) -> tuple[dict, np.ndarray]:
    """One system on one reference at the mode's rate: sizes, timings, lag and scores, plus the aligned output.

    nac codes ``source`` (audio, rate) when given, else the reference; Opus
    codes the reference. In music mode an output at another rate or channel
    count is made to match the reference (:func:`conform`), its own rate and
    channel count recorded; in speech mode that is an error.
    """
    rate = mode.rate
    duration = reference.shape[1] / rate
    if system.codec == "nac":
        audio, audio_rate = source if source is not None else (reference, rate)
        start = time.perf_counter()
        data = api.encode(audio, audio_rate, system.settings, model=system.model)  # settings always given
        encoded = time.perf_counter()
        decoded, decoded_rate = api.decode(data, model=system.model, phase_iters=system.phase_iters)
        finished = time.perf_counter()
        payload, whole = len(data), len(data)
        encode_s, decode_s = encoded - start, finished - encoded
    else:
        result = opus.code(reference, rate, system.bitrate_kbps)
        decoded, decoded_rate = result.audio, result.sample_rate
        payload, whole = result.stats.audio_bytes, result.stats.file_bytes
        encode_s, decode_s = result.encode_s, result.decode_s
    output = {}
    if not mode.mono:
        output = {"channels": reference.shape[0], "decoded_channels": decoded.shape[0], "decoded_rate": decoded_rate}
        decoded = conform(decoded, decoded_rate, reference.shape, rate)
    elif decoded_rate != rate or decoded.shape != reference.shape:
        raise NacError(f"{system.label} decoded {decoded.shape} at {decoded_rate} Hz for {reference.shape} at {rate}")
    lag = estimate_lag(reference, decoded, round(MAX_LAG_S * rate)) if system.codec == "opus" else 0
    aligned = shift(decoded, lag)
    row = {
        "codec": system.codec,
        "setting": system.setting,
        "duration_s": duration,
        "bytes": payload,
        "kbps": payload * 8 / duration / 1000 if duration else None,
        "file_bytes": whole,
        "file_kbps": whole * 8 / duration / 1000 if duration else None,
        "lag_samples": lag,
        "encode_s": encode_s,
        "decode_s": decode_s,
        **output,
        **mode.score(reference, aligned, rate),
    }
    return row, aligned


def summarize(rows: list[dict], systems: list[System], mode: Mode = SPEECH) -> list[dict]:
    """Per system: files, overall kbps (total bits / total seconds) and the mean of each of the mode's scores over
    defined values."""
    summaries = []
    for system in systems:
        mine = [r for r in rows if r["codec"] == system.codec and r["setting"] == system.setting]
        if not mine:
            continue
        seconds = sum(r["duration_s"] for r in mine)
        summary = {
            "codec": system.codec,
            "setting": system.setting,
            "target_kbps": system.bitrate_kbps,
            "bits": system.settings.bits if system.settings else None,
            "store_phase": system.settings.store_phase if system.settings else None,
            "files": len(mine),
            "seconds": seconds,
            "kbps": sum(r["bytes"] for r in mine) * 8 / seconds / 1000 if seconds else None,
            "file_kbps": sum(r["file_bytes"] for r in mine) * 8 / seconds / 1000 if seconds else None,
            "mean_file_kbps": _mean([r["kbps"] for r in mine]),
            "encode_x_real_time": seconds / max(sum(r["encode_s"] for r in mine), 1e-9),
            "decode_x_real_time": seconds / max(sum(r["decode_s"] for r in mine), 1e-9),
            "lags": sorted({r["lag_samples"] for r in mine}),
        }
        for key in mode.score_keys:
            summary[key] = _mean([r.get(key) for r in mine])
            summary[f"{key}_n"] = sum(r.get(key) is not None for r in mine)
        summaries.append(summary)
    return summaries


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# ---------------------------------------------------------------- running


def plan(options: EvalOptions) -> tuple[list[Path], list[System]]:
    """The files and systems of a run; every usage problem (no files, unknown model, no opusenc) fails here."""
    mode = mode_named(options.mode)
    files = spread(collect_inputs(options.inputs, options.manifest_split, options.kind), options.max_files)
    if not files:
        raise UsageError("no input files (check the paths, --manifest-split and --kind)")
    if options.keep < 0:
        raise UsageError("--keep must be 0 or more")
    systems = nac_systems(options.models, options.points, options.settings_files, options.presets)
    if options.against_opus:
        systems += opus_systems(options.bitrates or mode.bitrates)
    return files, systems


def run(
    options: EvalOptions,
    files: list[Path] | None = None,
    systems: list[System] | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> EvalReport:
    """Code and score every file with every system, then write the report into ``options.out_dir``.

    ``on_file`` is called after each file (for a progress bar). A file that
    cannot be read, or a system that fails on it, is listed in ``failed``
    and the run goes on.
    """
    mode = mode_named(options.mode)
    if files is None or systems is None:
        files, systems = plan(options)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    notes = metric_notes(mode)
    rows: list[dict] = []
    failed: list[dict] = []
    taken: set[str] = set()
    with torch_threads(options.threads) if options.threads else contextlib.nullcontext():
        for index, path in enumerate(files):
            try:
                clip = load_clip(path, mode, options.excerpt)
            except NacError as err:
                failed.append({"file": str(path), "system": None, "error": str(err)})
                _call(on_file, path)
                continue
            keep = index < options.keep
            if keep:
                write_audio(options.out_dir / _unique(f"ref_{path.stem}.wav", taken), clip.reference, mode.rate)
            for system in systems:
                try:
                    row, decoded = code_and_score(system, clip.reference, mode, (clip.source, clip.source_rate))
                except NacError as err:
                    failed.append({"file": str(path), "system": system.label, "error": str(err)})
                    continue
                row = {"file": str(path), **row}
                if keep:
                    row["recon"] = _unique(f"recon_{path.stem}_{system.slug}.wav", taken)
                    write_audio(options.out_dir / row["recon"], np.clip(decoded, -1.0, 1.0), mode.rate)
                rows.append(row)
            _call(on_file, path)
    summaries = summarize(rows, systems, mode)
    notes += _undefined_notes(rows, mode) + _conform_notes(rows, mode.rate)
    settings = {
        "mode": mode.name,
        "inputs": [str(p) for p in options.inputs],
        "manifest_split": options.manifest_split,
        "kind": options.kind,
        "files": len(files),
        "excerpt_s": options.excerpt or None,
        "score_rate": mode.rate,
        "channels": "mixed to mono" if mode.mono else "kept",
        "systems": [asdict(s) | {"label": s.label} for s in systems],
        "opus_version": opus.version() if options.against_opus else None,
        "visqol_mapping": metrics.visqol_mapping(mode.visqol[0]),
        "alignment": f"opus: shifted by its integer cross-correlation lag within +-{MAX_LAG_S * 1000:g} ms; "
        "nac: as decoded",
    }
    report = EvalReport(settings, notes, summaries, rows, failed)
    write_report(report, options.out_dir)
    return report


def _call(callback, path: Path) -> None:
    if callback is not None:
        callback(path)


def _unique(name: str, taken: set[str]) -> str:
    """``name``, with a counter before the suffix when it was already used in this run."""
    stem, suffix = name.rsplit(".", 1)
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{stem}_{count}.{suffix}"
    taken.add(candidate)
    return candidate


def _undefined_notes(rows: list[dict], mode: Mode) -> list[str]:
    notes = []
    files = {r["file"] for r in rows}
    for key, (name, why) in mode.undefined.items():
        undefined = {r["file"] for r in rows if key in r and r[key] is None}
        if undefined and any(r.get(key) is not None for r in rows):
            notes.append(f"{name} undefined for {len(undefined)} of {len(files)} files ({why}); "
                         "means leave them out")
    return notes


def _conform_notes(rows: list[dict], rate: int) -> list[str]:
    """Music mode: the outputs resampled to ``rate``, and the systems whose output lost or gained channels."""
    notes = []
    rates = sorted({r["decoded_rate"] for r in rows if r.get("decoded_rate", rate) != rate})
    if rates:
        notes.append(f"outputs decoded at {', '.join(f'{x:g} Hz' for x in rates)} were resampled to {rate:g} Hz "
                     "(soxr) to be scored")
    changed = sorted({f"{r['codec']} {r['setting']}" for r in rows if r.get("decoded_channels") != r.get("channels")})
    if changed:
        notes.append(f"{', '.join(changed)}: output with another channel count than the reference's; mixed to "
                     "mono and copied to each channel to be scored")
    return notes


# ---------------------------------------------------------------- writing


def write_report(report: EvalReport, out_dir: Path) -> dict[str, Path]:
    """eval.json, eval.csv, summary.md and rd.png (when matplotlib is installed) in ``out_dir``."""
    paths = {"json": out_dir / "eval.json", "csv": out_dir / "eval.csv", "md": out_dir / "summary.md"}
    _write_text(paths["json"], json.dumps(report.to_json(), indent=2) + "\n")
    _write_text(paths["csv"], format_csv(report.rows))
    _write_text(paths["md"], format_markdown(report))
    if report.systems and importlib.util.find_spec("matplotlib") is not None:
        paths["png"] = out_dir / "rd.png"
        plot_rd(report, paths["png"])
    report.paths = paths
    return paths


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text.encode()))


def format_csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary_table(systems: list[dict], mode: str = "speech") -> str:
    """The markdown table of per-system means: one row per codec setting, the columns of ``mode`` that have values."""
    shown = [c for c in mode_named(mode).columns if any(s.get(c[0]) is not None for s in systems)]
    lines = [
        "| codec | setting | files | " + " | ".join(h for _, h, _ in shown) + " |",
        "|---|---|---:|" + "---:|" * len(shown),
    ]
    for s in systems:
        cells = [fmt.format(s[key]) if s.get(key) is not None else "-" for key, _, fmt in shown]
        lines.append(f"| {s['codec']} | {s['setting']} | {s['files']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_markdown(report: EvalReport) -> str:
    settings = report.settings
    mode = mode_named(settings["mode"])
    mapping = f" ({settings['visqol_mapping']} mapping)" if settings.get("visqol_mapping") else ""
    lines = [
        "# nac eval",
        "",
        f"{settings['files']} files ({', '.join(settings['inputs'])}; split `{settings['manifest_split']}`, "
        f"kind `{settings['kind']}` for corpus folders)"
        + (f", the middle {settings['excerpt_s']:g} s of each," if settings.get("excerpt_s") else "")
        + f" scored against {mode.against}. Means over files; kbps is "
        "total bits over total seconds: nac counts whole `.nac` files, Opus counts its audio packets only "
        "(`file kbps` adds the Ogg pages and headers). " + mode.definitions.format(mapping=mapping),
        "",
        summary_table(report.systems, mode.name),
        "",
    ]
    if settings.get("opus_version"):
        channels = "" if mode.mono else ", channels kept (the bitrate is the total over channels)"
        lines += [(f"Opus: {settings['opus_version']}, `opusenc --bitrate N` (VBR), "
                   f"`opusdec --rate {settings['score_rate']} --float`{channels}."), ""]
    if report.notes:
        lines += ["Notes:", "", *(f"- {note}" for note in report.notes), ""]
    if report.failed:
        lines += [f"Failed: {len(report.failed)} (listed in eval.json).", ""]
    return "\n".join(lines)


def _nac_curves(nac: list[dict], key: str) -> dict[str, list[tuple[float, float]]]:
    """model -> its presets' (kbps, score) by rising kbps; stored-phase, residual and banded-residual presets,
    and presets decoded with other Griffin-Lim iterations: curves of their own."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for s in nac:
        if s.get(key) is None or not s.get("kbps"):
            continue
        model, _, preset = s["setting"].partition(" ")
        try:
            settings, phase_iters = parse_preset(preset)
        except UsageError:  # a ladder point or a settings file
            curves.setdefault(f"{model} ladder", []).append((s["kbps"], s[key]))
            continue
        name = model
        if settings.store_phase:
            name = f"{model} store_phase"
        elif settings.residual_bands_hz:
            name = f"{model} + banded residual"
        elif settings.residual_hz:
            name = f"{model} + residual"
        if phase_iters is not None:
            name += f", {phase_iters} Griffin-Lim iterations"
        curves.setdefault(name, []).append((s["kbps"], s[key]))
    return {name: sorted(points) for name, points in curves.items()}


def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points (by rising kbps) that score above every cheaper one: the curve a user can pick from."""
    kept: list[tuple[float, float]] = []
    for rate, score in points:
        if not kept or score > kept[-1][1]:
            kept.append((rate, score))
    return kept


def plot_rd(report: EvalReport, path: Path) -> None:
    """Rate-quality plot, nac points and the Opus curve against kbps: speech, PESQ-WB and ViSQOL (STOI without
    ViSQOL); music, ViSQOL-audio (SI-SDR without ViSQOL), the bandwidth kept, with the references', and
    ViSQOL-audio on each channel where two-channel files have it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    systems = report.systems
    mode = mode_named(report.settings.get("mode", "speech"))
    def has_values(panel: Panel) -> bool:
        return any(s.get(panel.key) is not None for s in systems)

    panels = [next((p for p in choices if has_values(p)), choices[-1]) for choices in mode.panels]
    panels = panels[:2] + [p for p in panels[2:] if has_values(p)]  # a third panel only where it has values
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.4), dpi=150)
    markers = "o^vD<>Ph*Xd"
    nac = [s for s in systems if s["codec"] == "nac"]
    curve = sorted((s for s in systems if s["codec"] == "opus"), key=lambda s: s["kbps"] or 0)
    rates = [s["kbps"] for s in systems if s.get("kbps")]
    found = re.search(r"libopus ([0-9.]+)", report.settings.get("opus_version") or "")
    opus_name = f"Opus {found.group(1)}" if found else "Opus"
    for axis, (key, title, y_label, limits, reference) in zip(axes, panels):
        points = [(s["kbps"], s[key]) for s in curve if s.get(key) is not None and s.get("kbps")]
        if points:
            label = f"{opus_name} (audio payload kbps; labels: target)"
            axis.plot(*zip(*points), "-s", color="dimgray", lw=2, ms=6, label=label)
            for s in curve:
                if s.get(key) is not None and s.get("kbps"):
                    axis.annotate(f"{s['target_kbps']:g}", (s["kbps"], s[key]), textcoords="offset points",
                                  xytext=(5, -12), fontsize=8, color="dimgray")
        for index, (model, points) in enumerate(_nac_curves(nac, key).items()):
            style = {"color": f"C{index % 10}", "marker": markers[index % len(markers)], "ms": 8}
            axis.plot(*zip(*points), ls="none", alpha=0.45, **style)  # every preset
            axis.plot(*zip(*_frontier(points)), lw=2, label=f"nac {model} (whole-file kbps)", **style)
        axis.set_xscale("log")
        if rates:
            low, high = min(rates), max(rates)
            ticks = [t for t in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)
                     if low / 1.3 <= t <= high * 1.3]
            axis.set_xlim(low / 1.25, high * 1.25)
            axis.xaxis.set_major_locator(FixedLocator(ticks))
            axis.xaxis.set_minor_locator(NullLocator())
            axis.xaxis.set_major_formatter(ScalarFormatter())
        references = [s[reference] for s in systems if reference and s.get(reference) is not None]
        if references:
            axis.axhline(float(np.mean(references)), color="black", ls="--", lw=1)
        if limits:
            axis.set_ylim(*limits)
        axis.set_xlabel("bitrate (kbps, log scale)")
        axis.set_ylabel(y_label)
        axis.set_title(title)
        axis.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    columns = 2 if len(labels) > 6 else min(len(labels), 3)  # long labels: three columns of 7+ overflow
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize=9, frameon=False)
    files = report.settings["files"]
    plural = "s" if files != 1 else ""
    figure.suptitle(f"nac vs Opus: quality per bit on {files} {mode.content} file{plural} ({mode.domain}; "
                    "higher is better)" if curve
                    else f"nac: quality per bit on {files} file{plural} ({mode.domain}; higher is better)")
    figure.tight_layout(rect=(0, 0.035 * -(-len(labels) // columns) + 0.01, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))
