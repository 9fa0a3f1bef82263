"""Seeded evaluation over an external suite (body/suites: Meta-World), any policy.

Episode i of every task uses seed `seed_start + i` both to draw the task variation and to
reset, so two policies (ours, LeRobot's, the scripted experts) meet exactly the same episodes.
Success is the suite's own `info["success"]` at any step within the budget (Meta-World: 500).
Results per task: successes, rate, Wilson 95% interval; the mean over tasks; and, beside every
result, the scripted experts' ceiling measured on the same default seeds
(eval/metaworld_ceiling.py).

A policy is anything with `reset()` and `select_action(obs) -> np.ndarray` (obs: the env's
observation dict, `task` holding the language description). An optional
`seed_episode(seed: int)` is called before each episode so a stochastic policy reproduces.

Seeds: demonstrations from 0 (`embodia collect --suite ...` default), evaluation from 100000.
`check_seed_overlap` refuses an evaluation range that overlaps the seeds a dataset recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embodia.body.suites import get_suite
from embodia.data.metadata import DatasetMeta
from embodia.eval.rollout import POLICY_SEED_OFFSET
from embodia.eval.stats import summarize, wilson_interval
from embodia.eval.video import video_path, write_mp4

EVAL_SEED_START = 100_000
DEMO_SEED_START = 0


class SuitePolicy(Protocol):
    """What the harness drives: reset at episode start, then one action per step."""

    def reset(self) -> None: ...

    def select_action(self, obs: dict[str, Any]) -> np.ndarray: ...


@dataclass
class SuiteEvalConfig:
    """Which suite, tasks (`mt10`, one name, or a comma list), seeds and observations."""

    suite: str = "metaworld"
    task: str = "mt10"
    episodes: int = 50
    seed_start: int = EVAL_SEED_START
    cameras: tuple[str, ...] | None = None  # None: the suite's camera; (): render nothing
    image_size: int | None = None  # None: the suite's (84)
    max_steps: int | None = None  # None: the suite's (500)
    tasks: list[str] = field(init=False)

    def __post_init__(self) -> None:
        suite = get_suite(self.suite)
        self.tasks = suite.resolve_tasks(self.task)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed_start < 0:
            raise ValueError(f"seed_start must be >= 0, got {self.seed_start}")
        self.image_size = int(self.image_size or suite.image_size)
        self.max_steps = int(self.max_steps or suite.max_steps)
        if self.cameras is None:
            self.cameras = (suite.camera,)
        unknown = [c for c in self.cameras if c != suite.camera]
        if unknown:
            raise ValueError(f"cameras: unknown camera(s) {unknown} for suite {self.suite!r}; "
                             f"cameras: [{suite.camera!r}] or none")

    @property
    def seeds(self) -> range:
        return range(self.seed_start, self.seed_start + self.episodes)

    def make_env(self, task: str) -> Any:
        return get_suite(self.suite).make_env(task, cameras=self.cameras, image_size=self.image_size,
                                              max_steps=self.max_steps)


def dataset_seed_range(root: str | Path) -> tuple[int, int] | None:
    """(lowest, highest) seed a dataset's episode table records; None if it records none."""
    seeds = [int(s) for s in DatasetMeta.load(root).column("seed", -1) if s is not None and int(s) >= 0]
    return (min(seeds), max(seeds)) if seeds else None


def check_seed_overlap(datasets: Sequence[str | Path], seed_start: int, episodes: int) -> None:
    """Refuse evaluation seeds inside the seed range a demonstration dataset recorded.

    Why: a seed fixes the whole episode (task variation and start), so evaluating on a
    training seed scores memory, not generalisation.
    """
    lo, hi = seed_start, seed_start + episodes - 1
    for root in datasets:
        rng = dataset_seed_range(root)
        if rng is not None and rng[0] <= hi and lo <= rng[1]:
            raise ValueError(f"seed_start: evaluation seeds {lo}..{hi} overlap the seeds {rng[0]}..{rng[1]} "
                             f"recorded in {root}; evaluate from {rng[1] + 1} or later (default "
                             f"{EVAL_SEED_START}; demonstrations default to {DEMO_SEED_START}..)")


def checkpoint_datasets(ckpt: str | Path) -> list[Path]:
    """The dataset folders a checkpoint's config.json says it trained on (those still there)."""
    path = Path(ckpt) / "config.json"
    try:
        extra = json.loads(path.read_text()).get("extra") or {}
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
    found = extra.get("datasets") or (extra.get("train") or {}).get("data") or []
    return [Path(p) for p in found if isinstance(p, str) and (Path(p) / "meta" / "info.json").exists()]


@dataclass
class SuiteEpisode:
    task: str
    seed: int
    success: bool
    length: int  # steps run (to the first success, or the budget)
    video: str | None = None


def run_suite_episode(env: Any, policy: SuitePolicy, seed: int,
                      record: bool = False) -> tuple[SuiteEpisode, list[np.ndarray]]:
    """One episode of seed `seed`; stops at the first step the suite reports success."""
    obs, _ = env.reset(seed=seed)
    seeder = getattr(policy, "seed_episode", None)
    if callable(seeder):
        seeder(seed + POLICY_SEED_OFFSET)
    policy.reset()
    frames = [env.render()] if record else []
    success, steps = False, 0
    while True:
        obs, _, terminated, truncated, info = env.step(np.asarray(policy.select_action(obs), dtype=np.float32))
        steps += 1
        if record:
            frames.append(env.render())
        if info["success"]:
            success = True
            break
        if terminated or truncated:
            break
    return SuiteEpisode(env.task_name, seed, success, steps), frames


