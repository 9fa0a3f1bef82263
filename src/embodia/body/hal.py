"""Hardware abstraction layer: the interfaces a real robot driver implements.

The runtime and the gym env only ever talk to these protocols; `mujoco_drivers.py` implements
them over the simulator, and a driver for a physical arm implements the same five.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class JointReading:
    positions: np.ndarray  # rad (or m for prismatic joints)
    velocities: np.ndarray
    timestamp: float  # s


@dataclass(frozen=True)
class ImuReading:
    linear_acceleration: np.ndarray  # m/s^2, sensor frame (gravity included)
    angular_velocity: np.ndarray  # rad/s
    timestamp: float


@dataclass(frozen=True)
class ForceReading:
    fingertip_forces: np.ndarray  # N, one normal force per fingertip pad
    timestamp: float


@runtime_checkable
class Camera(Protocol):
    name: str
    height: int
    width: int

    def read(self) -> np.ndarray:
        """An RGB frame, uint8 [height, width, 3]."""


@runtime_checkable
class JointSensor(Protocol):
    joint_names: tuple[str, ...]

    def read(self) -> JointReading: ...


@runtime_checkable
class Actuator(Protocol):
    joint_names: tuple[str, ...]

    def command(self, positions: np.ndarray) -> None:
        """Joint position targets; the driver's own PD loop tracks them."""

    def hold(self) -> None:
        """Hold the current position (what the watchdog calls when commands stop)."""


@runtime_checkable
class Gripper(Protocol):
    def command(self, closed_fraction: float) -> None: ...

    def width(self) -> float: ...


@runtime_checkable
class IMU(Protocol):
    def read(self) -> ImuReading: ...


@runtime_checkable
class ForceSensor(Protocol):
    def read(self) -> ForceReading: ...
