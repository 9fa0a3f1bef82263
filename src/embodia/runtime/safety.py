"""The safety filter between the cerebellum and the actuators.

Every joint setpoint and gripper command passes here, every control tick, last before the
HAL. Checks, in order: finite (else the whole command is rejected and the last safe one is
held), joint position limits (clip), joint velocity limits (clip the step), end-effector
speed (shrink the step), workspace box (reject a step that leaves it, or that goes farther
out if the arm already is out), gripper squeeze force (clip the closing command). Each
clip or rejection is reported as an `Intervention`.

Invariant (property-tested): every output is finite, inside the joint limits, within
`max_joint_velocity * dt` and `max_ee_speed * dt` of the previous output, no farther outside
the box than the previous output, and commands at most `max_grip_force` of squeeze.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embodia.runtime.kinematics import ArmKinematics
from embodia.runtime.messages import Intervention

KINDS = ("reject_nonfinite", "joint_position", "joint_velocity", "ee_speed", "workspace",
         "gripper_force", "chunk_rejected", "watchdog_hold", "estop")
PANDA_VELOCITY = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)  # rad/s


@dataclass(frozen=True)
class SafetyConfig:
    """Limits, in the units of the robot; per-arm values derive from the body (`ArmLimits`)."""

    joint_margin: float = 0.005  # rad kept clear of the model's joint limits
    max_joint_velocity: tuple[float, ...] = PANDA_VELOCITY  # rad/s, one per joint (or one for all)
    workspace_margin: float = 0.25  # m added around the arm's table workspace (x, y)
    z_range: tuple[float, float] = (0.004, 0.65)  # m, tool-centre-point height
    max_ee_speed: float = 1.0  # m/s of the tool-centre point
    max_grip_force: float = 10.0  # N of commanded squeeze per finger


@dataclass(frozen=True)
class ArmLimits:
    lo: np.ndarray
    hi: np.ndarray
    vmax: np.ndarray
    box_lo: np.ndarray  # (3,)
    box_hi: np.ndarray
    max_ee_speed: float
    finger_open: float  # m of finger travel when open
    finger_kp: float  # N/m of the finger position servo
    max_grip_force: float


def arm_limits(cfg: SafetyConfig, lo: np.ndarray, hi: np.ndarray,
               workspace: tuple[float, float, float, float], finger_open: float,
               finger_kp: float) -> ArmLimits:
    lo, hi = np.asarray(lo, float) + cfg.joint_margin, np.asarray(hi, float) - cfg.joint_margin
    v = np.asarray(cfg.max_joint_velocity, float)
    vmax = np.broadcast_to(v if v.size in (1, len(lo)) else v[: len(lo)], lo.shape).copy()
    xmin, xmax, ymin, ymax = workspace
    m = cfg.workspace_margin
    return ArmLimits(lo, hi, vmax, np.array([xmin - m, ymin - m, cfg.z_range[0]]),
                     np.array([xmax + m, ymax + m, cfg.z_range[1]]), cfg.max_ee_speed,
                     finger_open, finger_kp, cfg.max_grip_force)


def box_distance(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.linalg.norm(p - np.clip(p, lo, hi)))


def max_grip(lim: ArmLimits, finger: float) -> float:
    """Most closing (fraction) that squeezes a finger blocked at `finger` with <= the limit:
    the servo pushes kp * (finger - setpoint), setpoint = open * (1 - grip)."""
    floor = finger - lim.max_grip_force / lim.finger_kp
    return 1.0 if floor <= 0 else float(np.clip(1.0 - floor / lim.finger_open, 0.0, 1.0))


class SafetyFilter:
    """Stateful (it remembers the last safe output per arm); `reset` before the first tick."""

    def __init__(self, limits: dict[str, ArmLimits], kin: dict[str, ArmKinematics], dt: float) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.limits, self.kin, self.dt = limits, kin, dt
        self.q: dict[str, np.ndarray] = {}
        self.grip: dict[str, float] = {}
        self._p: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}

    def reset(self, q: dict[str, np.ndarray], grip: dict[str, float] | None = None) -> None:
        for arm, lim in self.limits.items():
            self.q[arm] = np.clip(np.asarray(q[arm], float), lim.lo, lim.hi)
            self._p[arm] = self.kin[arm].fk(self.q[arm])[0]
            g = 0.0 if grip is None else float(grip.get(arm, 0.0))
            self.grip[arm] = float(np.clip(g, 0.0, 1.0)) if np.isfinite(g) else 0.0

    def _note(self, out: list[Intervention], t: float, kind: str, arm: str, detail: str,
              value: float = float("nan"), limit: float = float("nan")) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        out.append(Intervention(t, kind, arm, detail, float(value), float(limit)))

    def filter(self, t: float, q_cmd: dict[str, np.ndarray], grip_cmd: dict[str, float],
               finger: dict[str, float]) -> tuple[dict[str, np.ndarray], dict[str, float], list[Intervention]]:
        """Safe versions of the commands (new dicts), and what was changed or refused."""
        notes: list[Intervention] = []
        for arm, lim in self.limits.items():
            self.q[arm], self._p[arm] = self._joint(t, arm, lim, q_cmd.get(arm), notes)
            self.grip[arm] = self._grip(t, arm, lim, grip_cmd.get(arm), finger.get(arm), notes)
        return ({a: q.copy() for a, q in self.q.items()}, dict(self.grip), notes)

    def _joint(self, t: float, arm: str, lim: ArmLimits, q_cmd, notes: list[Intervention]
               ) -> tuple[np.ndarray, np.ndarray]:
        prev, p_prev = self.q[arm], self._p[arm]
        q = np.asarray(q_cmd if q_cmd is not None else prev, dtype=float)
        if q.shape != prev.shape or not np.all(np.isfinite(q)):
            self._note(notes, t, "reject_nonfinite", arm, f"joint command {q_cmd!r} refused; holding")
            return prev, p_prev
        clipped = np.clip(q, lim.lo, lim.hi)
        if np.any(clipped != q):
            i = int(np.argmax(np.abs(clipped - q)))
            self._note(notes, t, "joint_position", arm, f"joint {i} clipped", q[i],
                       lim.hi[i] if q[i] > lim.hi[i] else lim.lo[i])
        step = clipped - prev
        vstep = lim.vmax * self.dt
        if np.any(np.abs(step) > vstep):
            i = int(np.argmax(np.abs(step) / vstep))
            self._note(notes, t, "joint_velocity", arm, f"joint {i} step clipped",
                       abs(step[i]) / self.dt, lim.vmax[i])
            step = np.clip(step, -vstep, vstep)
        q = prev + step
        kin = self.kin[arm]
        p = kin.fk(q)[0]
        speed = float(np.linalg.norm(p - p_prev)) / self.dt
        if speed > lim.max_ee_speed:
            self._note(notes, t, "ee_speed", arm, "tool speed over the limit; step shortened",
                       speed, lim.max_ee_speed)
            scale = 1.0
            for _ in range(6):
                scale *= 0.98 * lim.max_ee_speed / max(speed, 1e-12)
                q = prev + scale * step
                p = kin.fk(q)[0]
                speed = float(np.linalg.norm(p - p_prev)) / self.dt
                if speed <= lim.max_ee_speed:
                    break
            else:
                q, p = prev, p_prev
        d_prev = box_distance(p_prev, lim.box_lo, lim.box_hi)
        d = box_distance(p, lim.box_lo, lim.box_hi)
        if d > 0 and d > d_prev + 1e-9:
            self._note(notes, t, "workspace", arm, f"step would leave the workspace box at {np.round(p, 3).tolist()}",
                       d, 0.0)
            return prev, p_prev
        return q, p

    def _grip(self, t: float, arm: str, lim: ArmLimits, g, finger, notes: list[Intervention]) -> float:
        prev = self.grip[arm]
        try:
            g = float(prev if g is None else g)
        except (TypeError, ValueError):
            g = float("nan")
        if not np.isfinite(g):
            self._note(notes, t, "reject_nonfinite", arm, "gripper command refused; holding")
            g = prev  # holding must respect the force cap too: the fingers may have moved
        g = float(np.clip(g, 0.0, 1.0))
        f = float(finger) if finger is not None and np.isfinite(finger) else lim.finger_open
        cap = max_grip(lim, f)
        if g > cap:
            self._note(notes, t, "gripper_force", arm, "closing command capped",
                       lim.finger_kp * (f - lim.finger_open * (1 - g)), lim.max_grip_force)
            g = cap
        return g