def evaluate_suite(cfg: SuiteEvalConfig, policy_for: Callable[[str, Any], SuitePolicy], policy_name: str,
                   video_dir: str | Path | None = None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Every task of `cfg` over its seeds; `policy_for(task, env)` gives the policy for a
    task's env (one multi-task policy may ignore both). Returns the JSON report."""
    t0 = time.perf_counter()
    by_task: dict[str, list[SuiteEpisode]] = {}
    for task in cfg.tasks:
        env = cfg.make_env(task)
        try:
            policy = policy_for(task, env)
            episodes = by_task[task] = []
            for seed in cfg.seeds:
                ep, frames = run_suite_episode(env, policy, seed, record=video_dir is not None)
                if video_dir is not None:
                    ep.video = str(write_mp4(video_path(video_dir, task, seed), frames,
                                             env.embodiment.control_rate_hz))
                episodes.append(ep)
                if progress:
                    progress(task)
        finally:
            env.close()
    return suite_report(cfg, policy_name, by_task, time.perf_counter() - t0, videos=video_dir is not None)


def suite_report(cfg: SuiteEvalConfig, policy_name: str, by_task: dict[str, list[SuiteEpisode]],
                 seconds: float, videos: bool = False) -> dict:
    """The JSON report of every task's episodes (in seed order), however they were run."""
    results: dict[str, dict] = {}
    for task, episodes in by_task.items():
        s = summarize([e.success for e in episodes], [e.length for e in episodes])
        s["failed_seeds"] = [e.seed for e in episodes if not e.success]
        s["expert_ceiling"] = expert_ceiling(cfg.suite, task)
        if videos:
            s["videos"] = [e.video for e in episodes]
        results[task] = s
    rates = [r["success_rate"] for r in results.values()]
    n = sum(r["episodes"] for r in results.values())
    k = sum(r["successes"] for r in results.values())
    lo, hi = wilson_interval(k, n)
    ceiling = [r["expert_ceiling"]["success_rate"] for r in results.values() if r["expert_ceiling"]]
    return {
        "suite": cfg.suite, "policy": policy_name, "task": cfg.task, "seed_start": cfg.seed_start,
        "episodes_per_task": cfg.episodes, "seeds": [cfg.seed_start, cfg.seed_start + cfg.episodes - 1],
        "max_steps": cfg.max_steps, "cameras": list(cfg.cameras), "image_size": cfg.image_size,
        "tasks": results,
        "mean_success_rate": round(sum(rates) / len(rates), 4),
        "pooled": {"episodes": n, "successes": k, "wilson95": [round(lo, 4), round(hi, 4)]},
        "expert_ceiling": {
            "mean_success_rate": round(sum(ceiling) / len(ceiling), 4) if len(ceiling) == len(results) else None,
            "measured": expert_ceiling_source(cfg.suite),
        },
        "seconds": round(seconds, 1),
    }


LEROBOT_PREFIX = "lerobot:"  # a policy named `lerobot:PATH` is a LeRobot checkpoint


def suite_policy_for(suite: str, policy: str, learned: Any = None) -> Callable[[str, Any], SuitePolicy]:
    """`policy_for` of `evaluate_suite`: 'expert' gives each task's scripted expert; a
    checkpoint folder one multi-task policy for every task (loaded here unless `learned`);
    `lerobot:PATH` a LeRobot checkpoint, run in the side venv (eval/lerobot_policy.py)."""
    bench = get_suite(suite)
    if policy == "expert":  # the experts read the state: no rendering unless for --video
        return bench.make_expert
    if policy.startswith(LEROBOT_PREFIX):
        from embodia.eval.lerobot_policy import LeRobotPipePolicy

        lerobot = LeRobotPipePolicy(policy[len(LEROBOT_PREFIX):])
        return lambda task, env: lerobot
    if learned is None:
        from embodia.cerebellum.checkpoint import load_checkpoint

        learned = load_checkpoint(policy, embodiment=bench.embodiment)
    shared = CheckpointSuitePolicy(learned)

    def policy_for(task: str, env: Any) -> SuitePolicy:
        return shared

    return policy_for


def expert_ceiling(suite: str, task: str) -> dict | None:
    """The scripted expert's measured result on `task` (None where it was not measured)."""
    if suite != "metaworld":
        return None
    from embodia.eval.metaworld_ceiling import EXPERT_CEILING

    return EXPERT_CEILING["tasks"].get(task)


def expert_ceiling_source(suite: str) -> dict | None:
    """How the ceiling was measured: command, seeds, when."""
    if suite != "metaworld":
        return None
    from embodia.eval.metaworld_ceiling import EXPERT_CEILING

    return {k: v for k, v in EXPERT_CEILING.items() if k != "tasks"}


class CheckpointSuitePolicy:
    """A learned checkpoint (anything `load_checkpoint` returns) behind the harness interface,
    its sampling noise seeded per episode as `eval.rollout.PolicyAgent` seeds it."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def seed_episode(self, seed: int) -> None:
        import torch

        self.policy._generator = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        self.policy.reset()

    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        return np.asarray(self.policy.select_action(obs), dtype=np.float32)
