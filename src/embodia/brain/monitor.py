"""Execution monitor: after each step, compare what the step should have caused with the
scene graph that follows; retry a failed step while it still makes sense (bounded), else
replan from the scene as it is, and say why at every turn.

It also guards what earlier steps achieved: a goal of the current part of the instruction
that held after an earlier step and no longer does (a cube knocked off the plate) triggers
a replan even though the latest step itself succeeded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

from embodia.body.scene_graph import SceneGraph
from embodia.brain import effects as E
from embodia.brain.plan import Plan, PlanStep
from embodia.brain.planner import Planner
from embodia.brain.refusal import Refusal
from embodia.brain.state import Literal, State


class Executor(Protocol):
    """Runs one step on the robot (simulated or real) and reports the scene afterwards."""

    def execute(self, step: PlanStep) -> SceneGraph: ...

    def observe(self) -> SceneGraph: ...


@dataclass
class StepOutcome:
    skill: str
    args: list[str]
    arm: str | None
    attempt: int  # 1 for the first try of this step in this plan
    ok: bool
    failed: list[str]  # expected effects the scene does not show
    broken: list[str]  # goals achieved earlier that no longer hold
    action: str  # next | retry | replan | give_up | done
    reason: str


@dataclass
class MonitorReport:
    success: bool
    outcomes: list[StepOutcome] = field(default_factory=list)
    retries: int = 0
    replans: int = 0
    plans: list[Plan] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        return {"success": self.success, "retries": self.retries, "replans": self.replans,
                "message": self.message, "outcomes": [asdict(o) for o in self.outcomes],
                "plans": [p.to_dict() for p in self.plans]}


def _name(step: PlanStep) -> str:
    return f"{step.skill}({', '.join(step.args)})"


class Monitor:
    def __init__(self, planner: Planner, executor: Executor, arms: tuple[str, ...] = ("main",),
                 max_retries: int = 1, max_replans: int = 2) -> None:
        self.planner, self.executor, self.arms = planner, executor, arms
        self.max_retries, self.max_replans = max_retries, max_replans

    def _state(self, graph: SceneGraph) -> State:
        return State.from_scene_graph(graph, self.arms)

    def run(self, plan: Plan) -> MonitorReport:
        report = MonitorReport(False, plans=[plan])
        i, attempt = 0, 1
        achieved: set[Literal] = set()
        while True:
            if i >= len(plan.steps):
                graph = self.executor.observe()
                state = self._state(graph)
                final = [Literal.parse(g) for g in plan.goals[-1]] if plan.goals else []
                unmet = [str(g) for g in final if not state.holds(g)]
                if not unmet:
                    report.success, report.message = True, "all goals hold"
                    return report
                why = f"at the end, goals {unmet} do not hold"
                segment = len(plan.goals) - 1
            else:
                step = plan.steps[i]
                graph = self.executor.execute(step)
                state = self._state(graph)
                failed = [str(e) for e in step.effect_literals if not state.holds(e)]
                broken = sorted(str(g) for g in achieved if not state.holds(g))
                seg_goals = [Literal.parse(g) for g in plan.goals[step.segment]] if plan.goals else []
                if not failed and not broken:
                    report.outcomes.append(StepOutcome(step.skill, list(step.args), step.arm, attempt,
                                                       True, [], [], "next", "effects seen"))
                    achieved |= {g for g in seg_goals if state.holds(g)}
                    nxt = plan.steps[i + 1].segment if i + 1 < len(plan.steps) else None
                    if nxt is not None and nxt != step.segment:
                        achieved = set()
                    i, attempt = i + 1, 1
                    continue
                what = "; ".join(x for x in (
                    f"expected {', '.join(failed)} but the scene shows "
                    f"{', '.join(self._where(state, step))}" if failed else "",
                    f"undone since: {', '.join(broken)}" if broken else "") if x)
                blocked = E.unmet(state, step.skill, step.args, step.arm or self.arms[0]) if failed else []
                if failed and not broken and attempt <= self.max_retries and not blocked:
                    report.outcomes.append(StepOutcome(step.skill, list(step.args), step.arm, attempt,
                                                       False, failed, broken, "retry",
                                                       f"{_name(step)}: {what}; retrying "
                                                       f"({attempt}/{self.max_retries})"))
                    report.retries += 1
                    attempt += 1
                    continue
                reason = (f"{_name(step)}: {what}; " + (
                    f"cannot retry: {E.explain(state, step.skill, step.args, blocked)}" if blocked
                    else "retries used up" if failed else "a goal was undone"))
                report.outcomes.append(StepOutcome(step.skill, list(step.args), step.arm, attempt,
                                                   False, failed, broken, "replan", reason))
                why, segment = reason, step.segment
            if report.replans >= self.max_replans:
                report.message = f"gave up after {report.replans} replans: {why}"
                report.outcomes[-1:] = [_give_up(o) for o in report.outcomes[-1:]]
                return report
            try:
                plan = self.planner.replan(plan, graph, from_segment=segment)
            except Refusal as r:
                report.message = f"cannot replan: {r}"
                return report
            report.replans += 1
            report.plans.append(plan)
            plan.steps = [s for s in plan.steps if s.segment >= segment]
            i, attempt, achieved = 0, 1, set()

    def _where(self, state: State, step: PlanStep) -> list[str]:
        cubes = [a for a in step.args if a in state.support]
        if not cubes:
            return [f"the drawer {state.drawer}"]
        return [f"the {state.describe(c)} {state.where(c)}" for c in cubes]


def _give_up(o: StepOutcome) -> StepOutcome:
    o.action = "give_up"
    return o
