"""The codec as explicit stages over windows of audio, encoder and decoder mirror images.

Encode, one scale group (about 8 s) at a time:
audio window -> STFT -> encoder network -> latents -> codes and peak codes
-> (residual layer) the decoder's spectrum from the coded latents -> residual codes and phase hints -> chunks.

Decode, a few groups at a time, each window with context on both sides:
chunks -> latents -> decoder network -> spectrum -> residual correction
-> starting phase (phase initializer, phase hints) -> phase reconstruction -> waveform.

Windowed inference keeps memory flat with the file's length: each window
sees ``ENCODE_CONTEXT`` / ``DECODE_CONTEXT`` latent frames on either side,
more than the networks' receptive fields (encoder +-7, decoder +-6 frames)
and most of the reach of the phase iterations, so chunk boundaries leave no
step in the waveform. Nothing here reads or writes bytes.

The encoder runs the torch networks (imported on first use); the decoder's
stages (:class:`Synthesis`) drive either those or their numpy copy
(:mod:`nac.model.inference`), on numpy arrays.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from .audio import resample, resample_blocks
from .errors import UsageError
from .format.header import Companion, StreamInfo, derived_counts
from .format.records import Chunk
from .layers import fullband
from .layers import latent as latent_layer
from .layers import stored_phase
from .layers.high_band import HighBandLayer
from .layers.stereo import StereoLayer
from .layers.latent import LatentParams, code_limit
from .layers.residual import GROWTH_ONE, RESIDUAL_FLOOR, SLOPE_ONE, SPAN_ONE, ResidualLayer
from .model.config import MAX_PHASE_ITERS
from .model.zoo import LoadedModel
from .settings import EncoderSettings, is_number

if TYPE_CHECKING:
    import torch  # the encoder's spectra; decoding runs without torch (nac.model.inference)

ENCODE_CONTEXT = 10  # latent frames of audio on each side of a scale group when encoding
DECODE_CONTEXT = 12  # latent frames on each side of a window when decoding
DECODE_WINDOW = 256  # latent frames decoded together (whole chunks, at least one)
CHUNK_SECONDS = 1.0  # a chunk's length: what one damaged record costs
GROUP_CHUNKS = 8  # chunks per scale group: the peak codes' reach
# The encoder runs on one torch thread whatever the caller set: oneDNN and MKL split convolution sums
# differently for different thread counts, so codes would depend on torch.get_num_threads().
ENCODE_THREADS = 1
SILENCE = 2.0**-16  # a chunk whose model-rate samples all stay below this is coded as digital silence
# Encoder choices for the residual layer (docs/results.md): a column every 2 STFT frames, phase hints of
# 4-sample delays and quarter turns, and the share of the synthesis shortfall a closed loop makes up.
RESIDUAL_STRIDE = 2
HINT_DELAY = 4
HINT_TURNS = 4
CLOSED_LOOP_GAIN = 0.5
HIGH_BAND_START = 0.9375  # the high-band layer starts at this share of the core's Nyquist (7.5 kHz at 16 kHz)
# Phase iterations (at least) for a stream with a residual layer, whose magnitude is close enough to the
# original's that longer refinement pays (docs/results.md).
RESIDUAL_PHASE_ITERS = 32
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
HEAP_THRESHOLD = 256 << 20  # bytes: arrays below this live on the heap, which keeps this much free


def tune_heap() -> None:
    """Fix glibc's mmap and trim thresholds high for a process that encodes or decodes.

    Windows allocate and free large arrays over and over (the phase iterations
    once per iteration); with fixed high thresholds their pages are reused
    instead of mapped and faulted in afresh each time. No-op off glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, HEAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch intra-op threads, then restore the caller's setting."""
    import torch

    previous = torch.get_num_threads()
    if previous == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------
# The stream's description from the encoder's settings
# --------------------------------------------------------------------------


