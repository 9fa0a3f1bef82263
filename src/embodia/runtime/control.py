"""The control layer (100-1000 Hz): chunk execution, interpolation, safety filter, watchdog.

Each tick: when a new action slot (the policy's period) starts, take the action the chunk
buffer holds for it, once, and map it to joint targets (IK for end-effector deltas); move the setpoint from where it was toward
the target over `interpolation` of the action period (a 10 Hz policy would otherwise ask
the drive for a step every 100 ms); pass it through the safety filter; hand the result to
the HAL, whose position servo (kp, kv: the joint PD) tracks it. With no fresh chunk for the
watchdog deadline (no chunk arrived and no slot had an action: the stream ran dry), or under
an emergency stop, it holds the measured position instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from embodia.body.embodiment import Embodiment
from embodia.runtime.chunking import BlendConfig, ChunkBuffer
from embodia.runtime.kinematics import ActionMapper, ArmKinematics
from embodia.runtime.messages import (
    ActionChunk,
    ControlSignal,
    Intervention,
    JointCommand,
    JointState,
)
from embodia.runtime.safety import ArmLimits, SafetyFilter
from embodia.runtime.watchdog import EmergencyStop, Watchdog


@dataclass(frozen=True)
class ControlConfig:
    rate_hz: float = 500.0
    interpolation: float = 1.0  # fraction of an action period the setpoint takes to reach a target
    watchdog_s: float = 0.5  # hold after this long without a fresh action
    blend: BlendConfig = field(default_factory=BlendConfig)
    log_hz: float = 50.0  # trajectory samples kept for reports

    def __post_init__(self) -> None:
        if not 100.0 <= self.rate_hz <= 1000.0:
            raise ValueError(f"the control layer runs at 100-1000 Hz, got {self.rate_hz}")
        if not 0.0 <= self.interpolation <= 1.0:
            raise ValueError(f"interpolation must be a fraction in [0, 1], got {self.interpolation}")


@dataclass
class TrajectoryLog:
    """Decimated samples: time, measured joints, safe setpoints, gripper command (all arms
    concatenated in arm order), and whether the layer was holding."""

    t: list[float] = field(default_factory=list)
    q: list[np.ndarray] = field(default_factory=list)
    setpoint: list[np.ndarray] = field(default_factory=list)
    grip: list[np.ndarray] = field(default_factory=list)
    holding: list[bool] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        def st(x: list) -> np.ndarray:
            return np.asarray(x) if x else np.zeros((0,))
        return {"t": st(self.t), "q": st(self.q), "setpoint": st(self.setpoint),
                "grip": st(self.grip), "holding": st(self.holding)}

    def extend(self, other: dict[str, np.ndarray]) -> None:
        self.t += list(other["t"])
        self.q += list(other["q"])
        self.setpoint += list(other["setpoint"])
        self.grip += list(other["grip"])
        self.holding += [bool(h) for h in other["holding"]]

    def clear(self) -> None:
        for v in (self.t, self.q, self.setpoint, self.grip, self.holding):
            v.clear()


class ControlLayer:
    def __init__(self, embodiment: Embodiment, space: str, kin: dict[str, ArmKinematics],
                 limits: dict[str, ArmLimits], cfg: ControlConfig) -> None:
        self.cfg, self.embodiment, self.space = cfg, embodiment, space
        self.dt = 1.0 / cfg.rate_hz
        self.arms = tuple(kin)
        self.mapper = ActionMapper(embodiment, space, kin)
        self.filter = SafetyFilter(limits, kin, self.dt)
        self.buffer = ChunkBuffer(cfg.blend)
        self.watchdog = Watchdog(cfg.watchdog_s)
        self.estop = EmergencyStop()
        self.step_id = -1
        self.log = TrajectoryLog()
        self.interventions: deque[Intervention] = deque(maxlen=2000)
        self.chunks_accepted = 0
        self.skipped_actions = 0
        self.latency_s: list[float] = []
        self.origin, self.dt_action = 0.0, 0.1
        self._slot = -1  # the last slot whose action was run
        self._seg_from: dict[str, np.ndarray] = {}
        self._target: dict[str, np.ndarray] = {}
        self._grip_target: dict[str, float] = {}
        self._seg_t0, self._seg_len = 0.0, 0.0
        self._holding = False
        self._next_log = -np.inf

    # ---------------------------------------------------------------- lifecycle
    def init(self, js: JointState, grip: dict[str, float]) -> None:
        """Start holding where the arms are, with the gripper as it is commanded now."""
        self.filter.reset(js.q, grip)
        self._target = {a: self.filter.q[a].copy() for a in self.arms}
        self._seg_from = dict(self._target)
        self._grip_target = dict(self.filter.grip)
        self.mapper.reset(js.q)

    def warm_up(self, js: JointState, reps: int = 3) -> None:
        """Run the tick's heavy path (FK, and IK that must iterate: a target 1 cm off) before
        real time starts, changing nothing. Why: the first LAPACK solve in a process allocates
        OpenBLAS's buffers, and under mlockall(MCL_FUTURE) those pages are filled at once: one
        11-20 ms tick at the first action that needed IK (measured at 1 kHz, 2026-11-27)."""
        for arm, kin in self.mapper.kin.items():
            pos, quat = kin.fk(js.q[arm])
            for _ in range(reps):
                kin.ik(pos + np.array([0.01, 0.0, 0.0]), quat, np.asarray(js.q[arm], float))

    def start_step(self, step_id: int, origin: float, dt_action: float, js: JointState) -> None:
        """A new plan step: forget old chunks, re-anchor, start the action slots at `origin`
        (slot k starts at origin + k * dt_action), give the first chunk a deadline."""
        if dt_action <= 0:
            raise ValueError(f"dt_action must be positive, got {dt_action}")
        self.step_id, self.origin, self.dt_action = step_id, origin, dt_action
        self.buffer.clear()
        self._slot = -1
        self.watchdog.arm(origin)
        self.mapper.reset(js.q)
        self.chunks_accepted, self.skipped_actions, self.latency_s = 0, 0, []

    def signal(self, sig: ControlSignal, t: float, reason: str = "") -> None:
        if sig is ControlSignal.ESTOP:
            self.estop.trigger(reason or "emergency stop", t)
            self._note(Intervention(t, "estop", "*", self.estop.reason))
        elif sig is ControlSignal.RESET_ESTOP:
            self.estop.reset()
            self.buffer.clear()  # nothing queued before the stop may run after it
            self.watchdog.arm(t)

    def _note(self, iv: Intervention) -> None:
        self.filter.counts[iv.kind] = self.filter.counts.get(iv.kind, 0) + 1
        self.interventions.append(iv)

    # ---------------------------------------------------------------- input
    def receive(self, chunk: ActionChunk, t: float) -> bool:
        """Accept a chunk for the running step; stale, foreign or non-finite ones are refused."""
        if chunk.step_id != self.step_id or self.estop.latched:
            return False
        a = np.asarray(chunk.actions)
        bad = ""
        if chunk.embodiment != self.embodiment.name:
            bad = f"chunk for embodiment {chunk.embodiment!r}"
        elif chunk.space != self.space:
            bad = f"chunk in action space {chunk.space!r}, control runs {self.space!r}"
        elif a.ndim != 2 or a.shape[1] != self.mapper.layout.dim or a.shape[0] < 1:
            bad = f"chunk of shape {a.shape}, need [H, {self.mapper.layout.dim}]"
        elif not np.all(np.isfinite(a)):
            bad = "chunk has NaN or inf actions"
        if bad:
            self._note(Intervention(t, "chunk_rejected", "*", bad))
            return False
        first = self.buffer.add(chunk, t)
        in_progress = self.slot_of(t)
        ran = self._slot >= in_progress and self.slot_of(chunk.time_of(first)) == in_progress
        self.skipped_actions += first + int(ran and first < chunk.horizon)
        self.chunks_accepted += 1
        self.latency_s.append(max(0.0, t - chunk.t0))
        self.watchdog.feed(t)
        return True

    # ---------------------------------------------------------------- tick
    def _hold(self, t: float, js: JointState) -> None:
        if not self._holding:
            self._holding = True
            self._target = {a: np.asarray(js.q[a], float).copy() for a in self.arms}
            self._seg_from, self._seg_t0, self._seg_len = dict(self._target), t, 0.0

    def slot_of(self, t: float) -> int:
        return int(np.floor((t - self.origin) / self.dt_action + 1e-6))

    def _next_action(self, t: float, js: JointState) -> None:
        slot = self.slot_of(t)
        if slot <= self._slot or slot < 0:
            return  # this slot's action already ran (or the step has not begun)
        action = self.buffer.action_at(self.origin + slot * self.dt_action)
        if action is None:
            return  # nothing for this slot yet: keep tracking the last target
        self._slot = slot
        self.watchdog.feed(t)  # a fresh action: the stream is alive
        try:
            target, grip = self.mapper.map(action, js.q, self._target)
        except ValueError as e:  # a chunk that passed `receive` cannot fail here; be safe anyway
            self._note(Intervention(t, "chunk_rejected", "*", str(e)))
            return
        self._seg_from = {a: self.filter.q[a].copy() for a in self.arms}
        self._target, self._grip_target = target, grip
        self._seg_t0 = t
        self._seg_len = self.cfg.interpolation * self.dt_action

    def tick(self, t: float, js: JointState) -> JointCommand:
        if self.estop.latched:
            self._hold(t, js)
        elif self.watchdog.expired(t):
            if not self._holding:
                self._note(Intervention(t, "watchdog_hold", "*",
                                        f"no fresh action for {self.cfg.watchdog_s:.2f} s; holding"))
            self._hold(t, js)
        else:
            if self._holding:
                self._holding = False
                self.mapper.reset(js.q)
                self._target = {a: self.filter.q[a].copy() for a in self.arms}
            self._next_action(t, js)
        if self._seg_len <= 0:
            setpoint = self._target
        else:
            f = min(1.0, max(0.0, (t - self._seg_t0) / self._seg_len))
            setpoint = {a: self._seg_from[a] + f * (self._target[a] - self._seg_from[a]) for a in self.arms}
        q, grip, notes = self.filter.filter(t, setpoint, self._grip_target, js.finger)
        self.interventions.extend(notes)
        if t >= self._next_log:
            self._next_log = t + 1.0 / self.cfg.log_hz
            self.log.t.append(t)
            self.log.q.append(np.concatenate([js.q[a] for a in self.arms]))
            self.log.setpoint.append(np.concatenate([q[a] for a in self.arms]))
            self.log.grip.append(np.array([grip[a] for a in self.arms]))
            self.log.holding.append(self._holding)
        return JointCommand(t, q, grip, self._holding)

    @property
    def last_slot(self) -> int:
        """Index of the last action slot that ran (-1: none yet in this step)."""
        return self._slot

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.filter.counts)
