"""Does the runtime's control layer cost the policy anything? Per-skill success of one policy
on the same seeded starts, run two ways, printed as JSON:

- `env`: `TabletopEnv.step` as in `embodia eval` (one IK target per 10 Hz action, stepped);
- `runtime`: the lockstep runtime (500 Hz control, setpoint interpolation, safety filter,
  asynchronous chunks, RTC for the flow head), for each of the `--variants`.

    python benchmarks/runtime_skills.py --policy checkpoints/arm7_flow_ensemble_chain --episodes 20
    python benchmarks/runtime_skills.py --policy expert --episodes 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from embodia.body.env import TabletopEnv
from embodia.body.skills import SKILLS, get_skill
from embodia.eval.machine import machine_info
from embodia.eval.rollout import ExpertAgent, PolicyAgent, run_episode
from embodia.eval.stats import summarize
from embodia.runtime.agent import make_cerebellum
from embodia.runtime.body import SimBody
from embodia.runtime.control import ControlConfig
from embodia.runtime.layers import RuntimeConfig
from embodia.runtime.lockstep import LockstepRuntime
from embodia.runtime.policies import LearnedChunkPolicy

VARIANTS = {
    "default": RuntimeConfig(),
    "no_rtc": RuntimeConfig(rtc=False),
    "step_setpoints": RuntimeConfig(control=ControlConfig(interpolation=0.0)),
    "latency_150ms": RuntimeConfig(sim_latency_s=0.15),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="checkpoints/arm7_flow_ensemble_chain")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed-start", type=int, default=10_000)
    ap.add_argument("--skills", default=",".join(SKILLS))
    ap.add_argument("--variants", default="default,no_rtc,step_setpoints,latency_150ms")
    args = ap.parse_args()
    chunk_policy, _ = make_cerebellum(args.policy)
    learned = isinstance(chunk_policy, LearnedChunkPolicy)
    cams = tuple(chunk_policy.cameras)
    size = chunk_policy.image_size
    out: dict = {"benchmark": "runtime_skills", "policy": args.policy, "episodes": args.episodes,
                 "seed_start": args.seed_start, "results": {}}
    t0 = time.perf_counter()
    for skill in args.skills.split(","):
        env = TabletopEnv(skill=skill, cameras=cams, image_size=size)
        row: dict = {}
        agent = PolicyAgent(chunk_policy.policy) if learned else ExpertAgent()
        ok = []
        for i in range(args.episodes):
            res, _ = run_episode(env, agent, args.seed_start + i)
            ok.append(res.success)
        row["env"] = summarize(ok, [1] * len(ok))["success_rate"]
        for name in args.variants.split(","):
            cfg = VARIANTS[name]
            if not learned and name in ("no_rtc", "latency_150ms"):
                continue  # one closed-loop action per chunk: nothing to continue, nothing to spare
            policy = LearnedChunkPolicy(chunk_policy.policy, rtc=cfg.rtc) if learned else chunk_policy
            ok = []
            for i in range(args.episodes):
                seed = args.seed_start + i
                env.reset(seed=seed)
                rt = LockstepRuntime(SimBody.from_env(env), policy, cfg)
                rt.start(seed)
                s, a = env.plan[0]
                rec = rt.run_step(s, a, env.instructions[0], env.arm, get_skill(s).max_steps / 10.0)
                ok.append(rec.success)
            row[name] = summarize(ok, [1] * len(ok))["success_rate"]
        env.close()
        out["results"][skill] = row
        print(skill, row, file=sys.stderr)
    keys = {k for r in out["results"].values() for k in r}
    out["mean"] = {k: round(sum(r[k] for r in out["results"].values() if k in r) / len(out["results"]), 4)
                   for k in sorted(keys)}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["machine"] = machine_info()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
