"""The scene graph the brain plans on: objects with attributes, and relations between them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from embodia.body import predicates as P
from embodia.body.sim import Simulation


@dataclass
class SceneObject:
    name: str
    cls: str
    colour: str
    position: list[float]
    orientation: list[float]  # quaternion w, x, y, z
    size: list[float]


@dataclass
class Relation:
    name: str  # on | in | held | open | closed
    subject: str
    object: str | None = None


@dataclass
class SceneGraph:
    objects: list[SceneObject] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    def object(self, name: str) -> SceneObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"no object {name!r} in the scene; objects: {[o.name for o in self.objects]}")

    def holds(self, name: str, subject: str, obj: str | None = None) -> bool:
        return any(r.name == name and r.subject == subject and r.object == obj
                   for r in self.relations)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> SceneGraph:
        """The inverse of `to_dict`, for a graph that crossed a process or network boundary;
        a malformed graph is a ValueError naming the field."""
        if not isinstance(d, dict):
            raise ValueError(f"a scene graph must be an object, got {type(d).__name__}")
        try:
            objects = [SceneObject(str(o["name"]), str(o["cls"]), str(o.get("colour", "")),
                                   _floats(o["position"], 3, "position"),
                                   _floats(o["orientation"], 4, "orientation"),
                                   _floats(o["size"], None, "size"))
                       for o in d.get("objects", [])]
            relations = [Relation(str(r["name"]), str(r["subject"]),
                                  None if r.get("object") is None else str(r["object"]))
                         for r in d.get("relations", [])]
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed scene graph: {type(e).__name__} {e}") from None
        return SceneGraph(objects, relations)

    def summary(self) -> str:
        objs = ", ".join(f"{o.colour} {o.cls}" if o.cls != "drawer" else "drawer" for o in self.objects)
        rels = ", ".join(f"{r.name}({r.subject}{', ' + r.object if r.object else ''})"
                         for r in self.relations)
        return f"objects: {objs}; relations: {rels}"


def _floats(v: object, n: int | None, what: str) -> list[float]:
    if not isinstance(v, list | tuple) or (n is not None and len(v) != n):
        raise ValueError(f"scene object {what} must be a list of {n or 'some'} numbers, got {v!r:.60}")
    out = [float(x) for x in v]
    if not all(math.isfinite(x) for x in out):
        raise ValueError(f"scene object {what} has NaN or inf")
    return out


def build_scene_graph(sim: Simulation) -> SceneGraph:
    g = SceneGraph()
    for name in sim.active:
        info = sim.catalogue[name]
        pos, quat = sim.object_pose(name)
        if info.cls == "drawer":
            pos = pos + [0.0, 0.0, 0.0]
        g.objects.append(SceneObject(name, info.cls, sim.colours.get(name, ""),
                                     [round(float(x), 4) for x in pos],
                                     [round(float(x), 4) for x in quat], list(info.size)))
    cubes = [n for n in sim.active if sim.catalogue[n].cls == "cube"]
    for c in cubes:
        arm = P.holder(sim, c)
        if arm is not None:
            g.relations.append(Relation("held", c, arm))
            continue
        placed = False
        for s in [*cubes, "plate"]:
            if P.is_on(sim, c, s):
                g.relations.append(Relation("on", c, s))
                placed = True
        for s in ("bowl", "drawer", "zone"):
            if P.is_in(sim, c, s):
                g.relations.append(Relation("in", c, s))
                placed = placed or s != "zone"
        if not placed and P.is_on(sim, c, "table"):
            g.relations.append(Relation("on", c, "table"))
    g.relations.append(Relation("open" if P.drawer_is_open(sim) else
                                "closed" if P.drawer_is_closed(sim) else "ajar", "drawer"))
    return g
