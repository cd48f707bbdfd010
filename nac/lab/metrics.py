"""Quality metrics: pure numpy functions, reference first, then estimate.

Inputs are 1-D (time,) or 2-D (channels, time) arrays; reference and estimate
must have the same channel count and are compared over their common length
(see :func:`align_lengths`). Computation is in float64.

Degenerate cases never give NaN or inf: every ratio in dB is clipped to
``[-MAX_DB, MAX_DB]``. An exact match (zero error energy) gives ``+MAX_DB``;
a silent reference with a non-silent estimate gives ``-MAX_DB``.

The perceptual metrics (:func:`pesq_wb`, :func:`stoi`, :func:`visqol_speech`,
:func:`visqol_audio`) need the optional ``pesq`` / ``pystoi`` /
``visqol-python`` packages (the ``eval`` extra) and return None when those
are missing or the measure is undefined for the input.

For music and fullband audio: :func:`bandwidth_hz` (the bandwidth an
estimate keeps), :func:`stereo_image_errors` and :func:`channel_correlation`
(the stereo image), and :func:`mel_distance_db` at 48 kHz with
:data:`MUSIC_MEL_RESOLUTIONS` up to :data:`MUSIC_MEL_MAX_HZ`.
"""

from __future__ import annotations

import warnings

import numpy as np

MAX_DB = 150.0
"""Cap on the magnitude of every dB ratio; +MAX_DB means a (near-)exact match."""

LSD_FLOOR_DB = -100.0
"""Power floor of the log spectra in :func:`lsd_db`, and the silence threshold of its frames."""

_FRAME_BLOCK = 2048  # frames per FFT batch in lsd_db and mel_distance_db: bounds memory on long inputs
_BLOCK_SAMPLES = 1 << 22  # samples per FFT batch of long frames (mel at 48 kHz, the music metrics)

CONTENT_FLOOR_DB = -70.0
"""Bands (and stereo band-frames) more than this below the reference's strongest one count as empty."""

BANDWIDTH_TOLERANCE_DB = 10.0
"""How far an estimate's band power may stray from the reference's and still count as kept in :func:`bandwidth_hz`."""

STEREO_BANDS, STEREO_LOW_HZ, STEREO_HIGH_HZ = 20, 100.0, 20000.0
"""Bands of :func:`stereo_image_errors`: geometrically spaced from 100 Hz to 20 kHz (or Nyquist)."""

STEREO_FRAME_S = 0.04
"""Frame length of :func:`stereo_image_errors`: the nearest power of two in samples (2048 at 48 kHz)."""

ILD_LIMIT_DB = 30.0
"""Inter-channel level differences are clipped to +-this: a source is fully at one side well before it."""

