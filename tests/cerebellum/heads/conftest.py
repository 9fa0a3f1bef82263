"""Datasets the general core trains on in tests: an embodiment nobody registered (`so100`,
6-D joint actions, one 64×64 camera) written by our DatasetWriter, and (slow) one written by
LeRobot's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embodia.body.embodiment import ActionLayout, ArmSpec, CameraSpec, Embodiment
from embodia.data.writer import DatasetWriter, EpisodeBuffer
from tests.cerebellum.conftest import HashLanguage  # noqa: F401  (re-exported fixture helper)

SO100_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def so100() -> Embodiment:
    """A robot that is not in body/embodiments: its state and action are its six joints."""
    arm = ArmSpec("arm", SO100_JOINTS[:5], (0.0,) * 5, "tcp", ("f1", "f2"), 0.04, (0.0, 1.0, 0.0, 1.0))
    layout = ActionLayout("joint_pos", SO100_JOINTS, ("rad",) * 5 + ("closed_fraction",),
                          np.full(6, -3.0, np.float32), np.full(6, 3.0, np.float32), (5,))
    return Embodiment("so100", (arm,), (CameraSpec("top", "world"),), 30.0, {},
                      custom_state_names=SO100_JOINTS, custom_action_layouts=(layout,))


def write_so100(root: Path, episodes: int = 3, length: int = 24, size: int = 64, seed: int = 0) -> Path:
    """Episodes whose action is the next state (a smooth sinusoid per joint) and whose camera
    shows a square that moves with the first joint: enough signal for a few training steps."""
    rng = np.random.default_rng(seed)
    w = DatasetWriter(root, so100(), ["top"], (size, size), fps=30, action_space="joint_pos")
    for e in range(episodes):
        phase = rng.uniform(0, 2 * np.pi, 6)
        t = np.arange(length + 1)[:, None] / 10.0
        q = np.sin(t + phase).astype(np.float32)
        ep = EpisodeBuffer(task=["pick up the cube", "put the cube in the box"][e % 2], seed=e)
        for i in range(length):
            img = np.full((size, size, 3), 40, np.uint8)
            x = int((q[i, 0] + 1) / 2 * (size - 12))
            img[20:32, x:x + 12] = (220, 60, 60)
            ep.add({"observation.state": q[i], "observation.images.top": img}, q[i + 1])
        w.stage(ep, f"so100-{e:04d}")
    w.consolidate()
    return root


@pytest.fixture(scope="session")
def so100_ds(tmp_path_factory) -> Path:
    return write_so100(tmp_path_factory.mktemp("general") / "so100")
