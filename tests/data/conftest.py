"""Tiny recorded datasets shared by the data-pillar tests (built once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from embodia.body.env import TabletopEnv
from embodia.data.writer import DatasetWriter, EpisodeBuffer
from embodia.eval.rollout import ExpertAgent

SIZE = 64


@dataclass
class Recorded:
    """A dataset on disk plus exactly what went into it, episode by episode."""

    root: Path
    states: list[np.ndarray]  # per episode [T, S]
    actions: list[np.ndarray] | None  # per episode [T, D]; None for action-free data
    images: dict[str, list[np.ndarray]]  # camera key -> per episode [T, H, W, 3]
    tasks: list[str]
    tier: str

    @property
    def lengths(self) -> list[int]:
        return [len(s) for s in self.states]


def make_dataset(root: Path, n: int = 3, skill: str = "pick", cameras: tuple[str, ...] = ("front", "wrist"),
                 size: int = SIZE, seed0: int = 0, tier: str = "synthetic", with_actions: bool = True,
                 env_state: bool = False) -> Recorded:
    env = TabletopEnv(skill=skill, cameras=cameras, image_size=size)
    w = DatasetWriter(root, env.embodiment, list(cameras), (size, size),
                      action_space="ee_delta" if with_actions else None,
                      env_state_names=env.sim.environment_state_names() if env_state else None)
    rec = Recorded(root, [], [] if with_actions else None,
                   {f"observation.images.{c}": [] for c in cameras}, [], tier)
    try:
        for seed in range(seed0, seed0 + n):
            obs, info = env.reset(seed=seed)
            agent = ExpertAgent()
            agent.reset(env, seed)
            ep = EpisodeBuffer(task=info["instruction"], skill=skill, seed=seed, tier=tier)
            while True:
                a = agent.act(obs, env)
                ep.add(obs, a if with_actions else None)
                obs, _, term, trunc, info = env.step(a)
                if term or trunc:
                    break
            rec.states.append(np.stack(ep.states))
            if rec.actions is not None:
                rec.actions.append(np.stack(ep.actions))
            for k, frames in rec.images.items():
                frames.append(np.stack(ep.images[k]))
            rec.tasks.append(ep.task)
            w.stage(ep, f"{skill}-{seed:08d}")
        w.consolidate()
    finally:
        env.close()
    return rec


@pytest.fixture(scope="session")
def synthetic_ds(tmp_path_factory) -> Recorded:
    """3 pick episodes with actions, cameras front + wrist, tier synthetic."""
    return make_dataset(tmp_path_factory.mktemp("data") / "synthetic", n=3)


@pytest.fixture(scope="session")
def human_ds(tmp_path_factory) -> Recorded:
    """2 action-free episodes (front camera only), tier human."""
    return make_dataset(tmp_path_factory.mktemp("data") / "human", n=2, cameras=("front",),
                        seed0=10, tier="human", with_actions=False)


@pytest.fixture(scope="session")
def real_ds(tmp_path_factory) -> Recorded:
    """2 episodes with actions, front camera, tier real (stands in for teleoperation),
    recorded in two sessions: two data files and two mp4s, each starting at timestamp 0."""
    root = tmp_path_factory.mktemp("data") / "real"
    a = make_dataset(root, n=1, cameras=("front",), seed0=20, tier="real")
    b = make_dataset(root, n=1, cameras=("front",), seed0=21, tier="real")
    assert a.actions is not None and b.actions is not None
    return Recorded(root, a.states + b.states, a.actions + b.actions,
                    {k: a.images[k] + b.images[k] for k in a.images}, a.tasks + b.tasks, "real")


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
