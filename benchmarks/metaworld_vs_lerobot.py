"""Meta-World side by side with LeRobot, in one run (issue 28, item 6).

    .venv/bin/python benchmarks/metaworld_vs_lerobot.py --task mt10 --demos 50 --minutes 60 \\
        --eval-episodes 20 --out out/mw_vs_lerobot        # the issue's run (hours on 2 cores)
    .venv/bin/python benchmarks/metaworld_vs_lerobot.py --task reach --demos 4 --minutes 0.5 \\
        --eval-episodes 2 --heads act --lerobot act --out /tmp/mwlr   # a smoke run, a few minutes

Why one script: the comparison is only fair if both sides see the byte-identical dataset, the
same wall-clock budget, one torch thread each, the same seeds, and one harness. So it
  1. collects Meta-World's scripted experts once (`embodia collect --suite metaworld`, seeds from
     --demo-seed-start) into OUT/data;
  2. trains our heads (`embodia train --head H --max-minutes M --threads 1`) and LeRobot's ACT and
     diffusion (scripts/lerobot/train_policy.py in the side venv: lerobot-train stopped at the same
     budget, its best small-CPU configurations) on that folder, one after the other, never
     concurrently (a second process would steal the core);
  3. scores every policy with eval/suite_rollout.py on seeds --eval-seed-start.. (ours through
     load_checkpoint, LeRobot's through eval/lerobot_policy.py's pipe), experts included;
     --eval-workers N spreads the episodes over N Ray actors (training is over by then);
  4. measures inference at batch 1 on one thread: ms per chunk (a fresh chunk inferred) and ms
     per executed action (a whole chunk's worth of select_action calls / its length);
and writes OUT/results.json: per policy and task success with Wilson 95%, training samples/s,
steps, seconds, parameters, latencies; the experts' ceiling beside every result.
Steps already done (a dataset, a checkpoint, a score) are reused when their output exists.
Needs `make lerobot-venv` for the LeRobot side (--lerobot none skips it) and MUJOCO_GL (egl).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EMBODIA = str(Path(sys.executable).parent / "embodia")
OUR_HEADS = ("flow", "tokens", "act", "diffusion", "l1")
LEROBOT_POLICIES = ("act", "diffusion")


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> str:
    """Run one stage; its output goes to `log`; a failure stops the benchmark naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    with log.open("w") as f:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, env=env)
    log.with_suffix(".stdout").write_text(r.stdout)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n  see {log}")
    return r.stdout


def one_thread_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.setdefault("MUJOCO_GL", "egl")
    return env


def collect(args: argparse.Namespace, data: Path) -> None:
    if (data / "meta" / "info.json").exists():
        return  # resumable collector: rerunning tops it up to --episodes
    run([EMBODIA, "collect", "--suite", "metaworld", "--task", args.task, "--episodes", str(args.demos),
         "--seed-start", str(args.demo_seed_start), "--out", str(data), "--workers", str(args.workers)],
        args.out / "logs" / "collect.log", one_thread_env())


def train_ours(args: argparse.Namespace, head: str, data: Path) -> dict:
    ckpt = args.out / "ours" / head
    info = ckpt.with_suffix(".train.json")
    if info.exists():
        return json.loads(info.read_text())
    out = run([EMBODIA, "train", "--data", str(data), "--out", str(ckpt), "--head", head,
               "--max-minutes", str(args.minutes), "--threads", "1", "--batch-size", str(args.batch_size),
               "--seed", str(args.seed), "--json", *args.ours_arg],
              args.out / "logs" / f"train_ours_{head}.log", one_thread_env())
    result = json.loads(out[out.index("{"):])  # --json prints one (indented) object
    info.write_text(json.dumps(result, indent=2))
    return result


def train_lerobot(args: argparse.Namespace, policy: str, data: Path) -> dict:
    from embodia.eval.lerobot_policy import lerobot_python

    info = args.out / "lerobot" / f"{policy}.train.json"
    if info.exists():
        return json.loads(info.read_text())
    run([str(lerobot_python()), str(REPO / "scripts/lerobot/train_policy.py"), "--preset", policy,
         "--minutes", str(args.minutes), "--threads", "1", "--batch-size", str(args.batch_size),
         "--seed", str(args.seed), "--out-json", str(info), "--",
         f"--dataset.root={data}", f"--output_dir={args.out / 'lerobot' / policy}"],
        args.out / "logs" / f"train_lerobot_{policy}.log", one_thread_env())
    return json.loads(info.read_text())


