"""An LLM planner over any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server).

The model sees the scene graph and the skill library and answers with JSON steps. Nothing it
says reaches the robot unchecked: the steps are replayed through the skills' preconditions
(`effects.py`), must reach the goals the grounder read from the instruction, and must pass
the embodiment checks; when any check fails the model is told exactly why and asked again,
a bounded number of times. Phrases the grounder cannot tie to the scene (unknown or
ambiguous objects) are refused before the model is asked, so the model never guesses them.

Wording the grammar cannot read at all ("relocate the red cube") has no goals to check the
model's plan against: such an unverifiable plan is refused unless the caller opts in, either
per plan (`confirm`, e.g. a question on a terminal) or once (`accept_unverified`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from embodia.body.embodiments import get_embodiment
from embodia.body.scene_graph import SceneGraph
from embodia.body.skills import SKILLS
from embodia.brain import effects as E
from embodia.brain.feasibility import Feasibility, Reach
from embodia.brain.grounding import Grounder
from embodia.brain.instruction import Goals, InstructionParser
from embodia.brain.plan import Plan
from embodia.brain.refusal import Refusal
from embodia.brain.state import Literal, State
from embodia.brain.symbolic import to_state
from embodia.brain.validate import check, default_arm

DEFAULT_KEY_ENV = "EMBODIA_LLM_API_KEY"
UNVERIFIED_NOTE = "goals not checked: the grammar could not read the instruction"
RULES = E.__doc__.split("Rules (the body's skills as its experts perform them):")[1].strip()


class LLMError(RuntimeError):
    """The endpoint could not be used (unreachable, bad status, empty reply)."""


def system_prompt() -> str:
    skills = "\n".join(f"- {s.name}({', '.join(s.params)}): e.g. \"{s.templates[0]}\""
                       for s in SKILLS.values())
    return (
        "You plan for a one-table robot. Turn the person's instruction into a sequence of skill "
        "calls using only these skills and the object names given in the scene.\n"
        f"Skills:\n{skills}\n"
        f"Preconditions and effects:\n{RULES}\n"
        "Answer with JSON only, no prose: {\"steps\": [{\"skill\": \"pick\", \"args\": "
        "[\"red_cube\"]}, ...]}. Use the fewest steps. If the instruction cannot be done in "
        "this scene, answer {\"refuse\": \"why\"}.\n"
        f"Examples:\n{EXAMPLES}"
    )


# Few-shot examples: the reply format, a described outcome, a free hand before the drawer (no skill
# puts a cube back on the table), a refusal.
EXAMPLES = """\
Relations: on(red_cube, table), on(blue_cube, table), closed(drawer)
Instruction: I want the red cube in the bowl
{"steps": [{"skill": "pick", "args": ["red_cube"]}, {"skill": "place", "args": ["red_cube", "bowl"]}]}
Relations: held(blue_cube, main), closed(drawer)
Instruction: put the blue cube in the drawer
{"steps": [{"skill": "place", "args": ["blue_cube", "bowl"]}, {"skill": "open_drawer", "args": []}, \
{"skill": "pick", "args": ["blue_cube"]}, {"skill": "place", "args": ["blue_cube", "drawer"]}]}
Relations: on(red_cube, table), closed(drawer)
Instruction: put the purple cube on the plate
{"refuse": "there is no purple cube"}"""
RESPONSE_FORMATS = ("json_schema", "json_object", "none")


def plan_schema() -> dict:
    """The reply's JSON schema, skills as an enum: for servers that constrain decoding to it."""
    step = {"type": "object", "additionalProperties": False, "required": ["skill", "args"],
            "properties": {"skill": {"type": "string", "enum": sorted(SKILLS)},
                           "args": {"type": "array", "items": {"type": "string"}}}}
    return {"type": "object", "additionalProperties": False,
            "properties": {"steps": {"type": "array", "items": step}, "refuse": {"type": "string"}}}


def scene_prompt(state: State, instruction: str) -> str:
    objs = [{"name": n, "class": o.cls, "colour": o.colour,
             "position": [round(x, 3) for x in o.position]} for n, o in sorted(state.objects.items())]
    facts = sorted(str(f) for f in state.facts() if f.name in ("on", "in", "held", "open", "closed", "ajar"))
    return (f"Scene objects: {json.dumps(objs)}\nRelations: {', '.join(facts)}\n"
            f"Instruction: {instruction}")


