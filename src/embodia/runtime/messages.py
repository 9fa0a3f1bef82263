"""The typed messages the four runtime layers exchange, and nothing else.

Why dataclasses: a layer can be swapped (simulated body for a real driver, expert for a
learned policy, in-process for another process) only if what crosses a boundary is spelled
out. Arrays are numpy; every message carries the time it refers to, on the runtime's clock.

    reasoning ──SkillCommand──► perception/planning ──ActionChunk──► control ──JointCommand──► HAL
        ▲                              │  ▲                              ▲  │
        └──────────SceneUpdate─────────┘  └──────── Observation ─────────┘  └── JointState ◄── HAL
    control ──Intervention──► log (safety filter, watchdog, emergency stop)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from embodia.body.scene_graph import SceneGraph


@dataclass(frozen=True)
class JointState:
    """HAL -> control, every control tick: what the joint encoders and finger sensors read."""

    t: float
    q: dict[str, np.ndarray]  # arm -> joint positions (rad)
    qd: dict[str, np.ndarray]  # arm -> joint velocities (rad/s)
    finger: dict[str, float]  # arm -> travel of each finger from closed (m)


@dataclass(frozen=True)
class Observation:
    """HAL -> perception: the DESIGN.md observation dict, stamped with the time it shows."""

    t: float
    data: dict[str, Any]  # observation.images.<cam>, observation.state, task, embodiment


@dataclass(frozen=True)
class SceneUpdate:
    """Perception -> reasoning: the scene graph, and whether the running step's predicate holds."""

    t: float
    graph: SceneGraph | None  # None when only the step predicate was asked for
    step_done: bool


@dataclass(frozen=True)
class SkillCommand:
    """Reasoning -> perception/planning: run this meta-skill now (one plan step)."""

    step_id: int  # unique per execution; chunks for older ids are dropped by control
    skill: str
    args: tuple[str, ...]
    instruction: str  # the text the cerebellum is conditioned on
    arm: str
    timeout_s: float
    attempt: int = 1  # 2, 3...: this very step just failed and is tried again


@dataclass(frozen=True)
class ActionChunk:
    """Perception/planning -> control: H actions, action i meant for time t0 + i * dt."""

    actions: np.ndarray  # float32 [H, D] in `space`
    t0: float  # the time of the observation it was computed from (= time of actions[0])
    dt: float  # seconds between actions (1 / the policy's control rate)
    space: str  # ee_delta | joint_pos
    embodiment: str
    step_id: int
    seq: int  # per-step request counter
    t_ready: float = 0.0  # when inference finished (latency = t_ready - t0)

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    def time_of(self, i: int) -> float:
        return self.t0 + i * self.dt


@dataclass(frozen=True)
class JointCommand:
    """Control -> HAL, every control tick, after the safety filter: joint setpoints (tracked
    by the drive's own PD servo) and gripper closing fractions."""

    t: float
    q: dict[str, np.ndarray]
    grip: dict[str, float]  # 0 open .. 1 closed
    holding: bool = False  # the watchdog or the emergency stop is holding position


@dataclass(frozen=True)
class Intervention:
    """Safety filter / watchdog / emergency stop -> log: one thing that was clipped or refused."""

    t: float
    kind: str  # see safety.KINDS
    arm: str
    detail: str
    value: float = float("nan")  # the offending magnitude
    limit: float = float("nan")


class ControlSignal(Enum):
    """Out-of-band commands to the control layer (never mixed into the action stream)."""

    ESTOP = "estop"
    RESET_ESTOP = "reset_estop"


@dataclass
class StepRecord:
    """What running one plan step through the stack produced (for the monitor and reports)."""

    step_id: int
    skill: str
    args: tuple[str, ...]
    instruction: str
    success: bool
    reason: str  # success | timeout | estop
    t_start: float
    t_end: float
    chunks: int = 0
    skipped_actions: int = 0  # actions whose time had passed when their chunk arrived
    latency_ms: list[float] = field(default_factory=list)
    interventions: dict[str, int] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.t_end - self.t_start

    def to_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms) if self.latency_ms else None
        return {"step_id": self.step_id, "skill": self.skill, "args": list(self.args),
                "instruction": self.instruction, "success": self.success, "reason": self.reason,
                "t_start": round(self.t_start, 4), "t_end": round(self.t_end, 4),
                "duration_s": round(self.duration_s, 3), "chunks": self.chunks,
                "skipped_actions": self.skipped_actions,
                "inference_latency_ms_p50": None if lat is None else round(float(np.median(lat)), 2),
                "interventions": dict(self.interventions)}
