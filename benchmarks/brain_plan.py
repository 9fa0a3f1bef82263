"""Brain planning benchmark on the regression test set (src/embodia/brain/testset.json) and on
the corpus written apart from the parser (src/embodia/brain/corpus.json), reported by half.

Prints JSON: valid-plan rate on feasible instructions (validity = the plan replays through
the skills' preconditions and reaches each goal segment in order, at minimal length),
correct refusal-or-clarification rate on the rest (a clarification must offer exactly the
candidate readings; a refusal must name what is missing), per category; planning time per
instruction (median, p99) after one warm-up pass; cold-start costs are reported apart; and the
time to refuse a 10 kB instruction (past the planners' length cap, never planned).
Tune on the corpus's dev half only: the test half is planned and scored only with
--report-test (its failures listed with --show-test-failures), for the one final report.
Also prints the verb reader's leave-one-out calibration (brain/verbs.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from embodia.brain.refusal import Refusal
from embodia.brain.testset import (
    CORPUS,
    build_scenes,
    evaluate_case,
    load_testset,
    split_of,
    summarize,
)
from embodia.eval.machine import machine_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the test set")
    ap.add_argument("--embodiment", default="arm7")
    ap.add_argument("--report-test", action="store_true",
                    help="score the corpus test half too (once, for the final report; never while tuning)")
    ap.add_argument("--show-test-failures", action="store_true",
                    help="with --report-test: list the test half's failures")
    args = ap.parse_args()

    t0 = time.perf_counter()
    from embodia.brain.symbolic import SymbolicPlanner

    planner = SymbolicPlanner(args.embodiment)
    init_s = time.perf_counter() - t0
    fingerprints, regression = load_testset()
    corpus_fp, corpus = load_testset(CORPUS)
    held_out = [c for c in corpus if split_of(c) == "test"]
    if not args.report_test:  # not even planned: while tuning, nobody sees how the test half does
        corpus = [c for c in corpus if split_of(c) == "dev"]
    cases = regression + corpus
    t0 = time.perf_counter()
    scenes = build_scenes(sorted(set(fingerprints) | set(corpus_fp)), args.embodiment)
    scenes_s = time.perf_counter() - t0
    arms = planner.embodiment.arm_names
    t0 = time.perf_counter()
    planner.parser.grounder.encoder.encode(["warm up"])  # MiniLM loads on first unknown noun
    minilm_s = time.perf_counter() - t0
    first = [evaluate_case(planner, c, scenes[c.scene], arms, planner.domain) for c in cases]  # warm-up pass
    ms: list[float] = []
    for _ in range(args.repeats):
        results = [evaluate_case(planner, c, scenes[c.scene], arms, planner.domain) for c in cases]
        ms += [r.ms for r in results]
    summary = summarize(results[: len(regression)])
    summary.pop("median_ms"), summary.pop("p99_ms"), summary.pop("max_ms")
    halves = {}
    for half in ("dev", "test") if args.report_test else ("dev",):
        h = summarize([r for r in results[len(regression):] if split_of(r.case) == half])
        h.pop("median_ms"), h.pop("p99_ms"), h.pop("max_ms")
        h["scenes"] = len({r.case.scene for r in results[len(regression):] if split_of(r.case) == half})
        if half == "test" and not args.show_test_failures:
            h["failures"] = len(h["failures"])
        halves[half] = h
    if not args.report_test:
        halves["test"] = {"cases": len(held_out), "scored": False}
    from embodia.brain.instruction import CARRY
    from embodia.brain.verbs import calibrate

    verbs = {"leave_one_out": calibrate(planner.parser.verbs),
             "leave_one_out_with_destination": calibrate(planner.parser.verbs, merge=CARRY)}
    summary = {"testset": summary, "corpus": halves, "verb_reading": verbs}
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
    short = sorted(r.ms for r in results if 0 < len(r.steps) <= 8)
    summary.update({
        "median_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "max_ms": round(ms[-1], 2),
        "refuse_10kB_median_ms": round(statistics.median(long_ms), 3),
        "refuse_10kB_max_ms": round(max(long_ms), 3),
        "median_ms_feasible": round(statistics.median(
            r.ms for r in results if r.case.expect == "plan"), 2),
        "median_ms_upto_8_steps": round(statistics.median(short), 2),
        "p99_ms_upto_8_steps": round(short[min(len(short) - 1, int(0.99 * len(short)))], 2),
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
