"""Record an external suite's scripted experts (body/suites: Meta-World) into a dataset.

The same machinery as `recording.py`: worker processes roll out seeds and stage each finished
episode atomically, the main process packs them into v3 files at the start, the end and on
Ctrl-C, workers die with it, and re-running the same command records only what is missing.
One dataset may hold many tasks (`mt10`): each episode is stored under its task's language
description (`task`), with the task name in the `skill` column and its seed in `seed`.

Seed S of a task both draws the task variation and resets (body/suites/metaworld.py), so an
episode is reproducible from (task, seed) alone. Demonstrations start at seed 0 by default
and evaluation at 100000 (eval/suite_rollout.py refuses an overlap).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embodia.body.embodiments import get_embodiment
from embodia.body.suites import get_suite
from embodia.data.children import die_with_parent
from embodia.data.layout import TIERS
from embodia.data.recording import (
    CollectReport,
    _drop_staged,
    _trim_leftovers,
    episode_key,
    seed_of,
)
from embodia.data.writer import STAGING, DatasetWriter, EpisodeBuffer, stage_episode

DEMO_SEED_START = 0  # demonstrations; evaluation starts at eval.suite_rollout.EVAL_SEED_START


@dataclass
class SuiteCollectConfig:
    """`embodia collect --suite S --task T|mt10`: `episodes` per task from `seed_start` on."""

    out: Path
    suite: str = "metaworld"
    task: str = "mt10"
    episodes: int = 50
    seed_start: int = DEMO_SEED_START
    workers: int = 1
    cameras: tuple[str, ...] | None = None  # None: the suite's camera; (): none, no rendering
    image_size: int | None = None  # None: the suite's (84 for Meta-World)
    tier: str = "synthetic"
    keep_failures: bool = False
    batch: int = 4  # seeds per worker task
    max_steps: int | None = None  # None: the suite's (500 for Meta-World)
    tasks: list[str] = field(init=False)

    def __post_init__(self) -> None:
        suite = get_suite(self.suite)  # names an unknown suite
        self.tasks = suite.resolve_tasks(self.task)  # names an unknown task and the valid ones
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed_start < 0:
            raise ValueError(f"seed_start must be >= 0, got {self.seed_start}")
        if self.tier not in TIERS:
            raise ValueError(f"tier: unknown tier {self.tier!r}; tiers: {list(TIERS)}")
        self.image_size = int(self.image_size or suite.image_size)
        self.max_steps = int(self.max_steps or suite.max_steps)
        if self.cameras is None:
            self.cameras = (suite.camera,)
        unknown = [c for c in self.cameras if c != suite.camera]
        if unknown:
            raise ValueError(f"cameras: unknown camera(s) {unknown} for suite {self.suite!r}; "
                             f"cameras: [{suite.camera!r}] or none")


def _record_suite_batch(cfg: dict, features: dict, task: str, seeds: list[int]) -> list[tuple[int, bool, int, bool]]:
    """Worker: roll out `seeds` of `task` under the suite's expert, stage the keepers.

    Returns (seed, success, frames, kept). An episode ends on the frame before the step on
    which the suite reports success (that step's action is its last label), or at the budget.
    """
    suite = get_suite(cfg["suite"])
    env = suite.make_env(task, cameras=tuple(cfg["cameras"]), image_size=cfg["image_size"],
                         max_steps=cfg["max_steps"])
    expert = suite.make_expert(task, env)
    staging = Path(cfg["out"]) / STAGING
    out = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            expert.reset()
            ep = EpisodeBuffer(task=env.description, tier=cfg["tier"], skill=task, seed=seed)
            while True:
                action = expert.select_action(obs)
                obs_before = obs
                obs, _, term, trunc, info = env.step(action)
                ep.add(obs_before, info["action"])  # what ran (checked and clipped)
                if term or trunc:
                    break
            ep.success = bool(info["success"])
            keep = ep.success or cfg["keep_failures"]
            if keep:
                stage_episode(staging, features, ep, episode_key(task, "main", seed))
            out.append((seed, ep.success, len(ep) if keep else 0, keep))
    finally:
        env.close()
    return out


def collect_suite(cfg: SuiteCollectConfig, progress: Callable[[int, int], None] | None = None) -> CollectReport:
    """Record until the dataset holds `cfg.episodes` episodes of every task (seeds from
    `seed_start`, skipping failures unless `keep_failures`); `progress(done, total)` counts
    over all tasks. Resumable and crash-safe as `recording.collect` is."""
    suite = get_suite(cfg.suite)
    spec = get_embodiment(suite.embodiment)
    cameras = list(cfg.cameras or ())
    writer = DatasetWriter(cfg.out, spec, cameras, (cfg.image_size, cfg.image_size),
                           env_state_names=suite.env_state_names())
    prefixes = {t: episode_key(t, "main", 0)[:-8] for t in cfg.tasks}
    for prefix in prefixes.values():
        _trim_leftovers(writer, prefix, cfg.seed_start, cfg.episodes)
    writer.consolidate()  # leftovers of an interrupted run
    existing = writer.recorded_keys()
    have = {t: sorted({s for s in (seed_of(k, p) for k in existing) if s is not None and s >= cfg.seed_start})
            for t, p in prefixes.items()}
    total = cfg.episodes * len(cfg.tasks)
    report = CollectReport(already_present=sum(min(len(h), cfg.episodes) for h in have.values()))
    need = {t: max(0, cfg.episodes - len(h)) for t, h in have.items()}
    if progress:
        progress(report.already_present, total)
    if not any(need.values()):
        return report
    wcfg = asdict(cfg) | {"out": str(cfg.out), "cameras": tuple(cameras)}
    wcfg.pop("tasks")

    def seeds_from(start: int, taken: set[int]) -> Iterator[int]:
        s = start
        while True:
            if s not in taken:
                yield s
            s += 1

    seed_iters = {t: seeds_from(cfg.seed_start, set(have[t])) for t in cfg.tasks}
    kept: dict[str, list[int]] = {t: [] for t in cfg.tasks}
    in_flight = {t: 0 for t in cfg.tasks}  # seeds submitted and not yet back
    slots = max(1, cfg.workers) * 2
    ctx = mp.get_context("spawn")  # MuJoCo/EGL contexts must not be forked
    pool = ProcessPoolExecutor(max_workers=max(1, cfg.workers), mp_context=ctx,
                               initializer=die_with_parent, initargs=(os.getpid(),))
    pending: dict[Future, str] = {}

    def submit() -> bool:
        """One batch for the task furthest from done; False when none needs more seeds."""
        open_tasks = [t for t in cfg.tasks if need[t] - len(kept[t]) - in_flight[t] > 0]
        if not open_tasks:
            return False
        t = max(open_tasks, key=lambda x: need[x] - len(kept[x]) - in_flight[x])
        seeds = [next(seed_iters[t]) for _ in range(cfg.batch)]
        in_flight[t] += len(seeds)
        pending[pool.submit(_record_suite_batch, wcfg, writer.features, t, seeds)] = t
        return True

    try:
        while len(pending) < slots and submit():
            pass
        while pending:
            done, _ = wait(set(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                t = pending.pop(fut)
                rows = fut.result()
                in_flight[t] -= len(rows)
                for seed, _success, length, keep in rows:
                    if keep and len(kept[t]) < need[t]:
                        kept[t].append(seed)
                        report.frames += length
                        if progress:
                            progress(report.already_present + sum(map(len, kept.values())), total)
                    elif keep:
                        _drop_staged(writer, prefixes[t], {seed})  # overshoot
                    else:
                        report.failed_skipped += 1
            while len(pending) < slots and submit():
                pass
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for t, prefix in prefixes.items():  # keep only what we counted (a cancelled batch may have staged more)
            counted = set(kept[t]) | set(have[t])
            extra = {seed_of(p.name, prefix) for p in writer.staged()} - counted - {None}
            _drop_staged(writer, prefix, extra)
        writer.consolidate()
    report.recorded = sum(map(len, kept.values()))
    report.seeds = sorted({s for v in kept.values() for s in v})
    return report
