"""Windowed model inference: one container chunk at a time, with context.

Whole-file inference needs memory in proportion to the file. Here each chunk
of latent frames is encoded from the audio it covers plus ``ENCODE_CONTEXT``
latent frames of audio on either side, and decoded (network and Griffin-Lim)
from its latents plus ``DECODE_CONTEXT`` frames on either side; only the
chunk's own frames or samples are kept. The contexts exceed the networks'
receptive fields (measured: encoder +-7, decoder +-6 latent frames) and the
spread of the phase iterations, so windowed output matches whole-file
inference closely (tests/test_streaming.py bounds the difference) and chunk
boundaries leave no step in the waveform.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

ENCODE_CONTEXT = 10  # latent frames of audio on each side of a chunk when encoding
DECODE_CONTEXT = 24  # latent frames on each side of a chunk when decoding
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def keep_heap_flat() -> None:
    """Stop glibc from raising its mmap threshold as large blocks come and go.

    Streaming allocates and frees many window-sized arrays; glibc's dynamic
    threshold then moves them onto the heap, which fragments and grows with
    the input's length (measured: +100 MB per 15 min of audio encoded). A
    fixed 128 KiB threshold keeps peak memory flat. Encoding only: decoding
    stays flat without it, and with it every Griffin-Lim buffer becomes a fresh
    mmap (900 s decoded in 19.6 s instead of 8.8 s). No-op off glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


def latent_frame_count(net: torch.nn.Module, samples: int) -> int:
    config = net.config
    return config.stft.frame_count(samples, config.time_stride) // config.time_stride


class SampleWindow:
    """Random access to a forward-moving span of a signal that arrives in blocks.

    ``blocks`` yields (channels, n) float32 arrays; the signal is cut or
    zero-padded to ``length`` samples. Memory holds only what lies between the
    last :meth:`release` point and the furthest sample asked for.
    """

    def __init__(self, blocks: Iterable[np.ndarray], channels: int, length: int):
        self.blocks, self.length = iter(blocks), length
        self.base, self.buffer = 0, np.zeros((channels, 0), np.float32)

    def get(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) (start >= the release point), zeros past ``length``."""
        available = min(stop, self.length)
        while self.base + self.buffer.shape[1] < available:
            block = next(self.blocks, None)
            if block is None:
                break
            self.buffer = np.concatenate([self.buffer, block.astype(np.float32, copy=False)], axis=1)
        have = min(available, self.base + self.buffer.shape[1])
        part = self.buffer[:, start - self.base : max(start, have) - self.base]
        return np.pad(part, ((0, 0), (0, stop - start - part.shape[1])))

    def release(self, before: int) -> None:
        """Forget the samples before ``before``."""
        drop = max(0, min(before - self.base, self.buffer.shape[1]))
        self.buffer, self.base = self.buffer[:, drop:], self.base + drop


def encode_chunks(
    net: torch.nn.Module, source: SampleWindow, chunk_frames: int, with_phase: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Per chunk: latents (C, K, H, frames) and, if asked, STFT phase (C, bins, frames * stride)."""
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
            latent = net.encode_spectrum(spec)[..., start - first : stop - first].numpy()
            phase = None
            if with_phase:
                phase = torch.angle(spec[..., (start - first) * stride : (stop - first) * stride]).numpy()
        yield latent, phase


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
) -> Iterator[np.ndarray]:
    """Waveform (C, frames * hop * stride) of each chunk in ``first_chunk .. last_chunk``.

    ``latent_at(i)`` / ``phase_at(i)`` give chunk ``i``'s dequantized latents /
    phase; neighbours are asked for as context, each at most once per window.
    ``phase_iters`` overrides the model's Griffin-Lim iterations;
    ``on_progress(done, total)`` is called after each chunk.
    """
    config = net.config
    stride, span = config.time_stride, config.hop_length * config.time_stride
    last_chunk = chunk_count - 1 if last_chunk is None else last_chunk
    context_chunks = -(-DECODE_CONTEXT // chunk_frames)
    cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def chunk(index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index not in cache:
            cache[index] = (latent_at(index), phase_at(index) if phase_at else None)
        return cache[index]

    for index in range(first_chunk, last_chunk + 1):
        for stale in [i for i in cache if i < index - context_chunks]:
            del cache[stale]
        neighbours = range(max(0, index - context_chunks), min(chunk_count, index + context_chunks + 1))
        latent = np.concatenate([chunk(i)[0] for i in neighbours], axis=-1)
        offset = (index - neighbours.start) * chunk_frames
        frames = chunk(index)[0].shape[-1]
        first = max(0, offset - DECODE_CONTEXT)
        last = min(latent.shape[-1], offset + frames + DECODE_CONTEXT)
        window = torch.from_numpy(np.ascontiguousarray(latent[..., first:last]))
        phase = None
        if phase_at is not None:
            phases = np.concatenate([chunk(i)[1] for i in neighbours], axis=-1)
            phase = torch.from_numpy(np.ascontiguousarray(phases[..., first * stride : last * stride]))
        with torch.inference_mode():  # one channel at a time: memory per window does not grow with channels
            wave = np.concatenate([
                net.decode(window[c : c + 1], (last - first) * span, None if phase is None else phase[c : c + 1],
                           phase_iters).numpy()
                for c in range(window.shape[0])
            ])
        if on_progress is not None:
            on_progress(index - first_chunk + 1, last_chunk - first_chunk + 1)
        yield wave[:, (offset - first) * span : (offset - first + frames) * span]
