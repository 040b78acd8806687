"""MP3 files for tests, written offline by ``soundfile``'s libsndfile.

libsndfile >= 1.1 encodes MPEG layer III with libmp3lame (the copy in
``soundfile``'s wheel, a project dependency, has it built in), so no
``lame`` or ``ffmpeg`` binary is needed. Common Voice and CoVoST 2 ship
their clips as MP3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile


def can_write_mp3() -> bool:
    return soundfile.check_format("MP3", "MPEG_LAYER_III")


def write_mp3(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Mono float samples in [-1, 1] -> an MP3 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(samples, dtype=np.float32)
    soundfile.write(path, data, sample_rate, format="MP3", subtype="MPEG_LAYER_III")
    return path
