"""Windowed model inference: one container chunk at a time, with context.

Whole-file inference needs memory in proportion to the file. Here each chunk
of latent frames is encoded from the audio it covers plus ``ENCODE_CONTEXT``
latent frames of audio on either side, and a few chunks at a time are decoded
(network and Griffin-Lim) from their latents plus ``DECODE_CONTEXT`` frames on
either side; only the chunks' own frames or samples are kept. The contexts
exceed the networks' receptive fields (measured: encoder +-7, decoder +-6
latent frames; +-6 with the default model's refiner) and most of the reach of
the phase iterations (with 8 of them windowed decoding stops changing at 6
frames of context; with the default model's 16, windowed decoding differs
from whole-file decoding by at most 6e-5 on the bundled clip), so windowed
output matches whole-file inference closely (tests/test_streaming.py bounds
the difference) and chunk boundaries leave no step in the waveform.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import ctypes.util
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from .quantize import RESIDUAL_FLOOR, PhaseHints, ResidualLayer
from .stft import log_magnitude

ENCODE_CONTEXT = 10  # latent frames of audio on each side of a chunk when encoding
DECODE_CONTEXT = 12  # latent frames on each side of a window when decoding
DECODE_WINDOW = 256  # latent frames decoded together (whole chunks, at least one)
# Share of the synthesis shortfall a closed-loop residual makes up (closed_loop_decoded).
# v5 at the 15.20 kbps setting (step 0.45, bands from 1.25 kHz), 100 dev files: 0.5 gave
# PESQ-WB 4.05 at 15.53 kbps against 4.01 at 15.20 open loop. A scratch version with the
# shortfall from whole-file decoding gave +0.05 for +0.30 kbit/s on 100 train files too;
# 1.0 overshot (-0.12 on 40 train files), and moving by fractions of a step lost 0.08.
CLOSED_LOOP_GAIN = 0.5
# Share of its code step by which a residual bin's magnitude may move during the phase
# iterations (griffin_lim's slack): the truth lies within half a step of the corrected value.
# nac eval on 100 dev files (v5), the same settings without and with it: PESQ-WB 3.24 -> 3.28
# at 6.7 kbps, 3.98 -> 4.04 at 11.2, 4.14 -> 4.19 at 15.0, 4.29 -> 4.33 at 23.1 (closed loop)
# and 4.28 -> 4.32 at 23.2 (open); ViSQOL -0.03 to +0.02.
PHASE_SLACK = 0.5
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
HEAP_THRESHOLD = 256 << 20  # bytes: arrays below this live on the heap, which keeps this much free


def tune_heap() -> None:
    """Fix glibc's mmap and trim thresholds high for a process that encodes or decodes.

    Streaming allocates and frees window-sized arrays over and over (Griffin-Lim
    alone, once per iteration per window). By default glibc maps the large ones
    afresh each time, and every page of them faults in again: measured on
    10 min of speech, 400 k minor faults and 3.8 s to decode instead of 70 k and
    3.3 s. With fixed high thresholds they stay on a heap that is never trimmed
    and their pages are reused. The heap then stays the size of one window's
    arrays, because nothing allocated per chunk outlives its window (chunk
    records go straight to the output). No-op off glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, HEAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def latent_frame_count(net: torch.nn.Module, samples: int) -> int:
    config = net.config
    return config.stft.frame_count(samples, config.time_stride) // config.time_stride


class SampleWindow:
    """Random access to a forward-moving span of a signal that arrives in blocks.

    ``blocks`` yields (channels, n) float32 arrays; the signal is cut or
    zero-padded to ``length`` samples. Memory holds only the blocks that
    reach past the last :meth:`release` point, up to the furthest sample
    asked for. Blocks are kept as they came and copied once into each window,
    so allocations do not grow step by step (which fragments the heap).
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


class ChunkAnalysis(NamedTuple):
    """What the encoder learns about one chunk's audio (C audio channels, S = time_stride)."""

    latent: np.ndarray  # (C, K, H, frames)
    phase: np.ndarray | None  # (C, bins, frames * S): the STFT phase, if asked for
    residual: np.ndarray | None  # (C, rows, columns): the residual layer's codes (phase hints' rows last), if asked for