VISQOL_AUDIO_RATE = 48000  # ViSQOL's audio mode is made for 48 kHz


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

    Both signals are mixed to mono and resampled to 16 kHz with soxr. A
    signal over :data:`PESQ_MAX_S` is scored in equal parts no longer than
    that, and the parts' mean returned (P.862 is meant for short utterances,
    and its C code crashes on inputs of a few minutes). Returns None if
    ``pesq`` is not installed or PESQ refuses every part (no utterance found,
    too short).
    """
    try:
        import pesq
    except ImportError:
        return None
    ref, est = (_mono_at(x, sample_rate, 16000) for x in _pair(reference, estimate))
    parts = max(1, -(-ref.size // (PESQ_MAX_S * 16000)))
    scores = []
    for ref_part, est_part in zip(np.array_split(ref, parts), np.array_split(est, parts)):
        if not np.any(ref_part):
            continue
        try:
            scores.append(float(pesq.pesq(16000, ref_part, est_part, "wb")))
        except (pesq.PesqError, ValueError):
            continue
    return float(np.mean(scores)) if scores else None


PESQ_MAX_S = 60  # longest part PESQ scores in one call


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


def _frames(audio: np.ndarray, n_fft: int, hop: int | None = None) -> np.ndarray:
    """A (channels, frames, n_fft) view: hop n_fft // 4 unless given, the end zero-padded to a whole frame."""
    hop = max(n_fft // 4, 1) if hop is None else hop
    length = audio.shape[1]
    count = 1 + max(0, -(-(length - n_fft) // hop))
    padded = np.zeros((audio.shape[0], (count - 1) * hop + n_fft))
    padded[:, :length] = audio
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]


def _mono_at(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Channel mean resampled to ``target_rate`` with soxr (float64)."""
    import soxr

    mono = audio.mean(axis=0)
    return mono if sample_rate == target_rate else soxr.resample(mono, sample_rate, target_rate)


MEL_RESOLUTIONS = ((256, 32), (512, 64), (1024, 80), (2048, 128))
"""(n_fft, mel bands) of :func:`mel_distance_db`: 16-128 ms windows at 16 kHz."""

MUSIC_MEL_RESOLUTIONS = tuple((n_fft * 3, n_mels) for n_fft, n_mels in MEL_RESOLUTIONS)
"""The same 16-128 ms windows and band counts at 48 kHz."""

MUSIC_MEL_MAX_HZ = 20000.0
"""Top of the mel bank at 48 kHz: the limit of hearing, below the 22.05 kHz edge of 44.1 kHz sources."""


def mel_distance_db(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    resolutions=MEL_RESOLUTIONS,
    *,
    max_hz: float | None = None,
) -> float:
    """Multi-resolution log-mel distance in dB: mean absolute log-mel energy difference.

    At each ``(n_fft, n_mels)`` the channels are framed as in :func:`lsd_db`
    (Hann, hop ``n_fft // 4``), ``P = |rfft|^2 / sum(w)^2``, and HTK-mel
    triangles of peak 1 spaced evenly from 0 Hz to ``max_hz`` (Nyquist when None) give
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
        bank = _mel_bank(n_fft, n_mels, sample_rate, max_hz)

        def log_mel(frames: np.ndarray) -> np.ndarray:
            power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2 / window.sum() ** 2
            return 10.0 * np.log10(np.maximum(power @ bank.T, floor))

        total, count = 0.0, 0
        block = min(_FRAME_BLOCK, _BLOCK_SAMPLES // n_fft)
        for ref_frames, est_frames in zip(_frames(ref, n_fft), _frames(est, n_fft)):
            for start in range(0, len(ref_frames), block):
                r, e = ref_frames[start : start + block], est_frames[start : start + block]
                audible = (np.mean(r**2, axis=-1) >= floor) | (np.mean(e**2, axis=-1) >= floor)
                difference = np.abs(log_mel(r[audible]) - log_mel(e[audible]))
                total += float(difference.sum())
                count += difference.size
        distances.append(total / count if count else 0.0)
    return float(np.mean(distances))


def _mel_bank(n_fft: int, n_mels: int, sample_rate: int, max_hz: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) HTK-mel triangles of peak 1 from 0 Hz to ``max_hz`` (Nyquist when None)."""
    top = sample_rate / 2 if max_hz is None else min(max_hz, sample_rate / 2)
    mel = np.linspace(0.0, 2595.0 * np.log10(1.0 + top / 700.0), n_mels + 2)
    edges = 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - low) / (centre - low)
    falling = (high - freqs) / (high - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def bandwidth_hz(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """The audio bandwidth the estimate keeps, in Hz: the top of the run of reference bands it reproduces.

    Long-term power spectra: Hann frames of the power of two at or above
    ``sample_rate / 6`` samples (8192 at 48 kHz, about 6 Hz bins), hop half
    a frame, ``|rfft|^2`` averaged over frames and channels. Summed into
    1/3-octave bands (centres ``1000 * 2^(k/3)`` Hz from 49.6 Hz up; the last
    band stops at Nyquist), a band has content when the reference's power
    there is above :data:`CONTENT_FLOOR_DB` (-70 dB) re its strongest band,
    and is kept when the estimate's power is within
    :data:`BANDWIDTH_TOLERANCE_DB` (10 dB, either way) of the reference's.
    Going up from the lowest band, the result is the upper edge of the last
    band with content below the first band with content that is not kept
    (0.0 if that is the lowest); when every band with content is kept, the
    upper edge of the highest one, which is the reference's own bandwidth
    (``bandwidth_hz(r, r, rate)``, :func:`reference_bandwidth_hz`). None for a
    silent reference. A resolution of a third of an octave: an 8 kHz lowpass
    gives 8980 Hz.
    """
    ref, est = _pair(reference, estimate)
    n_fft = 1 << int(np.ceil(np.log2(sample_rate / 6)))
    centres = 1000.0 * 2.0 ** (np.arange(-13, 100) / 3)  # 49.6 Hz up; far more than any rate needs
    centres = centres[centres * 2 ** (-1 / 6) < sample_rate / 2]
    bands, edges = _band_matrix(centres * 2 ** (-1 / 6), np.minimum(centres * 2 ** (1 / 6), sample_rate / 2),
                                n_fft, sample_rate)
    ref_power, est_power = (_long_term_power(x, n_fft) @ bands for x in (ref, est))
    if not ref_power.max() > 0.0:
        return None
    content = ref_power > ref_power.max() * 10.0 ** (CONTENT_FLOOR_DB / 10)
    tolerance = 10.0 ** (BANDWIDTH_TOLERANCE_DB / 10)
    kept = (est_power >= ref_power / tolerance) & (est_power <= ref_power * tolerance)
    lost = np.flatnonzero(content & ~kept)
    below = np.flatnonzero(content[: lost[0] if lost.size else None])
    return float(edges[below[-1], 1]) if below.size else 0.0


def reference_bandwidth_hz(reference: np.ndarray, sample_rate: int) -> float | None:
    """The reference's own bandwidth: the upper edge of its highest 1/3-octave band with content
    (:func:`bandwidth_hz` of the reference against itself)."""
    return bandwidth_hz(reference, reference, sample_rate)


def stereo_image_errors(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> tuple[float, float] | None:
    """(ILD error in dB, ICC error): how far the estimate's stereo image is from a 2-channel reference's.

    From an STFT of about :data:`STEREO_FRAME_S` (Hann, 2048 samples at
    48 kHz, hop half a frame), per frame and per band (:data:`STEREO_BANDS`
    bands with edges spaced geometrically from 100 Hz to 20 kHz or Nyquist;
    bands without a bin are dropped), with ``E_L``, ``E_R`` the channels'
    band energies and ``C = Re(sum L conj(R))``:
    ``ILD = 10 log10((E_L + eps) / (E_R + eps))`` clipped to
    +-:data:`ILD_LIMIT_DB`, and ``ICC = C / max(sqrt(E_L E_R), eps)``
    (-1..1; 0 where a channel is silent), ``eps`` 1e-10 of the reference's
    strongest band-frame energy. The errors are the plain means of
    ``|ILD_ref - ILD_est|`` and ``|ICC_ref - ICC_est|`` over the band-frames
    where the reference's ``E_L + E_R`` is above :data:`CONTENT_FLOOR_DB`
    re its strongest band-frame: a plain mean so that every audible band
    counts alike (weighted by energy, the bass bands would decide). Identical
    signals give (0.0, 0.0). None unless the reference has 2 channels, or for
    a silent reference.
    """
    ref, est = _pair(reference, estimate)
    if ref.shape[0] != 2:
        return None
    n_fft = 1 << int(round(np.log2(STEREO_FRAME_S * sample_rate)))
    edges = np.geomspace(STEREO_LOW_HZ, min(STEREO_HIGH_HZ, sample_rate / 2), STEREO_BANDS + 1)
    bands, _ = _band_matrix(edges[:-1], edges[1:], n_fft, sample_rate)
    (ref_left, ref_right, ref_cross), (est_left, est_right, est_cross) = (
        _channel_band_energies(x, n_fft, bands) for x in (ref, est))
    energy = ref_left + ref_right
    if not energy.max() > 0.0:
        return None
    audible = energy > energy.max() * 10.0 ** (CONTENT_FLOOR_DB / 10)
    eps = energy.max() * 1e-10

    def cues(left: np.ndarray, right: np.ndarray, cross: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ild = np.clip(10.0 * np.log10((left + eps) / (right + eps)), -ILD_LIMIT_DB, ILD_LIMIT_DB)
        return ild[audible], cross[audible] / np.maximum(np.sqrt(left * right), eps)[audible]

    (ref_ild, ref_icc), (est_ild, est_icc) = cues(ref_left, ref_right, ref_cross), cues(est_left, est_right, est_cross)
    return float(np.mean(np.abs(ref_ild - est_ild))), float(np.mean(np.abs(ref_icc - est_icc)))


def channel_correlation(audio: np.ndarray) -> float | None:
    """Broadband correlation of the left and right channels (Pearson, -1..1): 1 for identical channels,
    about 0 for unrelated ones, -1 for one the negative of the other; 0.0 when a channel is silent (constant).
    None unless the audio has 2 channels."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    if audio.shape[0] != 2:
        return None
    left, right = audio - audio.mean(axis=1, keepdims=True)
    scale = np.sqrt(np.dot(left, left) * np.dot(right, right))
    return float(np.dot(left, right) / scale) if scale > 0.0 else 0.0


def _band_matrix(low: np.ndarray, high: np.ndarray, n_fft: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(bins x bands 0/1 matrix, (bands, 2) edges) of the bands ``[low, high)`` that hold an rfft bin."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    matrix = ((freqs[:, None] >= low[None]) & (freqs[:, None] < high[None])).astype(np.float64)
    filled = matrix.any(axis=0)
    return matrix[:, filled], np.stack([low, high], axis=1)[filled]


def _spectra(audio: np.ndarray, n_fft: int):
    """Hann-windowed ``rfft / sum(w)`` of (channels, time) audio, hop ``n_fft // 2``: (channels, frames, bins)
    arrays, a bounded batch of frames at a time. Whole frames only (one zero-padded frame for audio shorter
    than that): a frame cut by the end would smear the step over every band."""
    window = np.hanning(n_fft + 1)[:-1]
    hop = n_fft // 2
    frames = _frames(audio, n_fft, hop)[:, : 1 + max(0, audio.shape[1] - n_fft) // hop]
    step = max(1, _BLOCK_SAMPLES // n_fft)
    for start in range(0, frames.shape[1], step):
        yield np.fft.rfft(frames[:, start : start + step] * window, axis=-1) / window.sum()


def _long_term_power(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """Welch's average: the power spectrum ``|rfft / sum(w)|^2`` averaged over frames and channels."""
    total, count = np.zeros(n_fft // 2 + 1), 0
    for spectrum in _spectra(audio, n_fft):
        total += (np.abs(spectrum) ** 2).sum(axis=(0, 1))
        count += spectrum.shape[0] * spectrum.shape[1]
    return total / count


def _channel_band_energies(audio: np.ndarray, n_fft: int, bands: np.ndarray) -> tuple[np.ndarray, ...]:
    """(E_L, E_R, Re(sum L conj R)) of 2-channel audio, each (frames, bands)."""
    parts = [(np.abs(spectrum) ** 2 @ bands, (spectrum[0] * np.conj(spectrum[1])).real @ bands)
             for spectrum in _spectra(audio, n_fft)]
    power = np.concatenate([p for p, _ in parts], axis=1)
    return power[0], power[1], np.concatenate([c for _, c in parts], axis=0)


def visqol_speech(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """ViSQOL v3 MOS-LQO (1-5) in speech mode on the channel mean at 16 kHz.

    Uses ``visqol-python``; with its ``lattice`` extra (``ai-edge-litert``)
    the score maps similarity to MOS with the deep-lattice model, the C++
    tool's default, else with the older polynomial fit, which scores degraded
    speech higher (see :func:`visqol_mapping`). ViSQOL aligns the signals
    itself. Returns None if the package is missing, the reference is silent,
    or ViSQOL refuses the input (too short).
    """
    return _visqol("speech", reference, estimate, sample_rate, 16000)


def visqol_audio(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """ViSQOL v3 MOS-LQO (1-5) in audio mode (music, fullband) on the channel mean at 48 kHz.

    Audio mode maps similarity to MOS with ViSQOL's bundled SVR model; both
    signals are resampled to 48 kHz with soxr if needed. Returns None as
    :func:`visqol_speech` does (package missing, silent reference, input
    refused: under about 0.5 s).
    """
    return _visqol("audio", reference, estimate, sample_rate, VISQOL_AUDIO_RATE)


def visqol_audio_channels(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """The mean of :func:`visqol_audio` on each channel alone: unlike the channel mean, it hears a stereo
    image that is wrong. None for one channel, or where any channel's score is undefined."""
    ref, est = _pair(reference, estimate)
    if ref.shape[0] < 2:
        return None
    scores = [visqol_audio(ref[c : c + 1], est[c : c + 1], sample_rate) for c in range(ref.shape[0])]
    return None if None in scores else float(np.mean(scores))


def visqol_mapping(mode: str = "speech") -> str | None:
    """How ViSQOL maps similarity to MOS in ``mode``: "lattice" or "polynomial" (speech, :func:`visqol_speech`),
    "svr" (audio, :func:`visqol_audio`), or None when ViSQOL is missing."""
    return _visqol_api(mode)[1]


_VISQOL_APIS: dict[str, tuple] = {}  # mode -> (api, mapping) once made


def _visqol(mode: str, reference: np.ndarray, estimate: np.ndarray, sample_rate: int, rate: int) -> float | None:
    """ViSQOL's MOS-LQO in ``mode`` on the channel means at ``rate``; None where :func:`visqol_speech` says."""
    api = _visqol_api(mode)[0]
    if api is None:
        return None
    ref, est = (_mono_at(x, sample_rate, rate) for x in _pair(reference, estimate))
    if not np.any(ref):
        return None
    try:
        return float(api.measure_from_arrays(ref, est, rate).moslqo)
    except Exception:  # noqa: BLE001 - the package raises assorted errors on short or odd input
        return None


def _visqol_api(mode: str) -> tuple:
    """(``VisqolApi`` of ``mode``, its mapping), made once (loading the models takes about 0.5-1 s);
    (None, None) if not installed. Speech maps with the lattice model when it can, audio with its SVR."""
    if mode not in _VISQOL_APIS:
        try:
            import logging

            from visqol import VisqolApi
            from visqol.quality_mapper import has_lattice_runtime
        except ImportError:
            _VISQOL_APIS[mode] = (None, None)
        else:
            api = VisqolApi()
            logging.getLogger("visqol").setLevel(logging.ERROR)  # duration-mismatch chatter
            if mode == "speech":
                lattice = has_lattice_runtime()
                api.create(mode="speech", use_lattice_model=lattice)
                _VISQOL_APIS[mode] = (api, "lattice" if lattice else "polynomial")
            else:
                api.create(mode=mode)
                _VISQOL_APIS[mode] = (api, "svr")
    return _VISQOL_APIS[mode]
