"""Seeded evaluation rollouts of a policy in `TabletopEnv`, one skill or task at a time.

Seeds `seed_start .. seed_start + episodes - 1` fix each episode's scene and start; a
policy's own randomness is seeded from a disjoint stream so results reproduce exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embodia.body.env import TabletopEnv
from embodia.body.experts import ChainedExpert
from embodia.eval.stats import summarize
from embodia.eval.video import write_mp4

POLICY_SEED_OFFSET = 1_000_003


class Agent(Protocol):
    """What the evaluator drives: reset at episode start, then one action per step."""

    def reset(self, env: TabletopEnv, seed: int) -> None: ...

    def act(self, obs: dict[str, Any], env: TabletopEnv) -> np.ndarray: ...


ExpertAgent = ChainedExpert  # the scripted experts, chained over the steps of a multi-step plan


class PolicyAgent:
    """A learned policy (a checkpoint folder) acting through `select_action`."""

    def __init__(self, policy) -> None:
        self.policy = policy

    def reset(self, env: TabletopEnv, seed: int) -> None:
        import torch

        self.policy.reset()
        self.policy._generator = torch.Generator().manual_seed(seed + POLICY_SEED_OFFSET)

    def act(self, obs: dict[str, Any], env: TabletopEnv) -> np.ndarray:
        return np.asarray(self.policy.select_action(obs), dtype=np.float64)


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    length: int
    plan: list
    instructions: list[str]
    steps_done: int
    video: str | None = None


@dataclass
class EvalResult:
    name: str
    episodes: list[EpisodeResult] = field(default_factory=list)

    def summary(self) -> dict:
        s = summarize([e.success for e in self.episodes], [e.length for e in self.episodes])
        s["failed_seeds"] = [e.seed for e in self.episodes if not e.success]
        return s


def run_episode(env: TabletopEnv, agent: Agent, seed: int, record: bool = False,
                reset_options: dict | None = None) -> tuple[EpisodeResult, list[np.ndarray]]:
    obs, info = env.reset(seed=seed, options=reset_options)
    agent.reset(env, seed)
    frames = [env.render()] if record else []
    while True:
        obs, _, terminated, truncated, info = env.step(agent.act(obs, env))
        if record:
            frames.append(env.render())
        if terminated or truncated:
            break
    res = EpisodeResult(seed, bool(info["success"]), int(info["elapsed_steps"]),
                        [[s, list(a)] for s, a in env.plan], list(env.instructions),
                        int(info["step_index"]))
    return res, frames


def evaluate(make_env: Callable[[], TabletopEnv], agent: Agent, name: str, episodes: int,
             seed_start: int, video_dir: str | Path | None = None,
             progress: Callable[[], None] | None = None) -> EvalResult:
    env = make_env()
    result = EvalResult(name)
    try:
        for i in range(episodes):
            seed = seed_start + i
            ep, frames = run_episode(env, agent, seed, record=video_dir is not None)
            if video_dir is not None:
                path = Path(video_dir) / f"{name}_seed{seed}.mp4"
                write_mp4(path, frames, env.embodiment.control_rate_hz)
                ep.video = str(path)
            result.episodes.append(ep)
            if progress:
                progress()
    finally:
        env.close()
    return result
