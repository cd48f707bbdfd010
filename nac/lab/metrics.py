"""Quality metrics: pure numpy functions, reference first, then estimate.

Inputs are 1-D (time,) or 2-D (channels, time) arrays; reference and estimate
must have the same channel count and are compared over their common length
(see :func:`align_lengths`). Computation is in float64.

Degenerate cases never give NaN or inf: every ratio in dB is clipped to
``[-MAX_DB, MAX_DB]``. An exact match (zero error energy) gives ``+MAX_DB``;
a silent reference with a non-silent estimate gives ``-MAX_DB``.

The perceptual metrics (:func:`pesq_wb`, :func:`stoi`, :func:`visqol_speech`)
need the optional ``pesq`` / ``pystoi`` / ``visqol-python`` packages (the
``eval`` extra) and return None when those are missing or the measure is
undefined for the input.
"""

from __future__ import annotations

import warnings

import numpy as np

MAX_DB = 150.0
"""Cap on the magnitude of every dB ratio; +MAX_DB means a (near-)exact match."""

LSD_FLOOR_DB = -100.0
"""Power floor of the log spectra in :func:`lsd_db`, and the silence threshold of its frames."""

_FRAME_BLOCK = 2048  # frames per FFT batch in lsd_db: bounds memory on long inputs