def bins_below(hz: float, n_fft: int, sample_rate: int) -> int:
    """STFT bins whose centre lies below ``hz``."""
    return min(n_fft // 2 + 1, math.ceil(hz * n_fft / sample_rate))


def residual_layer(settings: EncoderSettings, config) -> ResidualLayer | None:
    """The residual layer ``settings`` ask for from a model of ``config``, None without one."""
    bins = bins_below(settings.residual_hz, config.n_fft, config.sample_rate)
    if not bins:
        return None
    band_start = bins_below(settings.residual_bands_hz, config.n_fft, config.sample_rate) \
        if settings.residual_bands_hz else bins
    fine_bins = min(bins_below(settings.residual_fine_hz, config.n_fft, config.sample_rate), band_start, bins)
    hint_bins = bins_below(settings.phase_hint_hz, config.n_fft, config.sample_rate) if fine_bins else 0
    slope = round(settings.residual_slope * SLOPE_ONE)
    return ResidualLayer(
        bins=bins,
        stride=RESIDUAL_STRIDE if config.time_stride % RESIDUAL_STRIDE == 0 else 1,
        step=float(np.float32(settings.residual_step)),
        band_start=min(band_start, bins),
        band_growth=min(2 * GROWTH_ONE - 1, round(2 ** (1 / settings.bands_per_octave) * GROWTH_ONE)),
        slope=slope,
        span=round(settings.residual_span * SPAN_ONE) if slope else 0,
        fine_bins=fine_bins,
        fine_step=float(np.float32(settings.fine_step)) if fine_bins else 0.0,
        hint_bins=hint_bins,
        hint_delay=HINT_DELAY if hint_bins else 0,
        hint_turns=HINT_TURNS if hint_bins else 0,
    )


def latent_params(settings: EncoderSettings, loaded: LoadedModel) -> LatentParams:
    """The latent layer ``settings`` ask for: code widths per channel, rANS-coded where the model has tables."""
    config = loaded.config
    code_bits = settings.effective_code_bits
    if not 0 <= settings.coarse_channels <= config.latent_channels:
        raise UsageError(f"coarse channels must be 0..{config.latent_channels} for model {loaded.name}, "
                         f"not {settings.coarse_channels}")
    if settings.coarse_channels and not loaded.channel_order:
        raise UsageError(f"model {loaded.name} has no measured channel order: coarse channels need one")
    if settings.coarse_channels and code_bits <= 2:
        raise UsageError(f"coarse channels need code bits of at least 3, not {code_bits}")
    bits = latent_layer.channel_code_bits(code_bits, config.latent_channels, loaded.channel_order,
                                          settings.coarse_channels)
    return LatentParams(config.latent_channels, config.latent_height, bits, code_limit(code_bits) in loaded.code_tables)


def stream_info(loaded: LoadedModel, settings: EncoderSettings, channels: int, sample_rate: int,
                samples: int) -> StreamInfo:
    """The header of a stream of ``samples`` samples of ``channels`` channels at ``sample_rate``."""
    config = loaded.config
    chunk_frames = max(1, round(CHUNK_SECONDS * config.sample_rate / (config.hop_length * config.time_stride)))
    counts = derived_counts(samples, sample_rate, config.sample_rate, config.n_fft, config.hop_length,
                            config.time_stride, chunk_frames)
    latent = latent_params(settings, loaded)
    residual = residual_layer(settings, config)
    companions = []
    if latent.entropy_coded:
        companions.append((Companion.CODE_TABLES, loaded.companions[Companion.CODE_TABLES]))
    if residual is not None and Companion.RESIDUAL_TABLES in loaded.companions:
        companions.append((Companion.RESIDUAL_TABLES, loaded.companions[Companion.RESIDUAL_TABLES]))
    if Companion.PHASE_INIT in loaded.companions and not settings.store_phase:
        companions.append((Companion.PHASE_INIT, loaded.companions[Companion.PHASE_INIT]))
    high_band = stereo = None
    if settings.high_band_hz and sample_rate > config.sample_rate and not settings.store_phase:
        stop = min(settings.high_band_hz, sample_rate / 2, fullband.RATE / 2)
        start = HIGH_BAND_START * config.sample_rate / 2
        if stop > start + fullband.HZ_PER_BIN:
            high_band = HighBandLayer.spanning(start, stop, settings.high_bands, settings.high_band_step)
    if settings.stereo_bands and channels == 2 and not settings.store_phase:
        stereo = StereoLayer.with_bands(settings.stereo_bands, settings.stereo_step)
    return StreamInfo(
        model_id=loaded.model_id, weights_hash=loaded.hash_prefix, original_sample_rate=sample_rate,
        model_sample_rate=config.sample_rate, channels=channels, sample_count=samples, n_fft=config.n_fft,
        hop_length=config.hop_length, time_stride=config.time_stride, chunk_frames=chunk_frames,
        group_chunks=GROUP_CHUNKS, **counts, latent=latent,
        residual=residual, high_band=high_band, stereo=stereo,
        stored_phase_bits=settings.bits if settings.store_phase else 0, companions=tuple(companions),
    )


# --------------------------------------------------------------------------
# Decoding stages, shared by the encoder (which foresees the decoder) and the decoder
# --------------------------------------------------------------------------


@dataclass
class Features:
    """The decoder network's last features and its spectrum, the residual correction applied (C, ., frames)."""

    hidden: np.ndarray
    log_mag: np.ndarray
    phase: np.ndarray  # the network's phase head
    slack: np.ndarray | None


@dataclass
class Spectrum:
    """What the phase reconstruction starts from (C, bins, frames)."""

    log_mag: np.ndarray
    phase: np.ndarray  # the starting phase
    slack: np.ndarray | None  # how far each bin's magnitude may move (log units), None: not at all


def default_phase_iters(net, residual: bool) -> int:
    """The phase iterations a stream decodes with: the model's, at least :data:`RESIDUAL_PHASE_ITERS` with a
    residual layer."""
    return max(net.config.phase_iters, RESIDUAL_PHASE_ITERS) if residual else net.config.phase_iters


class Synthesis:
    """The decoder's stages from latents to waveform, for a stream's model and layers, on numpy arrays."""

    def __init__(self, net, info: StreamInfo | None, phase_init: bool, phase_iters: int | None = None):
        """``net``: a :class:`nac.model.inference.NumpyDecoder` or :class:`nac.model.networks.TorchDecoder`;
        ``info`` None: a stream of latents alone (analysis tools)."""
        self.net = net
        self.residual = info.residual if info is not None else None
        self.hints = self.residual.hints(info.n_fft) if self.residual else None
        self.phase_init = net.phase_init if phase_init else None
        if phase_iters is not None and not (_is_whole(phase_iters) and 0 <= phase_iters <= MAX_PHASE_ITERS):
            raise UsageError(f"phase iterations must be in 0..{MAX_PHASE_ITERS}")
        if phase_iters is None:
            phase_iters = info.phase_iters if info is not None and info.phase_iters else default_phase_iters(
                net, self.residual is not None)
        self.phase_iters = phase_iters

    def features(self, latent: np.ndarray, residual: np.ndarray | None = None) -> Features:
        """Latents (C, K, H, T') -> the decoder network's features and spectrum -> residual correction."""
        hidden = self.net.decode_hidden(latent)
        log_mag, phase = self.net.spectrum_from_hidden(hidden)
        return self.corrected(Features(hidden, log_mag, phase, None), residual)

    def corrected(self, features: Features, residual: np.ndarray | None) -> Features:
        """``features`` (uncorrected) with the residual codes' correction and slack; as they are without."""
        if self.residual is None or residual is None:
            return features
        bins = self.residual.bins
        corrected, low_slack = self.residual.apply(residual, features.log_mag[:, :bins])
        log_mag = np.concatenate([corrected.astype(np.float32, copy=False), features.log_mag[:, bins:]], axis=1)
        slack = np.zeros_like(log_mag)
        slack[:, :bins] = low_slack
        return Features(features.hidden, log_mag, features.phase, slack)

    def spectrum(self, latent: np.ndarray, residual: np.ndarray | None = None, hinted: bool = True) -> Spectrum:
        """:meth:`features`, then :meth:`start`."""
        return self.start(self.features(latent, residual), residual, hinted)

    def start(self, features: Features, residual: np.ndarray | None = None, hinted: bool = True) -> Spectrum:
        """The starting phase of corrected ``features``: the phase initializer's, then the phase hints' rows of
        ``residual`` (unless not ``hinted``: the encoder chooses them from what comes before)."""
        phase = features.phase
        if self.phase_init is not None:
            phase = self.phase_init(features.hidden, features.log_mag, phase)
        if self.hints is not None and residual is not None and hinted:
            phase = self.hints.apply(residual[:, self.residual.rows :], phase)
        return Spectrum(features.log_mag, phase, features.slack)

    def waveform(self, spectrum: Spectrum, length: int, stored: np.ndarray | None = None) -> np.ndarray:
        """Phase reconstruction: the waveform (C, length), one channel at a time (memory does not grow with
        channels); a stored phase is used as it is."""
        if stored is not None:
            return self.net.synthesize(spectrum.log_mag, stored, length, 0)
        return np.concatenate([
            self.net.synthesize(spectrum.log_mag[c : c + 1], spectrum.phase[c : c + 1], length, self.phase_iters,
                                None if spectrum.slack is None else spectrum.slack[c : c + 1])
            for c in range(spectrum.log_mag.shape[0])
        ])


# --------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------


class SampleWindow:
    """Random access to a forward-moving span of a signal that arrives in blocks.

    ``blocks`` yields (channels, n) float32 arrays; the signal is cut or
    zero-padded to ``length`` samples. Memory holds only the blocks that reach
    past the last :meth:`release` point, up to the furthest sample asked for.
    """

    def __init__(self, blocks: Iterable[np.ndarray], channels: int, length: int):
        self.blocks, self.channels, self.length = iter(blocks), channels, length
        self.held: collections.deque[tuple[int, np.ndarray]] = collections.deque()  # (first sample, block)
        self.read = 0  # samples taken from ``blocks`` so far

    def get(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) (start >= the release point), zeros past ``length``."""
        available = min(stop, self.length)
        while self.read < available:
            block = next(self.blocks, None)
            if block is None:
                break
            self.held.append((self.read, block.astype(np.float32, copy=False)))
            self.read += block.shape[1]
        window = np.zeros((self.channels, stop - start), np.float32)
        for first, block in self.held:
            low, high = max(start, first), min(available, first + block.shape[1])
            if low < high:
                window[:, low - start : high - start] = block[:, low - first : high - first]
        return window

    def release(self, before: int) -> None:
        """Forget the samples before ``before``."""
        while self.held and self.held[0][0] + self.held[0][1].shape[1] <= before:
            self.held.popleft()


@dataclass
class Window:
    """What the encoder's analysis of one scale group holds: latent frames ``start .. stop`` of the stream, and
    context from frame ``first`` on."""

    start: int
    stop: int
    first: int
    samples: int  # model-rate samples analyzed
    spec: "torch.Tensor"  # complex STFT (C, bins, frames)
    latent: np.ndarray  # (C, K, H, frames), zero in silent chunks
    silent: np.ndarray  # per latent frame: in a chunk of digital silence
    high_band: np.ndarray | None = None  # the high band's levels of the group's own frames (coded per chunk)
    stereo: np.ndarray | None = None  # the stereo layer's codes of the group's own frames
    power: tuple[float, float] | None = None  # the own frames' input power: in all, and above the high band

    @property
    def own(self) -> slice:
        """The group's own latent frames within the window."""
        return slice(self.start - self.first, self.stop - self.first)


class Encoder:
    """Audio at the model rate -> the stream's chunks, one scale group at a time."""

    def __init__(self, loaded: LoadedModel, info: StreamInfo, settings: EncoderSettings):
        from .model.networks import TorchDecoder

        self.net, self.info, self.settings = loaded.net, info, settings
        self.synthesis = Synthesis(TorchDecoder(loaded.net), info, Companion.PHASE_INIT in dict(info.companions))
        self.power = np.zeros(2)  # the input's power seen by the high-band layer: in all, and above its band

    @property
    def share_above_band(self) -> float:
        """The share of the input's power above the high band (what the stream does not code), 0 without one."""
        total, above = self.power
        return above / total if total > 0 else 0.0

    def chunks(self, source: SampleWindow) -> Iterator[Chunk]:
        """Every chunk of the stream, in order; ``source`` holds the model-rate audio. Scale groups are coded
        side by side on as many threads as torch has, each on one torch thread: the same bytes."""

        import torch

        def code(start: int, stop: int, first: int, audio: np.ndarray) -> tuple[list[Chunk], tuple | None]:
            with torch.inference_mode():
                window = self.analyze(start, stop, first, audio)
                return list(self.code(window)), window.power

        workers = torch.get_num_threads()
        with torch_threads(ENCODE_THREADS):
            for chunks, power in _ordered_map(code, self.spans(source), workers):
                if power is not None:
                    self.power += power
                yield from chunks

    def windows(self, source: SampleWindow) -> Iterator[Window]:
        """The analysis of each scale group, in order."""
        for span in self.spans(source):
            yield self.analyze(*span)

    def spans(self, source: SampleWindow) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """Each scale group's latent frames ``start .. stop`` and its audio with context from frame ``first``."""
        info = self.info
        group_frames = info.chunk_frames * info.group_chunks
        step = info.samples_per_frame * info.decoded_ratio
        for start in range(0, info.latent_frames, group_frames):
            stop = min(start + group_frames, info.latent_frames)
            first, last = max(0, start - ENCODE_CONTEXT), min(info.latent_frames, stop + ENCODE_CONTEXT)
            source.release(first * step)
            yield start, stop, first, source.get(first * step, last * step)

    def analyze(self, start: int, stop: int, first: int, audio: np.ndarray) -> Window:
        """A scale group's STFT and latents (zero in silent chunks); ``audio`` is at the decoded rate (48 kHz
        for a fullband stream, whose layers analyse it first and pass the core its band)."""
        import torch

        info, net = self.info, self.net
        last = first + audio.shape[-1] // (info.samples_per_frame * info.decoded_ratio)
        silent = self._silent_frames(audio, first, last)
        layers = {}
        if info.fullband:
            audio, layers = self._fullband(audio, slice(start - first, stop - first))
        with torch.inference_mode():
            spec = net.stft.analyze(torch.from_numpy(audio), (last - first) * info.time_stride)
            latent = net.encode_spectrum(spec).numpy()
        latent[..., silent] = 0.0
        return Window(start, stop, first, audio.shape[-1], spec, latent, silent, **layers)

    def _fullband(self, audio: np.ndarray, own: slice) -> tuple[np.ndarray, dict]:
        """A window at 48 kHz -> (the core's audio at the model rate, the fullband layers' codes of the ``own``
        latent frames): the stereo layer mixes to the mid, the high-band layer measures the band above the
        core."""
        info = self.info
        per = info.columns_per_frame
        spec, columns, codes = fullband.analyze(audio), slice(own.start * per, own.stop * per), {}
        if info.high_band:  # what the input holds above the band, every channel (before a stereo downmix)
            above = spec[:, columns, info.high_band.stop :]
            codes["power"] = (float(np.vdot(spec[:, columns], spec[:, columns]).real), float(np.vdot(above, above).real))
        if info.stereo:
            codes["stereo"] = info.stereo.codes(spec[:1, columns], spec[1:, columns], per)
            spec = info.stereo.downmix(spec[:1], spec[1:], per)
        if info.high_band:
            codes["high_band"] = info.high_band.levels(spec[:, columns], per)  # delta-coded per chunk
        core = resample(fullband.synthesize(spec), fullband.RATE, info.model_sample_rate)
        return _fit(core, audio.shape[-1] // info.decoded_ratio), codes

    def code(self, window: Window) -> Iterator[Chunk]:
        """A scale group's chunks: its latents quantized with the group's peaks, the layers' codes beside them."""
        import torch

        info = self.info
        stride, own = info.time_stride, window.own
        codes, peaks = latent_layer.quantize(window.latent[..., own], info.latent)
        steps = latent_layer.steps(peaks, info.latent)
        frames = slice(own.start * stride, own.stop * stride)
        residual = phase = None
        if info.residual is not None:
            # the window's latents as the decoder will see them, context included (quantized together here)
            window_codes, window_peaks = latent_layer.quantize(window.latent, info.latent)
            coded = latent_layer.dequantize(window_codes, latent_layer.steps(window_peaks, info.latent))
            residual = self._residual_codes(coded, window.spec, window.samples)
            residual = residual[..., frames.start // info.residual.stride : frames.stop // info.residual.stride]
        if info.stored_phase_bits:
            phase = stored_phase.quantize(torch.angle(window.spec[..., frames]).numpy(), info.stored_phase_bits)
        per_column = stride // info.residual.stride if info.residual else stride
        for index in range(window.start // info.chunk_frames, -(-window.stop // info.chunk_frames)):
            low = index * info.chunk_frames - window.start
            high = min(window.stop, (index + 1) * info.chunk_frames) - window.start
            if window.silent[own][low:high].all():
                yield Chunk(index, high - low, steps, None, peaks=peaks)
                continue
            yield Chunk(
                index, high - low, steps, np.ascontiguousarray(codes[..., low:high]),
                phase=None if phase is None else np.ascontiguousarray(phase[..., low * stride : high * stride]),
                residual=None if residual is None else np.ascontiguousarray(
                    residual[..., low * per_column : high * per_column]),
                peaks=peaks,
                high_band=None if window.high_band is None else info.high_band.codes(window.high_band[..., low:high]),
                stereo=None if window.stereo is None else window.stereo[..., low:high].copy(),
            )

    def _silent_frames(self, audio: np.ndarray, first: int, last: int) -> np.ndarray:
        """Per latent frame of the window, whether it lies in a chunk of digital silence."""
        info = self.info
        span = info.samples_per_frame * info.decoded_ratio
        silent = np.zeros(last - first, bool)
        for index in range(first // info.chunk_frames, -(-last // info.chunk_frames)):
            low, high = index * info.chunk_frames, min(info.latent_frames, (index + 1) * info.chunk_frames)
            if low < first or high > last:
                continue  # a chunk only partly in the context: not known here, taken as sound
            samples = audio[:, (low - first) * span : min(info.decoded_sample_count, high * span) - first * span]
            silent[low - first : high - first] = not (np.abs(samples) >= SILENCE).any()
        return silent

    def _residual_codes(self, coded: np.ndarray, spec, length: int) -> np.ndarray:
        """A window's residual codes (C, code rows, columns) from its coded latents and STFT (``length`` samples).

        They take the log-magnitude the decoder will predict towards the
        original's (from where the closed loop moves it, if asked for); the
        phase hints' rows follow, those that turn the starting phase the
        decoder will synthesize from these codes towards the original's.
        """
        layer, synthesis = self.info.residual, self.synthesis
        from .model.stft import log_magnitude

        features = synthesis.features(coded)  # the decoder network runs once for both layers' choices
        original = log_magnitude(spec[:, : layer.bins]).numpy()
        decoded = aimed = features.log_mag[:, : layer.bins]
        if self.settings.closed_loop:
            aimed = self._closed_loop_aim(features, original, length)
        codes = layer.quantize(original, aimed, decoded)
        if synthesis.hints is None:
            return codes
        hints = synthesis.hints
        start = synthesis.start(synthesis.corrected(features, codes), codes, hinted=False).phase
        chosen = hints.choose(spec[:, : hints.bins].numpy(), start[:, : hints.bins])
        return np.concatenate([codes, chosen], axis=1)

    def _closed_loop_aim(self, features: Features, original: np.ndarray, length: int) -> np.ndarray:
        """Where the residual codes should start from: the decoded low-bin log-magnitude, moved so that they also
        make up what synthesis loses.

        Phase reconstruction cannot reach an inconsistent magnitude: the output's
        own log-magnitude (after the open-loop codes and the decoder's phase
        iterations) falls short of the original where the codes aimed. Where
        ``CLOSED_LOOP_GAIN`` of that shortfall comes to at least half a step, the
        decoded value moves the other way by those whole steps, so the codes aim
        past it. Both sides are held at the residual floor first, as the
        quantizer does.
        """
        import torch

        from .model.stft import log_magnitude

        layer, synthesis = self.info.residual, self.synthesis
        decoded = features.log_mag[:, : layer.bins]
        open_loop = layer.quantize(original, decoded, decoded)
        wave = synthesis.waveform(synthesis.start(synthesis.corrected(features, open_loop), open_loop, hinted=False),
                                  length)
        achieved = log_magnitude(self.net.stft.analyze(torch.from_numpy(wave), original.shape[-1])[:, : layer.bins])
        shortfall = torch.from_numpy(original).clamp_min(RESIDUAL_FLOOR) - achieved.clamp_min(RESIDUAL_FLOOR)
        steps = layer.frame_steps(decoded)
        steps = steps if np.isscalar(steps) else torch.from_numpy(steps)
        return (torch.from_numpy(decoded) - steps * torch.round(CLOSED_LOOP_GAIN * shortfall / steps)).numpy()


# --------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------


class Decoder:
    """A stream's chunks -> waveform, a few chunks per window with context on both sides."""

    def __init__(self, net, info: StreamInfo, phase_init: bool, phase_iters: int | None = None):
        """``net``: a :class:`nac.model.inference.NumpyDecoder` or :class:`nac.model.networks.TorchDecoder`."""
        self.info = info
        self.synthesis = Synthesis(net, info, phase_init, phase_iters)

    def blocks(self, chunk_at: Callable[[int], Chunk | None], first_chunk: int = 0, last_chunk: int | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """Model-rate waveform (C, samples) of chunks ``first_chunk .. last_chunk``, in order, a window per block.

        ``chunk_at(i)`` gives chunk ``i`` (None for a lost chunk, decoded as
        silence); neighbours are asked for as context, each at most once.
        Silent chunks come out as exact zeros.
        """
        info = self.info
        last_chunk = info.chunk_count - 1 if last_chunk is None else last_chunk
        context_chunks = _context_chunks(info)
        group = max(1, DECODE_WINDOW // info.chunk_frames)
        cache: dict[int, Chunk] = {}

        def chunk(index: int) -> Chunk:
            if index not in cache:
                found = chunk_at(index)
                cache[index] = found if found is not None else _lost(info, index)
            return cache[index]

        def windows() -> Iterator[tuple]:
            for begin in range(first_chunk, last_chunk + 1, group):
                end = min(begin + group, last_chunk + 1)
                for stale in [i for i in cache if i < begin - context_chunks]:
                    del cache[stale]
                neighbours = [chunk(i) for i in range(max(0, begin - context_chunks),
                                                      min(info.chunk_count, end + context_chunks))]
                yield neighbours, begin, end

        def decode(neighbours: list[Chunk], begin: int, end: int) -> tuple[np.ndarray, int]:
            return self._window(neighbours, begin, end), end - first_chunk

        with self.synthesis.net.parallel() as workers:
            for wave, done in _ordered_map(decode, windows(), workers):
                if on_progress is not None:
                    on_progress(done, last_chunk - first_chunk + 1)
                yield wave

    def output(
        self,
        chunk_at: Callable[[int], Chunk | None],
        keep_model_rate: bool,
        span: tuple[int, int] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        silent: frozenset[int] = frozenset(),
    ) -> tuple[int, Iterator[np.ndarray]]:
        """(output rate, audio blocks) of the stream at its original rate (or the decoder's: ``keep_model_rate``).
        ``span`` = (first, stop) samples at the output rate decodes only the chunks that cover it (and one on
        either side where a resampler runs); the spans of ``silent`` chunks come out as exact zeros at the output rate too."""
        info = self.info
        out_rate = info.decoded_rate if keep_model_rate else info.original_sample_rate
        out_length = info.decoded_sample_count if keep_model_rate else info.sample_count
        first, stop = span if span is not None else (0, out_length)
        if info.latent_frames == 0 or stop <= first:
            return out_rate, iter([np.zeros((info.channels, max(0, stop - first)), np.float32)])
        rm = info.decoded_rate
        chunk_samples = info.chunk_frames * info.samples_per_frame * info.decoded_ratio
        model_start, first_chunk, last_chunk = _output_chunks(info, keep_model_rate, span)

        def model_rate_blocks() -> Iterator[np.ndarray]:
            remaining = info.decoded_sample_count - model_start
            skip = model_start - first_chunk * chunk_samples
            for piece in self.blocks(chunk_at, first_chunk, last_chunk, on_progress):
                dropped = min(skip, piece.shape[1])
                piece, skip = piece[:, dropped:], skip - dropped
                # Valid but absurd latents overflow inside the model; the output stays finite whatever the file holds.
                piece = np.nan_to_num(piece[:, : max(0, remaining)], nan=0.0, posinf=0.0, neginf=0.0)
                remaining -= piece.shape[1]
                yield piece

        quiet = [(-(-start * out_rate // rm), stop * out_rate // rm)
                 for start, stop in map(info.decoded_chunk_span, sorted(silent))]

        def cut(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            skip, wanted = max(0, first - model_start * out_rate // rm), stop - first
            position = first
            for block in blocks:
                dropped = min(skip, block.shape[1])
                block, skip = block[:, dropped : dropped + wanted], skip - dropped
                wanted -= block.shape[1]
                for low, high in quiet:  # a resampler's ringing may reach into silence
                    low, high = max(low, position), min(high, position + block.shape[1])
                    if low < high:
                        block[:, low - position : high - position] = 0.0
                position += block.shape[1]
                if block.shape[1]:
                    yield block
                if wanted == 0:
                    return
            yield np.zeros((info.channels, wanted), np.float32)

        blocks = model_rate_blocks()
        if not keep_model_rate:
            blocks = resample_blocks(blocks, info.decoded_rate, info.original_sample_rate, info.channels)
        return out_rate, cut(blocks)

    def whole_stream(self, chunks: list[Chunk]) -> tuple[np.ndarray, np.ndarray | None]:
        """The latents and residual codes of a whole (short) stream at once, where :meth:`blocks` goes a window at
        a time: what analysis tools feed to :attr:`synthesis`'s stages."""
        info = self.info
        latent = np.concatenate([latent_layer.dequantize(_codes(info, c), c.steps) for c in chunks], axis=-1)
        residual = np.concatenate([_residual(info, c) for c in chunks], axis=-1) if info.residual else None
        return latent, residual

    def _window(self, neighbours: list[Chunk], begin: int, end: int) -> np.ndarray:
        """The waveform of chunks ``begin .. end - 1`` from them and their ``neighbours`` (context included)."""
        info = self.info
        stride, span = info.time_stride, info.samples_per_frame
        offset = sum(c.frames for c in neighbours if c.index < begin)
        frames = sum(c.frames for c in neighbours if begin <= c.index < end)
        total = sum(c.frames for c in neighbours)
        first, last = max(0, offset - DECODE_CONTEXT), min(total, offset + frames + DECODE_CONTEXT)
        latent = np.concatenate([latent_layer.dequantize(_codes(info, c), c.steps) for c in neighbours], axis=-1)
        residual = stored = None
        if info.residual is not None:
            per_frame = stride // info.residual.stride
            residual = np.concatenate([_residual(info, c) for c in neighbours], axis=-1)
            residual = np.ascontiguousarray(residual[..., first * per_frame : last * per_frame])
        spectrum = self.synthesis.spectrum(np.ascontiguousarray(latent[..., first:last]), residual)
        if info.stored_phase_bits:
            phase = np.concatenate([_stored_phase(info, c) for c in neighbours], axis=-1)
            stored = np.ascontiguousarray(phase[..., first * stride : last * stride])
        wave = self.synthesis.waveform(spectrum, (last - first) * span, stored)
        if info.fullband:
            wave = self._fullband(wave, neighbours, first, last)
            span *= info.decoded_ratio
        wave = wave[:, (offset - first) * span : (offset - first + frames) * span]
        position = 0
        for chunk in neighbours:
            if begin <= chunk.index < end:
                if chunk.silent:
                    wave[:, position : position + chunk.frames * span] = 0.0
                position += chunk.frames * span
        return wave

    def _fullband(self, core: np.ndarray, neighbours: list[Chunk], first: int, last: int) -> np.ndarray:
        """The core's waveform of latent frames ``first .. last`` of ``neighbours`` -> 48 kHz with the band above
        rebuilt and the stereo channels mixed from the mid."""
        info = self.info
        per = info.columns_per_frame
        spec = fullband.analyze(_fit(resample(core, info.model_sample_rate, fullband.RATE),
                                     core.shape[-1] * info.decoded_ratio))
        if info.high_band:
            power = np.concatenate([_high_band_power(info, c) for c in neighbours], axis=-1)[..., first:last]
            spec = info.high_band.apply(spec, power, per)
        if info.stereo:
            codes = np.concatenate([_stereo_codes(info, c) for c in neighbours], axis=-1)[..., first:last]
            spec = info.stereo.upmix(spec, codes, per)
        return fullband.synthesize(spec)


def _output_chunks(info: StreamInfo, keep_model_rate: bool, span: tuple[int, int] | None) -> tuple[int, int, int]:
    """(model-rate sample the output starts from, first chunk, last chunk) of a decode of ``span`` (output-rate
    samples; None: the whole stream)."""
    out_rate = info.decoded_rate if keep_model_rate else info.original_sample_rate
    out_length = info.decoded_sample_count if keep_model_rate else info.sample_count
    first, stop = span if span is not None else (0, out_length)
    rm = info.decoded_rate
    chunk_samples = info.chunk_frames * info.samples_per_frame * info.decoded_ratio
    to_model = rm / out_rate
    # With a resampler, output starts a chunk before the span, at a model-rate sample that falls on an output
    # sample too, so the resampler runs in step with a whole-file decode, and ends a chunk after it.
    margin = chunk_samples if out_rate != rm else 0
    shared = rm // math.gcd(rm, out_rate)
    model_start = max(0, int(first * to_model) - margin) // shared * shared if span is not None else 0
    last_chunk = min(info.chunk_count - 1, (int(np.ceil(stop * to_model)) - 1 + margin) // chunk_samples)
    return model_start, model_start // chunk_samples, last_chunk


def _context_chunks(info: StreamInfo) -> int:
    """Chunks on either side of a window that its context reaches into."""
    return -(-DECODE_CONTEXT // info.chunk_frames)


def chunks_read(info: StreamInfo, keep_model_rate: bool, span: tuple[int, int] | None) -> int:
    """How many chunks :meth:`Decoder.output` reads for ``span`` (None: the whole stream), context included."""
    _, first_chunk, last_chunk = _output_chunks(info, keep_model_rate, span)
    context = _context_chunks(info)
    return min(info.chunk_count - 1, last_chunk + context) - max(0, first_chunk - context) + 1


def seek_span(
    info: StreamInfo, keep_model_rate: bool, start: float | None, duration: float | None
) -> tuple[int, int] | None:
    """(first, stop) output samples for ``start`` / ``duration`` seconds; None for the whole stream."""
    if start is None and duration is None:
        return None
    rate = info.decoded_rate if keep_model_rate else info.original_sample_rate
    total = info.decoded_sample_count if keep_model_rate else info.sample_count
    if not all(value is None or is_number(value) for value in (start, duration)):
        raise UsageError("start and duration must be numbers of seconds")
    start = start or 0.0
    if not np.isfinite(start) or start < 0 or (duration is not None and not (np.isfinite(duration) and duration >= 0)):
        raise UsageError("start and duration must be finite and >= 0")
    first = round(start * rate)
    if first > total:
        raise UsageError(f"start {start:g} s is past the end ({total / rate:.3f} s)")
    stop = total if duration is None else min(total, first + round(duration * rate))
    return first, stop


def _is_whole(value) -> bool:
    return is_number(value) and isinstance(value, (int, np.integer))


def output_frames(info: StreamInfo, keep_model_rate: bool, start: float | None, duration: float | None) -> int:
    """How many samples a decode of ``start`` / ``duration`` seconds (None: the whole stream) gives."""
    span = seek_span(info, keep_model_rate, start, duration)
    if span is None:
        return info.decoded_sample_count if keep_model_rate else info.sample_count
    return span[1] - span[0]


def _lost(info: StreamInfo, index: int) -> Chunk:
    """A lost chunk, decoded as silence."""
    steps = np.zeros((info.coded_channels, info.latent.latent_channels), np.float32)
    return Chunk(index, info.chunk_frames_at(index), steps, None)


def _codes(info: StreamInfo, chunk: Chunk) -> np.ndarray:
    if chunk.codes is not None:
        return chunk.codes
    return np.zeros((info.coded_channels, info.latent.latent_channels, info.latent.latent_height, chunk.frames),
                    np.int8)


def _residual(info: StreamInfo, chunk: Chunk) -> np.ndarray:
    if chunk.residual is not None:
        return chunk.residual
    columns = info.residual.columns(chunk.frames * info.time_stride)
    return np.zeros((info.coded_channels, info.residual.code_rows, columns), np.int8)


def _high_band_power(info: StreamInfo, chunk: Chunk) -> np.ndarray:
    """A chunk's high-band powers (silence for a silent or lost chunk)."""
    if chunk.high_band is None:
        return np.zeros((info.coded_channels, info.high_band.bands, chunk.frames))
    return info.high_band.power(chunk.high_band)


def _stereo_codes(info: StreamInfo, chunk: Chunk) -> np.ndarray:
    """A chunk's stereo codes (equal, correlated channels for a silent or lost chunk)."""
    if chunk.stereo is None:
        return np.zeros((1, info.stereo.code_rows, chunk.frames), np.int64)
    return chunk.stereo


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """``audio`` cut or zero-padded to ``length`` samples (a resampler may give one more or fewer)."""
    if audio.shape[-1] >= length:
        return np.ascontiguousarray(audio[:, :length])
    return np.pad(audio, ((0, 0), (0, length - audio.shape[-1])))


def _stored_phase(info: StreamInfo, chunk: Chunk) -> np.ndarray:
    if chunk.phase is not None:
        return stored_phase.dequantize(chunk.phase, info.stored_phase_bits)
    return np.zeros((info.coded_channels, info.phase_bins, chunk.frames * info.time_stride), np.float32)


def _ordered_map(function: Callable, items: Iterator[tuple], workers: int) -> Iterator:
    """``function(*item)`` for each item, in order; with several workers, that many run at once.

    Each worker is a thread (torch and numpy release the GIL in their heavy
    work); the caller runs torch on one intra-op thread meanwhile, so windows
    decode side by side and each gives the same result as it would alone. At
    most ``workers`` items are in flight.
    """
    if workers <= 1:
        yield from (function(*item) for item in items)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(function, *item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
