"""What each meta-skill needs and what it changes, on the brain's symbolic `State`.

This is the one place the skills' semantics live for checking and predicting: the PDDL
domain (`domain.py`) encodes the same rules for search, every plan a planner returns is
replayed through `apply` before it leaves the brain, an LLM's plan is validated here, and
the monitor checks a step's `effects` against the scene graph that follows it.

Rules (the body's skills as its experts perform them):
  pick(c)          hand empty, nothing on c, c not in a closed drawer  -> c held
  place(c, k)      c held; k is the bowl, the plate or the drawer; the drawer open; the
                   plate free (it holds one cube)                       -> c in k / on plate
  stack(c, d)      c held; d another cube with nothing on it, not inside the drawer
                   (a second layer would jam the drawer)               -> c on d
  push(c)          hand empty, c resting on the table with nothing on it -> c in the zone
  open_drawer      hand empty, drawer not open                          -> drawer open
  close_drawer     hand empty, drawer not closed                        -> drawer closed
No skill puts a cube back down on the table.
"""

from __future__ import annotations

from embodia.body.scene import CUBE_HALF, DRAWER_FLOOR, DRAWER_TRAVEL, PLATE_HALF_THICK
from embodia.body.skills import PLACE_TARGETS, SKILLS
from embodia.brain.state import HAND, LOOSE, TABLE, ZONE, Literal, ObjectInfo, State, lit

DRAWER_OPENING = {"closed": 0.0, "ajar": DRAWER_TRAVEL / 2, "open": DRAWER_TRAVEL * 0.94}


class StepError(ValueError):
    """A step that does not fit the scene: unknown skill or object, wrong arguments, or a
    precondition that does not hold. The message says which."""


def check_args(state: State, skill: str, args: tuple[str, ...]) -> None:
    """The body's argument rules (skills.check_args) on a symbolic state."""
    if skill not in SKILLS:
        raise StepError(f"unknown skill {skill!r}; skills: {sorted(SKILLS)}")
    params = SKILLS[skill].params
    if len(args) != len(params):
        raise StepError(f"{skill} takes {len(params)} argument(s) {list(params)}, got {list(args)}")
    for p, a in zip(params, args, strict=True):
        if a not in state.objects:
            raise StepError(f"{skill}.{p}: no object {a!r} in the scene; objects: {sorted(state.objects)}")
    if skill in ("pick", "place", "stack", "push") and state.cls(args[0]) != "cube":
        raise StepError(f"{skill} works on cubes; {args[0]!r} is a {state.cls(args[0])}")
    if skill == "place" and args[1] not in PLACE_TARGETS:
        raise StepError(f"place puts a cube in/on one of {list(PLACE_TARGETS)}, not {args[1]!r}")
    if skill == "stack" and (state.cls(args[1]) != "cube" or args[1] == args[0]):
        raise StepError(f"stack needs another cube as its base, got {args[1]!r}")


def preconditions(state: State, skill: str, args: tuple[str, ...], arm: str) -> list[Literal]:
    """Literals that must hold before the step (they depend on the state only through where
    the cube sits: picking out of the drawer needs it open)."""
    check_args(state, skill, args)
    if skill == "pick":
        (c,) = args
        pre = [lit("hand_empty", arm), lit("clear", c), lit("held", c, positive=False)]
        if state.support[c] != HAND and state.base(c) == "drawer":
            pre.append(lit("open", "drawer"))
        return pre
    if skill == "place":
        c, k = args
        pre = [lit("held", c, arm)]
        if k == "drawer":
            pre.append(lit("open", "drawer"))
        if k == "plate":
            pre.append(lit("free", "plate"))
        return pre
    if skill == "stack":
        c, d = args
        return [lit("held", c, arm), lit("clear", d), lit("held", d, positive=False),
                lit("in", d, "drawer", positive=False)]
    if skill == "push":
        (c,) = args
        return [lit("hand_empty", arm), lit("on", c, TABLE), lit("clear", c)]
    if skill == "open_drawer":
        return [lit("hand_empty", arm), lit("open", "drawer", positive=False)]
    return [lit("hand_empty", arm), lit("closed", "drawer", positive=False)]


def unmet(state: State, skill: str, args: tuple[str, ...], arm: str) -> list[Literal]:
    return [p for p in preconditions(state, skill, args, arm) if not state.holds(p)]


