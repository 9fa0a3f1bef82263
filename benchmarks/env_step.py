"""Physics steps/s, env steps/s without rendering, and with one camera per resolution.

Prints JSON. Medians over repeated timed blocks; the env runs at its control rate (one env
step = `substeps` physics steps), driven by the scripted expert so contacts are realistic.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from embodia.body.env import TabletopEnv
from embodia.body.experts import ScriptedExpert
from embodia.eval.machine import machine_info


def _env_rate(env: TabletopEnv, steps: int, repeats: int) -> float:
    rates = []
    seed = 0
    for _ in range(repeats):
        obs, info = env.reset(seed=seed)
        expert = ScriptedExpert(env.sim, info["skill"], info["args"], rng=np.random.default_rng(seed))
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, _, term, trunc, info = env.step(expert.act())
            if term or trunc:
                seed += 1
                obs, info = env.reset(seed=seed)
                expert = ScriptedExpert(env.sim, info["skill"], info["args"], rng=np.random.default_rng(seed))
        rates.append(steps / (time.perf_counter() - t0))
        seed += 1
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--embodiment", default="arm7")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--resolutions", default="64,96,128,224")
    a = ap.parse_args()

    env = TabletopEnv(embodiment=a.embodiment, skill="pick", cameras=())
    env.reset(seed=0)
    sim = env.sim
    phys = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        sim.step(2000)
        phys.append(2000 / (time.perf_counter() - t0))
    result = {
        "benchmark": "env_step",
        "embodiment": a.embodiment,
        "control_rate_hz": env.embodiment.control_rate_hz,
        "physics_substeps_per_env_step": sim.substeps,
        "physics_steps_per_s": round(statistics.median(phys)),
        "env_steps_per_s_no_render": round(_env_rate(env, a.steps, a.repeats), 1),
        "env_steps_per_s_one_camera": {},
        "render_ms_per_frame": {},
    }
    env.close()
    cam = "front"
    for res in [int(r) for r in a.resolutions.split(",")]:
        env = TabletopEnv(embodiment=a.embodiment, skill="pick", cameras=(cam,), image_size=res)
        rate = _env_rate(env, a.steps, a.repeats)
        env.reset(seed=0)
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            env.cameras[cam].read()
            times.append(time.perf_counter() - t0)
        result["env_steps_per_s_one_camera"][f"{res}x{res}"] = round(rate, 1)
        result["render_ms_per_frame"][f"{res}x{res}"] = round(1000 * statistics.median(times), 2)
        env.close()
    result["machine"] = machine_info()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
