"""HAL drivers over the MuJoCo simulation (the same interfaces a real robot implements)."""

from __future__ import annotations

import numpy as np

from embodia.body.hal import ForceReading, ImuReading, JointReading
from embodia.body.rendering import SceneRenderer
from embodia.body.sim import Simulation


class MujocoCamera:
    def __init__(self, sim: Simulation, renderer: SceneRenderer, name: str, height: int,
                 width: int) -> None:
        self.sim, self.renderer, self.name = sim, renderer, name
        self.height, self.width = height, width

    def read(self) -> np.ndarray:
        return self.renderer.render(self.sim.data, self.name, self.height, self.width)


class MujocoJointSensor:
    def __init__(self, sim: Simulation, arm: str) -> None:
        self.sim, self.h = sim, sim.arms[arm]
        self.joint_names = self.h.spec.joints

    def read(self) -> JointReading:
        d = self.sim.data
        return JointReading(d.qpos[self.h.qadr].copy(), d.qvel[self.h.dadr].copy(), float(d.time))


class MujocoActuator:
    def __init__(self, sim: Simulation, arm: str) -> None:
        self.sim, self.h = sim, sim.arms[arm]
        self.joint_names = self.h.spec.joints
        self.lo = np.array([sim.embodiment.joint_limits[j][0] for j in self.joint_names])
        self.hi = np.array([sim.embodiment.joint_limits[j][1] for j in self.joint_names])

    def command(self, positions: np.ndarray) -> None:
        p = np.asarray(positions, dtype=float)
        if p.shape != (len(self.joint_names),) or not np.all(np.isfinite(p)):
            raise ValueError(f"joint command must be {len(self.joint_names)} finite values, got {p!r}")
        self.sim.data.ctrl[self.h.act] = np.clip(p, self.lo, self.hi)

    def hold(self) -> None:
        self.sim.data.ctrl[self.h.act] = self.sim.data.qpos[self.h.qadr]


class MujocoGripper:
    def __init__(self, sim: Simulation, arm: str) -> None:
        self.sim, self.h = sim, sim.arms[arm]

    def command(self, closed_fraction: float) -> None:
        f = float(closed_fraction)
        if not np.isfinite(f):
            raise ValueError(f"gripper command must be finite, got {closed_fraction!r}")
        self.sim.data.ctrl[self.h.finger_act] = self.h.spec.finger_open * (1.0 - np.clip(f, 0.0, 1.0))

    def width(self) -> float:
        return float(np.sum(self.sim.data.qpos[self.h.finger_qadr]))


class MujocoIMU:
    def __init__(self, sim: Simulation, prefix: str = "base_imu") -> None:
        m = sim.model
        self.sim = sim
        self.acc = m.sensor(f"{prefix}_acc").adr[0]
        self.gyro = m.sensor(f"{prefix}_gyro").adr[0]

    def read(self) -> ImuReading:
        d = self.sim.data
        return ImuReading(d.sensordata[self.acc : self.acc + 3].copy(),
                          d.sensordata[self.gyro : self.gyro + 3].copy(), float(d.time))


class MujocoForceSensor:
    def __init__(self, sim: Simulation, arm: str) -> None:
        self.sim, self.arm = sim, arm

    def read(self) -> ForceReading:
        return ForceReading(self.sim.finger_forces(self.arm), float(self.sim.data.time))
