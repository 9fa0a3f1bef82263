"""Geometric predicates over the simulator state: held, on, in, in_zone, drawer open/closed.

Success of every skill and every relation in the scene graph is computed here, from MuJoCo
contacts and poses only, never from what an expert believes it did.
"""

from __future__ import annotations

import numpy as np

from embodia.body.rotations import quat_conj, quat_mul
from embodia.body.scene import (
    BOWL_INNER_HALF,
    CUBE_HALF,
    DRAWER_FLOOR,
    DRAWER_INNER,
    PLATE_RADIUS,
    ZONE_HALF,
)
from embodia.body.sim import Simulation

DRAWER_OPEN_AT = 0.12  # m of travel counted as "open"
DRAWER_CLOSED_AT = 0.015
REST_SPEED = 0.05  # m/s: slower than this counts as resting
LIFT_HEIGHT = 0.05  # a picked object's bottom is at least this far above the table


def _contacts(sim: Simulation, body: int) -> list[int]:
    """Geom ids touching any geom of `body`."""
    d, gb = sim.data, sim.geom_body
    out = []
    for i in range(d.ncon):
        g1, g2 = d.contact.geom1[i], d.contact.geom2[i]
        if gb[g1] == body:
            out.append(int(g2))
        elif gb[g2] == body:
            out.append(int(g1))
    return out


def holder(sim: Simulation, obj: str) -> str | None:
    """The arm whose two finger pads both touch `obj`, or None."""
    touching = set(_contacts(sim, sim.body_id[obj]))
    for name, h in sim.arms.items():
        if h.pad_geoms[0] in touching and h.pad_geoms[1] in touching:
            return name
    return None


def touches_world(sim: Simulation, obj: str) -> bool:
    """Whether `obj` touches anything that is not part of a gripper."""
    return any(g not in sim.gripper_geoms for g in _contacts(sim, sim.body_id[obj]))


def at_rest(sim: Simulation, obj: str) -> bool:
    return float(np.linalg.norm(sim.object_velocity(obj)[:3])) < REST_SPEED


def is_picked(sim: Simulation, obj: str) -> bool:
    pos, _ = sim.object_pose(obj)
    return (holder(sim, obj) is not None and pos[2] - CUBE_HALF > LIFT_HEIGHT
            and not touches_world(sim, obj))


def _local_xy(sim: Simulation, obj: str, frame: str) -> np.ndarray:
    p, _ = sim.object_pose(obj)
    f, fq = sim.object_pose(frame)
    v = np.zeros(4)
    v[1:] = p - f
    local = quat_mul(quat_mul(quat_conj(fq), v), fq)[1:]
    return local


def is_on(sim: Simulation, obj: str, support: str) -> bool:
    """`obj` rests on top of `support` (a cube or the plate), released."""
    if obj == support or holder(sim, obj) is not None or not at_rest(sim, obj):
        return False
    pos, _ = sim.object_pose(obj)
    if support == "table":
        return abs(pos[2] - CUBE_HALF) < 0.01
    spos, _ = sim.object_pose(support)
    cls = sim.catalogue[support].cls
    if cls == "cube":
        radius = CUBE_HALF * 1.2
    elif cls == "plate":
        radius = PLATE_RADIUS - 0.005
    else:
        return False
    dz = pos[2] - CUBE_HALF - sim.surface_height(support)
    return float(np.linalg.norm(pos[:2] - spos[:2])) < radius and -0.01 < dz < 0.012


def is_in(sim: Simulation, obj: str, container: str) -> bool:
    """`obj` lies inside the bowl or the drawer (or the push zone), released."""
    if holder(sim, obj) is not None or not at_rest(sim, obj):
        return False
    pos, _ = sim.object_pose(obj)
    if container == "zone":
        c = sim.zone_center()
        return bool(np.all(np.abs(pos[:2] - c) <= ZONE_HALF) and pos[2] < CUBE_HALF + 0.01)
    cls = sim.catalogue[container].cls
    local = _local_xy(sim, obj, container)
    if cls == "bowl":
        inside = np.all(np.abs(local[:2]) < BOWL_INNER_HALF)
        # resting on the bowl floor, or on another cube inside the bowl
        return bool(inside and -0.005 < local[2] - CUBE_HALF - 0.008 < 2 * CUBE_HALF + 0.01)
    if cls == "drawer":
        li, wi, _ = DRAWER_INNER
        inside = 0.0 < local[0] < li + 0.012 and abs(local[1]) < wi / 2
        return bool(inside and -0.005 < local[2] - CUBE_HALF - DRAWER_FLOOR < 0.03)
    return False


def drawer_is_open(sim: Simulation) -> bool:
    return sim.drawer_opening() >= DRAWER_OPEN_AT


def drawer_is_closed(sim: Simulation) -> bool:
    return sim.drawer_opening() <= DRAWER_CLOSED_AT


def something_on(sim: Simulation, obj: str) -> str | None:
    """A cube resting on `obj`, if any (a cube with something on top cannot be picked)."""
    for other in sim.active:
        if other != obj and sim.catalogue[other].cls == "cube" and is_on(sim, other, obj):
            return other
    return None
