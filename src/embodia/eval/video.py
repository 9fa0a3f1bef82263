"""Episode videos for evaluation and demos."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embodia.data.video import encode_mp4


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    encode_mp4(path, frames, fps, crf=23)
    return Path(path)


def mp4_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """What `write_mp4` writes, as bytes: a Ray worker (maybe on another machine) sends its
    episode's video to the driver, which writes it where `--video` says."""
    with tempfile.TemporaryDirectory(prefix="embodia-video-") as d:
        return write_mp4(Path(d) / "episode.mp4", frames, fps).read_bytes()


def video_path(video_dir: str | Path, name: str, seed: int) -> Path:
    """Where evaluation writes episode `seed` of run (skill, task) `name`."""
    return Path(video_dir) / f"{name}_seed{seed}.mp4"
