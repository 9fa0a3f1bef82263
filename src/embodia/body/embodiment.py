"""The embodiment contract: what a robot senses and how it is commanded.

Every dataset, checkpoint and server reply names its embodiment; this spec is what they name.
It is plain data (no MuJoCo), so a real-robot driver can describe itself with the same type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ACTION_SPACES = ("ee_delta", "joint_pos")


@dataclass(frozen=True)
class ArmSpec:
    """One manipulator: its joints, its tool-centre-point site and its gripper."""

    name: str
    joints: tuple[str, ...]
    home: tuple[float, ...]
    tcp_site: str
    finger_joints: tuple[str, str]
    finger_open: float  # finger joint travel (m) at fully open
    # Axis-aligned box (xmin, xmax, ymin, ymax) on the table this arm can work in.
    workspace: tuple[float, float, float, float]
    # World rotation of the TCP frame when the gripper points straight down (yaw 0).
    down_quat: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 0.0)


@dataclass(frozen=True)
class CameraSpec:
    name: str
    mount: str  # "world", or the arm/body it rides on


@dataclass(frozen=True)
class ActionLayout:
    """Names, units and limits of one action space; `gripper_dims` index the grippers."""

    name: str
    names: tuple[str, ...]
    units: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    gripper_dims: tuple[int, ...]

    @property
    def dim(self) -> int:
        return len(self.names)

    def check(self, action) -> np.ndarray:
        """Validate an action (shape, finite) and clip it into the limits.

        Raises ValueError naming the problem; never returns something outside the limits.
        """
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.dim,):
            raise ValueError(
                f"action for space {self.name!r} must have shape ({self.dim},), got {a.shape}"
            )
        bad = ~np.isfinite(a)
        if bad.any():
            names = [self.names[i] for i in np.flatnonzero(bad)]
            raise ValueError(f"action has non-finite values in {names}")
        return np.clip(a, self.low, self.high)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "names": list(self.names),
            "units": list(self.units),
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "gripper_dims": list(self.gripper_dims),
        }


@dataclass(frozen=True)
class Embodiment:
    """A robot: state layout, action layouts, control rate, cameras and its arms."""

    name: str
    arms: tuple[ArmSpec, ...]
    cameras: tuple[CameraSpec, ...]
    control_rate_hz: float
    joint_limits: dict[str, tuple[float, float]]
    # Per-step limits of the end-effector delta action.
    max_ee_translation: float = 0.05  # m per control step
    max_ee_rotation: float = 0.3  # rad per control step
    description: str = ""
    extra: dict = field(default_factory=dict)
    # A robot driven through another simulator's own interface (Meta-World's Sawyer: a
    # mocap-driven hand, no joint commands) declares its own state names and action layouts
    # instead of the per-arm joint layout below. Why: its observation and action are what
    # that simulator gives and takes, and datasets must name them as they are.
    custom_state_names: tuple[str, ...] | None = None
    custom_action_layouts: tuple[ActionLayout, ...] = ()

    # -- layouts -----------------------------------------------------------------------
    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def arm(self, name: str | None = None) -> ArmSpec:
        """The arm called `name` (the only arm when `name` is None on a one-armed robot)."""
        if name is None:
            return self.arms[0]
        for a in self.arms:
            if a.name == name:
                return a
        raise ValueError(
            f"embodiment {self.name!r} has no arm {name!r}; arms: {list(self.arm_names)}"
        )

    @property
    def state_names(self) -> tuple[str, ...]:
        if self.custom_state_names is not None:
            return self.custom_state_names
        names: list[str] = []
        for a in self.arms:
            names += [f"{a.name}.{j}" for j in a.joints]
            names.append(f"{a.name}.gripper_width")
            names += [f"{a.name}.ee_{c}" for c in ("x", "y", "z")]
            names += [f"{a.name}.ee_q{c}" for c in ("w", "x", "y", "z")]
        return tuple(names)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_spaces(self) -> tuple[str, ...]:
        """The action spaces this robot takes (`ee_delta`, `joint_pos`, or its own)."""
        if self.custom_action_layouts:
            return tuple(a.name for a in self.custom_action_layouts)
        return ACTION_SPACES

    def action_layout(self, space: str) -> ActionLayout:
        if self.custom_action_layouts:
            for layout in self.custom_action_layouts:
                if layout.name == space:
                    return layout
            raise ValueError(f"unknown action space {space!r} for {self.name!r}; choose one of "
                             f"{list(self.action_spaces)}")
        if space == "ee_delta":
            names, units, low, high, grip = [], [], [], [], []
            t, r = self.max_ee_translation, self.max_ee_rotation
            for a in self.arms:
                names += [f"{a.name}.d{c}" for c in ("x", "y", "z")]
                names += [f"{a.name}.drot_{c}" for c in ("x", "y", "z")]
                names.append(f"{a.name}.gripper")
                units += ["m"] * 3 + ["rad"] * 3 + ["closed_fraction"]
                low += [-t] * 3 + [-r] * 3 + [0.0]
                high += [t] * 3 + [r] * 3 + [1.0]
                grip.append(len(names) - 1)
        elif space == "joint_pos":
            names, units, low, high, grip = [], [], [], [], []
            for a in self.arms:
                for j in a.joints:
                    lo, hi = self.joint_limits[j]
                    names.append(f"{a.name}.{j}")
                    units.append("rad")
                    low.append(lo)
                    high.append(hi)
                names.append(f"{a.name}.gripper")
                units.append("closed_fraction")
                low.append(0.0)
                high.append(1.0)
                grip.append(len(names) - 1)
        else:
            raise ValueError(f"unknown action space {space!r}; choose one of {list(ACTION_SPACES)}")
        return ActionLayout(
            name=space,
            names=tuple(names),
            units=tuple(units),
            low=np.asarray(low, dtype=np.float32),
            high=np.asarray(high, dtype=np.float32),
            gripper_dims=tuple(grip),
        )

    def arm_action_slice(self, space: str, arm: str) -> slice:
        """Where one arm's dims sit inside a flat action vector."""
        if self.custom_action_layouts:
            self.arm(arm)  # one arm: its layout is the whole vector
            return slice(0, self.action_layout(space).dim)
        start = 0
        for a in self.arms:
            n = 7 if space == "ee_delta" else len(a.joints) + 1
            if a.name == arm:
                return slice(start, start + n)
            start += n
        raise ValueError(f"embodiment {self.name!r} has no arm {arm!r}")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "control_rate_hz": self.control_rate_hz,
            "arms": [a.name for a in self.arms],
            "cameras": [c.name for c in self.cameras],
            "state_names": list(self.state_names),
            "action_spaces": {s: self.action_layout(s).to_dict() for s in self.action_spaces},
        }
