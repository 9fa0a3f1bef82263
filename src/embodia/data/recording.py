"""Record scripted-expert episodes into a dataset, in parallel, resumably.

Worker processes roll out episodes and stage each finished one atomically; the main process
consolidates the staged episodes into v3 files at the start (leftovers of an interrupted
run), at the end, and on Ctrl-C. Re-running the same command resumes: seeds already in the
dataset (or staged) are skipped and only the missing episodes are recorded.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embodia.body.embodiments import get_embodiment
from embodia.body.sim import Simulation
from embodia.body.skills import get_skill
from embodia.data.writer import STAGING, DatasetWriter, EpisodeBuffer, stage_episode


@dataclass
class CollectConfig:
    out: Path
    embodiment: str = "arm7"
    skill: str = "pick"
    arm: str | None = None
    episodes: int = 10
    seed_start: int = 0
    workers: int = 1
    cameras: tuple[str, ...] | None = None  # None: every camera of the embodiment
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

    def __post_init__(self) -> None:
        if not 0.0 <= self.perturb <= 0.05:
            raise ValueError(f"perturb must be in [0, 0.05] metres, got {self.perturb}")


@dataclass
class CollectReport:
    recorded: int = 0
    failed_skipped: int = 0
    already_present: int = 0
    frames: int = 0
    seeds: list[int] = field(default_factory=list)


PERTURB_SEED_OFFSET = 2_000_029  # perturbation noise: a stream apart from the expert's own


def episode_key(skill: str, arm: str, seed: int) -> str:
    return f"{skill}-{arm}-{seed:08d}"


def _record_batch(cfg: dict, features: dict, seeds: list[int]) -> list[tuple[int, bool, int, bool]]:
    """Worker: roll out `seeds`, stage the keepers. Returns (seed, success, length, kept)."""
    import numpy as np

    from embodia.body.env import TabletopEnv
    from embodia.eval.rollout import ExpertAgent

    env = TabletopEnv(embodiment=cfg["embodiment"], skill=cfg["skill"], arm=cfg["arm"],
                      cameras=cfg["cameras"], image_size=cfg["image_size"],
                      instruction_split=cfg["instruction_split"])
    emb = env.embodiment
    moves = np.arange(emb.action_layout("ee_delta").dim)[emb.arm_action_slice("ee_delta", env.arm)][:3]
    low, high = env.action_space.low, env.action_space.high
    out = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            agent = ExpertAgent()
            agent.reset(env, seed)
            rng = np.random.default_rng(seed + PERTURB_SEED_OFFSET)
            sigma = cfg["perturb"] * rng.uniform()
            ep = EpisodeBuffer(task=info["instruction"], tier=cfg["tier"], skill=cfg["skill"], seed=seed)
            while True:
                action = agent.act(obs, env)
                executed = action
                if sigma > 0:
                    executed = action.copy()
                    executed[moves] += rng.normal(0.0, sigma, len(moves))
                obs_before = obs
                obs, _, term, trunc, info = env.step(executed)
                # the label is what the expert meant; without perturbation, exactly what ran
                ep.add(obs_before, info["action"] if sigma == 0 else np.clip(action, low, high))
                if term or trunc:
                    break
            ep.success = bool(info["success"])
            keep = ep.success or cfg["keep_failures"]
            if keep:
                stage_episode(Path(cfg["out"]) / STAGING, features,
                              ep, episode_key(cfg["skill"], env.arm, seed))
            out.append((seed, ep.success, len(ep), keep))
    finally:
        env.close()
    return out


def collect(cfg: CollectConfig, progress: Callable[[int, int], None] | None = None) -> CollectReport:
    """Record until the dataset holds `cfg.episodes` episodes of this skill/arm from seeds
    `seed_start...`; `progress(done, total)` is called as episodes are kept."""
    get_skill(cfg.skill)
    spec = get_embodiment(cfg.embodiment)
    arm = spec.arm(cfg.arm).name
    cameras = list(cfg.cameras) if cfg.cameras is not None else [c.name for c in spec.cameras]
    writer = DatasetWriter(cfg.out, spec, cameras, (cfg.image_size, cfg.image_size),
                           env_state_names=Simulation(spec).environment_state_names())
    writer.consolidate()  # leftovers of an interrupted run
    existing = writer.recorded_keys()
    prefix = f"{cfg.skill}-{arm}-"
    have = sorted(int(k[len(prefix):]) for k in existing if k.startswith(prefix)
                  and int(k[len(prefix):]) >= cfg.seed_start)
    report = CollectReport(already_present=len(have))
    need = cfg.episodes - len(have)
    if progress:
        progress(min(len(have), cfg.episodes), cfg.episodes)
    if need <= 0:
        return report
    wcfg = asdict(cfg) | {"out": str(cfg.out), "arm": arm, "cameras": tuple(cameras)}
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
    pool = ProcessPoolExecutor(max_workers=max(1, cfg.workers), mp_context=ctx)
    pending: set[Future] = set()
    try:
        def submit() -> None:
            seeds = [next(seed_iter) for _ in range(cfg.batch)]
            pending.add(pool.submit(_record_batch, wcfg, writer.features, seeds))

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
                        _drop_staged(writer, episode_key(cfg.skill, arm, seed))  # overshoot
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
        for p in writer.staged():
            if p.name.startswith(prefix) and int(p.name[len(prefix):]) not in set(kept) | set(have):
                _drop_staged(writer, p.name)
        writer.consolidate()
    report.recorded = len(kept)
    report.seeds = sorted(kept)
    return report


def _drop_staged(writer: DatasetWriter, key: str) -> None:
    p = writer.staging / key
    if p.exists():
        shutil.rmtree(p)
