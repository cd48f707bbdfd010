"""The log-magnitude scale every part of nac shares (torch-free, so the container reads files without torch)."""

LOG_EPS = 1e-5  # log-magnitude is ln(|X| + LOG_EPS)
# A Hann-window STFT of a full-scale signal stays below n_fft / 2 in magnitude; log-magnitudes above this
# bound (exp(7) ~ 1100) are clamped before use.
MAX_LOG_MAGNITUDE = 7.0
