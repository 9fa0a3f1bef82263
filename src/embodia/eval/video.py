"""Episode videos for evaluation and demos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embodia.data.video import encode_mp4


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    encode_mp4(path, frames, fps, crf=23)
    return Path(path)
