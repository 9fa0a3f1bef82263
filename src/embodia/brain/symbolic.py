"""The default, offline planner: ground the instruction into goals, search the PDDL domain
for a minimal skill sequence per sequenced part, then check every step on the embodiment."""

from __future__ import annotations

import time

from embodia.body.embodiments import get_embodiment
from embodia.body.scene_graph import SceneGraph
from embodia.brain.domain import TabletopDomain
from embodia.brain.feasibility import Feasibility, Reach
from embodia.brain.grounding import Grounder
from embodia.brain.instruction import Goals, InstructionParser
from embodia.brain.plan import Plan, PlanStep
from embodia.brain.refusal import Refusal
from embodia.brain.state import ZONE, Literal, State


def to_state(scene: SceneGraph | State, embodiment: str) -> State:
    if isinstance(scene, State):
        return scene.copy()
    return State.from_scene_graph(scene, get_embodiment(embodiment).arm_names)


class SymbolicPlanner:
    """Grounding + unified-planning (pyperplan, optimal A*) + feasibility."""

    name = "symbolic"

    def __init__(self, embodiment: str = "arm7", arm: str | None = None,
                 grounder: Grounder | None = None, reach: Reach | None = None) -> None:
        self.embodiment = get_embodiment(embodiment)
        self.parser = InstructionParser(grounder or Grounder())
        self.domain = TabletopDomain()
        self.feasibility = Feasibility(self.embodiment, reach, arm)

    def plan(self, instruction: str, scene: SceneGraph | State) -> Plan:
        t0 = time.perf_counter()
        state = to_state(scene, self.embodiment.name)
        goals = self.parser.goals(instruction, state)
        plan = self.plan_goals(instruction, goals, state)
        plan.planning_ms = (time.perf_counter() - t0) * 1000
        return plan

    def plan_goals(self, instruction: str, goals: Goals, state: State, first_segment: int = 0) -> Plan:
        """A plan reaching each segment of `goals` in turn, from `state`."""
        steps: list[PlanStep] = []
        reasoning = list(goals.notes)
        for k, seg in enumerate(goals.segments):
            seg_index = first_segment + k
            reasoning.append(f"goal {seg_index + 1}: {', '.join(str(g) for g in seg)}")
            self._precheck(seg, state)
            found = self.domain.solve(state, seg)
            if found.steps is None:
                raise self._why_not(seg, state)
            if not found.steps:
                reasoning.append("  already true: nothing to do")
            new, state, notes = self.feasibility.check(state, found.steps, [seg_index] * len(found.steps),
                                                       start=len(steps))
            missing = [g for g in seg if not state.holds(g)]
            if missing:  # the PDDL encoding and effects.py disagree: a bug, never a silent pass
                raise RuntimeError(f"plan for {seg} leaves {missing} unmet")
            steps += new
            reasoning += notes
        return Plan(instruction, steps, goals.as_text(), reasoning, self.name, self.embodiment.name)

    def replan(self, plan: Plan, scene: SceneGraph | State, from_segment: int = 0) -> Plan:
        """A fresh plan for the plan's goals from `from_segment` on, from the scene as it is."""
        state = to_state(scene, self.embodiment.name)
        segs = [[Literal.parse(g) for g in seg] for seg in plan.goals[from_segment:]]
        new = self.plan_goals(plan.instruction, Goals(segs, ["replanned from the current scene"]),
                              state, first_segment=from_segment)
        new.goals = plan.goals[:from_segment] + new.goals
        return new

    # ------------------------------------------------------------------ refusals
    def _precheck(self, seg: list[Literal], state: State) -> None:
        held = [g.fact.args[0] for g in seg if g.fact.name == "held"]
        if len(held) > len(self.embodiment.arms) or (len(held) > 1):
            raise Refusal("impossible", ", ".join(state.describe(h) for h in held),
                          "I hold one cube at a time")
        plate = [g.fact.args[0] for g in seg if g.fact.name == "on" and g.fact.args[1] == "plate"]
        if len(plate) > 1:
            raise Refusal("impossible", ", ".join(state.describe(c) for c in plate),
                          "the plate holds one cube; choose one, or use the bowl")

    def _why_not(self, seg: list[Literal], state: State) -> Refusal:
        for g in seg:
            if self.domain.solve(state, [g]).steps is None:
                return Refusal("impossible", str(g), self._single(g, state))
        return Refusal("impossible", ", ".join(str(g) for g in seg),
                       "each goal is reachable alone but not all together (a cube cannot be in "
                       "two places; a tower cannot loop)")

    def _single(self, g: Literal, state: State) -> str:
        c = g.fact.args[0] if g.fact.args else ""
        where = f"the {state.describe(c)} is {state.where(c)}" if c in state.support else ""
        if g.fact.name == "in" and g.fact.args[1] == ZONE:
            return (f"push moves a cube resting on the table, and no skill puts one back on the "
                    f"table ({where})")
        if g.fact.name == "on" and g.fact.args[1] in state.support:
            d = g.fact.args[1]
            return (f"the {state.describe(d)} is {state.where(d)}; nothing can be stacked on a cube "
                    f"in the drawer, or on a cube that cannot be freed")
        return f"no sequence of skills reaches {g} from here ({where})"
