"""Brain planning benchmark on the instruction test set (src/embodia/brain/testset.json).

Prints JSON: valid-plan rate on feasible instructions (validity = the plan replays through
the skills' preconditions and reaches each goal segment in order, at minimal length),
clear-refusal rate on impossible / ambiguous / unknown ones, and planning time per
instruction (median, p99) after one warm-up pass; cold-start costs are reported apart; and the
time to refuse a 10 kB instruction (past the planners' length cap, never planned).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from embodia.brain.refusal import Refusal
from embodia.brain.testset import build_scenes, evaluate_case, load_testset, summarize
from embodia.eval.machine import machine_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the test set")
    ap.add_argument("--embodiment", default="arm7")
    args = ap.parse_args()

    t0 = time.perf_counter()
    from embodia.brain.symbolic import SymbolicPlanner

    planner = SymbolicPlanner(args.embodiment)
    init_s = time.perf_counter() - t0
    fingerprints, cases = load_testset()
    t0 = time.perf_counter()
    scenes = build_scenes(sorted(fingerprints), args.embodiment)
    scenes_s = time.perf_counter() - t0
    arms = planner.embodiment.arm_names
    t0 = time.perf_counter()
    planner.parser.grounder.encoder.encode(["warm up"])  # MiniLM loads on first unknown noun
    minilm_s = time.perf_counter() - t0
    first = [evaluate_case(planner, c, scenes[c.scene], arms) for c in cases]  # warm-up pass
    ms: list[float] = []
    for _ in range(args.repeats):
        results = [evaluate_case(planner, c, scenes[c.scene], arms) for c in cases]
        ms += [r.ms for r in results]
    summary = summarize(results)
    long_text = ("put the red cube in the bowl and " * 400)[:10240]  # valid clauses: plannable if read
    long_ms = []
    for _ in range(20):
        t0 = time.perf_counter()
        try:
            planner.plan(long_text, scenes[cases[0].scene])
            raise SystemExit("a 10 kB instruction was planned, not refused")
        except Refusal:
            long_ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    summary.update({
        "median_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "max_ms": round(ms[-1], 2),
        "refuse_10kB_median_ms": round(statistics.median(long_ms), 3),
        "refuse_10kB_max_ms": round(max(long_ms), 3),
        "median_ms_feasible": round(statistics.median(
            r.ms for r in results if r.case.expect == "plan"), 2),
        "first_pass_median_ms": round(statistics.median(r.ms for r in first), 2),
        "timed_plans": len(ms),
        "planner": "symbolic", "embodiment": args.embodiment,
        "steps_max": max(len(r.steps) for r in results),
        "cold_start_s": {"planner_init": round(init_s, 2), "minilm_load": round(minilm_s, 2),
                         "scenes_from_simulator": round(scenes_s, 2)},
        "machine": machine_info(),
    })
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
