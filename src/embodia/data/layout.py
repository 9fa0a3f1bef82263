"""The LeRobot v3 dataset layout: paths, `info.json`, features, atomic file writes.

A v3 dataset keeps many episodes per file:
  meta/info.json                         codebase_version "v3.0", fps, features, totals, paths
  meta/stats.json                        normalization statistics per feature
  meta/tasks.parquet                     task text (index) -> task_index
  meta/episodes/chunk-XXX/file-XXX.parquet   one row per episode (lengths, file pointers, stats)
  data/chunk-XXX/file-XXX.parquet        one row per frame
  videos/<camera key>/chunk-XXX/file-XXX.mp4  frames of consecutive episodes, back to back
embodia adds per-episode columns (`embodiment`, `tier`, `seed`, `success`, `skill`) that
LeRobot readers carry along untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from embodia.body.embodiment import Embodiment

CODEBASE_VERSION = "v3.0"
EMBODIA_FORMAT_VERSION = 1
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
TIERS = ("real", "synthetic", "human")
INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
VIDEO_GOP = 2  # H.264, a keyframe every 2 frames: cheap random access for per-sample readers


def chunk_file(n: int) -> tuple[int, int]:
    """The (chunk, file) indices of the n-th file of a kind."""
    return n // CHUNKS_SIZE, n % CHUNKS_SIZE


def video_keys(features: dict) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] == "video"]


ENV_STATE = "observation.environment_state"


def make_features(embodiment: Embodiment, cameras: list[str], image_size: tuple[int, int],
                  fps: float, action_space: str | None = "ee_delta",
                  env_state_names: list[str] | None = None) -> dict[str, Any]:
    """LeRobot feature specs for recording `embodiment` (no `action` for action-free data;
    `observation.environment_state` only when `env_state_names` are given)."""
    h, w = image_size
    feats: dict[str, Any] = {}
    for cam in cameras:
        feats[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h, "video.width": w, "video.codec": "h264",
                "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": int(fps),
                "video.channels": 3, "has_audio": False,
            },
        }
    feats["observation.state"] = {"dtype": "float32", "shape": [embodiment.state_dim],
                                  "names": list(embodiment.state_names)}
    if env_state_names:
        feats[ENV_STATE] = {"dtype": "float32", "shape": [len(env_state_names)], "names": list(env_state_names)}
    if action_space is not None:
        layout = embodiment.action_layout(action_space)
        feats["action"] = {"dtype": "float32", "shape": [layout.dim], "names": list(layout.names)}
    feats.update(json.loads(json.dumps(INDEX_FEATURES)))
    return feats


def new_info(embodiment: Embodiment, features: dict, fps: float, action_space: str | None) -> dict:
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": embodiment.name,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": int(fps),
        "splits": {},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video_keys(features) else None,
        "features": features,
        "embodia": {
            "format_version": EMBODIA_FORMAT_VERSION,
            "embodiment": embodiment.name,
            "action_space": action_space,
            "embodiment_spec": embodiment.to_dict(),
        },
    }


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def tmp_path_for(path: Path) -> Path:
    """A temp name beside `path` (same filesystem, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"missing dataset file {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt JSON in {path}: {e}") from None
