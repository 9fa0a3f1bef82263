"""Embodied feasibility: can this robot do each step here — which arm reaches the object and
where it goes, does the object fit the gripper, is the target free — with a reason a person
can read for every step.

Reach is judged by the body's own inverse kinematics (`IKReach`): a top-down grasp pose at
the point and 10 cm above it (the experts' approach) must be solvable to within 1 cm, on a
scratch copy of the robot's MuJoCo model. `RadiusReach` is the simple alternative for a robot
known only by its base positions and arm length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from embodia.body.embodiment import Embodiment
from embodia.body.scene import HANDLE_HEIGHT, HANDLE_OFFSET
from embodia.brain import effects as E
from embodia.brain.plan import PlanStep, step_text
from embodia.brain.refusal import Refusal
from embodia.brain.state import HAND, State

Vec3 = tuple[float, float, float]
APPROACH_HEIGHT = 0.10


@dataclass(frozen=True)
class ReachCheck:
    ok: bool
    error_m: float  # distance IK stays short of the point (0 when reached)


class Reach(Protocol):
    def reach(self, arm: str, point: Vec3) -> ReachCheck: ...


class IKReach:
    """Reach from the body's IK on the embodiment's model (built on first use, answers cached
    on a 5 mm grid)."""

    def __init__(self, embodiment: str, tol: float = 0.01, rounds: int = 6) -> None:
        self.embodiment, self.tol, self.rounds = embodiment, tol, rounds
        self._sim = None
        self._cache: dict[tuple, ReachCheck] = {}

    def _solve(self, arm: str, point: np.ndarray) -> float:
        if self._sim is None:
            from embodia.body.sim import Simulation

            self._sim = Simulation(self.embodiment)
        h = self._sim.arms[arm]
        q, err = np.array(h.spec.home), np.inf
        for _ in range(self.rounds):
            q, err = h.ik.solve(self._sim.data.qpos, point, np.array(h.spec.down_quat), q_init=q)
            if err < self.tol / 2:
                break
        return float(err)

    def reach(self, arm: str, point: Vec3) -> ReachCheck:
        key = (arm, *(round(float(x) / 0.005) for x in point))
        if key not in self._cache:
            p = np.asarray(point, dtype=float)
            err = max(self._solve(arm, p), self._solve(arm, p + [0.0, 0.0, APPROACH_HEIGHT]))
            self._cache[key] = ReachCheck(err <= self.tol, 0.0 if err <= self.tol else err)
        return self._cache[key]


@dataclass
class RadiusReach:
    """Reach as a sphere around each arm's base: `bases[arm] = (x, y, z)`, `radius` in m."""

    bases: dict[str, Vec3]
    radius: float
    min_radius: float = 0.0

    def reach(self, arm: str, point: Vec3) -> ReachCheck:
        d = float(np.linalg.norm(np.subtract(point, self.bases[arm])))
        if self.min_radius <= d <= self.radius:
            return ReachCheck(True, 0.0)
        return ReachCheck(False, d - self.radius if d > self.radius else self.min_radius - d)


def handle_point(state: State, after_opening: bool = False) -> Vec3:
    x, y, _ = state.objects["drawer"].position
    if after_opening:
        x -= E.DRAWER_OPENING["open"] - E.DRAWER_OPENING[state.drawer]
    return (x - HANDLE_OFFSET, y, HANDLE_HEIGHT)


def target_point(state: State, target: str) -> Vec3:
    """Where a cube is released for place/stack on `target`."""
    if target == "drawer":
        return E.drawer_spot(state)
    return E._drop_point(state, target)


def _fmt(p: Vec3) -> str:
    return f"({p[0]:.2f}, {p[1]:.2f}, {p[2]:.2f})"


