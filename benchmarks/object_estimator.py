"""How well a checkpoint's object estimator sees, on scenes it never trained on, as JSON.

Runs the scripted expert on held-out seeds (10000+) of every skill and, every few steps,
compares the estimator's output (from the two camera images and proprioception only)
with the simulator's true object state: per object, the median and p90 position error in
centimetres over frames where the object is present, and how often presence is wrong.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

import numpy as np
import torch

from embodia.body.env import TabletopEnv
from embodia.body.skills import SKILLS
from embodia.cerebellum.checkpoint import load_checkpoint
from embodia.cerebellum.policy import ENV_STATE, batch_from_obs
from embodia.eval.machine import machine_info
from embodia.eval.rollout import ExpertAgent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="checkpoints/arm7_flow_d192_chain", help="one checkpoint (not an ensemble)")
    ap.add_argument("--episodes", type=int, default=10, help="per skill")
    ap.add_argument("--every", type=int, default=4, help="sample one frame in this many")
    ap.add_argument("--seed-start", type=int, default=10000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    policy = load_checkpoint(a.policy)
    if policy.estimator is None:
        raise SystemExit(f"{a.policy} has no object estimator (env_state_input={policy.cfg.env_state_input!r})")
    cfg, obj_state = policy.cfg, policy.object_state
    names = obj_state.names
    xyz = {g: [d for d in dims if names[d].rsplit(".", 1)[-1] in ("x", "y", "z")] for g, dims, _ in obj_state.groups}
    errors, presence_wrong, frames = defaultdict(list), defaultdict(list), 0
    for skill in SKILLS:
        env = TabletopEnv(skill=skill, cameras=tuple(cfg.cameras), image_size=cfg.image_size)
        agent = ExpertAgent()
        try:
            for seed in range(a.seed_start, a.seed_start + a.episodes):
                obs, _ = env.reset(seed=seed)
                agent.reset(env, seed)
                t = 0
                while True:
                    if t % a.every == 0:
                        x = policy._inputs(batch_from_obs(obs, cfg))
                        with torch.inference_mode():
                            est = policy.estimator(x.images, x.state)
                        truth = torch.as_tensor(obs[ENV_STATE])[None]
                        pred = est[:, : len(names)] * obj_state.std + obj_state.mean
                        present = obj_state.presence(truth)[0]
                        said = est[0, len(names):] > 0.5
                        for j, (g, _, _) in enumerate(obj_state.groups):
                            presence_wrong[g].append(bool(said[j]) != bool(present[j]))
                            if present[j]:
                                d = xyz[g]
                                errors[g].append(100 * float((pred[0, d] - truth[0, d]).norm()))
                        frames += 1
                    obs, _, term, trunc, _ = env.step(agent.act(obs, env))
                    t += 1
                    if term or trunc:
                        break
        finally:
            env.close()
    out = {"benchmark": "object_estimator", "policy": a.policy, "frames": frames,
           "seeds": f"{a.seed_start}..{a.seed_start + a.episodes - 1} per skill (held out)",
           "objects": {g: {"position_error_cm_median": round(statistics.median(e), 2),
                           "position_error_cm_p90": round(float(np.percentile(e, 90)), 2), "frames": len(e),
                           "presence_wrong": round(float(np.mean(presence_wrong[g])), 4)}
                       for g, e in errors.items()},
           "machine": machine_info()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