def explain(state: State, skill: str, args: tuple[str, ...], missing: list[Literal]) -> str:
    """One sentence a person can act on: what the step needed and what the scene has."""
    why = []
    for m in missing:
        f = m.fact
        if f.name == "clear" and state.support.get(f.args[0]) == HAND:
            why.append(f"the {state.describe(f.args[0])} is already in hand")
        elif f.name == "clear":
            why.append(f"{', '.join(state.describe(x) for x in state.on_top_of(f.args[0]))} "
                       f"is on the {state.describe(f.args[0])}")
        elif f.name == "hand_empty":
            why.append(f"the {f.args[0]} hand holds the {state.describe(state.held_by(f.args[0]) or '')}")
        elif f.name == "held" and not m.positive:
            continue  # said by the clear() line above
        elif f.name == "held" and m.positive:
            why.append(f"the {state.describe(f.args[0])} is not in hand ({state.where(f.args[0])})")
        elif f.name == "free":
            why.append(f"the plate is occupied by the {state.describe(state.on_top_of('plate')[0])}")
        elif f.name == "open":
            why.append(f"the drawer is {state.drawer}")
        elif f.name == "on" and f.args[1] == TABLE:
            why.append(f"the {state.describe(f.args[0])} is {state.where(f.args[0])}, not on the table")
        else:
            why.append(f"{m} does not hold")
    return f"{skill}({', '.join(args)}) needs {', '.join(str(m) for m in missing)}: {'; '.join(why)}"


def effects(state: State, skill: str, args: tuple[str, ...], arm: str) -> list[Literal]:
    """The observable change the step should cause (what the monitor checks afterwards)."""
    if skill == "pick":
        (c,) = args
        s = state.support[c]
        out = [lit("held", c, arm)]
        if s in state.support or s in (TABLE, "plate"):
            out.append(lit("on", c, s, positive=False))
        elif s in ("bowl", "drawer"):
            out.append(lit("in", c, s, positive=False))
        return out
    if skill == "place":
        c, k = args
        return [lit("on", c, k) if k == "plate" else lit("in", c, k), lit("held", c, arm, positive=False)]
    if skill == "stack":
        c, d = args
        return [lit("on", c, d), lit("held", c, arm, positive=False)]
    if skill == "push":
        return [lit("in", args[0], ZONE)]
    return [lit("open" if skill == "open_drawer" else "closed", "drawer")]


def apply(state: State, skill: str, args: tuple[str, ...], arm: str) -> State:
    """The state after the step; raises StepError when a precondition does not hold."""
    missing = unmet(state, skill, args, arm)
    if missing:
        raise StepError(explain(state, skill, args, missing))
    s = state.copy()
    if skill == "pick":
        (c,) = args
        s.support[c] = HAND
        s.holder[c] = arm
        s.zone.discard(c)
    elif skill in ("place", "stack"):
        c, k = args
        s.support[c] = k
        s.holder.pop(c, None)
        s.objects[c] = _moved(s.objects[c], _drop_point(s, k))
    elif skill == "push":
        s.zone.add(args[0])
    else:
        opening = DRAWER_OPENING[state.drawer]
        s.drawer = "open" if skill == "open_drawer" else "closed"
        d = s.objects["drawer"]
        x = d.position[0] + opening - DRAWER_OPENING[s.drawer]
        s.objects["drawer"] = _moved(d, (x, d.position[1], d.position[2]))
    return s


def _moved(o: ObjectInfo, pos: tuple[float, float, float]) -> ObjectInfo:
    return ObjectInfo(o.name, o.cls, o.colour, o.size, pos)


def _drop_point(s: State, target: str) -> tuple[float, float, float]:
    x, y, z = s.objects[target].position
    if target == "drawer":
        return drawer_spot(s)
    if target == "plate":
        return (x, y, z + 2 * PLATE_HALF_THICK + CUBE_HALF)
    if target == "bowl":
        return (x, y, z + 0.008 + CUBE_HALF)
    return (x, y, z + 2 * CUBE_HALF)


def drawer_spot(s: State) -> tuple[float, float, float]:
    """Where a cube goes inside the open drawer (the body's place expert aims here)."""
    x, y, _ = s.objects["drawer"].position
    cabinet_front = x + DRAWER_OPENING[s.drawer]
    opening = DRAWER_OPENING["open"]
    return (cabinet_front - opening + 0.012 + 0.45 * (opening - 0.012), y, DRAWER_FLOOR + CUBE_HALF)


def is_loose(state: State, cube: str) -> bool:
    return state.support.get(cube) == LOOSE
