"""Plan validity by replaying effects, not by comparing text: every step's preconditions
must hold when it runs, and each goal segment must hold in order (segment k at some point
after segment k-1, the last one at the end)."""

from __future__ import annotations

from dataclasses import dataclass

from embodia.brain import effects as E
from embodia.brain.state import Literal, State


@dataclass
class Validity:
    ok: bool
    reason: str = ""
    states: list[State] | None = None


def default_arm(state: State, args: tuple[str, ...]) -> str:
    """The arm holding the step's cube, else the first free arm (plans without arms)."""
    if args and args[0] in state.holder:
        return state.holder[args[0]]
    return next((a for a in state.arms if state.held_by(a) is None), state.arms[0])


def replay(state: State, steps: list[tuple[str, tuple[str, ...], str | None]]) -> Validity:
    """States before and after each (skill, args, arm); stops at the first bad step."""
    states = [state]
    for i, (skill, args, arm) in enumerate(steps):
        try:
            s = states[-1]
            states.append(E.apply(s, skill, tuple(args), arm or default_arm(s, tuple(args))))
        except E.StepError as e:
            return Validity(False, f"step {i + 1}: {e}", states)
    return Validity(True, "", states)


def reaches(states: list[State], sequence: list[list[Literal]]) -> Validity:
    """Do the segments hold in order along `states` (the last one at the end)?"""
    at = 0
    for k, seg in enumerate(sequence):
        last = k == len(sequence) - 1
        idx = [len(states) - 1] if last else range(at, len(states))
        hit = next((i for i in idx if i >= at and all(states[i].holds(g) for g in seg)), None)
        if hit is None:
            missing = [str(g) for g in seg if not states[-1].holds(g)]
            return Validity(False, f"goal {k + 1} never holds in order (at the end, unmet: {missing})")
        at = hit
    return Validity(True)


def check(state: State, steps: list[tuple[str, tuple[str, ...], str | None]],
          sequence: list[list[Literal]]) -> Validity:
    r = replay(state, steps)
    if not r.ok:
        return r
    v = reaches(r.states or [state], sequence)
    v.states = r.states
    return v
