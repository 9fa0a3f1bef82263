"""The brain's instruction test set (`testset.json`) and how a planner is scored on it.

Scenes come from the real simulator (TabletopEnv reset with the case's seed); the file pins
a fingerprint of each scene so that a change in the body's scene sampler fails loudly
instead of silently testing something else. Plans are scored by replaying their effects
(`validate.check`), never by comparing text.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from embodia.body.scene_graph import SceneGraph
from embodia.brain.planner import Planner
from embodia.brain.refusal import Refusal
from embodia.brain.state import Literal, State
from embodia.brain.validate import check

TESTSET = Path(__file__).with_name("testset.json")


@dataclass
class Case:
    seed: int
    instruction: str
    expect: str  # plan | refuse
    category: str
    start: str = "pick"
    sequence: list[list[str]] = field(default_factory=list)
    steps: int | None = None
    tower: list[str] = field(default_factory=list)
    kind: str = ""
    phrase: str = ""

    @property
    def scene(self) -> str:
        return f"{self.start}/{self.seed}"


def load_testset(path: str | Path = TESTSET) -> tuple[dict[str, str], list[Case]]:
    d = json.loads(Path(path).read_text())
    cases = [Case(**{k: v for k, v in c.items()}) for c in d["cases"]]
    unknown = sorted({c.scene for c in cases} - set(d["scenes"]))
    if unknown:
        raise ValueError(f"test set cases use scenes without a fingerprint: {unknown}")
    return d["scenes"], cases


def fingerprint(state: State) -> str:
    cubes = ",".join(sorted(c.removesuffix("_cube") for c in state.cubes))
    rels = ", ".join(sorted(str(f) for f in state.facts()
                            if (f.name == "on" and f.args[1] != "table") or
                            (f.name == "in" and f.args[1] != "zone") or f.name == "held"))
    return (f"{cubes}|{state.objects['bowl'].colour} bowl|{state.objects['plate'].colour} plate|"
            f"{state.drawer}|{rels}")


def build_scenes(keys: list[str], embodiment: str = "arm7") -> dict[str, SceneGraph]:
    """Scene graphs from the simulator for keys `start/seed`."""
    from embodia.body.env import TabletopEnv

    out: dict[str, SceneGraph] = {}
    envs: dict[str, TabletopEnv] = {}
    try:
        for key in keys:
            start, seed = key.split("/")
            if start not in envs:
                envs[start] = TabletopEnv(embodiment=embodiment, skill=start, cameras=())
            envs[start].reset(seed=int(seed))
            out[key] = envs[start].scene_graph()
    finally:
        for e in envs.values():
            e.close()
    return out


def tower_ok(state: State, cubes: list[str]) -> bool:
    """`cubes` form one stack (in any order)."""
    bottoms = [c for c in cubes if state.support.get(c) not in cubes]
    if len(bottoms) != 1:
        return False
    n, top = 1, bottoms[0]
    while True:
        above = [c for c in state.on_top_of(top) if c in cubes]
        if not above:
            return n == len(cubes)
        top, n = above[0], n + 1


@dataclass
class CaseResult:
    case: Case
    ok: bool
    reason: str
    ms: float
    steps: list[str] = field(default_factory=list)


def evaluate_case(planner: Planner, case: Case, graph: SceneGraph, arms: tuple[str, ...] = ("main",)) -> CaseResult:
    state = State.from_scene_graph(graph, arms)
    t0 = time.perf_counter()
    try:
        plan = planner.plan(case.instruction, graph)
    except Refusal as r:
        ms = (time.perf_counter() - t0) * 1000
        if case.expect == "plan":
            return CaseResult(case, False, f"refused a feasible instruction: {r}", ms)
        if r.kind != case.kind:
            return CaseResult(case, False, f"refusal kind {r.kind!r}, expected {case.kind!r}: {r}", ms)
        if case.phrase.lower() not in str(r).lower():
            return CaseResult(case, False, f"refusal does not name {case.phrase!r}: {r}", ms)
        return CaseResult(case, True, str(r), ms)
    ms = (time.perf_counter() - t0) * 1000
    names = [f"{s.skill}({', '.join(s.args)})" for s in plan.steps]
    if case.expect == "refuse":
        return CaseResult(case, False, f"planned {names} instead of refusing", ms, names)
    seq = [[Literal.parse(g) for g in seg] for seg in case.sequence]
    v = check(state, [(s.skill, s.args, s.arm) for s in plan.steps], seq)
    if not v.ok:
        return CaseResult(case, False, v.reason, ms, names)
    if case.tower and not tower_ok((v.states or [state])[-1], case.tower):
        return CaseResult(case, False, f"{case.tower} do not form one stack", ms, names)
    if case.steps is not None and len(plan.steps) != case.steps:
        return CaseResult(case, False, f"{len(plan.steps)} steps, minimal is {case.steps}", ms, names)
    return CaseResult(case, True, "valid", ms, names)


def summarize(results: list[CaseResult]) -> dict:
    feas = [r for r in results if r.case.expect == "plan"]
    refs = [r for r in results if r.case.expect == "refuse"]
    ms = sorted(r.ms for r in results)

    def pct(q: float) -> float:
        return round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) if ms else 0.0

    return {
        "cases": len(results), "feasible": len(feas), "refusal_cases": len(refs),
        "valid_plan_rate": round(sum(r.ok for r in feas) / max(1, len(feas)), 4),
        "clear_refusal_rate": round(sum(r.ok for r in refs) / max(1, len(refs)), 4),
        "median_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(ms[-1], 2) if ms else 0.0,
        "failures": [{"scene": r.case.scene, "instruction": r.case.instruction, "reason": r.reason}
                     for r in results if not r.ok],
    }
