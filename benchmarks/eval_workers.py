"""`embodia eval --workers N`: wall time, episodes/s and speedup over `--workers 1`, printed as JSON.

The same evaluation (one skill, seeds S..S+n-1) runs in this process (`--workers 1`: the
in-process path) and on N Ray actors (eval/parallel.py), for the scripted expert and, if one
loads for arm7, a learned checkpoint. Per policy and worker count: the wall seconds of the
whole evaluation as `embodia eval` runs it (for N > 1 that includes starting Ray and the
actors, each loading its own policy), the seconds to the first finished episode, episodes/s
overall and once every actor has finished an episode (none with episodes <= N), and whether every
seed's success and length matched the in-process run. Everything runs on one thread per
process (OMP_NUM_THREADS=1), so N workers use N cores.

    python benchmarks/eval_workers.py [--skill pick] [--episodes 16] [--workers 1,2]
        [--checkpoint checkpoints/arm7_flow_d160_chain] [--checkpoint-episodes 8]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported: one thread here and in every worker
os.environ.setdefault("MUJOCO_GL", "egl")

from embodia.body.embodiments import get_embodiment  # noqa: E402
from embodia.eval.machine import machine_info  # noqa: E402
from embodia.eval.parallel import evaluate_parallel  # noqa: E402
from embodia.eval.rollout import (  # noqa: E402
    ExpertAgent,
    InferenceOverrides,
    PolicyAgent,
    TabletopSpec,
    evaluate,
    load_policy,
)

EMBODIMENT = "arm7"


def _timed(policy: str, skill: str, episodes: int, seed_start: int, workers: int) -> dict:
    """One evaluation as the CLI runs it: the policy loaded here (the CLI checks it before the
    episodes), then the episodes in process or on the actors."""
    t0 = time.perf_counter()
    arrivals: list[float] = []
    spec = TabletopSpec(EMBODIMENT, get_embodiment(EMBODIMENT).arm(None).name)
    learned = None
    if policy != "expert":
        import torch

        torch.set_num_threads(1)
        learned = load_policy(policy, EMBODIMENT, InferenceOverrides())
        spec = TabletopSpec(spec.embodiment, spec.arm, tuple(learned.cfg.cameras),
                            learned.cfg.image_size if learned.cfg.cameras else 96)
    if workers == 1:
        agent = ExpertAgent() if learned is None else PolicyAgent(learned)
        result = evaluate(lambda: spec.make("skill", skill), agent, skill, episodes, seed_start,
                          progress=lambda: arrivals.append(time.perf_counter()))
    else:
        [result] = evaluate_parallel(spec, policy, [("skill", skill)], episodes, seed_start, workers,
                                     progress=lambda _: arrivals.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    warm = arrivals[workers - 1:]  # from the moment every actor has finished an episode
    steady = (len(warm) - 1) / (warm[-1] - warm[0]) if len(warm) > 1 else None
    return {"workers": workers, "wall_s": round(wall, 2), "first_episode_s": round(arrivals[0] - t0, 2),
            "episodes_per_s": round(episodes / wall, 3),
            "steady_episodes_per_s": round(steady, 3) if steady else None,
            "success_rate": result.summary()["success_rate"],
            "per_seed": [(e.seed, e.success, e.length) for e in result.episodes]}


def _compare(policy: str, skill: str, episodes: int, seed_start: int, workers: list[int]) -> dict:
    runs = [_timed(policy, skill, episodes, seed_start, n) for n in workers]
    base = runs[0]
    for r in runs[1:]:
        r["speedup"] = round(base["wall_s"] / r["wall_s"], 2)
        if r["steady_episodes_per_s"] and base["steady_episodes_per_s"]:
            r["steady_speedup"] = round(r["steady_episodes_per_s"] / base["steady_episodes_per_s"], 2)
        r["per_seed_matched"] = r["per_seed"] == base["per_seed"]
        if not r["per_seed_matched"]:
            r["mismatched_seeds"] = [a for a, b in zip(r["per_seed"], base["per_seed"], strict=True) if a != b]
    for r in runs:
        del r["per_seed"]
    return {"policy": policy, "skill": skill, "episodes": episodes, "seed_start": seed_start, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skill", default="pick")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--workers", default="1,2", help="worker counts, the first is the baseline (use 1)")
    ap.add_argument("--checkpoint", default="checkpoints/arm7_flow_d160_chain",
                    help="a learned arm7 checkpoint to time too ('none': the expert only)")
    ap.add_argument("--checkpoint-episodes", type=int, default=8)
    a = ap.parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    results = [_compare("expert", a.skill, a.episodes, a.seed_start, workers)]
    if a.checkpoint != "none" and (Path(a.checkpoint) / "config.json").exists():
        results.append(_compare(a.checkpoint, a.skill, a.checkpoint_episodes, a.seed_start, workers))
    print(json.dumps({"benchmark": "eval_workers", "embodiment": EMBODIMENT, "results": results,
                      "machine": machine_info()}, indent=2))


if __name__ == "__main__":
    main()