def latency(policy: Any, obs: dict, horizon: int, repeats: int = 5) -> dict:
    """ms per fresh chunk and per executed action (a chunk's worth of steps), batch 1.

    For a LeRobot policy the primary numbers are the child's own timing of select_action (what
    its model costs, as ours are timed in-process); `*_with_pipe` add the pipe's round trips."""
    chunk, per_action, child_chunk, child_action = [], [], [], []
    for _ in range(repeats):
        policy.reset()
        n_before = len(getattr(policy, "step_ms", []))
        t0 = time.perf_counter()
        policy.select_action(obs)
        t1 = time.perf_counter()
        for _ in range(horizon - 1):
            policy.select_action(obs)
        t2 = time.perf_counter()
        chunk.append((t1 - t0) * 1e3)
        per_action.append((t2 - t0) * 1e3 / horizon)
        if hasattr(policy, "step_ms"):
            steps = policy.step_ms[n_before:]
            child_chunk.append(steps[0])
            child_action.append(sum(steps) / len(steps))
    policy.reset()
    out = {"executed_per_chunk": horizon}
    if child_chunk:
        out.update(ms_per_chunk_p50=round(statistics.median(child_chunk), 2),
                   ms_per_action_p50=round(statistics.median(child_action), 3),
                   ms_per_chunk_p50_with_pipe=round(statistics.median(chunk), 2),
                   ms_per_action_p50_with_pipe=round(statistics.median(per_action), 3))
    else:
        out.update(ms_per_chunk_p50=round(statistics.median(chunk), 2),
                   ms_per_action_p50=round(statistics.median(per_action), 3))
    return out


def score(args: argparse.Namespace, name: str, spec: str, horizon_of: Any) -> dict:
    """One harness for all: eval/suite_rollout.py on the same seeds (`spec` as `embodia eval
    --policy` names it, on --eval-workers Ray actors when > 1); latency afterwards, alone, in this
    process on one thread, on the first eval seed's frame."""
    from embodia.body.suites import get_suite
    from embodia.eval.suite_rollout import (
        SuiteEvalConfig,
        check_seed_overlap,
        evaluate_suite,
        suite_policy_for,
    )

    path = args.out / "scores" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    cfg = SuiteEvalConfig(suite="metaworld", task=args.task, episodes=args.eval_episodes,
                          seed_start=args.eval_seed_start)
    check_seed_overlap([args.out / "data"], cfg.seed_start, cfg.episodes)
    print(f"scoring {name}: {len(cfg.tasks)} tasks x {cfg.episodes} seeds", file=sys.stderr, flush=True)
    if args.eval_workers > 1:
        from embodia.eval.parallel import evaluate_suite_parallel

        report = evaluate_suite_parallel(cfg, spec, args.eval_workers)
        report["policy"] = name
    policy = suite_policy_for("metaworld", spec)(cfg.tasks[0], None)
    try:
        if args.eval_workers <= 1:
            report = evaluate_suite(cfg, lambda _task, _env: policy, name)
        env = get_suite("metaworld").make_env(cfg.tasks[0])
        obs, _ = env.reset(seed=cfg.seed_start)
        env.close()
        report["latency"] = latency(policy, obs, horizon_of(policy)) if horizon_of else None
    finally:
        close = getattr(policy, "close", None)
        if callable(close):
            close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return report


def our_horizon(policy: Any) -> int:
    """Actions executed per inferred chunk (the general core's n_action_steps)."""
    inner = policy.policy
    for holder in (inner, getattr(inner, "cfg", None), getattr(getattr(inner, "model", None), "cfg", None)):
        v = getattr(holder, "n_action_steps", None)
        if isinstance(v, int | np.integer) and v > 0:
            return int(v)
    return 1


