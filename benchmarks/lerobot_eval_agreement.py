"""Does our harness score a LeRobot checkpoint seed by seed as `lerobot-eval` does?

    .venv/bin/python benchmarks/lerobot_eval_agreement.py CKPT --task reach-v3 --episodes 6 \\
        --seed-start 100000 [--out agreement.json]

Runs lerobot-eval (scripts/lerobot/eval_matched.py in the side venv: LeRobot's rollout, seeding
and success accounting, the camera rendered as our datasets render it) on seeds S..S+N-1, then
our harness (eval/suite_rollout.py, the policy behind eval/lerobot_policy.py) on the same seeds,
and prints both per-seed success lists as JSON with `agree` (identical lists). Use a
deterministic policy (ACT: no sampling); diffusion draws noise from torch's global generator,
seeded differently by the two harnesses. Needs `make lerobot-venv` and MUJOCO_GL (egl here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from embodia.eval.lerobot_policy import LeRobotPipePolicy, lerobot_python, resolve_checkpoint
from embodia.eval.suite_rollout import SuiteEvalConfig, evaluate_suite

REPO = Path(__file__).resolve().parents[1]


def lerobot_eval(ckpt: Path, task: str, episodes: int, seed_start: int, image_size: int, out_dir: Path) -> dict:
    """Per-seed successes from LeRobot's own lerobot-eval (batch 1: episode i is seed S+i)."""
    cmd = [str(lerobot_python()), str(REPO / "scripts/lerobot/eval_matched.py"), "--image-size", str(image_size),
           "--", f"--policy.path={ckpt}", "--env.type=metaworld", f"--env.task={task}",
           f"--eval.n_episodes={episodes}", "--eval.batch_size=1", f"--seed={seed_start}",
           "--policy.device=cpu", f"--output_dir={out_dir}",
           '--rename_map={"observation.image": "observation.images.corner2"}']
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.setdefault("MUJOCO_GL", "egl")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"lerobot-eval failed ({r.returncode}):\n{r.stderr[-4000:]}")
    info = json.loads((out_dir / "eval_info.json").read_text())
    metrics = info["per_task"][0]["metrics"]
    return {"successes": [bool(s) for s in metrics["successes"]], "seconds": round(time.perf_counter() - t0, 1),
            "sum_rewards": [round(float(x), 3) for x in metrics["sum_rewards"]]}


def ours(ckpt: Path, task: str, episodes: int, seed_start: int, image_size: int) -> dict:
    """Per-seed successes from our harness; also each episode's summed Meta-World reward (read
    off the env the harness built), which matches lerobot-eval's only if every step matched."""
    cfg = SuiteEvalConfig(suite="metaworld", task=task, episodes=episodes, seed_start=seed_start,
                          image_size=image_size)
    sums: list[float] = []

    def watched(env: Any, policy: LeRobotPipePolicy) -> LeRobotPipePolicy:
        reset, step = env.reset, env.step

        def reset_(*a: Any, **kw: Any) -> Any:
            sums.append(0.0)
            return reset(*a, **kw)

        def step_(action: Any) -> Any:
            out = step(action)
            sums[-1] += float(out[1])
            return out

        env.reset, env.step = reset_, step_
        return policy

    with LeRobotPipePolicy(ckpt) as policy:
        report = evaluate_suite(cfg, lambda _task, env: watched(env, policy), policy.name)
    res = report["tasks"][cfg.tasks[0]]
    failed = set(res["failed_seeds"])
    return {"successes": [s not in failed for s in cfg.seeds], "seconds": report["seconds"],
            "sum_rewards": [round(x, 3) for x in sums]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--task", default="reach-v3")
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--seed-start", type=int, default=100_000)
    ap.add_argument("--image-size", type=int, default=84)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    ckpt = resolve_checkpoint(args.checkpoint)
    os.environ.setdefault("MUJOCO_GL", "egl")
    with tempfile.TemporaryDirectory() as tmp:
        theirs = lerobot_eval(ckpt, args.task, args.episodes, args.seed_start, args.image_size, Path(tmp) / "eval")
    mine = ours(ckpt, args.task, args.episodes, args.seed_start, args.image_size)
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    result = {"checkpoint": str(ckpt), "task": args.task, "seeds": seeds,
              "lerobot_eval": theirs, "embodia_eval": mine, "agree": theirs["successes"] == mine["successes"],
              "disagreeing_seeds": [s for s, a, b in zip(seeds, theirs["successes"], mine["successes"], strict=True)
                                    if a != b],
              "sum_rewards_max_abs_diff": round(max(abs(a - b) for a, b in zip(
                  theirs["sum_rewards"], mine["sum_rewards"], strict=True)), 4)}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
