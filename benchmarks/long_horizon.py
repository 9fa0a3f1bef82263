"""Long-horizon success of the embodied agent (`embodia run`), printed as JSON.

For each seeded scene (the `pick` start state, as `embodia scene`), an instruction whose plan
has exactly three steps is drawn from a few templates over the cubes on the table (template
order rotates with the seed; the first that plans to three steps is used). Each episode runs
brain + cerebellum + body on the lockstep clock with monitoring (1 retry per step, 2 replans).
Reports the success rate (Wilson 95%), a per-skill breakdown of executed steps, and how often
a retry or a replan turned a failing episode into a success.

    python benchmarks/long_horizon.py --episodes 30     # default: checkpoints/arm7_flow_ensemble_chain
    python benchmarks/long_horizon.py --policy expert --episodes 5      # smoke check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from embodia.brain.planner import make_planner
from embodia.brain.refusal import Refusal
from embodia.eval.machine import machine_info
from embodia.eval.stats import summarize, wilson_interval
from embodia.runtime import DEFAULT_AGENT_CHECKPOINT
from embodia.runtime.agent import make_body, make_cerebellum, run_instruction
from embodia.runtime.layers import RuntimeConfig

TEMPLATES = (
    ("open the drawer and put the {a} inside", 1),
    ("put the {a} in the bowl, then push the {b} to the white square", 2),
    ("open the drawer, then put the {a} on the plate", 1),
    ("stack the {a} on the {b}, then push the {c} to the white square", 3),
)


def three_step_instruction(seed: int, brain, embodiment: str) -> str | None:
    """An instruction for this scene whose plan has exactly three steps (None if no template fits)."""
    body = make_body(embodiment, seed)
    try:
        graph = body.scene_graph()
    finally:
        body.env.close()
    on_table = sorted(r.subject for r in graph.relations if r.name == "on" and r.object == "table")
    rng = np.random.default_rng(seed)
    words = [f"{graph.object(c).colour} cube" for c in rng.permutation(on_table)]
    for k in range(len(TEMPLATES)):
        text, need = TEMPLATES[(seed + k) % len(TEMPLATES)]
        if len(words) < need:
            continue
        instruction = text.format(**dict(zip("abc", words[:need], strict=False)))
        try:
            plan = brain.plan(instruction, graph)
        except Refusal:
            continue
        if len(plan.steps) == 3:
            return instruction
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default=DEFAULT_AGENT_CHECKPOINT, help="checkpoint folder or 'expert'")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--seed-start", type=int, default=1000)
    ap.add_argument("--embodiment", default="arm7")
    ap.add_argument("--execute", type=int, default=None, help="actions run per chunk")
    ap.add_argument("--no-rtc", action="store_true")
    ap.add_argument("--no-retreat", action="store_true", help="retry a failed step from where the hand is")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()

    brain = make_planner("symbolic", args.embodiment)
    cerebellum, _ = make_cerebellum(args.policy, args.embodiment, rtc=not args.no_rtc, execute=args.execute,
                                    retreat=not args.no_retreat)
    config = RuntimeConfig(rtc=not args.no_rtc)
    episodes, per_skill = [], {}
    t0 = time.perf_counter()
    seed = args.seed_start
    while len(episodes) < args.episodes:
        instruction = three_step_instruction(seed, brain, args.embodiment)
        if instruction is None:
            seed += 1
            continue
        w = time.perf_counter()
        rep = run_instruction(instruction, seed, brain, cerebellum, args.embodiment, config=config)
        d = rep.to_dict()
        tried = set()
        for s in d["steps"]:
            k = per_skill.setdefault(s["skill"], {"executed": 0, "succeeded": 0, "first_tries": 0,
                                                  "first_tries_succeeded": 0})
            ok = int(bool(s.get("effects_ok", s["success"])))
            k["executed"] += 1
            k["succeeded"] += ok
            if (s["skill"], tuple(s["args"])) not in tried:  # this step's first execution in the episode
                tried.add((s["skill"], tuple(s["args"])))
                k["first_tries"] += 1
                k["first_tries_succeeded"] += ok
        first_try = all(s.get("attempt", 1) == 1 and s.get("effects_ok", s["success"]) for s in d["steps"])
        episodes.append({"seed": seed, "instruction": instruction, "success": d["success"],
                         "steps_planned": len(d["plan"]["steps"]) if d["plan"] else 0,
                         "steps_executed": len(d["steps"]), "retries": d["retries"], "replans": d["replans"],
                         "saved_by_retry": d["success"] and d["retries"] > 0 and d["replans"] == 0,
                         "saved_by_replan": d["success"] and d["replans"] > 0,
                         "clean": d["success"] and first_try, "message": d["message"],
                         "sim_s": d["sim_s"], "wall_s": round(time.perf_counter() - w, 2)})
        print(f"seed {seed}: {'ok ' if d['success'] else 'FAIL'} {instruction!r} ({d['retries']} retries, "
              f"{d['replans']} replans)", file=sys.stderr)
        seed += 1
    succ = [e["success"] for e in episodes]
    summary = summarize(succ, [e["steps_executed"] for e in episodes])
    summary.pop("mean_episode_length")
    summary["n_episodes"] = summary.pop("episodes")
    for k in per_skill.values():
        k["rate"] = round(k["succeeded"] / k["executed"], 4)
        k["wilson95"] = [round(x, 4) for x in wilson_interval(k["succeeded"], k["executed"])]
    result = {
        "benchmark": "long_horizon", "policy": args.policy, "policy_name": cerebellum.name,
        "embodiment": args.embodiment, "seed_start": args.seed_start, "rtc": not args.no_rtc,
        "retreat_on_retry": not args.no_retreat,
        "clock": "lockstep", "target_success_rate": 0.7, **summary,
        "saved_by_retry": sum(e["saved_by_retry"] for e in episodes),
        "saved_by_replan": sum(e["saved_by_replan"] for e in episodes),
        "clean_successes": sum(e["clean"] for e in episodes),
        "per_skill_steps": per_skill,
        "wall_s": round(time.perf_counter() - t0, 1), "machine": machine_info(), "episodes": episodes,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