def align_lengths(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays cut to the shorter one's length along the last (time) axis; shapes otherwise kept."""
    reference = np.asarray(reference)
    estimate = np.asarray(estimate)
    length = min(reference.shape[-1], estimate.shape[-1])
    return reference[..., :length], estimate[..., :length]


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-noise ratio ``10 log10(sum r^2 / sum (r - e)^2)`` in dB, energies summed over all channels.

    Not scale-invariant and not mean-removed: a gain error counts as noise.
    """
    ref, est = _pair(reference, estimate)
    return _ratio_db(np.sum(ref**2), np.sum((ref - est) ** 2))


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019), mean over channels.

    Per channel, with ``r`` and ``e`` made zero-mean: ``a = <e, r> / <r, r>``,
    ``SI-SDR = 10 log10(|a r|^2 / |e - a r|^2)``. Any gain applied to the
    estimate, a sign flip included, leaves it unchanged. A silent reference
    channel gives ``+MAX_DB`` if the estimate is silent too, else ``-MAX_DB``;
    a silent estimate of a non-silent reference gives ``-MAX_DB``.
    """
    ref, est = _pair(reference, estimate)
    ref = ref - ref.mean(axis=1, keepdims=True)
    est = est - est.mean(axis=1, keepdims=True)
    values = []
    for r, e in zip(ref, est):
        ref_energy = np.dot(r, r)
        if ref_energy == 0.0 or not np.any(e):
            values.append(MAX_DB if ref_energy == 0.0 and not np.any(e) else -MAX_DB)
            continue
        target = (np.dot(e, r) / ref_energy) * r
        values.append(_ratio_db(np.dot(target, target), np.sum((e - target) ** 2)))
    return float(np.mean(values))


def lsd_db(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    n_fft: int = 512,
    *,
    max_hz: float | None = None,
) -> float:
    """Log-spectral distance in dB: RMS difference of the log power spectra, averaged over frames.

    Each channel is cut into frames of ``n_fft`` samples with hop ``n_fft // 4``
    (the end zero-padded to a whole frame, no centring), Hann-windowed, and
    ``P = |rfft(frame * w)|^2 / sum(w)^2`` (a full-scale sine peaks near
    -6 dB). With ``L = 10 log10(max(P, 10^(LSD_FLOOR_DB / 10)))``, a frame's
    distance is ``sqrt(mean_f (L_ref - L_est)^2)`` over the bins ``f`` up to
    ``max_hz`` (all bins when None; ``sample_rate`` maps Hz to bins). The
    result is the mean over the frames of all channels, leaving out frames
    where both signals are silent (mean square below ``LSD_FLOOR_DB``); it is
    0.0 when every frame is silent. Identical signals give 0.0.
    """
    if n_fft < 2:
        raise ValueError(f"n_fft must be at least 2, not {n_fft}")
    ref, est = _pair(reference, estimate)
    floor = 10.0 ** (LSD_FLOOR_DB / 10.0)
    window = np.hanning(n_fft + 1)[:-1]
    bins = n_fft // 2 + 1 if max_hz is None else int(np.floor(max_hz * n_fft / sample_rate)) + 1
    bins = min(max(bins, 1), n_fft // 2 + 1)

    def log_power(frames: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft(frames * window, axis=-1)[:, :bins]) ** 2 / window.sum() ** 2
        return 10.0 * np.log10(np.maximum(power, floor))

    total, count = 0.0, 0
    for ref_frames, est_frames in zip(_frames(ref, n_fft), _frames(est, n_fft)):
        for start in range(0, len(ref_frames), _FRAME_BLOCK):
            r, e = ref_frames[start : start + _FRAME_BLOCK], est_frames[start : start + _FRAME_BLOCK]
            audible = (np.mean(r**2, axis=-1) >= floor) | (np.mean(e**2, axis=-1) >= floor)
            distance = np.sqrt(np.mean((log_power(r[audible]) - log_power(e[audible])) ** 2, axis=-1))
            total += float(distance.sum())
            count += distance.size
    return total / count if count else 0.0


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """Wideband PESQ (ITU-T P.862.2 MOS-LQO, about 1.0-4.64) on the channel mean at 16 kHz.

    Both signals are mixed to mono and resampled to 16 kHz with soxr. Returns
    None if ``pesq`` is not installed or PESQ refuses the input (no utterance
    found, too short).
    """
    try:
        import pesq
    except ImportError:
        return None
    ref, est = (_to_mono_16k(x, sample_rate) for x in _pair(reference, estimate))
    if not np.any(ref):
        return None
    try:
        return float(pesq.pesq(16000, ref, est, "wb"))
    except (pesq.PesqError, ValueError):
        return None


def stoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, extended: bool = False) -> float | None:
    """Short-time objective intelligibility (0-1; ESTOI with ``extended``) on the channel mean.

    pystoi resamples to 10 kHz itself. Returns None if ``pystoi`` is not
    installed, the reference is silent, or it has too few non-silent frames
    (under about 0.4 s), where pystoi would warn and return a placeholder 1e-5.
    """
    try:
        from pystoi import stoi as pystoi_stoi
    except ImportError:
        return None
    ref, est = _pair(reference, estimate)
    if not np.any(ref):
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        value = float(pystoi_stoi(ref.mean(axis=0), est.mean(axis=0), sample_rate, extended=extended))
    return None if any("Not enough STFT frames" in str(w.message) for w in caught) else value


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (channels, time) over their common length; channel counts must match."""
    ref = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    est = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if ref.ndim != 2 or est.ndim != 2:
        raise ValueError(f"expected (time,) or (channels, time) arrays, got shapes {ref.shape} and {est.shape}")
    if ref.shape[0] != est.shape[0]:
        raise ValueError(f"channel counts differ: reference {ref.shape[0]}, estimate {est.shape[0]}")
    return align_lengths(ref, est)


def _ratio_db(signal_energy: float, noise_energy: float) -> float:
    """``10 log10(signal / noise)`` clipped to [-MAX_DB, MAX_DB]; zero noise gives +MAX_DB."""
    if noise_energy <= 0.0:
        return MAX_DB
    if signal_energy <= 0.0:
        return -MAX_DB
    return float(np.clip(10.0 * np.log10(signal_energy / noise_energy), -MAX_DB, MAX_DB))


def _frames(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """A (channels, frames, n_fft) view: hop n_fft // 4, the end zero-padded to a whole frame."""
    hop = max(n_fft // 4, 1)
    length = audio.shape[1]
    count = 1 + max(0, -(-(length - n_fft) // hop))
    padded = np.zeros((audio.shape[0], (count - 1) * hop + n_fft))
    padded[:, :length] = audio
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]


def _to_mono_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Channel mean resampled to 16 kHz (float64)."""
    import soxr

    mono = audio.mean(axis=0)
    return mono if sample_rate == 16000 else soxr.resample(mono, sample_rate, 16000)


MEL_RESOLUTIONS = ((256, 32), (512, 64), (1024, 80), (2048, 128))
"""(n_fft, mel bands) of :func:`mel_distance_db`: 16-128 ms windows at 16 kHz."""


def mel_distance_db(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int, resolutions=MEL_RESOLUTIONS
) -> float:
    """Multi-resolution log-mel distance in dB: mean absolute log-mel energy difference.

    At each ``(n_fft, n_mels)`` the channels are framed as in :func:`lsd_db`
    (Hann, hop ``n_fft // 4``), ``P = |rfft|^2 / sum(w)^2``, and HTK-mel
    triangles of peak 1 spaced evenly from 0 Hz to ``sample_rate / 2`` give
    band energies ``E = 10 log10(max(M P, 10^(LSD_FLOOR_DB / 10)))``. The
    distance at one resolution is the mean of ``|E_ref - E_est|`` over bands
    and frames, leaving out frames where both signals are silent (as in
    :func:`lsd_db`); the result is the mean over resolutions. Identical signals
    (or all-silent ones) give 0.0.
    """
    ref, est = _pair(reference, estimate)
    floor = 10.0 ** (LSD_FLOOR_DB / 10.0)
    distances = []
    for n_fft, n_mels in resolutions:
        window = np.hanning(n_fft + 1)[:-1]
        bank = _mel_bank(n_fft, n_mels, sample_rate)

        def log_mel(frames: np.ndarray) -> np.ndarray:
            power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2 / window.sum() ** 2
            return 10.0 * np.log10(np.maximum(power @ bank.T, floor))

        total, count = 0.0, 0
        for ref_frames, est_frames in zip(_frames(ref, n_fft), _frames(est, n_fft)):
            for start in range(0, len(ref_frames), _FRAME_BLOCK):
                r, e = ref_frames[start : start + _FRAME_BLOCK], est_frames[start : start + _FRAME_BLOCK]
                audible = (np.mean(r**2, axis=-1) >= floor) | (np.mean(e**2, axis=-1) >= floor)
                difference = np.abs(log_mel(r[audible]) - log_mel(e[audible]))
                total += float(difference.sum())
                count += difference.size
        distances.append(total / count if count else 0.0)
    return float(np.mean(distances))


def _mel_bank(n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) HTK-mel triangles of peak 1 from 0 Hz to Nyquist."""
    mel = np.linspace(0.0, 2595.0 * np.log10(1.0 + sample_rate / 2 / 700.0), n_mels + 2)
    edges = 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - low) / (centre - low)
    falling = (high - freqs) / (high - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def visqol_speech(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """ViSQOL v3 MOS-LQO (1-5) in speech mode on the channel mean at 16 kHz.

    Uses ``visqol-python``; with its ``lattice`` extra (``ai-edge-litert``)
    the score maps similarity to MOS with the deep-lattice model, the C++
    tool's default, else with the older polynomial fit, which scores degraded
    speech higher (see :func:`visqol_mapping`). ViSQOL aligns the signals
    itself. Returns None if the package is missing, the reference is silent,
    or ViSQOL refuses the input (too short).
    """
    api = _visqol_api()
    if api is None:
        return None
    ref, est = (_to_mono_16k(x, sample_rate) for x in _pair(reference, estimate))
    if not np.any(ref):
        return None
    try:
        return float(api.measure_from_arrays(ref, est, 16000).moslqo)
    except Exception:  # noqa: BLE001 - the package raises assorted errors on short or odd input
        return None


def visqol_mapping() -> str | None:
    """How :func:`visqol_speech` maps to MOS: "lattice", "polynomial", or None when ViSQOL is missing."""
    _visqol_api()
    return _VISQOL_API[1]


_VISQOL_API: list = []  # [api, mapping] once made


def _visqol_api():
    """The speech-mode ``VisqolApi``, made once (loading its models takes about 0.5 s); None if not installed."""
    if not _VISQOL_API:
        try:
            import logging

            from visqol import VisqolApi
            from visqol.quality_mapper import has_lattice_runtime
        except ImportError:
            _VISQOL_API.extend([None, None])
        else:
            lattice = has_lattice_runtime()
            api = VisqolApi()
            logging.getLogger("visqol").setLevel(logging.ERROR)  # duration-mismatch chatter
            api.create(mode="speech", use_lattice_model=lattice)
            _VISQOL_API.extend([api, "lattice" if lattice else "polynomial"])
    return _VISQOL_API[0]