def summary(report: dict, train: dict | None, batch_size: int | None = None) -> dict:
    return {
        "tasks": {t: {"success_rate": r["success_rate"], "wilson95": r.get("wilson95"),
                      "successes": r["successes"], "episodes": r["episodes"],
                      "expert_ceiling": (r.get("expert_ceiling") or {}).get("success_rate")}
                  for t, r in report["tasks"].items()},
        "mean_success_rate": report["mean_success_rate"], "pooled": report["pooled"],
        "latency": report.get("latency"),
        "train": None if train is None else {**{k: train.get(k) for k in
                                                ("steps", "seconds", "samples_per_s", "parameters")},
                                             "batch_size": train.get("batch_size") or batch_size},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mt10", help="a Meta-World task, a comma list, or mt10")
    ap.add_argument("--demos", type=int, default=50, help="scripted demonstrations per task")
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget per policy")
    ap.add_argument("--eval-episodes", type=int, default=20, help="held-out seeds per task")
    ap.add_argument("--demo-seed-start", type=int, default=0)
    ap.add_argument("--eval-seed-start", type=int, default=100_000)
    ap.add_argument("--heads", default=",".join(OUR_HEADS), help="our heads (comma list, or none)")
    ap.add_argument("--lerobot", default=",".join(LEROBOT_POLICIES), help="LeRobot policies (act,diffusion, or none)")
    ap.add_argument("--batch-size", type=int, default=8, help="the same for every policy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="collect workers")
    ap.add_argument("--eval-workers", type=int, default=1,
                    help="Ray actors scoring episodes (seed by seed the same result; latency is timed alone after)")
    ap.add_argument("--ours-arg", action="append", default=[], help="extra flag for every `embodia train`")
    ap.add_argument("--no-experts", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    heads = [h for h in args.heads.split(",") if h and h != "none"]
    lerobots = [p for p in args.lerobot.split(",") if p and p != "none"]
    bad = [h for h in heads if h not in OUR_HEADS] + [p for p in lerobots if p not in LEROBOT_POLICIES]
    if bad:
        raise SystemExit(f"unknown policy {bad}: --heads from {OUR_HEADS}, --lerobot from {LEROBOT_POLICIES}")
    if args.minutes <= 0:
        raise SystemExit(f"--minutes must be > 0, got {args.minutes}")
    if args.eval_workers < 1:
        raise SystemExit(f"--eval-workers must be >= 1, got {args.eval_workers}")
    from embodia.body.suites import get_suite

    get_suite("metaworld").resolve_tasks(args.task)  # an unknown task fails here, before any work
    if lerobots:
        from embodia.eval.lerobot_policy import lerobot_python

        lerobot_python()  # no side venv: say so now, not after an hour of training
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch_threads_one()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    t0 = time.perf_counter()
    collect(args, data)

    results: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                               "dataset": str(data), "policies": {}}
    if not args.no_experts:  # the ceiling: Meta-World's scripted experts on the same seeds, no camera
        from embodia.eval.suite_rollout import SuiteEvalConfig, evaluate_suite

        suite = get_suite("metaworld")
        path = args.out / "scores" / "experts.json"
        if not path.exists():
            cfg = SuiteEvalConfig(suite="metaworld", task=args.task, episodes=args.eval_episodes,
                                  seed_start=args.eval_seed_start, cameras=())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(evaluate_suite(cfg, suite.make_expert, "experts"), indent=2))
        results["policies"]["experts"] = summary(json.loads(path.read_text()), None)

    for head in heads:
        train = train_ours(args, head, data)
        ckpt = args.out / "ours" / head
        rep = score(args, f"ours_{head}", str(ckpt), our_horizon)
        results["policies"][f"ours_{head}"] = summary(rep, train, args.batch_size)
    for pol in lerobots:
        train = train_lerobot(args, pol, data)
        rep = score(args, f"lerobot_{pol}", f"lerobot:{train['checkpoint']}",
                    lambda p: int(p.metadata["n_action_steps"]))
        results["policies"][f"lerobot_{pol}"] = summary(rep, train, args.batch_size)

    learned = {k: v for k, v in results["policies"].items() if k != "experts"}
    best_ours = max((v["mean_success_rate"] for k, v in learned.items() if k.startswith("ours_")), default=None)
    best_lr = max((v["mean_success_rate"] for k, v in learned.items() if k.startswith("lerobot_")), default=None)
    results["best"] = {"ours": best_ours, "lerobot": best_lr,
                       "margin_points": None if best_ours is None or best_lr is None
                       else round(100 * (best_ours - best_lr), 1)}
    results["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def torch_threads_one() -> None:
    """Our policies score (and are timed) on one thread, as LeRobot's child is."""
    import torch

    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
