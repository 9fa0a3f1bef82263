"""The brain's symbolic view of the scene: which cube rests on what, what each hand holds,
where the drawer is, in the scene graph's own vocabulary.

Why its own type: planners need to copy and change a world cheaply (searching, validating an
LLM's plan, predicting a step's effects), which a `SceneGraph` from the simulator is not for.
Facts use the scene graph's relation names (`on`, `in`, `held`, `open`, `closed`, `ajar`) so
the monitor compares like with like; `clear`, `hand_empty`, `free` and `stowed` are derived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from embodia.body.scene_graph import SceneGraph

TABLE = "table"
HAND = "hand"
LOOSE = "loose"  # a cube the scene graph places nowhere (tipped over, leaning on a wall)
CONTAINERS = ("bowl", "plate", "drawer")
ZONE = "zone"
DRAWER_STATES = ("open", "closed", "ajar")


@dataclass(frozen=True, order=True)
class Fact:
    """A ground atom such as `on(red_cube, blue_cube)`."""

    name: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.name}({', '.join(self.args)})"


@dataclass(frozen=True, order=True)
class Literal:
    """A fact or its negation; `str` gives `not in(red_cube, bowl)` for a negative one."""

    fact: Fact
    positive: bool = True

    def __str__(self) -> str:
        return str(self.fact) if self.positive else f"not {self.fact}"

    @staticmethod
    def parse(text: str) -> Literal:
        m = re.fullmatch(r"\s*(not\s+)?([a-z_]+)\(([^()]*)\)\s*", text)
        if m is None:
            raise ValueError(f"cannot read literal {text!r}; expected e.g. 'in(red_cube, bowl)' "
                             "or 'not held(red_cube, main)'")
        args = tuple(a.strip() for a in m.group(3).split(",") if a.strip())
        return Literal(Fact(m.group(2), args), positive=m.group(1) is None)


def lit(name: str, *args: str, positive: bool = True) -> Literal:
    return Literal(Fact(name, tuple(args)), positive)


@dataclass(frozen=True)
class ObjectInfo:
    """What the brain knows about one object: class, colour, size (m), position (m)."""

    name: str
    cls: str
    colour: str
    size: tuple[float, ...]
    position: tuple[float, float, float]


@dataclass
class State:
    """A symbolic world. `support[c]` is `table`, another cube, a container, `hand` or `loose`."""

    objects: dict[str, ObjectInfo]
    support: dict[str, str]
    holder: dict[str, str] = field(default_factory=dict)  # held cube -> arm
    zone: set[str] = field(default_factory=set)
    drawer: str = "closed"
    arms: tuple[str, ...] = ("main",)

    # ------------------------------------------------------------------ building
    @staticmethod
    def from_scene_graph(graph: SceneGraph, arms: tuple[str, ...] | None = None) -> State:
        objects = {o.name: ObjectInfo(o.name, o.cls, o.colour, tuple(o.size),
                                      tuple(float(x) for x in o.position[:3]))
                   for o in graph.objects}
        cubes = [n for n, o in objects.items() if o.cls == "cube"]
        support: dict[str, str] = {c: LOOSE for c in cubes}
        holder: dict[str, str] = {}
        zone: set[str] = set()
        drawer = "closed"
        rank = {LOOSE: 0, TABLE: 1, "bowl": 2, "drawer": 2, "plate": 2, "cube": 3}
        for r in graph.relations:
            if r.name in DRAWER_STATES and r.subject == "drawer":
                drawer = r.name
            elif r.name == "held" and r.subject in support:
                support[r.subject] = HAND
                holder[r.subject] = r.object or ""
            elif r.subject in support and support[r.subject] != HAND:
                if r.name == "in" and r.object == ZONE:
                    zone.add(r.subject)
                    continue
                if r.name not in ("on", "in") or r.object is None:
                    continue
                kind = "cube" if r.object in support else r.object
                if rank.get(kind, 0) > rank[_kind(support[r.subject], support)]:
                    support[r.subject] = r.object
        seen_arms = tuple(dict.fromkeys(holder.values()))
        return State(objects, support, holder, zone, drawer, arms or seen_arms or ("main",))

    def to_scene_graph(self) -> SceneGraph:
        """The scene graph this state stands for (for executors that work on states)."""
        from embodia.body.scene_graph import Relation, SceneObject

        g = SceneGraph()
        for o in self.objects.values():
            g.objects.append(SceneObject(o.name, o.cls, o.colour, list(o.position), [1.0, 0, 0, 0],
                                         list(o.size)))
        for f in sorted(self.facts()):
            if f.name in ("on", "in", "held") or f.name in DRAWER_STATES:
                g.relations.append(Relation(f.name, f.args[0], f.args[1] if len(f.args) > 1 else None))
        return g

    def copy(self) -> State:
        return replace(self, objects=dict(self.objects), support=dict(self.support),
                       holder=dict(self.holder), zone=set(self.zone))

    # ------------------------------------------------------------------ queries
    @property
    def cubes(self) -> list[str]:
        return sorted(self.support)

    def cls(self, name: str) -> str:
        return self.objects[name].cls if name in self.objects else ""

    def on_top_of(self, name: str) -> list[str]:
        """Cubes resting directly on `name`."""
        return sorted(c for c, s in self.support.items() if s == name)

    def base(self, cube: str) -> str:
        """Where a stack ends: follow `support` down from `cube` to a non-cube."""
        seen, s = set(), self.support[cube]
        while s in self.support and s not in seen:
            seen.add(s)
            s = self.support[s]
        return s

    def held_by(self, arm: str) -> str | None:
        for c, a in self.holder.items():
            if a == arm:
                return c
        return None

    def facts(self) -> frozenset[Fact]:
        out: set[Fact] = set()
        for c, s in self.support.items():
            if s == HAND:
                out.add(Fact("held", (c, self.holder.get(c, ""))))
                continue
            if s in self.support or s in (TABLE, "plate"):
                out.add(Fact("on", (c, s)))
            elif s in ("bowl", "drawer"):
                out.add(Fact("in", (c, s)))
            b = self.base(c)
            if b in ("bowl", "drawer") and s != b:
                out.add(Fact("in", (c, b)))
            if b in CONTAINERS:
                out.add(Fact("stowed", (c,)))
            if not self.on_top_of(c):
                out.add(Fact("clear", (c,)))
        for c in self.zone:
            out.add(Fact("in", (c, ZONE)))
        for arm in self.arms:
            if self.held_by(arm) is None:
                out.add(Fact("hand_empty", (arm,)))
        if not self.on_top_of("plate"):
            out.add(Fact("free", ("plate",)))
        out.add(Fact(self.drawer, ("drawer",)))
        return frozenset(out)

    def holds(self, literal: Literal) -> bool:
        f = literal.fact
        if f.name == "held" and len(f.args) == 1:  # held by any arm
            value = self.support.get(f.args[0]) == HAND
        else:
            value = f in self.facts()
        return value == literal.positive

    def describe(self, name: str) -> str:
        """How a person would say it: 'red cube', 'pink bowl', 'drawer'."""
        o = self.objects.get(name)
        if o is None:
            return name
        return "drawer" if o.cls == "drawer" else f"{o.colour} {o.cls}".strip()

    def where(self, cube: str) -> str:
        s = self.support[cube]
        if s == HAND:
            return f"held by the {self.holder.get(cube, '?')} arm"
        if s == LOOSE:
            return "lying loose"
        prep = "on" if s in self.support or s in (TABLE, "plate") else "in"
        return f"{prep} the {self.describe(s) if s in self.objects else s}"


def _kind(s: str, support: dict[str, str]) -> str:
    return "cube" if s in support else s
