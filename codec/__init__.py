"""nac: a neural audio codec (STFT-domain convolutional autoencoder)."""
