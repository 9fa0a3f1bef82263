"""A refusal: the brain's clear answer when it will not move the robot.

Why an exception with fields (not a bare message): callers (CLI, runtime, the LLM retry
loop, tests) branch on `kind` and show `phrase` and `present` to the person, so the answer
always says which words failed and what is actually there, never a silent guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KINDS = ("unknown", "ambiguous", "impossible", "infeasible", "unsupported", "planner")


@dataclass(eq=False)
class Refusal(Exception):
    kind: str  # one of KINDS
    phrase: str  # the words of the instruction that failed ('' when it is the whole request)
    reason: str
    present: list[str] = field(default_factory=list)  # what the scene has that is relevant
    readings: list[str] = field(default_factory=list)  # ambiguous: what the phrase could mean
    role: str = "object"  # ambiguous: what the phrase is, an object ("red cube") or a verb ("put")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"refusal kind must be one of {KINDS}, got {self.kind!r}")
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"cannot do {self.phrase!r}: " if self.phrase else "cannot do that: "
        tail = f" (there is: {', '.join(self.present)})" if self.present else ""
        return head + self.reason + tail

    def to_dict(self) -> dict:
        return {"kind": self.kind, "phrase": self.phrase, "reason": self.reason, "present": list(self.present),
                "readings": list(self.readings), "role": self.role, "message": str(self)}

    @property
    def needs_clarification(self) -> bool:
        """An ambiguous phrase with its candidate readings: ask which one, do not just refuse."""
        return self.kind == "ambiguous" and bool(self.readings) and bool(self.phrase)

    def clarified(self, instruction: str, reading: str) -> str:
        """`instruction` with the ambiguous phrase replaced by the chosen reading ("blue cube";
        a verb: "put")."""
        if reading not in self.readings:
            raise ValueError(f"{reading!r} is not one of the readings {self.readings}")
        from embodia.brain.instruction import normalize  # phrases are cut from normalized text

        text = normalize(instruction)
        if self.phrase not in text:
            raise ValueError(f"the phrase {self.phrase!r} is not in the instruction")
        if self.role == "verb":
            return re.sub(rf"\b{re.escape(self.phrase)}\b", reading, text, count=1)
        return text.replace(self.phrase, f"the {reading}", 1)
