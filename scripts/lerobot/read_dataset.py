"""Read a LeRobot v3 dataset with LeRobot's own reader and dump what it sees to an .npz file.

Runs ONLY in the side venv (`make lerobot-venv`; `.venv-lerobot/bin/python`), which has
LeRobot (lerobot 0.6.1) but not embodia:

    .venv-lerobot/bin/python scripts/lerobot/read_dataset.py ROOT OUT.npz [--frames 0,5,9]

The npz holds:
  num_frames, num_episodes, fps                     scalars, as LeRobotDataset reports them
  observation.state [N, S], action [N, D]           float32, every frame, in index order
  episode_index, frame_index, task_index [N]        int64;  timestamp [N] float32
  episode_from, episode_length [E]                  int64, from LeRobot's episode table
  episode_task [E]                                  str, each episode's (first) task
  cameras [C]                                       str, the video feature keys
  frame_ids [K]                                     int64, the frames fetched through ds[i]
  <camera key> [K, H, W, 3]                         uint8, those frames as LeRobot decodes them
  item.observation.state [K, S], item.action [K, D], item.task [K]   the same ds[i] samples
By default frame_ids are the first, middle and last frame of every episode.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def column(ds: LeRobotDataset, key: str) -> np.ndarray:
    return torch.stack(list(ds.hf_dataset[key])).numpy()


def to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """LeRobot hands out float CHW images in [0, 1]; back to the uint8 HWC frames we recorded."""
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--frames", default="", help="comma-separated frame indices (default: first/middle/last per episode)")
    ap.add_argument("--video-backend", default="pyav")
    args = ap.parse_args()

    ds = LeRobotDataset(repo_id="local/x", root=args.root, video_backend=args.video_backend)
    eps = ds.meta.episodes
    ep_from = np.asarray(eps["dataset_from_index"], dtype=np.int64)
    ep_len = np.asarray(eps["length"], dtype=np.int64)
    if args.frames:
        frame_ids = [int(x) for x in args.frames.split(",")]
    else:
        frame_ids = sorted({int(i) for f, n in zip(ep_from, ep_len, strict=True) for i in (f, f + n // 2, f + n - 1)})

    out: dict[str, np.ndarray] = {
        "num_frames": np.int64(ds.num_frames),
        "num_episodes": np.int64(ds.num_episodes),
        "fps": np.int64(ds.fps),
        "episode_from": ep_from,
        "episode_length": ep_len,
        "episode_task": np.asarray([ts[0] for ts in eps["tasks"]], dtype=str),
        "cameras": np.asarray(ds.meta.video_keys, dtype=str),
        "frame_ids": np.asarray(frame_ids, dtype=np.int64),
    }
    for key in ("observation.state", "action", "episode_index", "frame_index", "task_index", "timestamp"):
        if key in ds.features:
            out[key] = column(ds, key)
    items = [ds[i] for i in frame_ids]
    for cam in ds.meta.video_keys:
        out[cam] = np.stack([to_uint8_hwc(it[cam]) for it in items])
    for key in ("observation.state", "action"):
        if key in ds.features:
            out[f"item.{key}"] = np.stack([it[key].numpy() for it in items])
    out["item.task"] = np.asarray([it["task"] for it in items], dtype=str)
    np.savez(args.out, **out)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
