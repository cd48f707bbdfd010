"""Train a nac model: ``python tools/train.py CORPUS_DIR [options]`` (see --help).

A thin entry point for :mod:`codec.train`; the seed's environment knobs
(MAX_TRAIN_FILES, MAX_AUDIO_SECONDS, MODEL_CHANNELS, MEL_LOSS_WEIGHT, EPOCHS)
are the defaults of its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nac.lab.train import main  # noqa: E402

if __name__ == "__main__":
    main()
