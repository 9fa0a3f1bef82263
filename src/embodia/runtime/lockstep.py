"""The lockstep runtime: all four layers on one simulated clock, deterministically.

One control tick is the base unit. In tick k (time t): reasoning checks the running step
every 1 / reasoning_hz; perception runs at each action-slot start; a chunk whose simulated
latency has elapsed is handed to control; control reads the joints, computes the safe
command and sends it to the HAL; then physics advances to the next tick. Nothing depends on
wall time, so a seed fixes the whole run (what evaluation needs). Each layer's wall-clock
work per tick is recorded against its period: a `deadline miss` here means that layer's
work would not fit its period if the same code ran in real time on this machine.
"""

from __future__ import annotations

import time

import numpy as np

from embodia.runtime.async_inference import SimulatedInference
from embodia.runtime.body import SimBody
from embodia.runtime.clock import SimClock
from embodia.runtime.control import ControlLayer
from embodia.runtime.layers import RuntimeConfig, declare_layers
from embodia.runtime.messages import ControlSignal, SkillCommand, StepRecord
from embodia.runtime.perception import PerceptionLayer
from embodia.runtime.policies import ChunkPolicy
from embodia.runtime.timing import LoopStats


def ticks_per(period_s: float, tick_s: float, what: str) -> int:
    n = round(period_s / tick_s)
    if n < 1 or abs(n * tick_s - period_s) > 1e-9 * max(1.0, period_s) + 1e-12:
        raise ValueError(f"{what} period {period_s:g} s is not a whole number of control ticks ({tick_s:g} s)")
    return n


def count_diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


class LockstepRuntime:
    mode = "lockstep"

    def __init__(self, body: SimBody, policy: ChunkPolicy, cfg: RuntimeConfig | None = None,
                 record_video: bool = False) -> None:
        self.cfg = cfg = cfg or RuntimeConfig()
        if policy.embodiment != body.embodiment.name:
            raise ValueError(f"policy drives {policy.embodiment!r}, the body is {body.embodiment.name!r}")
        self.body, self.policy = body, policy
        self.clock = SimClock(body.time)
        self.control = ControlLayer(body.embodiment, policy.space, body.kinematics(),
                                    body.limits(cfg.safety), cfg.control)
        self.inference = SimulatedInference(policy, cfg.sim_latency_s)
        self.perception = PerceptionLayer(body, policy, self.inference, cfg.control.blend, cfg.rtc,
                                          cfg.sim_latency_s)
        self.layers = declare_layers(cfg, 1.0 / policy.dt, cfg.control.rate_hz)
        self.stats = {s.name: LoopStats(s.name, s.rate_hz) for s in self.layers}
        self.tick_s = 1.0 / cfg.control.rate_hz
        self.slot_ticks = ticks_per(policy.dt, self.tick_s, "the policy's action")
        self.reason_ticks = ticks_per(1.0 / cfg.reasoning_hz, self.tick_s, "the reasoning")
        self.record_video = record_video
        self.frames: list[np.ndarray] = []
        self._next_frame = -np.inf
        self._step_id = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, seed: int) -> None:
        self.policy.start_episode(seed)
        self.control.init(self.body.read_joints(), self.body.commanded_grip())
        self._frame(self.clock.now())

    def close(self) -> None:
        self.inference.close()

    def emergency_stop(self, reason: str = "operator") -> None:
        self.control.signal(ControlSignal.ESTOP, self.clock.now(), reason)

    def reset_emergency_stop(self) -> None:
        self.control.signal(ControlSignal.RESET_ESTOP, self.clock.now())

    def _frame(self, t: float) -> None:
        if self.record_video and t >= self._next_frame - 1e-9:
            self.frames.append(self.body.render())
            self._next_frame = t + 1.0 / self.cfg.video_hz

    def _timed(self, layer: str, t: float, w0: float) -> None:
        self.stats[layer].record(t, t, t + time.perf_counter() - w0)

    # ------------------------------------------------------------------ one step
    def run_step(self, skill: str, args: tuple[str, ...], instruction: str, arm: str,
                 timeout_s: float, attempt: int = 1) -> StepRecord:
        self._step_id += 1
        cmd = SkillCommand(self._step_id, skill, tuple(args), instruction, arm, timeout_s, attempt)
        origin = self.clock.now()
        self.control.start_step(cmd.step_id, origin, self.policy.dt, self.body.read_joints())
        self.perception.start_step(cmd, origin)
        self.inference.cancel()
        counts0 = self.control.counts
        k, reason = 0, "timeout"
        while True:
            t = origin + k * self.tick_s
            self.clock.t = t
            if k and k % self.reason_ticks == 0:
                w0 = time.perf_counter()
                update = self.perception.scene(t, graph=False)
                self._timed("reasoning", t, w0)
                if update.step_done:
                    reason = "success"
                    break
                if self.control.estop.latched:
                    reason = "estop"
                    break
                if t - origin >= timeout_s - 1e-9:
                    break
            if k % self.slot_ticks == 0:
                w0 = time.perf_counter()
                self.perception.tick(t, t)
                self._timed("perception", t, w0)
            chunk = self.inference.poll(t)
            w0 = time.perf_counter()
            if chunk is not None and self.control.receive(chunk, t):
                self.perception.delivered(chunk, t)
            js = self.body.read_joints()
            command = self.control.tick(t, js)
            self._timed("control", t, w0)
            w0 = time.perf_counter()
            self.body.command(command)
            k += 1
            self.body.advance_to(origin + k * self.tick_s)
            self._timed("hal", t, w0)
            self._frame(t)
        self.clock.t = origin + k * self.tick_s
        c = self.control
        return StepRecord(cmd.step_id, skill, tuple(args), instruction, reason == "success", reason,
                          origin, self.clock.t, c.chunks_accepted, c.skipped_actions,
                          [x * 1e3 for x in c.latency_s], count_diff(c.counts, counts0))

    def scene_graph(self):
        return self.body.scene_graph()

    def summaries(self) -> dict[str, dict]:
        return {n: s.summary().to_dict() for n, s in self.stats.items()}