class Feasibility:
    """Assigns an arm to every step and checks it; raises a `Refusal` for a step the robot
    cannot do, saying which object, where, and why."""

    def __init__(self, embodiment: Embodiment, reach: Reach | None = None,
                 arm: str | None = None) -> None:
        self.embodiment = embodiment
        self.reach_model = reach or IKReach(embodiment.name)
        self.arms = [embodiment.arm(arm).name] + [a for a in embodiment.arm_names if a != arm] \
            if arm else list(embodiment.arm_names)

    def graspable(self, state: State, obj: str, arm: str) -> str:
        o = state.objects[obj]
        width = 2 * max(o.size)
        opening = 2 * self.embodiment.arm(arm).finger_open
        if o.cls != "cube" or width > opening:
            raise Refusal("infeasible", state.describe(obj), f"the {state.describe(obj)} is not "
                          f"graspable: {width * 100:.0f} cm wide, the gripper opens {opening * 100:.0f} cm"
                          if o.cls == "cube" else f"only cubes are graspable, not the {o.cls}")
        return f"{width * 100:.0f} cm cube fits the {opening * 100:.0f} cm gripper"

    def _points(self, state: State, skill: str, args: tuple[str, ...],
                following: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, Vec3]]:
        if skill == "pick":
            pts = [(f"the {state.describe(args[0])}", state.objects[args[0]].position)]
            nxt = next((s for s in following if s[1] and s[1][0] == args[0]), None)
            if nxt is not None and nxt[0] in ("place", "stack"):
                pts.append((f"the {state.describe(nxt[1][1])}", target_point(state, nxt[1][1])))
            return pts
        if skill in ("place", "stack"):
            return [(f"the {state.describe(args[1])}", target_point(state, args[1]))]
        if skill == "push":
            return [(f"the {state.describe(args[0])}", state.objects[args[0]].position)]
        return [("the drawer handle", handle_point(state)),
                ("the drawer handle", handle_point(state, after_opening=skill == "open_drawer"))]

    def check(self, state: State, steps: list[tuple[str, tuple[str, ...]]],
              segments: list[int], start: int = 0) -> tuple[list[PlanStep], State, list[str]]:
        """Arms, preconditions and effects for `steps` from `state`; the state after them and
        one reasoning line per step."""
        out: list[PlanStep] = []
        notes: list[str] = []
        for i, (skill, args) in enumerate(steps):
            if skill in ("place", "stack") and state.support.get(args[0]) == HAND:
                candidates = [state.holder[args[0]]]
            else:
                candidates = [a for a in self.arms if state.held_by(a) is None] or self.arms
            points = self._points(state, skill, args, steps[i + 1:])
            chosen, misses = None, []
            for arm in candidates:
                checks = [(what, p, self.reach_model.reach(arm, p)) for what, p in points]
                bad = [(what, p, c) for what, p, c in checks if not c.ok]
                if not bad:
                    chosen = arm
                    break
                misses += [f"{what} at {_fmt(p)} is out of reach of the {arm} arm "
                           f"(IK {c.error_m * 100:.0f} cm short)" for what, p, c in bad]
            if chosen is None:
                raise Refusal("infeasible", f"{skill}({', '.join(args)})", "; ".join(dict.fromkeys(misses)))
            why = [f"{what} at {_fmt(p)} in reach" for what, p in points]
            if skill == "pick":
                why.append(self.graspable(state, args[0], chosen))
            try:
                pre = E.preconditions(state, skill, args, chosen)
                eff = E.effects(state, skill, args, chosen)
                nxt = E.apply(state, skill, args, chosen)
            except E.StepError as e:
                raise Refusal("impossible", f"{skill}({', '.join(args)})", str(e)) from None
            out.append(PlanStep(skill, tuple(args), step_text(state, skill, args),
                                [str(p) for p in pre], [str(x) for x in eff], chosen, segments[i]))
            notes.append(f"step {start + len(out)}: {skill}({', '.join(args)}) with the {chosen} arm: "
                         + "; ".join(why))
            state = nxt
        return out, state, notes
