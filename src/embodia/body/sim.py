"""`Simulation`: one MuJoCo model of a robot in the tabletop world, with named handles.

Everything above it (the HAL drivers, predicates, scene graph, experts, the gym env) reads
and writes the world through this class, never through raw MuJoCo indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from embodia.body.embodiment import ArmSpec, Embodiment
from embodia.body.embodiments import get_robot
from embodia.body.ik import DampedLeastSquaresIK
from embodia.body.rotations import mat_to_quat, quat_yaw, yaw_quat
from embodia.body.scene import (
    CONTAINER_COLOURS,
    CUBE_COLOURS,
    CUBE_HALF,
    PLATE_HALF_THICK,
    SceneLayout,
    compose_mjcf,
    cube_name,
    object_catalogue,
)


@dataclass
class ArmHandles:
    spec: ArmSpec
    prefix: str
    qadr: np.ndarray
    dadr: np.ndarray
    act: np.ndarray
    finger_qadr: np.ndarray
    finger_act: np.ndarray
    tcp: int
    pad_geoms: tuple[int, int]
    touch: tuple[int, int]  # sensor adr
    ik: DampedLeastSquaresIK


@dataclass
class SimState:
    """Everything needed to put the world back exactly (for 'bad input changes nothing')."""

    qpos: np.ndarray
    qvel: np.ndarray
    ctrl: np.ndarray
    act: np.ndarray
    mocap_pos: np.ndarray
    time: float
    active: tuple[str, ...]
    colours: dict[str, str]


class Simulation:
    def __init__(self, embodiment: str | Embodiment) -> None:
        spec, robot_model = get_robot(embodiment)
        self.embodiment = spec
        self.xml = compose_mjcf(robot_model)
        self.model = mujoco.MjModel.from_xml_string(self.xml)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.substeps = max(1, round(1.0 / (spec.control_rate_hz * m.opt.timestep)))
        self.catalogue = object_catalogue()
        self.arms: dict[str, ArmHandles] = {}
        multi = len(spec.arms) > 1
        for arm in spec.arms:
            p = f"{arm.name}_" if multi else ""
            fj = [p + f for f in arm.finger_joints]
            self.arms[arm.name] = ArmHandles(
                spec=arm,
                prefix=p,
                qadr=np.array([m.joint(j).qposadr[0] for j in arm.joints]),
                dadr=np.array([m.joint(j).dofadr[0] for j in arm.joints]),
                act=np.array([m.actuator(j).id for j in arm.joints]),
                finger_qadr=np.array([m.joint(j).qposadr[0] for j in fj]),
                finger_act=np.array([m.actuator(j).id for j in fj]),
                tcp=m.site(p + arm.tcp_site).id,
                pad_geoms=(m.geom(p + "pad_left").id, m.geom(p + "pad_right").id),
                touch=(m.sensor(p + "touch_left").adr[0], m.sensor(p + "touch_right").adr[0]),
                ik=DampedLeastSquaresIK(m, arm.joints, p + arm.tcp_site, np.array(arm.home)),
            )
        self.body_id = {n: m.body(n).id for n in self.catalogue if n != "drawer"}
        self.body_id["drawer"] = m.body("drawer").id
        self.free_qadr = {
            n: m.joint(n).qposadr[0] for n in self.catalogue if n not in ("drawer",)
        }
        self.free_dadr = {n: m.joint(n).dofadr[0] for n in self.free_qadr}
        self.drawer_qadr = m.joint("drawer").qposadr[0]
        self.drawer_dadr = m.joint("drawer").dofadr[0]
        self.cabinet_body = m.body("cabinet").id
        self.zone_mocap = m.body_mocapid[m.body("zone").id]
        self.geom_body = m.geom_bodyid
        self.gripper_geoms = frozenset(int(g) for g in np.flatnonzero(m.geom_contype == 2))
        self.active: tuple[str, ...] = ()
        self.colours: dict[str, str] = {}
        self._quat_ref: dict[str, np.ndarray] = {}  # per arm: the last recorded ee quaternion
        self.reset_robot()

    # ------------------------------------------------------------------ robot
    def reset_robot(self, q: dict[str, np.ndarray] | None = None) -> None:
        self.reset_quaternion_continuity()
        for name, h in self.arms.items():
            qa = np.array(h.spec.home) if q is None or name not in q else np.asarray(q[name])
            self.data.qpos[h.qadr] = qa
            self.data.qvel[h.dadr] = 0.0
            self.data.ctrl[h.act] = qa
            self.data.qpos[h.finger_qadr] = h.spec.finger_open
            self.data.ctrl[h.finger_act] = h.spec.finger_open
        mujoco.mj_forward(self.model, self.data)

    def arm_q(self, arm: str) -> np.ndarray:
        return self.data.qpos[self.arms[arm].qadr].copy()

    def tcp_pose(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        h = self.arms[arm]
        return self.data.site_xpos[h.tcp].copy(), mat_to_quat(self.data.site_xmat[h.tcp])

    def gripper_width(self, arm: str) -> float:
        return float(np.sum(self.data.qpos[self.arms[arm].finger_qadr]))

    def finger_forces(self, arm: str) -> np.ndarray:
        return self.data.sensordata[list(self.arms[arm].touch)].copy()

    # ---------------------------------------------------------------- objects
    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        b = self.body_id[name]
        return self.data.xpos[b].copy(), self.data.xquat[b].copy()

    def object_velocity(self, name: str) -> np.ndarray:
        a = self.free_dadr[name]
        return self.data.qvel[a : a + 6].copy()

    def set_object_pose(self, name: str, pos, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
        a = self.free_qadr[name]
        self.data.qpos[a : a + 3] = pos
        self.data.qpos[a + 3 : a + 7] = quat
        d = self.free_dadr[name]
        self.data.qvel[d : d + 6] = 0.0

    def drawer_opening(self) -> float:
        return float(self.data.qpos[self.drawer_qadr])

    def set_drawer(self, opening: float) -> None:
        self.data.qpos[self.drawer_qadr] = opening
        self.data.qvel[self.drawer_dadr] = 0.0

    def zone_center(self) -> np.ndarray:
        return self.data.mocap_pos[self.zone_mocap][:2].copy()

    def handle_position(self) -> np.ndarray:
        return self.data.geom_xpos[self.model.geom("handle").id].copy()

    def camera_projection(self, camera: str, height: int, width: int) -> np.ndarray:
        """[3, 4] pinhole matrix P with (u, v, 1) ~ P @ (x, y, z, 1): pixel column u and row v
        (row 0 at the top, as rendered) of a world point in `camera`'s image. For a camera
        fixed in the world it holds for every frame; it gives perception exact training
        targets (where each object appears) without any labelling."""
        m, d = self.model, self.data
        cam = m.camera(camera).id
        mujoco.mj_kinematics(m, d)
        mujoco.mj_camlight(m, d)
        pos, rot = d.cam_xpos[cam].copy(), d.cam_xmat[cam].reshape(3, 3).copy()  # columns: cam x, y, z
        f = 0.5 * height / np.tan(np.deg2rad(m.cam_fovy[cam]) / 2)
        # camera frame: x right, y up, looking along -z; image: u right, v down
        K = np.array([[f, 0.0, width / 2], [0.0, -f, height / 2], [0.0, 0.0, 1.0]])
        world_to_cam = np.hstack([rot.T, (-rot.T @ pos)[:, None]])
        return K @ np.diag([1.0, 1.0, -1.0]) @ world_to_cam  # depth is -z_cam

    def camera_is_fixed(self, camera: str) -> bool:
        """True when the camera hangs on the world body (its projection never changes)."""
        return int(self.model.cam_bodyid[self.model.camera(camera).id]) == 0

    def environment_state_names(self) -> list[str]:
        """Names of `environment_state()`, fixed for every scene of this world."""
        names = []
        for n, info in self.catalogue.items():
            if n == "drawer":
                names += ["drawer.handle.x", "drawer.handle.y", "drawer.handle.z", "drawer.opening"]
                continue
            names += [f"{n}.x", f"{n}.y", f"{n}.z"]
            if info.cls == "cube":  # a cube looks the same every quarter turn
                names += [f"{n}.sin4yaw", f"{n}.cos4yaw"]
        return names + ["zone.x", "zone.y"]

    def environment_state(self) -> np.ndarray:
        """`observation.environment_state` (LeRobot's name): where every object is. Policies
        act from images; this privileged vector is recorded for training-time auxiliary
        targets and analysis, never fed to a policy at run time."""
        parts = []
        for n, info in self.catalogue.items():
            if n == "drawer":
                parts += [self.handle_position(), [self.drawer_opening()]]
                continue
            pos, quat = self.object_pose(n)
            parts.append(pos)
            if info.cls == "cube":
                yaw = quat_yaw(quat)
                parts.append([np.sin(4 * yaw), np.cos(4 * yaw)])
        parts.append(self.zone_center())
        return np.concatenate(parts).astype(np.float32)

    def apply_layout(self, layout: SceneLayout) -> None:
        """Place every object as the layout says; park the cubes that take no part."""
        m = self.model
        self.active = tuple(sorted(layout.cubes)) + ("bowl", "plate", "drawer")
        for i, colour in enumerate(CUBE_COLOURS):
            n = cube_name(colour)
            if n in layout.cubes:
                x, y, yaw = layout.cubes[n]
                self.set_object_pose(n, (x, y, CUBE_HALF + 1e-4), yaw_quat(yaw))
            else:
                self.set_object_pose(n, (3.0 + 0.2 * i, 3.0, -0.75 + CUBE_HALF))
        x, y, yaw = layout.bowl
        self.set_object_pose("bowl", (x, y, 1e-4), yaw_quat(yaw))
        self.set_object_pose("plate", (layout.plate[0], layout.plate[1], 1e-4))
        self.data.mocap_pos[self.zone_mocap] = (layout.zone[0], layout.zone[1], 0.0006)
        m.body_pos[self.cabinet_body][:2] = layout.cabinet
        self.set_drawer(layout.drawer_open)
        self.colours = {cube_name(c): c for c in CUBE_COLOURS}
        self.colours |= {"bowl": layout.bowl_colour, "plate": layout.plate_colour, "drawer": "brown"}
        for obj, col in (("bowl", layout.bowl_colour), ("plate", layout.plate_colour)):
            rgba = (*CONTAINER_COLOURS[col], 1.0)
            for g in np.flatnonzero(m.geom_bodyid == self.body_id[obj]):
                m.geom_rgba[g] = rgba
        mujoco.mj_forward(m, self.data)

    # ------------------------------------------------------------- stepping
    def step(self, n: int | None = None) -> None:
        mujoco.mj_step(self.model, self.data, nstep=self.substeps if n is None else n)

    def settle(self, seconds: float = 0.3) -> None:
        self.step(max(1, int(seconds / self.model.opt.timestep)))

    def snapshot(self) -> SimState:
        d = self.data
        return SimState(d.qpos.copy(), d.qvel.copy(), d.ctrl.copy(), d.act.copy(),
                        d.mocap_pos.copy(), float(d.time), self.active, dict(self.colours))

    def restore(self, s: SimState) -> None:
        d = self.data
        d.qpos[:], d.qvel[:], d.ctrl[:] = s.qpos, s.qvel, s.ctrl
        d.act[:], d.mocap_pos[:] = s.act, s.mocap_pos
        d.time = s.time
        self.active, self.colours = s.active, dict(s.colours)
        self.reset_quaternion_continuity()
        mujoco.mj_forward(self.model, d)

    # ---------------------------------------------------------------- state
    def state_vector(self) -> np.ndarray:
        """`observation.state` in the order of `Embodiment.state_names`.

        The end-effector quaternion (q and -q are the same rotation) is kept in one
        hemisphere, continuous with the previous call: its sign makes the dot product with
        the last reported quaternion non-negative. The first call after a reset
        (`reset_quaternion_continuity`, run by `reset_robot`, `restore` and
        `TabletopEnv.reset`) takes the hemisphere of the arm's `down_quat`. Why not w >= 0:
        a top-down grasp has w near 0, so w >= 0 flipped ee_qx between +0.97 and -0.97 from
        one frame to the next. Why `down_quat` to start: every episode then starts on the
        same side, and its boundary (a hand turned 180 degrees from pointing down) is never
        reached at the start. Both the recorded data and what a policy is fed (the env's and
        the runtime's observations) come from here.
        """
        parts = []
        for name, h in self.arms.items():
            pos, quat = self.tcp_pose(name)
            ref = self._quat_ref.get(name)
            if ref is None:
                ref = np.asarray(h.spec.down_quat, dtype=np.float64)
            if float(np.dot(ref, quat)) < 0:
                quat = -quat
            self._quat_ref[name] = np.asarray(quat, dtype=np.float64).copy()
            parts += [self.data.qpos[h.qadr], [self.gripper_width(name)], pos, quat]
        return np.concatenate(parts).astype(np.float32)

    def reset_quaternion_continuity(self) -> None:
        """Forget the last reported quaternions: the next `state_vector` starts a new episode."""
        self._quat_ref = {}

    def surface_height(self, name: str) -> float:
        """Height of the top support surface of a container or cube."""
        pos, _ = self.object_pose(name)
        cls = self.catalogue[name].cls
        if cls == "cube":
            return float(pos[2] + CUBE_HALF)
        if cls == "plate":
            return float(pos[2] + 2 * PLATE_HALF_THICK)
        if cls == "bowl":
            return float(pos[2] + 0.008)
        raise ValueError(f"{name!r} has no support surface")
