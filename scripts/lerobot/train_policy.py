"""LeRobot's own `lerobot-train`, offline, on one CPU thread, stopped by a wall-clock budget.

Runs ONLY in the side venv (`make lerobot-venv`; `.venv-lerobot/bin/python`, lerobot 0.6.1):

    .venv-lerobot/bin/python scripts/lerobot/train_policy.py --preset act --minutes 1 \\
        --out-json OUT/train.json -- --dataset.root=DS --output_dir=OUT/run [more lerobot-train flags]

Why a wrapper and not the bare CLI: LeRobot trains by steps, the comparison by wall clock. The
wrapper runs lerobot-train's own `train()` unchanged, with three module-level hooks: the clock
starts at the first optimizer update (dataset/policy construction and the first batch's decode
are not charged), once `--minutes` have passed the next step is made a checkpoint step, and
after that checkpoint is written the run stops. `--steps` (default 10**6) is only the length of
the LR schedule (diffusion's cosine); pass steps measured from a short run to get it decaying.

Also fixed here, for a fair comparison with our trainer:
  * offline: HF_HUB_OFFLINE=1, no pretrained backbone, no Hub push, no wandb, pyav decoding;
  * one torch thread (`--threads`), dataloader workers `--workers` (default 0: the same process);
  * `observation.environment_state` is dropped from the policy's inputs (`--drop-feature`):
    privileged simulator state, which lerobot-eval never supplies either.
Presets are the configurations that do best at a minutes-scale CPU budget (issue 28):
  act:       dim 256 / ff 1024 / chunk 20 (executes all 20), ~4x the samples/s of the default;
  diffusion: a small 1-D U-Net (down_dims 64/128/256), 76x76 random crops of the 84x84 frames.
The JSON written to --out-json: steps, seconds, samples, samples_per_s, batch_size, parameters,
checkpoint (the `pretrained_model` folder `serve_policy.py` and lerobot-eval load).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

PRESETS: dict[str, list[str]] = {
    "act": ["--policy.type=act", "--policy.dim_model=256", "--policy.dim_feedforward=1024",
            "--policy.chunk_size=20", "--policy.n_action_steps=20"],
    "diffusion": ["--policy.type=diffusion", "--policy.down_dims=[64,128,256]",
                  "--policy.crop_shape=[76,76]"],
}
OFFLINE = ["--policy.pretrained_backbone_weights=null", "--policy.push_to_hub=false", "--wandb.enable=false",
           "--dataset.video_backend=pyav", "--policy.device=cpu", "--env_eval_freq=0", "--log_freq=50", "--save_freq=1000000000"]


class BudgetReached(Exception):
    """Raised after the budget's checkpoint is written, to leave lerobot-train's loop."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock training budget")
    ap.add_argument("--steps", type=int, default=10**6, help="LR-schedule length (and a step cap)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--drop-feature", action="append", default=None,
                    help="dataset feature kept out of the policy's inputs (default: observation.environment_state)")
    ap.add_argument("--out-json", type=Path, required=True)
    ap.add_argument("lerobot_args", nargs="*", help="after --: more lerobot-train flags (--dataset.root, --output_dir)")
    args = ap.parse_args()
    if args.minutes <= 0:
        raise SystemExit(f"--minutes must be > 0, got {args.minutes}")
    extra = list(args.lerobot_args)
    for need in ("--dataset.root", "--output_dir"):
        if not any(a.startswith(need + "=") for a in extra):
            raise SystemExit(f"train_policy.py: pass {need}=... after `--`")
    root = next(a.split("=", 1)[1] for a in extra if a.startswith("--dataset.root="))
    if not (Path(root) / "meta" / "info.json").is_file():
        raise SystemExit(f"train_policy.py: {root} is not a LeRobot v3 dataset (no meta/info.json)")
    out_dir = Path(next(a.split("=", 1)[1] for a in extra if a.startswith("--output_dir=")))
    if out_dir.exists():
        raise SystemExit(f"train_policy.py: {out_dir} exists (lerobot-train refuses to overwrite); pick a new --output_dir")

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    torch.set_num_threads(args.threads)
    from lerobot.policies import factory
    from lerobot.scripts import lerobot_train as lt

    drop = set(args.drop_feature if args.drop_feature is not None else ["observation.environment_state"])
    orig_features = factory.dataset_to_policy_features

    def features_without_dropped(features: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in orig_features(features).items() if k not in drop}

    factory.dataset_to_policy_features = features_without_dropped

    budget_s = args.minutes * 60.0
    clock: dict[str, Any] = {"t0": None, "steps": 0, "t_end": None, "policy": None}
    orig_update, orig_should_save, orig_last = lt.update_policy, lt.should_save_checkpoint, lt.update_last_checkpoint

    def update_policy(*a: Any, **kw: Any) -> Any:
        if clock["t0"] is None:
            clock["t0"] = time.perf_counter()
            clock["policy"] = a[1] if len(a) > 1 else kw.get("policy")
        out = orig_update(*a, **kw)
        clock["steps"] += 1
        return out

    def over_budget() -> bool:
        return clock["t0"] is not None and time.perf_counter() - clock["t0"] >= budget_s

    def should_save_checkpoint(step: int, save_freq: int, total_steps: int) -> bool:
        if over_budget() and clock["t_end"] is None:
            clock["t_end"] = time.perf_counter()
            return True
        return orig_should_save(step, save_freq, total_steps)

    def update_last_checkpoint(checkpoint_dir: Path) -> Any:
        out = orig_last(checkpoint_dir)
        if clock["t_end"] is not None:
            clock["checkpoint"] = str(Path(checkpoint_dir) / "pretrained_model")
            raise BudgetReached
        return out

    lt.update_policy, lt.should_save_checkpoint, lt.update_last_checkpoint = (
        update_policy, should_save_checkpoint, update_last_checkpoint)

    sys.argv = [sys.argv[0], *PRESETS[args.preset], *OFFLINE, f"--steps={args.steps}",
                f"--batch_size={args.batch_size}", f"--num_workers={args.workers}", f"--seed={args.seed}",
                "--dataset.repo_id=local/embodia", *extra]
    with contextlib.suppress(BudgetReached):
        lt.main()
    if clock["t0"] is None:
        raise SystemExit("train_policy.py: lerobot-train ran no step")
    t_end = clock["t_end"] or time.perf_counter()
    seconds = t_end - clock["t0"]
    if "checkpoint" not in clock:  # stopped by --steps before the budget: lerobot saved the last step
        clock["checkpoint"] = str(out_dir / "checkpoints" / "last" / "pretrained_model")
    policy = clock["policy"]
    result = {
        "policy": args.preset, "lerobot_args": sys.argv[1:], "minutes": args.minutes,
        "steps": clock["steps"], "seconds": round(seconds, 2), "batch_size": args.batch_size,
        "samples": clock["steps"] * args.batch_size,
        "samples_per_s": round(clock["steps"] * args.batch_size / max(seconds, 1e-9), 2),
        "threads": args.threads, "workers": args.workers, "dropped_features": sorted(drop),
        "parameters": int(sum(p.numel() for p in policy.parameters())) if policy is not None else None,
        "checkpoint": clock["checkpoint"],
    }
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
