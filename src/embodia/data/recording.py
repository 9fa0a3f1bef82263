"""Record scripted-expert episodes into a dataset, in parallel, resumably.

Worker processes roll out episodes and stage each finished one atomically; the main process
consolidates the staged episodes into v3 files at the start (leftovers of an interrupted
run), at the end, and on Ctrl-C. Re-running the same command resumes: seeds already in the
dataset (or staged) are skipped and only the missing episodes are recorded.

With a multi-step `task` (body/tasks.py) the experts run the whole chain and each step is
stored as its own episode of its skill, under that step's instruction. Why: a skill that
only ever saw its own start states meets another skill's end state in a long-horizon plan
(a pick right after opening the drawer, a push whose target lies across the table).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from embodia.body.disturbances import slip_from_grasp
from embodia.body.embodiments import get_embodiment
from embodia.body.sim import Simulation
from embodia.body.skills import get_skill
from embodia.body.tasks import get_task
from embodia.data.children import die_with_parent
from embodia.data.metadata import DatasetMeta
from embodia.data.writer import STAGING, DatasetWriter, EpisodeBuffer, stage_episode


@dataclass
class CollectConfig:
    out: Path
    embodiment: str = "arm7"
    skill: str = "pick"
    task: str | None = None  # a multi-step task instead of `skill`: one episode per step
    arm: str | None = None
    episodes: int = 10
    seed_start: int = 0
    workers: int = 1
    # None: every camera of the embodiment; (): none, a state-and-action dataset that only the
    # action part of an object-centric policy can learn from (it reads no image), ~6x faster
    cameras: tuple[str, ...] | None = None
    image_size: int = 96
    tier: str = "synthetic"
    keep_failures: bool = False
    instruction_split: str = "train"
    batch: int = 4  # seeds per worker task
    # DART-style perturbation (metres): each episode draws a scale in [0, perturb] and adds
    # that much Gaussian noise to the executed translation every step, while the dataset
    # records the expert's own action. The expert re-reads the scene every step, so the
    # recorded labels show how to get back on track from states clean demonstrations never
    # visit (a hand 1-2 cm beside the cube), where a cloned policy otherwise drifts.
    perturb: float = 0.0
    # Recovery demonstrations: the share of episodes in which, during a pick, the cube slides
    # out of the fingers as they start to close (body/disturbances.py); the expert then
    # opens and grasps again, and that re-grasp is recorded.
    slip: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.perturb <= 0.05:
            raise ValueError(f"perturb must be in [0, 0.05] metres, got {self.perturb}")
        if not 0.0 <= self.slip <= 1.0:
            raise ValueError(f"slip is a share of episodes in [0, 1], got {self.slip}")
        if self.task is not None:
            get_task(self.task)
        else:
            get_skill(self.skill)

    @property
    def name(self) -> str:
        """What the episode keys are named after: the task, or the skill."""
        return self.task or self.skill


@dataclass
class CollectReport:
    recorded: int = 0
    failed_skipped: int = 0
    already_present: int = 0
    frames: int = 0
    seeds: list[int] = field(default_factory=list)


class Lead(Protocol):
    """Something that acts on a freshly reset episode before the expert (a learned policy,
    in `embodia.eval.recovery`). Recording only drives it: data/ never knows what acts. It is
    pickled to each worker batch, so it should load anything heavy lazily, in `run`."""

    def env_max_steps(self, cfg: CollectConfig) -> int | None:
        """The env's step budget (None: the skill's or task's own)."""
        ...

    def run(self, env: Any, obs: dict[str, Any], seed: int) -> tuple[dict[str, Any], bool, int | None]:
        """Act from `obs`; returns (the observation the expert starts from, whether the expert
        takes over (False: nothing is recorded for this seed), the plan step after which
        recording stops (None: run the plan to its end))."""
        ...


PERTURB_SEED_OFFSET = 2_000_029  # perturbation noise: a stream apart from the expert's own


def episode_key(name: str, arm: str, seed: int, step: int | None = None) -> str:
    """`pick-main-00000012`; a task's steps: `drawer_store-main-00000012-1`."""
    return f"{name}-{arm}-{seed:08d}" + ("" if step is None else f"-{step}")


