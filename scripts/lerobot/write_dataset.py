"""Write a LeRobot v3 dataset with LeRobot's own writer, from arrays in an .npz file.

Runs ONLY in the side venv (`make lerobot-venv`; `.venv-lerobot/bin/python`, lerobot 0.6.1):

    .venv-lerobot/bin/python scripts/lerobot/write_dataset.py IN.npz ROOT [--vcodec libsvtav1]

IN.npz holds:
  fps                                   scalar
  observation.state [N, S], action [N, D]   float32, all episodes back to back
  episode_length [E]                    int64, frames per episode (sums to N)
  episode_task [E]                      str, each episode's task text
  observation.images.<cam> [N, H, W, 3] uint8, one array per camera
  robot_type, state_names [S], action_names [D]   optional
ROOT must not exist yet (LeRobotDataset.create refuses an existing folder). Videos are encoded
with LeRobot's default codec (AV1 via libsvtav1) unless --vcodec says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
from lerobot.configs.video import RGBEncoderConfig
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inp")
    ap.add_argument("root")
    ap.add_argument("--repo-id", default="local/x")
    ap.add_argument("--vcodec", default="libsvtav1", choices=["libsvtav1", "h264", "hevc"])
    args = ap.parse_args()

    z = np.load(args.inp, allow_pickle=False)
    states = z["observation.state"].astype(np.float32)
    actions = z["action"].astype(np.float32) if "action" in z.files else None
    lengths = [int(n) for n in z["episode_length"]]
    tasks = [str(t) for t in z["episode_task"]]
    cams = sorted(k for k in z.files if k.startswith("observation.images."))
    images = {k: z[k] for k in cams}
    if sum(lengths) != len(states) or len(tasks) != len(lengths):
        raise SystemExit(f"{args.inp}: episode_length sums to {sum(lengths)} for {len(states)} frames, "
                         f"{len(tasks)} tasks for {len(lengths)} episodes")

    def names(key: str, dim: int) -> list[str]:
        return [str(n) for n in z[key]] if key in z.files else [f"{key.split('_')[0]}_{i}" for i in range(dim)]

    features: dict = {"observation.state": {"dtype": "float32", "shape": (states.shape[1],),
                                            "names": names("state_names", states.shape[1])}}
    if actions is not None:
        features["action"] = {"dtype": "float32", "shape": (actions.shape[1],),
                              "names": names("action_names", actions.shape[1])}
    for k in cams:
        h, w, c = images[k].shape[1:]
        features[k] = {"dtype": "video", "shape": (h, w, c), "names": ["height", "width", "channels"]}

    robot_type = str(z["robot_type"]) if "robot_type" in z.files else None
    ds = LeRobotDataset.create(repo_id=args.repo_id, fps=int(z["fps"]), root=args.root, robot_type=robot_type,
                               features=features, use_videos=True,
                               rgb_encoder=RGBEncoderConfig(vcodec=args.vcodec))
    start = 0
    for length, task in zip(lengths, tasks, strict=True):
        for i in range(start, start + length):
            frame = {"observation.state": states[i], "task": task}
            if actions is not None:
                frame["action"] = actions[i]
            for k in cams:
                frame[k] = images[k][i]
            ds.add_frame(frame)
        ds.save_episode()
        start += length
    ds.finalize()


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
