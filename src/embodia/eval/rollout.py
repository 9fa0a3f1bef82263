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
from embodia.eval.video import video_path, write_mp4

POLICY_SEED_OFFSET = 1_000_003


class Agent(Protocol):
    """What the evaluator drives: reset at episode start, then one action per step."""

    def reset(self, env: TabletopEnv, seed: int) -> None: ...

    def act(self, obs: dict[str, Any], env: TabletopEnv) -> np.ndarray: ...


ExpertAgent = ChainedExpert  # the scripted experts, chained over the steps of a multi-step plan


@dataclass(frozen=True)
class TabletopSpec:
    """How each run's env is built (one run: a skill or a task). Picklable, so every Ray
    worker of `eval.parallel` builds the same envs as the in-process path."""

    embodiment: str
    arm: str
    cameras: tuple[str, ...] = ()
    image_size: int = 96
    instruction_split: str = "train"

    def make(self, kind: str, name: str) -> TabletopEnv:
        """`kind` is 'skill' or 'task'."""
        return TabletopEnv(embodiment=self.embodiment, arm=self.arm, cameras=self.cameras,
                           image_size=self.image_size, instruction_split=self.instruction_split, **{kind: name})


@dataclass(frozen=True)
class InferenceOverrides:
    """`embodia eval`'s inference flags for a learned checkpoint; None keeps the checkpoint's."""

    n_action_steps: int | None = None
    flow_temperature: float | None = None
    temporal_ensemble: float | None = None
    occlusion_hold: bool | None = None
    instruction_retrieval: bool | None = None
    privileged_state: bool = False

    def apply(self, learned: Any) -> None:
        """Set them on a loaded policy: every member of an ensemble; the general core takes
        only the chunking flags. Raises ValueError where retrieval has no instructions."""
        if is_general(learned):
            learned.cfg.n_action_steps = self.n_action_steps or learned.cfg.n_action_steps
            if self.temporal_ensemble is not None:
                learned.cfg.temporal_ensemble = self.temporal_ensemble
            return
        for c in learned.configs():
            c.n_action_steps = self.n_action_steps or c.n_action_steps
            if self.flow_temperature is not None:
                c.flow_temperature = self.flow_temperature
            if self.temporal_ensemble is not None:
                c.temporal_ensemble = self.temporal_ensemble
            if self.occlusion_hold is not None:
                c.occlusion_hold = self.occlusion_hold
            if self.instruction_retrieval is not None:
                if self.instruction_retrieval and not c.known_instructions:
                    raise ValueError("config.json lists no known_instructions to retrieve from")
                c.instruction_retrieval = self.instruction_retrieval
            if self.privileged_state:
                c.env_state_input = "privileged"


def is_general(learned: Any) -> bool:
    """The general core (GeneralistPolicy) rather than the object-centric preset."""
    return not hasattr(learned.cfg, "env_state_input")


def load_policy(path: str | Path, embodiment: str, overrides: InferenceOverrides) -> Any:
    """A checkpoint folder loaded for `embodiment` with the overrides applied."""
    from embodia.cerebellum.checkpoint import load_checkpoint

    learned = load_checkpoint(path, embodiment=embodiment)
    overrides.apply(learned)
    return learned


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
                ep.video = str(write_mp4(video_path(video_dir, name, seed), frames, env.embodiment.control_rate_hz))
            result.episodes.append(ep)
            if progress:
                progress()
    finally:
        env.close()
    return result
