"""Where a policy's stacks go wrong: for each seed, the step at which the gripper first opens
and where the held cube is then, relative to the base (cm), and where it ends.

    python scripts/stack_release_trace.py CKPT --seed-start 20000 --episodes 12 [--privileged-state]

Held-out paraphrases, as `embodia eval --instructions heldout`."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from embodia.body import predicates as P
from embodia.body.env import TabletopEnv
from embodia.cerebellum.checkpoint import load_checkpoint

OPEN_BELOW = 0.5  # gripper command under this = open


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policy")
    ap.add_argument("--seed-start", type=int, default=20000)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--privileged-state", action="store_true", help="feed the simulator's object state")
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = load_checkpoint(args.policy).eval()
    if args.privileged_state:
        policy.cfg.env_state_input = "privileged"
    env = TabletopEnv(skill="stack", cameras=tuple(policy.cfg.cameras), image_size=policy.cfg.image_size,
                      instruction_split="heldout")
    try:
        for seed in range(args.seed_start, args.seed_start + args.episodes):
            obs, info = env.reset(seed=seed)
            policy.reset()
            obj, base = env.plan[0][1]
            release, t, before = None, 0, 1.0
            while True:
                a = policy.select_action(obs)
                if a[6] < OPEN_BELOW <= before and release is None:
                    off = env.sim.object_pose(obj)[0] - env.sim.object_pose(base)[0]
                    release = (t, np.round(off * 100, 1).tolist())
                before = a[6]
                obs, _, term, trunc, info = env.step(a)
                t += 1
                if term or trunc:
                    break
            final = env.sim.object_pose(obj)[0] - env.sim.object_pose(base)[0]
            print(seed, "OK  " if info["success"] else "FAIL", f"release (step, cube - base cm): {release}",
                  f"final: {np.round(final * 100, 1).tolist()}", f"held by: {P.holder(env.sim, obj)}", flush=True)
    finally:
        env.close()


if __name__ == "__main__":
    main()