def seed_of(key: str, prefix: str) -> int | None:
    """The seed of an episode key that starts with `prefix` (None for another name/arm)."""
    if not key.startswith(prefix):
        return None
    head = key[len(prefix):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _step_buffer(env, i: int, tier: str, seed: int) -> EpisodeBuffer:
    """An empty episode for step i of the env's plan, under that step's instruction."""
    return EpisodeBuffer(task=env.instructions[i], tier=tier, skill=env.plan[i][0], seed=seed)


def _record_batch(cfg: dict, features: dict, seeds: list[int],
                  lead: Lead | None = None) -> list[tuple[int, bool, int, bool]]:
    """Worker: roll out `seeds`, stage the keepers. Returns (seed, success, frames kept, kept).

    One loop for a skill (a plan of one step) and a task: a step's episode ends on the
    frame its success first holds, as a single-skill episode does. With a `lead`, it acts
    first and the expert records from where it left the episode.
    """
    import numpy as np

    from embodia.body.env import TabletopEnv
    from embodia.body.experts import ChainedExpert

    max_steps = cfg.get("max_steps")
    env = TabletopEnv(embodiment=cfg["embodiment"], skill=None if cfg["task"] else cfg["skill"],
                      task=cfg["task"], arm=cfg["arm"], cameras=cfg["cameras"], max_steps=max_steps,
                      image_size=cfg["image_size"], instruction_split=cfg["instruction_split"])
    emb = env.embodiment
    arm_dims = np.arange(emb.action_layout("ee_delta").dim)[emb.arm_action_slice("ee_delta", env.arm)]
    moves, grip = arm_dims[:3], arm_dims[-1]
    low, high = env.action_space.low, env.action_space.high
    staging = Path(cfg["out"]) / STAGING
    name = cfg["task"] or cfg["skill"]
    out = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            stop_after = None  # a lead may stop recording after one plan step
            if lead is not None:
                obs, handed_over, stop_after = lead.run(env, obs, seed)
                if not handed_over:
                    out.append((seed, False, 0, False))
                    continue
            agent = ChainedExpert()
            agent.reset(env, seed)
            rng = np.random.default_rng(seed + PERTURB_SEED_OFFSET)
            sigma = cfg["perturb"] * rng.uniform()
            slip = rng.uniform() < cfg["slip"]
            first = env.step_index  # after a task handover, the expert's step
            episodes = [(first, _step_buffer(env, first, cfg["tier"], seed))]
            ep = episodes[0][1]
            last_grip = 1.0
            while True:
                index = env.step_index
                action = agent.act(obs, env)
                if slip and index < len(env.plan) and env.plan[index][0] == "pick" and action[grip] >= 0.5 > last_grip:
                    slip = not slip_from_grasp(env.sim, env.arm, env.plan[index][1][0], rng)  # once
                last_grip = action[grip]
                executed = action
                if sigma > 0:
                    executed = action.copy()
                    executed[moves] += rng.normal(0.0, sigma, len(moves))
                obs_before = obs
                obs, _, term, trunc, info = env.step(executed)
                # the label is what the expert meant; without perturbation, exactly what ran
                if index < len(env.plan):
                    ep.add(obs_before, info["action"] if sigma == 0 else np.clip(action, low, high))
                if stop_after is not None and env.step_index > stop_after:
                    break
                if env.step_index > index and env.step_index < len(env.plan):
                    ep = _step_buffer(env, env.step_index, cfg["tier"], seed)
                    episodes.append((env.step_index, ep))
                if term or trunc:
                    break
            frames, kept = 0, False
            for i, step_ep in episodes:
                step_ep.success = env.step_index > i  # the step's own success held
                if len(step_ep) and (step_ep.success or cfg["keep_failures"]):
                    stage_episode(staging, features, step_ep,
                                  episode_key(name, env.arm, seed, i if cfg["task"] else None))
                    frames, kept = frames + len(step_ep), True
            out.append((seed, bool(info["success"]), frames, kept))
    finally:
        env.close()
    return out


def collect(cfg: CollectConfig, progress: Callable[[int, int], None] | None = None,
            lead: Lead | None = None) -> CollectReport:
    """Record until the dataset holds `cfg.episodes` episodes of this skill/arm (a task: seeds
    with at least one step kept) from seeds `seed_start...`; `progress(done, total)` is
    called as episodes are kept. `lead` acts before the expert in every episode (see `Lead`).

    Workers die with this process (data/children.py), and leftovers staged beyond the count
    asked for are dropped before they are packed. Why: after a `kill -9`, workers that ran
    on used to stage more episodes, and the resumed run packed them all (32 for 30).
    """
    spec = get_embodiment(cfg.embodiment)
    arm = spec.arm(cfg.arm).name
    cameras = list(cfg.cameras) if cfg.cameras is not None else [c.name for c in spec.cameras]
    writer = DatasetWriter(cfg.out, spec, cameras, (cfg.image_size, cfg.image_size),
                           env_state_names=Simulation(spec).environment_state_names())
    prefix = episode_key(cfg.name, arm, 0)[:-8]
    _trim_leftovers(writer, prefix, cfg.seed_start, cfg.episodes)
    writer.consolidate()  # leftovers of an interrupted run
    existing = writer.recorded_keys()
    have = sorted({s for s in (seed_of(k, prefix) for k in existing) if s is not None and s >= cfg.seed_start})
    report = CollectReport(already_present=len(have))
    need = cfg.episodes - len(have)
    if progress:
        progress(min(len(have), cfg.episodes), cfg.episodes)
    if need <= 0:
        return report
    wcfg = asdict(cfg) | {"out": str(cfg.out), "arm": arm, "cameras": tuple(cameras),
                          "max_steps": lead.env_max_steps(cfg) if lead is not None else None}
    taken = set(have)

    def seeds_from(start: int):
        s = start
        while True:
            if s not in taken:
                yield s
            s += 1

    seed_iter = seeds_from(cfg.seed_start)
    kept: list[int] = []
    ctx = mp.get_context("spawn")  # MuJoCo/EGL contexts must not be forked
    pool = ProcessPoolExecutor(max_workers=max(1, cfg.workers), mp_context=ctx,
                               initializer=die_with_parent, initargs=(os.getpid(),))
    pending: set[Future] = set()
    try:
        def submit() -> None:
            seeds = [next(seed_iter) for _ in range(cfg.batch)]
            pending.add(pool.submit(_record_batch, wcfg, writer.features, seeds, lead))

        for _ in range(max(1, cfg.workers) * 2):
            submit()
        while pending and len(kept) < need:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                pending.discard(fut)
                for seed, _success, length, keep in fut.result():
                    if keep and len(kept) < need:
                        kept.append(seed)
                        report.frames += length
                        if progress:
                            progress(len(have) + len(kept), cfg.episodes)
                    elif keep:
                        _drop_staged(writer, prefix, {seed})  # overshoot
                    else:
                        report.failed_skipped += 1
            missing = need - len(kept)
            while missing > 0 and len(pending) < max(1, cfg.workers) * 2:
                submit()
                missing -= cfg.batch
        for fut in pending:
            fut.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # keep only what we counted (a cancelled batch may have staged more)
        counted = set(kept) | set(have)
        _drop_staged(writer, prefix, {seed_of(p.name, prefix) for p in writer.staged()} - counted - {None})
        writer.consolidate()
    report.recorded = len(kept)
    report.seeds = sorted(kept)
    return report


def _drop_staged(writer: DatasetWriter, prefix: str, seeds: set[int]) -> None:
    """Remove the staged episodes (every step of a task) of these seeds."""
    for p in writer.staged():
        if seed_of(p.name, prefix) in seeds:
            shutil.rmtree(p)


def _trim_leftovers(writer: DatasetWriter, prefix: str, seed_start: int, episodes: int) -> None:
    """Drop staged leftovers of this skill/arm beyond `episodes` (the lowest seeds stay).

    Only staged episodes are dropped (the writer's own, never committed); a dataset that
    already holds more committed episodes than asked keeps them all.
    """
    committed = {s for s in (seed_of(k, prefix) for k in DatasetMeta.load(writer.root).column("embodia_key", None) if k)
                 if s is not None and s >= seed_start}
    staged = sorted({s for s in (seed_of(p.name, prefix) for p in writer.staged())
                     if s is not None and s >= seed_start} - committed)
    extra = staged[max(0, episodes - len(committed)):]
    if extra:
        _drop_staged(writer, prefix, set(extra))
