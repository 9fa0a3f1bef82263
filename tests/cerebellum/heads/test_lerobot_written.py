"""Every registered head trains on a dataset written by LeRobot's own writer (AV1 videos, its
own info.json, no observation.environment_state): the general core needs nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embodia.cerebellum.checkpoint import load_checkpoint
from embodia.cerebellum.features import PolicyFeatures
from embodia.cerebellum.generalist import batch_from_obs
from embodia.cerebellum.heads import HEADS
from tests.cerebellum.conftest import HashLanguage
from tests.cerebellum.heads.test_general_core import available, train_tiny
from tests.data.test_lerobot_interop import LEROBOT_PY, run_lerobot


@pytest.fixture(scope="module")
def lerobot_ds(tmp_path_factory) -> Path:
    """Two episodes of a 6-joint arm with one 64×64 camera and a 48×64 wrist camera, written by
    `LeRobotDataset` (scripts/lerobot/write_dataset.py in the side venv)."""
    if not LEROBOT_PY.exists():
        pytest.skip(f"LeRobot's side venv is missing ({LEROBOT_PY})")
    root = tmp_path_factory.mktemp("lerobot_written")
    rng = np.random.default_rng(0)
    lengths = np.array([20, 16])
    n = int(lengths.sum())
    t = np.arange(n + 1)[:, None] / 10.0
    q = np.sin(t + rng.uniform(0, 6, 6)).astype(np.float32)
    np.savez(root / "arrays.npz", fps=15, robot_type="koch", episode_length=lengths,
             episode_task=np.asarray(["grasp the block", "push the block left"]),
             state_names=np.asarray([f"joint_{i}" for i in range(6)]),
             action_names=np.asarray([f"joint_{i}" for i in range(6)]),
             **{"observation.state": q[:-1], "action": q[1:],
                "observation.images.top": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                "observation.images.wrist": rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8)})
    run_lerobot("write_dataset.py", root / "arrays.npz", root / "ds")
    return root / "ds"


def test_lerobot_written_features(lerobot_ds):
    info = json.loads((lerobot_ds / "meta/info.json").read_text())
    assert "embodia" not in info and "observation.environment_state" not in info["features"]
    f = PolicyFeatures.from_dataset(lerobot_ds)
    assert f.robot_type == "koch" and f.state_dim == 6 and f.action_names == [f"joint_{i}" for i in range(6)]
    assert [(c.name, c.height, c.width) for c in f.cameras] == [("top", 64, 64), ("wrist", 48, 64)]


@pytest.mark.parametrize("head", list(HEADS))
def test_every_head_trains_on_a_lerobot_written_dataset(head, lerobot_ds, tmp_path):
    available(head)
    summary = train_tiny([lerobot_ds], tmp_path / head, head, max_steps=2)
    assert summary["steps"] == 2
    p = load_checkpoint(tmp_path / head, language=HashLanguage())
    rng = np.random.default_rng(1)
    obs = {"observation.state": rng.normal(size=6).astype(np.float32), "task": "grasp the block",
           "observation.images.top": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
           "observation.images.wrist": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)}
    chunk = p.predict_chunk(batch_from_obs(obs, p.cfg.features))
    assert chunk.shape == (1, 8, 6) and np.isfinite(chunk.numpy()).all()
