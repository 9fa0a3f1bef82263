"""Evaluation episodes spread over Ray actors: `embodia eval --workers N`.

Each actor builds its own envs and its own agent from picklable specs (a learned policy is
loaded from its checkpoint folder once per actor, never pickled) and runs one episode at a
time; the driver hands the next seed to whichever actor finishes first. Every episode is
seeded (the env from its seed, a policy's sampling from seed + POLICY_SEED_OFFSET), so the
results, put back in seed order, are the in-process path's, and so are the summaries (each
start state begins from `mj_resetData`, so nothing of the seeds an env ran before carries
into the next: benchmarks/eval_workers.py checks seed by seed). An actor encodes its episode's
video and sends the bytes back; the driver writes them where `--video` says (so a
cluster's videos land here too).

Ray: `init_ray` (data/children.py) starts a local instance with `workers` CPUs whose servers
die with this process, or joins the cluster at `address`; Ray that this module started is
shut down when it returns, fails or is interrupted. Each actor takes one CPU and one thread
(OMP_NUM_THREADS=1, torch.set_num_threads(1)). On a cluster every node needs embodia
installed and the checkpoint folder at the same path.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from embodia.data.children import init_ray
from embodia.eval.rollout import (
    EpisodeResult,
    EvalResult,
    ExpertAgent,
    InferenceOverrides,
    PolicyAgent,
    TabletopSpec,
    load_policy,
    run_episode,
)
from embodia.eval.suite_rollout import (
    LEROBOT_PREFIX,
    SuiteEpisode,
    SuiteEvalConfig,
    run_suite_episode,
    suite_policy_for,
    suite_report,
)
from embodia.eval.video import mp4_bytes, video_path


def _one_thread() -> None:
    """One compute thread per actor: N actors on N cores, not N times every core."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_on_actors(worker_cls: type, init_args: tuple, jobs: Sequence[tuple], workers: int,
                  address: str | None = None, on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """`worker_cls(*init_args).run(*job)` for every job, on `workers` Ray actors (one CPU
    each), the next job to the first actor free. Returns the results in job order;
    `on_result(i, result)` is called in the driver as each one arrives."""
    import ray

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    owned = not ray.is_initialized()
    actors: list[Any] = []
    try:  # Ctrl-C while Ray starts shuts it down too
        init_ray(address, workers)
        env_vars = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if "MUJOCO_GL" in os.environ:
            env_vars["MUJOCO_GL"] = os.environ["MUJOCO_GL"]
        actor = ray.remote(num_cpus=1, max_restarts=0, runtime_env={"env_vars": env_vars})(worker_cls)
        actors = [actor.remote(*init_args) for _ in range(min(workers, len(jobs)))]
        results: list[Any] = [None] * len(jobs)
        queue = iter(enumerate(jobs))
        pending: dict[Any, tuple[int, Any]] = {}

        def hand_out(a: Any) -> None:
            for i, job in itertools.islice(queue, 1):
                pending[a.run.remote(*job)] = (i, a)

        for a in actors:
            hand_out(a)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            i, a = pending.pop(ref)
            results[i] = ray.get(ref)
            if on_result is not None:
                on_result(i, results[i])
            hand_out(a)
        return results
    finally:
        if owned:
            ray.shutdown()
        else:  # someone else's Ray: leave it running, without our actors
            for a in actors:
                ray.kill(a)


def _for_actors(policy: str) -> str:
    """'expert', or the checkpoint folder (`lerobot:` kept) as an absolute path (an actor's
    working folder may differ)."""
    if policy == "expert":
        return policy
    prefix = LEROBOT_PREFIX if policy.startswith(LEROBOT_PREFIX) else ""
    return prefix + str(Path(policy[len(prefix):]).resolve())


