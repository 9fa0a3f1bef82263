"""Loader throughput of LeRobot's own reader: a DataLoader over LeRobotDataset, printed as JSON.

Runs ONLY in the side venv (`make lerobot-venv`; `.venv-lerobot/bin/python`, lerobot 0.6.1):

    .venv-lerobot/bin/python scripts/lerobot/bench_reader.py ROOT --batch 64 --workers 2 --horizon 16 --seconds 20

Each sample is what a chunking policy trains on: the current frame of every camera, the
state, and an action chunk of `horizon` steps (delta_timestamps 0, 1/fps, ...). Batches are
shuffled; the first batch (worker start-up, first decodes) is not timed.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--video-backend", default="pyav")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    meta = LeRobotDatasetMetadata("local/x", root=args.root)
    delta = {"action": [i / meta.fps for i in range(args.horizon)]}
    ds = LeRobotDataset(repo_id="local/x", root=args.root, delta_timestamps=delta, video_backend=args.video_backend)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True,
        persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(args.seed))

    t_first = time.perf_counter()
    samples = batches = 0
    t0 = None
    shape = None
    while t0 is None or time.perf_counter() - t0 < args.seconds:
        for batch in loader:
            if t0 is None:  # the first batch pays for worker start-up: not timed
                t0 = time.perf_counter()
                first_batch_s = t0 - t_first
                shape = {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
                continue
            samples += len(batch["index"])
            batches += 1
            if time.perf_counter() - t0 >= args.seconds:
                break
    elapsed = time.perf_counter() - t0
    print(json.dumps({
        "reader": "lerobot", "root": args.root, "num_frames": ds.num_frames, "num_episodes": ds.num_episodes,
        "batch": args.batch, "workers": args.workers, "horizon": args.horizon, "video_backend": args.video_backend,
        "cameras": ds.meta.video_keys, "batches": batches, "samples": samples, "seconds": round(elapsed, 3),
        "first_batch_s": round(first_batch_s, 3), "samples_per_s": round(samples / elapsed, 1),
        "batch_shapes": shape,
    }))


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