def parse_reply(text: str) -> list[tuple[str, tuple[str, ...]]] | str:
    """Steps from the model's reply, or the refusal text it gave; ValueError when unreadable."""
    text = re.sub(r"^```(?:json)?|```$", "", text.strip(), flags=re.M).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the reply holds no JSON object")
    try:
        d = json.loads(text[start:end + 1])
    except json.JSONDecodeError as e:
        raise ValueError(f"the reply is not valid JSON ({e.msg} at char {e.pos})") from None
    if isinstance(d, dict) and isinstance(d.get("refuse"), str):
        return d["refuse"]
    steps = d.get("steps") if isinstance(d, dict) else None
    if not isinstance(steps, list):
        raise ValueError('the JSON needs a "steps" list')
    out = []
    for i, s in enumerate(steps):
        if not isinstance(s, dict) or not isinstance(s.get("skill"), str):
            raise ValueError(f"step {i + 1} needs a \"skill\" string")
        args = s.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"step {i + 1}: \"args\" must be a list of object names")
        out.append((s["skill"], tuple(args)))
    return out


@dataclass
class Attempt:
    reply: str
    error: str = ""


@dataclass
class LLMPlanner:
    """`plan()` asks the endpoint, validates, and re-asks with the error (at most
    `max_attempts` requests). A plan whose goals cannot be checked is refused unless
    `accept_unverified` is set or `confirm(plan)` returns True."""

    base_url: str
    model: str
    api_key_env: str = DEFAULT_KEY_ENV
    embodiment: str = "arm7"
    arm: str | None = None
    max_attempts: int = 3
    timeout_s: float = 60.0
    response_format: str = "json_schema"  # json_schema | json_object | none; see _chat
    reach: Reach | None = None
    grounder: Grounder | None = None
    accept_unverified: bool = False  # run plans the grammar cannot check, without asking
    confirm: Callable[[Plan], bool] | None = None  # asked about each unverifiable plan
    attempts: list[Attempt] = field(default_factory=list)  # the last plan() call's exchanges

    name = "llm"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {self.response_format!r}")
        from openai import OpenAI

        self.client = OpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env) or "none",
                             timeout=self.timeout_s, max_retries=0)
        self.parser = InstructionParser(self.grounder or Grounder())
        self.feasibility = Feasibility(get_embodiment(self.embodiment), self.reach, self.arm)

    def _chat(self, messages: list[dict]) -> str:
        import openai

        fmt = {"json_schema": {"type": "json_schema", "json_schema": {
                   "name": "plan", "strict": True, "schema": plan_schema()}},
               "json_object": {"type": "json_object"}}.get(self.response_format)
        kw = {"response_format": fmt} if fmt else {}
        try:
            r = self.client.chat.completions.create(model=self.model, messages=messages,
                                                    temperature=0.0, **kw)
        except openai.BadRequestError as e:
            if self.response_format != "json_schema":
                raise LLMError(f"LLM endpoint {self.base_url} failed: {e}") from None
            self.response_format = "json_object"  # a server without schema support: plain JSON mode
            return self._chat(messages)
        except openai.APIError as e:
            raise LLMError(f"LLM endpoint {self.base_url} failed: {e}") from None
        if not r.choices or not r.choices[0].message.content:
            raise LLMError(f"LLM endpoint {self.base_url} sent an empty reply")
        return r.choices[0].message.content

    def plan(self, instruction: str, scene: SceneGraph | State, note: str = "") -> Plan:
        t0 = time.perf_counter()
        state = to_state(scene, self.embodiment)
        self.parser.check_length(instruction)  # too long: refused, never sent to the model
        try:
            goals: Goals | None = self.parser.goals(instruction, state)
        except Refusal as r:
            if r.kind != "unsupported" and r.role != "verb":  # a verb the grammar cannot read: the model may
                raise
            if not self.accept_unverified and self.confirm is None:  # do not even ask the model
                raise Refusal("unsupported", r.phrase, f"{r.reason}; an LLM plan for it could not be "
                              "checked against the instruction, so it is refused (accept it with "
                              "--confirm-unverified / confirm=, or accept_unverified=True)", r.present) from None
            goals = None  # wording the grammar cannot read: the model may, goals unchecked
        plan = self._ask(instruction, state, goals, note)
        plan.planning_ms = (time.perf_counter() - t0) * 1000
        return plan if goals is not None else self._accept_unverified(plan)

    def _accept_unverified(self, plan: Plan) -> Plan:
        """The opt-in: the config flag, or the person's answer to `confirm`; else a Refusal."""
        if self.accept_unverified:
            plan.reasoning.append("accepted unverified: accept_unverified is set")
        elif self.confirm is not None and self.confirm(plan):
            plan.reasoning.append("accepted unverified: confirmed by the person")
        else:
            raise Refusal("unsupported", plan.instruction, "the LLM's plan could not be checked against "
                          "the instruction and was not confirmed")
        return plan

    def replan(self, plan: Plan, scene: SceneGraph | State, from_segment: int = 0) -> Plan:
        if not plan.goals:  # an unverified plan: nothing to check a new one against either
            if not self.accept_unverified and self.confirm is None:
                raise Refusal("unsupported", plan.instruction, "the plan has no checked goals to replan "
                              "towards; an unverifiable LLM plan needs confirmation")
            new = self._ask(plan.instruction, to_state(scene, self.embodiment), None,
                            "Part of the work is done or undone; plan the rest from the current scene.")
            return self._accept_unverified(new)
        remaining = "; then ".join(", ".join(seg) for seg in plan.goals[from_segment:])
        state = to_state(scene, self.embodiment)
        segs = [[Literal.parse(g) for g in seg] for seg in plan.goals[from_segment:]]
        new = self._ask(plan.instruction, state, Goals(segs, ["replanned from the current scene"]),
                        f"Part of the work is done or undone. Reach, in order: {remaining}.")
        new.goals = plan.goals[:from_segment] + new.goals
        return new

    def _ask(self, instruction: str, state: State, goals: Goals | None, note: str) -> Plan:
        user = scene_prompt(state, instruction) + (f"\nNote: {note}" if note else "")
        messages = [{"role": "system", "content": system_prompt()}, {"role": "user", "content": user}]
        self.attempts = []
        for _ in range(self.max_attempts):
            reply = self._chat(messages)
            error = ""
            try:
                parsed = parse_reply(reply)
                if isinstance(parsed, str):
                    self.attempts.append(Attempt(reply))
                    raise Refusal("planner", instruction, f"the LLM declined: {parsed}")
                for skill, args in parsed:
                    E.check_args(state, skill, args)
                if goals is not None:
                    v = check(state, [(s, a, None) for s, a in parsed], goals.segments)
                    if not v.ok:
                        raise ValueError(v.reason)
                steps, _, notes = self.feasibility.check(state, parsed, _segments(state, parsed, goals))
            except (ValueError, E.StepError) as e:
                error = str(e)
            except Refusal as r:
                if r.kind == "planner":
                    raise
                error = str(r)
            self.attempts.append(Attempt(reply, error))
            if not error:
                reasoning = goals.notes if goals else [UNVERIFIED_NOTE]
                reasoning = [*reasoning, *[f"attempt {i + 1} rejected: {a.error}"
                                           for i, a in enumerate(self.attempts) if a.error], *notes]
                return Plan(instruction, steps, goals.as_text() if goals else [], reasoning, self.name,
                            self.embodiment)
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": f"That plan is invalid: {error}. Reply with the "
                                                     "corrected JSON only."}]
        raise Refusal("planner", instruction, f"the LLM gave no valid plan in {self.max_attempts} "
                      f"attempts; last error: {self.attempts[-1].error}")


def _segments(state: State, steps: list[tuple[str, tuple[str, ...]]], goals: Goals | None) -> list[int]:
    """Which goal segment each step serves: the segment reached after it, in order."""
    if goals is None or len(goals.segments) == 1:
        return [0] * len(steps)
    out, seg, s = [], 0, state
    for skill, args in steps:
        out.append(seg)
        s = E.apply(s, skill, args, default_arm(s, args))
        while seg < len(goals.segments) - 1 and all(s.holds(g) for g in goals.segments[seg]):
            seg += 1
    return out
