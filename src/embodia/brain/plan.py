"""The `Plan` contract (DESIGN.md): steps `{skill, args, instruction, preconditions,
effects}` as JSON, plus what a person needs to trust it (goals, a reasoning trace).

Each step's `instruction` is the text the cerebellum is conditioned on, so it is written
with the body's own training templates (`skills.instruction`, `train` split): the policy sees
wording it was trained on. `arm` says which arm runs the step (the env's reset option of the
same name); it is an addition to the DESIGN.md fields, documented in docs/architecture.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from embodia.body.skills import SKILLS
from embodia.body.skills import instruction as skill_instruction
from embodia.brain.state import Literal, State

PLAN_FORMAT_VERSION = 1


@dataclass
class PlanStep:
    skill: str
    args: tuple[str, ...]
    instruction: str
    preconditions: list[str]
    effects: list[str]
    arm: str | None = None
    segment: int = 0  # which part of a sequenced instruction ("..., then ...") it serves

    def to_dict(self) -> dict:
        d = asdict(self)
        d["args"] = list(self.args)
        return d

    @staticmethod
    def from_dict(d: dict) -> PlanStep:
        if not isinstance(d, dict):
            raise ValueError(f"a plan step must be an object, got {type(d).__name__}")
        missing = [k for k in ("skill", "args", "instruction", "preconditions", "effects") if k not in d]
        if missing:
            raise ValueError(f"plan step lacks {missing}: {d}")
        if d["skill"] not in SKILLS:
            raise ValueError(f"unknown skill {d['skill']!r}; skills: {sorted(SKILLS)}")
        if not isinstance(d["args"], list) or not all(isinstance(a, str) for a in d["args"]):
            raise ValueError(f"step args must be a list of object names, got {d['args']!r}")
        for key in ("preconditions", "effects"):
            for text in d[key]:
                Literal.parse(text)  # raises with the bad text
        return PlanStep(d["skill"], tuple(d["args"]), str(d["instruction"]), list(d["preconditions"]),
                        list(d["effects"]), d.get("arm"), int(d.get("segment", 0)))

    @property
    def effect_literals(self) -> list[Literal]:
        return [Literal.parse(e) for e in self.effects]

    @property
    def precondition_literals(self) -> list[Literal]:
        return [Literal.parse(p) for p in self.preconditions]


@dataclass
class Plan:
    instruction: str
    steps: list[PlanStep]
    goals: list[list[str]]  # one list of goal literals per sequenced part of the instruction
    reasoning: list[str] = field(default_factory=list)
    planner: str = "symbolic"
    embodiment: str = "arm7"
    planning_ms: float = 0.0

    def to_dict(self) -> dict:
        return {"format_version": PLAN_FORMAT_VERSION, "instruction": self.instruction,
                "planner": self.planner, "embodiment": self.embodiment,
                "planning_ms": round(self.planning_ms, 2), "goals": self.goals,
                "steps": [s.to_dict() for s in self.steps], "reasoning": self.reasoning}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @staticmethod
    def from_dict(d: dict) -> Plan:
        if d.get("format_version") != PLAN_FORMAT_VERSION:
            raise ValueError(f"plan format_version {d.get('format_version')!r} is not "
                             f"{PLAN_FORMAT_VERSION}")
        goals = d.get("goals", [])
        for seg in goals:
            for g in seg:
                Literal.parse(g)
        return Plan(str(d["instruction"]), [PlanStep.from_dict(s) for s in d["steps"]], goals,
                    list(d.get("reasoning", [])), str(d.get("planner", "")),
                    str(d.get("embodiment", "")), float(d.get("planning_ms", 0.0)))

    @staticmethod
    def from_json(text: str) -> Plan:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"plan is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError("plan JSON must be an object")
        return Plan.from_dict(d)

    @property
    def skills(self) -> list[tuple[str, tuple[str, ...]]]:
        """(skill, args) pairs: what TabletopEnv's `plan` and reset options take."""
        return [(s.skill, s.args) for s in self.steps]

    @property
    def instructions(self) -> list[str]:
        return [s.instruction for s in self.steps]


def step_text(state: State, skill: str, args: tuple[str, ...]) -> str:
    """The cerebellum's wording for a step: the first `train` template of the skill."""
    colours = {n: o.colour for n, o in state.objects.items()}
    classes = {n: o.cls for n, o in state.objects.items()}
    return skill_instruction(skill, args, colours, classes, rng=None, split="train")
