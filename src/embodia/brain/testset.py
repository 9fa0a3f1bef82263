"""The brain's instruction sets and how a planner is scored on them.

Two files share one format: `testset.json`, written with the grammar (a regression set), and
`corpus.json`, written apart from the parser by people who saw only the scenes and the skill
rules, split into dev and test halves by scene seed (`split_of`) before any tuning.
Scenes come from the real simulator (TabletopEnv reset with the case's seed); each file pins
a fingerprint of each scene so that a change in the body's scene sampler fails loudly
instead of silently testing something else. Plans are scored by replaying their effects
(`validate.check`), never by comparing text; a corpus case's minimal length is what the PDDL
domain needs for its goals, part by part.
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
CORPUS = Path(__file__).with_name("corpus.json")
EXPECT = ("plan", "refuse", "clarify")


@dataclass
class Case:
    seed: int
    instruction: str
    expect: str  # plan | refuse | clarify
    category: str
    start: str = "pick"
    sequence: list[list[str]] = field(default_factory=list)
    alternatives: list[list[list[str]]] = field(default_factory=list)  # plan: any one is right
    steps: int | None = None  # None: the minimal length of the goals (`minimal_steps`)
    tower: list[str] = field(default_factory=list)
    kind: str = ""  # refuse: the refusal kind, when the set pins it
    phrase: str = ""  # refuse: words the refusal must name
    names: list[str] = field(default_factory=list)  # refuse: any one of them must be named
    readings: list[str] = field(default_factory=list)  # clarify: exactly these candidates
    batch: int = 1  # the corpus's writing round (split_of)

    def __post_init__(self) -> None:
        if self.expect not in EXPECT:
            raise ValueError(f"case {self.instruction!r}: expect must be one of {EXPECT}, got {self.expect!r}")
        if self.expect == "plan" and not (self.sequence or self.alternatives or self.tower):
            raise ValueError(f"case {self.instruction!r}: a plan case needs sequence, alternatives or tower")
        if self.expect == "clarify" and not self.readings:
            raise ValueError(f"case {self.instruction!r}: a clarify case needs readings")

    @property
    def scene(self) -> str:
        return f"{self.start}/{self.seed}"

    @property
    def goal_sequences(self) -> list[list[list[Literal]]]:
        return [[[Literal.parse(g) for g in seg] for seg in seq]
                for seq in (self.alternatives or [self.sequence or [[]]])]


TEST_BATCH = 4  # the newest writing round; earlier rounds' test halves were read while tuning


def split_of(case: Case) -> str:
    """The corpus halves, fixed before any tuning: in the newest batch even scene seeds are dev
    and odd ones test; every case of an earlier batch is dev (its test half has been seen)."""
    return "dev" if case.batch < TEST_BATCH or case.seed % 2 == 0 else "test"


def load_testset(path: str | Path = TESTSET) -> tuple[dict[str, str], list[Case]]:
    d = json.loads(Path(path).read_text())
    known = set(Case.__dataclass_fields__)
    cases = []
    for i, c in enumerate(d["cases"]):
        extra = sorted(set(c) - known)
        if extra:
            raise ValueError(f"{path}: case {i} has unknown field(s) {extra}; fields: {sorted(known)}")
        cases.append(Case(**c))
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


def minimal_steps(state: State, sequence: list[list[Literal]], domain=None) -> int | None:
    """Skills the PDDL domain needs to reach each part of `sequence` in turn (None: it cannot)."""
    from embodia.brain.domain import TabletopDomain
    from embodia.brain.effects import apply
    from embodia.brain.validate import default_arm

    domain = domain or TabletopDomain()
    n = 0
    for seg in sequence:
        # "the bowl should end up empty" (not in(c, bowl)): the cheapest way is to take the cube
        seg = [g if g.positive or state.holds(g) else Literal.parse(f"held({g.fact.args[0]})") for g in seg]
        found = domain.solve(state, seg)
        if found.steps is None:
            return None
        for skill, args in found.steps:
            state = apply(state, skill, tuple(args), default_arm(state, tuple(args)))
        n += len(found.steps)
    return n


def tower_steps(state: State, sequence: list[list[Literal]], tower: list[str], domain=None) -> int | None:
    """The minimal length for `sequence` with `tower` stacked in its last part, in any order."""
    from itertools import permutations

    from embodia.brain.state import lit

    best = None
    for order in permutations(tower):
        chain = [lit("on", top, base) for base, top in zip(order, order[1:], strict=False)]
        n = minimal_steps(state, [*sequence[:-1], [*sequence[-1], *chain]], domain)
        if n is not None and (best is None or n < best):
            best = n
    return best


def evaluate_case(planner: Planner, case: Case, graph: SceneGraph, arms: tuple[str, ...] = ("main",),
                  domain=None) -> CaseResult:
    state = State.from_scene_graph(graph, arms)
    t0 = time.perf_counter()
    try:
        plan = planner.plan(case.instruction, graph)
    except Refusal as r:
        ms = (time.perf_counter() - t0) * 1000
        return CaseResult(case, *_judge_refusal(case, r), ms)
    ms = (time.perf_counter() - t0) * 1000
    names = [f"{s.skill}({', '.join(s.args)})" for s in plan.steps]
    if case.expect != "plan":
        instead = "asking which one" if case.expect == "clarify" else "refusing"
        return CaseResult(case, False, f"planned {names} instead of {instead}", ms, names)
    steps = [(s.skill, s.args, s.arm) for s in plan.steps]
    reason = ""
    for seq in case.goal_sequences:
        v = check(state, steps, seq)
        if not v.ok:
            reason = reason or v.reason
            continue
        if case.tower and not tower_ok((v.states or [state])[-1], case.tower):
            reason = reason or f"{case.tower} do not form one stack"
            continue
        best = case.steps if case.steps is not None else (
            tower_steps(state, seq, case.tower, domain) if case.tower else minimal_steps(state, seq, domain))
        if best is not None and len(steps) != best:
            reason = reason or f"{len(steps)} steps, minimal is {best}"
            continue
        return CaseResult(case, True, "valid", ms, names)
    return CaseResult(case, False, reason, ms, names)


def _judge_refusal(case: Case, r: Refusal) -> tuple[bool, str]:
    if case.expect == "plan":
        return False, f"refused a feasible instruction: {r}"
    if case.expect == "clarify":
        got = sorted(x.lower() for x in r.readings)
        if not r.needs_clarification:
            return False, f"refused ({r.kind}) instead of asking which of {case.readings}: {r}"
        if got != sorted(x.lower() for x in case.readings):
            return False, f"asked about {got}, the readings are {sorted(case.readings)}: {r}"
        return True, str(r)
    if case.kind and r.kind != case.kind:
        return False, f"refusal kind {r.kind!r}, expected {case.kind!r}: {r}"
    if not case.kind and r.needs_clarification:
        return False, f"asked which of {r.readings} instead of refusing: {r}"
    text = str(r).lower()
    if case.phrase.lower() not in text:
        return False, f"refusal does not name {case.phrase!r}: {r}"
    if case.names and not any(n.lower() in text for n in case.names):
        return False, f"refusal names none of {case.names}: {r}"
    return True, str(r)


def summarize(results: list[CaseResult]) -> dict:
    feas = [r for r in results if r.case.expect == "plan"]
    refs = [r for r in results if r.case.expect != "plan"]
    ms = sorted(r.ms for r in results)

    def pct(q: float) -> float:
        return round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) if ms else 0.0

    return {
        "cases": len(results), "feasible": len(feas), "refusal_cases": len(refs),
        "valid_plan_rate": round(sum(r.ok for r in feas) / max(1, len(feas)), 4),
        "clear_refusal_rate": round(sum(r.ok for r in refs) / max(1, len(refs)), 4),
        "median_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(ms[-1], 2) if ms else 0.0,
        "by_category": {c: round(sum(r.ok for r in results if r.case.category == c) /
                                 sum(r.case.category == c for r in results), 4)
                        for c in sorted({r.case.category for r in results})},
        "failures": [{"scene": r.case.scene, "instruction": r.case.instruction, "reason": r.reason}
                     for r in results if not r.ok],
    }