def _save_video(video_dir: str | Path | None, name: str, ep: EpisodeResult | SuiteEpisode,
                video: bytes | None) -> None:
    if video_dir is not None and video is not None:
        path = video_path(video_dir, name, ep.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(video)
        ep.video = str(path)


class TabletopWorker:
    """A Ray actor's state for tabletop runs: the agent, and the env of the run at hand."""

    def __init__(self, spec: TabletopSpec, policy: str, overrides: InferenceOverrides) -> None:
        self.spec = spec
        self.learned = None if policy == "expert" else load_policy(policy, spec.embodiment, overrides)
        _one_thread()
        self._run: tuple[str, str] | None = None
        self._env: Any = None
        self._agent: Any = None

    def run(self, kind: str, name: str, seed: int, record: bool) -> tuple[EpisodeResult, bytes | None]:
        if self._run != (kind, name):  # a new run: its env and a fresh agent, as `evaluate` does
            if self._env is not None:
                self._env.close()
            self._env = self.spec.make(kind, name)
            self._agent = ExpertAgent() if self.learned is None else PolicyAgent(self.learned)
            self._run = (kind, name)
        ep, frames = run_episode(self._env, self._agent, seed, record=record)
        return ep, mp4_bytes(frames, self._env.embodiment.control_rate_hz) if record else None


def evaluate_parallel(spec: TabletopSpec, policy: str, runs: Sequence[tuple[str, str]], episodes: int,
                      seed_start: int, workers: int, address: str | None = None,
                      overrides: InferenceOverrides | None = None, video_dir: str | Path | None = None,
                      progress: Callable[[int], None] | None = None) -> list[EvalResult]:
    """`evaluate` for every run ('skill' | 'task', name) on `workers` actors; `policy` is
    'expert' or a checkpoint folder. One EvalResult per run, episodes in seed order;
    `progress(run_index)` as each episode finishes."""
    seeds = range(seed_start, seed_start + episodes)
    jobs = [(kind, name, seed, video_dir is not None) for kind, name in runs for seed in seeds]

    def arrived(i: int, result: tuple[EpisodeResult, bytes | None]) -> None:
        _save_video(video_dir, runs[i // episodes][1], *result)
        if progress is not None:
            progress(i // episodes)

    done = run_on_actors(TabletopWorker, (spec, _for_actors(policy), overrides or InferenceOverrides()), jobs,
                         workers, address, arrived)
    return [EvalResult(name, [ep for ep, _ in done[r * episodes:(r + 1) * episodes]])
            for r, (_, name) in enumerate(runs)]


class SuiteWorker:
    """A Ray actor's state for suite runs: the policy source, and the task's env and policy."""

    def __init__(self, cfg: SuiteEvalConfig, policy: str) -> None:
        self.cfg = cfg
        self.policy_for = suite_policy_for(cfg.suite, policy)
        _one_thread()
        self._task: str | None = None
        self._env: Any = None
        self._policy: Any = None

    def run(self, task: str, seed: int, record: bool) -> tuple[SuiteEpisode, bytes | None]:
        if self._task != task:
            if self._env is not None:
                self._env.close()
            self._env = self.cfg.make_env(task)
            self._policy = self.policy_for(task, self._env)
            self._task = task
        ep, frames = run_suite_episode(self._env, self._policy, seed, record=record)
        return ep, mp4_bytes(frames, self._env.embodiment.control_rate_hz) if record else None


def evaluate_suite_parallel(cfg: SuiteEvalConfig, policy: str, workers: int, address: str | None = None,
                            video_dir: str | Path | None = None,
                            progress: Callable[[str], None] | None = None) -> dict:
    """`evaluate_suite` on `workers` actors; `policy` is 'expert' or a checkpoint folder.
    The same report (its `seconds` aside)."""
    import time

    t0 = time.perf_counter()
    jobs = [(task, seed, video_dir is not None) for task in cfg.tasks for seed in cfg.seeds]

    def arrived(i: int, result: tuple[SuiteEpisode, bytes | None]) -> None:
        task = jobs[i][0]
        _save_video(video_dir, task, *result)
        if progress is not None:
            progress(task)

    done = run_on_actors(SuiteWorker, (cfg, _for_actors(policy)), jobs, workers, address, arrived)
    n = cfg.episodes
    by_task = {task: [ep for ep, _ in done[t * n:(t + 1) * n]] for t, task in enumerate(cfg.tasks)}
    return suite_report(cfg, policy, by_task, time.perf_counter() - t0, videos=video_dir is not None)