def encode_chunks(
    net: torch.nn.Module,
    source: SampleWindow,
    chunk_frames: int,
    with_phase: bool = False,
    layer: ResidualLayer | None = None,
    code_roundtrip: Callable[[np.ndarray], np.ndarray] | None = None,
    closed_loop: ClosedLoop | None = None,
    hints: PhaseHints | None = None,
) -> Iterator[ChunkAnalysis]:
    """Per chunk: latents, and as asked the phase and the codes of the residual ``layer`` (:func:`residual_codes`).

    For the decoded log-magnitude, the window's latents (context included) go
    through ``code_roundtrip`` (quantize then dequantize) and the decoder
    network. They are quantized together, with scales over the window where
    the file has one set per chunk, so where a neighbour's peaks exceed the
    chunk's the decoder's prediction differs slightly from this one.
    """
    config = net.config
    stride, span = config.time_stride, config.hop_length * config.time_stride
    total = latent_frame_count(net, source.length)
    for start in range(0, total, chunk_frames):
        stop = min(start + chunk_frames, total)
        first, last = max(0, start - ENCODE_CONTEXT), min(total, stop + ENCODE_CONTEXT)
        source.release(first * span)
        segment = torch.from_numpy(source.get(first * span, last * span))
        with torch.inference_mode():
            spec = net.stft.analyze(segment, (last - first) * stride)
            window_latent = net.encode_spectrum(spec)
            latent = window_latent[..., start - first : stop - first].numpy()
            frames = slice((start - first) * stride, (stop - first) * stride)
            phase = torch.angle(spec[..., frames]).numpy() if with_phase else None
            residual = None
            if layer is not None:
                coded = torch.from_numpy(code_roundtrip(window_latent.numpy()))
                residual = residual_codes(net, coded, spec, layer, closed_loop, hints, segment.shape[-1])
                residual = residual[..., frames.start // layer.stride : frames.stop // layer.stride]
        yield ChunkAnalysis(latent, phase, residual)


def residual_codes(net: torch.nn.Module, coded: torch.Tensor, spec: torch.Tensor, layer: ResidualLayer,
                   closed_loop: ClosedLoop | None, hints: PhaseHints | None, length: int) -> np.ndarray:
    """A window's residual codes (C, rows, columns) from its coded latents ``coded`` and STFT ``spec`` (``length``
    samples).

    They take the log-magnitude the decoder network predicts towards the
    original's, from where :func:`closed_loop_aim` moves it with
    ``closed_loop``. With ``hints``, the rows of the phase hints follow: those
    that turn the starting phase the decoder synthesizes from these codes
    towards the original's (:meth:`PhaseHints.choose`).
    """
    log_mag, _ = net.decode_spectrum(coded)
    original = log_magnitude(spec[:, : layer.bins])
    decoded = aimed = log_mag[:, : layer.bins]
    if closed_loop is not None:
        aimed = closed_loop_aim(net, coded, log_mag, original, closed_loop, length)
    codes = layer.quantize(original.numpy(), aimed.numpy(), decoded.numpy())
    if hints is None:
        return codes
    _, start, _ = net.synthesis_spectrum(coded, lambda log_mag: apply_residual(layer, codes, log_mag))
    chosen = hints.choose(spec[:, : hints.bins].numpy(), start[:, : hints.bins].numpy())
    return np.concatenate([codes, chosen], axis=1)


class ClosedLoop(NamedTuple):
    """What the encoder needs to foresee the decoder's output from the residual layer."""

    layer: ResidualLayer
    phase_iters: int  # the decoder's Griffin-Lim iterations


def closed_loop_aim(
    net: torch.nn.Module,
    coded: torch.Tensor,
    log_mag: torch.Tensor,
    original: torch.Tensor,
    loop: ClosedLoop,
    length: int,
) -> torch.Tensor:
    """Where the residual codes should start from: the decoded low-bin log-magnitude, moved so that they also make
    up what synthesis loses.

    Griffin-Lim cannot reach an inconsistent magnitude: the output's own
    log-magnitude (after the open-loop residual and the decoder's phase
    iterations) falls short of the original where the residual aimed. Where
    ``CLOSED_LOOP_GAIN`` of that shortfall comes to at least half a step, the
    decoded value moves the other way by those whole steps (the layer's step there), so the codes aim past it;
    smaller shortfalls leave the codes as they were. Both sides are held at
    the residual floor first, as the quantizer does. ``coded`` is the window's
    coded latents, ``log_mag`` the log-magnitude (C, bins, frames) the
    network decodes from them; ``original`` the lowest bins' true one.
    """
    low_bins = original.shape[1]
    decoded = log_mag[:, :low_bins]
    layer, before = loop.layer, decoded.numpy()
    correction = torch.from_numpy(layer.correction(layer.quantize(original.numpy(), before, before), before))
    corrected = torch.cat([decoded + correction, log_mag[:, low_bins:]], dim=1)
    steps = layer.frame_steps(before)
    slack = phase_slack(steps, before.shape, log_mag.shape[1])
    corrected, predicted, slack = net.synthesis_spectrum(coded, lambda _: (corrected, slack))
    wave = torch.cat([net.synthesize(corrected[c : c + 1], predicted[c : c + 1], length, loop.phase_iters,
                                     slack[c : c + 1]) for c in range(corrected.shape[0])])
    achieved = log_magnitude(net.stft.analyze(wave, original.shape[-1])[:, :low_bins])
    shortfall = original.clamp_min(RESIDUAL_FLOOR) - achieved.clamp_min(RESIDUAL_FLOOR)
    steps = steps if np.isscalar(steps) else torch.from_numpy(steps)
    return decoded - steps * torch.round(CLOSED_LOOP_GAIN * shortfall / steps)


def phase_slack(steps: float | np.ndarray, shape: tuple[int, int, int], bins: int) -> torch.Tensor:
    """The phase iterations' slack (C, bins, frames) for a spectrum of ``bins`` bins whose lowest a residual layer
    corrects: ``PHASE_SLACK`` of its ``steps`` there (:meth:`ResidualLayer.frame_steps`, ``shape`` (C, layer bins,
    frames)), 0 above."""
    channels, low_bins, frames = shape
    slack = torch.zeros(channels, bins, frames)
    slack[:, :low_bins] = torch.from_numpy(PHASE_SLACK * np.broadcast_to(np.asarray(steps, np.float32), shape))
    return slack


def apply_residual(layer: ResidualLayer, codes: np.ndarray, log_mag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoded log-magnitude (C, bins, frames) with the layer's ``codes`` applied to its lowest bins, and the
    phase iterations' slack (:func:`phase_slack`): what the decoder synthesizes from. Code rows after the
    layer's own (phase hints) are not the layer's."""
    low = log_mag[:, : layer.bins]
    decoded = low.numpy()
    change = torch.from_numpy(layer.correction(codes[:, : layer.rows], decoded))
    slack = phase_slack(layer.frame_steps(decoded), low.shape, log_mag.shape[1])
    return torch.cat([low + change, log_mag[:, layer.bins :]], dim=1), slack


def decode_chunks(
    net: torch.nn.Module,
    chunk_count: int,
    chunk_frames: int,
    latent_at: Callable[[int], np.ndarray],
    phase_at: Callable[[int], np.ndarray] | None = None,
    first_chunk: int = 0,
    last_chunk: int | None = None,
    phase_iters: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    residual_at: Callable[[int], np.ndarray] | None = None,
    residual: ResidualLayer | None = None,
    hints: PhaseHints | None = None,
) -> Iterator[np.ndarray]:
    """Waveform (C, samples) of chunks ``first_chunk .. last_chunk``, in order, a few chunks per block.

    Consecutive chunks are decoded together in windows of about
    ``DECODE_WINDOW`` latent frames, so the context on each side costs less.
    ``latent_at(i)`` / ``phase_at(i)`` / ``residual_at(i)`` give chunk ``i``'s
    dequantized latents / phase and residual codes (of the layer ``residual``,
    and the rows of phase ``hints`` after its own, if the stream has them);
    neighbours are asked for as context,
    each at most once.
    ``phase_iters`` overrides the model's Griffin-Lim iterations;
    ``on_progress(done, total)`` counts chunks.
    """
    config = net.config
    stride, span = config.time_stride, config.hop_length * config.time_stride
    last_chunk = chunk_count - 1 if last_chunk is None else last_chunk
    context_chunks = -(-DECODE_CONTEXT // chunk_frames)
    group = max(1, DECODE_WINDOW // chunk_frames)
    cache: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}

    def chunk(index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        if index not in cache:
            cache[index] = (latent_at(index), phase_at(index) if phase_at else None,
                            residual_at(index) if residual_at else None)
        return cache[index]

    def frame_part(neighbours: range, part: int, first: int, last: int, per_frame: int) -> np.ndarray:
        """Latent frames ``[first, last)`` of a part of the chunks with ``per_frame`` columns a latent frame."""
        joined = np.concatenate([chunk(i)[part] for i in neighbours], axis=-1)
        return np.ascontiguousarray(joined[..., first * per_frame : last * per_frame])

    def windows() -> Iterator[tuple]:
        """Per window: latents, phase, residual, first sample kept, samples kept, chunks done after it."""
        for begin in range(first_chunk, last_chunk + 1, group):
            end = min(begin + group, last_chunk + 1)
            for stale in [i for i in cache if i < begin - context_chunks]:
                del cache[stale]
            neighbours = range(max(0, begin - context_chunks), min(chunk_count, end + context_chunks))
            latent = np.concatenate([chunk(i)[0] for i in neighbours], axis=-1)
            offset = (begin - neighbours.start) * chunk_frames
            frames = sum(chunk(i)[0].shape[-1] for i in range(begin, end))
            first = max(0, offset - DECODE_CONTEXT)
            last = min(latent.shape[-1], offset + frames + DECODE_CONTEXT)
            window = torch.from_numpy(np.ascontiguousarray(latent[..., first:last]))
            phase = codes = None
            if phase_at is not None:
                phase = torch.from_numpy(frame_part(neighbours, 1, first, last, stride))
            if residual_at is not None:
                codes = frame_part(neighbours, 2, first, last, stride // residual.stride)
            yield window, phase, codes, (offset - first) * span, frames * span, end - first_chunk

    def decode_window(window, phase, codes, keep_from: int, keep: int, done: int) -> tuple[np.ndarray, int]:
        def channel(part, c: int):
            return None if part is None else part[c : c + 1]

        def corrector(c: int) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
            """Channel ``c``'s residual codes applied to the log-magnitude the network decodes, and the slack."""
            if codes is None:
                return None

            return lambda log_mag: apply_residual(residual, codes[c : c + 1], log_mag)

        def steerer(c: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
            """Channel ``c``'s phase hints (the code rows after the layer's) applied to the starting phase."""
            if hints is None:  # a stream with hints has the layer, so codes
                return None
            return lambda start: hints.apply(codes[c : c + 1, residual.rows :], start)

        with torch.inference_mode():  # one channel at a time: memory per window does not grow with channels
            wave = np.concatenate([
                net.decode(window[c : c + 1], window.shape[-1] * span, channel(phase, c), phase_iters,
                           corrector(c), steerer(c)).numpy()
                for c in range(window.shape[0])
            ])
        return wave[:, keep_from : keep_from + keep], done

    for wave, done in _ordered_map(decode_window, windows(), torch.get_num_threads()):
        if on_progress is not None:
            on_progress(done, last_chunk - first_chunk + 1)
        yield wave


def _ordered_map(function: Callable, items: Iterator[tuple], workers: int) -> Iterator:
    """``function(*item)`` for each item, in order; with several workers, that many run at once.

    Each worker is a thread running torch with one intra-op thread (torch
    releases the GIL), so windows decode side by side and each gives the same
    result as it would alone. At most ``workers`` items are in flight.
    """
    if workers <= 1:
        yield from (function(*item) for item in items)
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            pending: collections.deque = collections.deque()
            for item in items:
                pending.append(pool.submit(function, *item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        torch.set_num_threads(previous)
