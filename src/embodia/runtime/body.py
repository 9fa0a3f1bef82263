"""The HAL layer as the runtime sees it: one object bundling a body's drivers.

`SimBody` groups the MuJoCo drivers of `body/mujoco_drivers.py` (actuators with their own
PD servo, grippers, joint sensors, cameras) for every arm of a seeded `TabletopEnv`, plus
what only a simulation has: ground-truth scene graph and skill predicates (perception's
stand-in), and physics time that advances when the runtime says so. A real robot bundles
real drivers behind the same methods; its time advances by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from embodia.body import skills as S
from embodia.body.env import TabletopEnv
from embodia.body.mujoco_drivers import MujocoActuator, MujocoGripper, MujocoJointSensor
from embodia.body.scene_graph import SceneGraph, build_scene_graph
from embodia.body.sim import SimState, Simulation
from embodia.runtime.kinematics import MujocoArmKinematics
from embodia.runtime.messages import JointCommand, JointState, Observation
from embodia.runtime.safety import ArmLimits, SafetyConfig, arm_limits


@dataclass
class SceneSnapshot:
    """Everything needed to rebuild this exact world in another process (the real-time
    control process owns the physics; perception keeps a mirror)."""

    embodiment: str
    body_pos: np.ndarray
    geom_rgba: np.ndarray
    state: SimState


def snapshot_scene(sim: Simulation) -> SceneSnapshot:
    return SceneSnapshot(sim.embodiment.name, sim.model.body_pos.copy(), sim.model.geom_rgba.copy(),
                         sim.snapshot())


def restore_scene(sim: Simulation, snap: SceneSnapshot) -> None:
    if sim.embodiment.name != snap.embodiment:
        raise ValueError(f"snapshot of {snap.embodiment!r} cannot restore a {sim.embodiment.name!r} world")
    sim.model.body_pos[:] = snap.body_pos
    sim.model.geom_rgba[:] = snap.geom_rgba
    sim.restore(snap.state)


class SimBody:
    """Drivers over `sim`; with the `env` that owns it, also cameras, rendering and the env's
    scene graph (the real-time control process builds one from a bare `Simulation`)."""

    def __init__(self, sim: Simulation, env: TabletopEnv | None = None) -> None:
        self.env, self.sim = env, sim
        self.embodiment = sim.embodiment
        self.arms = tuple(sim.arms)
        self.actuators = {a: MujocoActuator(sim, a) for a in self.arms}
        self.grippers = {a: MujocoGripper(sim, a) for a in self.arms}
        self.joint_sensors = {a: MujocoJointSensor(sim, a) for a in self.arms}
        self.cameras = env.cameras if env is not None else {}
        self.physics_dt = float(sim.model.opt.timestep)

    @classmethod
    def from_env(cls, env: TabletopEnv) -> SimBody:
        return cls(env.sim, env)

    # ------------------------------------------------------------------ HAL
    @property
    def time(self) -> float:
        return float(self.sim.data.time)

    def read_joints(self) -> JointState:
        q, qd, fingers = {}, {}, {}
        for a in self.arms:
            r = self.joint_sensors[a].read()
            q[a], qd[a] = r.positions, r.velocities
            fingers[a] = self.grippers[a].width() / 2.0
        return JointState(self.time, q, qd, fingers)

    def command(self, cmd: JointCommand) -> None:
        for a in self.arms:
            self.actuators[a].command(cmd.q[a])
            self.grippers[a].command(cmd.grip[a])

    def commanded_grip(self) -> dict[str, float]:
        """The gripper commands in force now (a start state may hold a cube)."""
        out = {}
        for a, h in self.sim.arms.items():
            ctrl = float(np.mean(self.sim.data.ctrl[h.finger_act]))
            out[a] = float(np.clip(1.0 - ctrl / h.spec.finger_open, 0.0, 1.0))
        return out

    def observe(self, task: str) -> Observation:
        data: dict[str, Any] = {f"observation.images.{c}": cam.read() for c, cam in self.cameras.items()}
        data["observation.state"] = self.sim.state_vector()
        data["task"] = task
        data["embodiment"] = self.embodiment.name
        return Observation(self.time, data)

    def advance_to(self, t: float) -> int:
        """Step physics until simulated time reaches `t`; returns the steps taken."""
        n = int(np.floor((t - self.time) / self.physics_dt + 1e-6))
        if n > 0:
            mujoco.mj_step(self.sim.model, self.sim.data, nstep=n)
        return max(n, 0)

    # --------------------------------------------------- perception stand-ins
    def scene_graph(self) -> SceneGraph:
        return build_scene_graph(self.sim)

    def step_done(self, skill: str, args: tuple[str, ...]) -> bool:
        return S.success(self.sim, skill, args)

    def render(self) -> np.ndarray:
        if self.env is None:
            raise RuntimeError("this body has no renderer (built without its env)")
        return self.env.render()

    # ------------------------------------------------------- models of itself
    def kinematics(self) -> dict[str, MujocoArmKinematics]:
        return {a: MujocoArmKinematics(self.sim, a) for a in self.arms}

    def limits(self, cfg: SafetyConfig) -> dict[str, ArmLimits]:
        out = {}
        for a, h in self.sim.arms.items():
            kp = float(self.sim.model.actuator_gainprm[h.finger_act[0], 0])
            out[a] = arm_limits(cfg, h.ik.lo, h.ik.hi, h.spec.workspace, h.spec.finger_open, kp)
        return out

    def sync(self, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray, t: float) -> None:
        """Mirror a state read from elsewhere (the real-time control process)."""
        d = self.sim.data
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos, qvel, ctrl
        d.time = t
        mujoco.mj_forward(self.sim.model, d)
