"""Episode starts for each skill, drawn from a seed.

Skills must chain, so starts look like what another skill leaves behind: the arm anywhere in
its workspace, objects already moved (on the plate, in the bowl, stacked), a cube already in
the gripper for `place` and `stack`, the drawer open for `close_drawer`.
"""

from __future__ import annotations

import mujoco
import numpy as np

from embodia.body import predicates as P
from embodia.body.rotations import quat_mul, yaw_quat
from embodia.body.scene import (
    CUBE_HALF,
    PLATE_HALF_THICK,
    ZONE_HALF,
    cabinet_keepout,
    distance_to_box,
    sample_layout,
)
from embodia.body.sim import Simulation
from embodia.body.skills import get_skill


def random_arm_pose(sim: Simulation, arm: str, rng: np.random.Generator,
                    z_range: tuple[float, float] = (0.12, 0.3)) -> None:
    """Put the arm at a random reachable pose over its workspace (gripper roughly down)."""
    h = sim.arms[arm]
    xmin, xmax, ymin, ymax = h.spec.workspace
    down = np.array(h.spec.down_quat)
    for _ in range(50):
        pos = np.array([rng.uniform(xmin, xmax), rng.uniform(ymin, ymax), rng.uniform(*z_range)])
        tilt = rng.normal(0, 0.08, 3)
        tilt[2] = rng.uniform(-0.6, 0.6)
        quat = quat_mul(quat_mul(yaw_quat(tilt[2]), down),
                        np.r_[1.0, tilt[0] / 2, tilt[1] / 2, 0.0] / np.linalg.norm([1, *tilt[:2] / 2]))
        q, err = h.ik.solve(sim.data.qpos, pos, quat, q_init=np.array(h.spec.home))
        if err < 0.005:
            sim.data.qpos[h.qadr] = q
            sim.data.ctrl[h.act] = q
            sim.data.qvel[h.dadr] = 0.0
            mujoco.mj_forward(sim.model, sim.data)
            return
    raise RuntimeError(f"no reachable random pose found for arm {arm!r}")


def put_in_hand(sim: Simulation, arm: str, obj: str, rng: np.random.Generator) -> None:
    """Teleport `obj` between the fingers of `arm` and close them on it."""
    h = sim.arms[arm]
    random_arm_pose(sim, arm, rng, z_range=(0.13, 0.26))
    pos, quat = sim.tcp_pose(arm)
    rot = np.empty(9)
    mujoco.mju_quat2Mat(rot, quat)
    approach = rot.reshape(3, 3)[:, 2]  # hand z: from palm toward fingertips
    centre = pos - approach * rng.uniform(0.006, 0.012)
    sim.set_object_pose(obj, centre, quat)
    sim.data.qpos[h.finger_qadr] = CUBE_HALF
    sim.data.ctrl[h.finger_act] = 0.0
    mujoco.mj_forward(sim.model, sim.data)


def _clear_cubes(sim: Simulation, exclude: tuple[str, ...]) -> list[str]:
    cubes = [n for n in sim.active if sim.catalogue[n].cls == "cube" and n not in exclude]
    return [c for c in cubes if P.something_on(sim, c) is None]


def _move_to_support(sim: Simulation, obj: str, rng: np.random.Generator) -> None:
    """Objects already moved: put `obj` on the plate, in the bowl or on another cube."""
    choice = rng.choice(["plate", "bowl", "cube"])
    yaw = yaw_quat(rng.uniform(-np.pi / 4, np.pi / 4))
    if choice == "plate":
        p, _ = sim.object_pose("plate")
        sim.set_object_pose(obj, p + np.r_[rng.uniform(-0.03, 0.03, 2), 2 * PLATE_HALF_THICK + CUBE_HALF + 0.001], yaw)
    elif choice == "bowl":
        p, q = sim.object_pose("bowl")
        sim.set_object_pose(obj, p + np.r_[rng.uniform(-0.01, 0.01, 2), 0.008 + CUBE_HALF + 0.001], q)
    else:
        others = _clear_cubes(sim, (obj,))
        base = others[int(rng.integers(len(others)))]
        p, q = sim.object_pose(base)
        sim.set_object_pose(obj, p + np.r_[rng.uniform(-0.004, 0.004, 2), 2 * CUBE_HALF + 0.001], q)


