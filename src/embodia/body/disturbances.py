"""Disturbances for recording demonstrations of recovery.

A scripted expert never fails, so its demonstrations never show what to do after a failure,
and a policy cloned from them, once its fingers close beside a cube, lifts the empty hand.
`slip_from_grasp` makes the failure happen to the expert instead: as the fingers start to
close, the cube slides out from between them, and the expert's re-grasp is recorded.
"""

from __future__ import annotations

import mujoco
import numpy as np

from embodia.body.scene import CUBE_HALF, cabinet_keepout, distance_to_box
from embodia.body.sim import Simulation

SLIP_RANGE = (0.035, 0.05)  # metres along the hand's x: the pads (1.2 cm half-width) then miss it
CLEARANCE = {"bowl": 0.1, "plate": 0.08}  # keep-out radius around each object; cubes: 6 cm


def slip_from_grasp(sim: Simulation, arm: str, obj: str, rng: np.random.Generator) -> bool:
    """Slide `obj` sideways out of `arm`'s open fingers onto free table; False (nothing
    moved) where no such spot is free."""
    pos, quat = sim.object_pose(obj)
    if pos[2] > CUBE_HALF + 0.01:  # on a plate, in the bowl, on a cube: it stays put
        return False
    _, hand = sim.tcp_pose(arm)
    rot = np.empty(9)
    mujoco.mju_quat2Mat(rot, hand)
    along = rot.reshape(3, 3)[:2, 0]  # the hand's x: across the pads, not between them
    along = along / max(np.linalg.norm(along), 1e-9)
    xmin, xmax, ymin, ymax = sim.arms[arm].spec.workspace
    cab_lo, cab_hi = cabinet_keepout(sim.model.body_pos[sim.cabinet_body][:2])
    others = [(sim.object_pose(n)[0][:2], CLEARANCE.get(n, 3 * CUBE_HALF))
              for n in sim.active if n not in (obj, "drawer")]
    for sign in rng.permutation([-1.0, 1.0]):
        xy = pos[:2] + sign * rng.uniform(*SLIP_RANGE) * along
        if not (xmin <= xy[0] <= xmax and ymin <= xy[1] <= ymax):
            continue
        if distance_to_box(xy, cab_lo, cab_hi) < 2 * CUBE_HALF:
            continue
        if any(np.linalg.norm(xy - p) < r for p, r in others):
            continue
        sim.set_object_pose(obj, np.r_[xy, CUBE_HALF + 1e-4], quat)
        mujoco.mj_forward(sim.model, sim.data)
        return True
    return False
