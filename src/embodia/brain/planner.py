"""The planner protocol every brain implements, and the factory the CLI and runtime use."""

from __future__ import annotations

from typing import Protocol

from embodia.body.scene_graph import SceneGraph
from embodia.brain.plan import Plan
from embodia.brain.state import State

PLANNERS = ("symbolic", "llm")


class Planner(Protocol):
    """Instruction + scene -> `Plan`, or a `Refusal`; and a fresh plan from a changed scene."""

    name: str

    def plan(self, instruction: str, scene: SceneGraph | State) -> Plan: ...

    def replan(self, plan: Plan, scene: SceneGraph | State, from_segment: int = 0) -> Plan: ...


def make_planner(kind: str = "symbolic", embodiment: str = "arm7", arm: str | None = None,
                 **llm_options) -> Planner:
    """`symbolic` (offline default) or `llm` (options: base_url, model, api_key_env, ...)."""
    if kind == "symbolic":
        from embodia.brain.symbolic import SymbolicPlanner

        if llm_options:
            raise ValueError(f"the symbolic planner takes no LLM options, got {sorted(llm_options)}")
        return SymbolicPlanner(embodiment, arm)
    if kind == "llm":
        from embodia.brain.llm import LLMPlanner

        return LLMPlanner(embodiment=embodiment, arm=arm, **llm_options)
    raise ValueError(f"unknown planner {kind!r}; choose one of {list(PLANNERS)}")