def _place_zone(sim: Simulation, obj: str, arm: str, rng: np.random.Generator) -> bool:
    """Put the push zone 10-20 cm from `obj` on a clear, reachable straight line."""
    xmin, xmax, ymin, ymax = sim.arms[arm].spec.workspace
    c = sim.object_pose(obj)[0][:2]
    cab_lo, cab_hi = cabinet_keepout(sim.model.body_pos[sim.cabinet_body][:2])
    others = [sim.object_pose(n)[0][:2] for n in sim.active
              if n not in (obj, "drawer")]
    radii = [{"bowl": 0.1, "plate": 0.08}.get(n, 0.03) for n in sim.active if n not in (obj, "drawer")]
    for _ in range(100):
        ang = rng.uniform(-np.pi, np.pi)
        d = np.array([np.cos(ang), np.sin(ang)])
        zone = c + d * rng.uniform(0.1, 0.2)
        pre = c - d * 0.07
        if not (xmin + ZONE_HALF * 0.5 <= zone[0] <= xmax - 0.01 and ymin + 0.02 <= zone[1] <= ymax - 0.02):
            continue
        if not (xmin - 0.05 <= pre[0] <= xmax + 0.03 and ymin - 0.05 <= pre[1] <= ymax + 0.05):
            continue
        if distance_to_box(pre, cab_lo, cab_hi) < 0.09:  # the hand must fit behind the cube
            continue
        ok = True
        for p, r in zip(others, radii, strict=True):
            t = np.clip((p - pre) @ d, 0.0, np.linalg.norm(zone - pre))
            if np.linalg.norm(pre + t * d - p) < r + 0.035 or np.linalg.norm(zone - p) < r + ZONE_HALF * 0.8:
                ok = False
                break
        if ok:
            sim.data.mocap_pos[sim.zone_mocap][:2] = zone
            return True
    return False


def sample_start(sim: Simulation, skill: str, rng: np.random.Generator, arm: str | None = None,
                 args: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Reset `sim` to a fresh start for `skill`; returns the skill's arguments."""
    get_skill(skill)
    arm = arm or sim.embodiment.arms[0].name
    ws = sim.embodiment.arm(arm).workspace
    required = tuple(a for a in (args or ()) if a.endswith("_cube"))
    for _ in range(40):
        n_cubes = int(rng.integers(2, 4 if skill == "push" else 5))
        layout = sample_layout(rng, ws, n_cubes=n_cubes, required=required)
        if skill == "place" and args and args[1] == "drawer" or skill == "close_drawer":
            layout.drawer_open = rng.uniform(0.13, 0.16) if skill == "place" else rng.uniform(0.12, 0.16)
        elif skill == "open_drawer":
            layout.drawer_open = rng.uniform(0.0, 0.015)
        mujoco.mj_resetData(sim.model, sim.data)  # nothing of an earlier episode (warm starts, time) carries over
        sim.reset_robot()
        sim.apply_layout(layout)
        random_arm_pose(sim, arm, rng)
        cubes = sorted(layout.cubes)
        chosen = tuple(args) if args else None
        if skill == "pick":
            obj = chosen[0] if chosen else cubes[int(rng.integers(len(cubes)))]
            if rng.random() < 0.3:
                _move_to_support(sim, obj, rng)
            chosen = (obj,)
        elif skill in ("place", "stack"):
            obj = chosen[0] if chosen else cubes[int(rng.integers(len(cubes)))]
            if skill == "place":
                target = chosen[1] if chosen else str(rng.choice(["bowl", "plate", "bowl", "plate", "drawer"]))
                if target == "drawer":
                    sim.set_drawer(rng.uniform(0.13, 0.16))
                chosen = (obj, target)
            else:
                bases = [c for c in cubes if c != obj]
                base = chosen[1] if chosen else bases[int(rng.integers(len(bases)))]
                chosen = (obj, base)
            put_in_hand(sim, arm, obj, rng)
        elif skill == "push":
            obj = chosen[0] if chosen else cubes[int(rng.integers(len(cubes)))]
            if not _place_zone(sim, obj, arm, rng):
                continue
            chosen = (obj,)
        elif skill == "close_drawer":
            if rng.random() < 0.3:
                inside = cubes[int(rng.integers(len(cubes)))]
                front = sim.object_pose("drawer")[0]
                sim.set_object_pose(inside, (front[0] + 0.05, front[1] + rng.uniform(-0.04, 0.04), 0.025 + CUBE_HALF + 0.001))
            chosen = ()
        else:
            chosen = ()
        mujoco.mj_forward(sim.model, sim.data)
        sim.settle(0.3)
        if skill in ("place", "stack") and P.holder(sim, chosen[0]) != arm:
            continue
        if skill != "pick" or P.something_on(sim, chosen[0]) is None:
            return chosen
    raise RuntimeError(f"could not draw a valid start for skill {skill!r}")
