"""`EmbodiedAgent(brain, cerebellum, body)`: one sentence in, a long-horizon task done.

The brain plans on the body's scene graph; the execution monitor runs the plan step by step
through the runtime (each step: the cerebellum conditioned on the step's instruction, until
the step's predicate holds or its time budget runs out), checks each step's effects against
the scene graph that follows, retries or replans, and says why at every turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embodia.body import skills as S
from embodia.body.env import TabletopEnv
from embodia.body.scene_graph import SceneGraph
from embodia.brain.monitor import Monitor, MonitorReport
from embodia.brain.plan import Plan, PlanStep
from embodia.brain.planner import Planner
from embodia.brain.refusal import Refusal
from embodia.brain.state import State
from embodia.runtime.body import SimBody
from embodia.runtime.layers import LayerSpec, RuntimeConfig
from embodia.runtime.lockstep import LockstepRuntime
from embodia.runtime.messages import Intervention, StepRecord
from embodia.runtime.policies import (
    RETREAT_CLEARANCE,
    ChunkPolicy,
    ExpertChunkPolicy,
    LearnedChunkPolicy,
)


def step_outcome(reason: str, effects_ok: bool | None) -> str:
    """One word or two for a step, as the monitor judges it: its effects in the scene decide,
    the runtime's stop reason (success | timeout | estop) only says how the step ended. A
    step whose effects held when its time ran out counts as done, and must not read "timeout"."""
    if effects_ok is None:  # no verdict (the run stopped before the monitor saw the step)
        return reason
    if effects_ok:
        return "success" if reason == "success" else f"effects held ({reason})"
    return "failed (effects not seen)" if reason == "success" else f"failed ({reason})"


def verdict(success: bool, fallback_from: str | None) -> str:
    """SUCCESS / FAILED, and whether the policy asked for ran at all: a run on the scripted
    experts after a checkpoint failed to load must not read like a run of that checkpoint."""
    word = "SUCCESS" if success else "FAILED"
    return f"{word} (scripted expert fallback, not {fallback_from})" if fallback_from else word


class Runtime(Protocol):
    mode: str
    layers: list[LayerSpec]
    frames: list[np.ndarray]
    stats: dict[str, Any]

    def start(self, seed: int) -> None: ...

    def run_step(self, skill: str, args: tuple[str, ...], instruction: str, arm: str,
                 timeout_s: float, attempt: int = 1) -> StepRecord: ...

    def scene_graph(self) -> SceneGraph: ...

    def summaries(self) -> dict[str, dict]: ...

    def close(self) -> None: ...


@dataclass
class AgentReport:
    instruction: str
    seed: int
    embodiment: str
    policy: str
    mode: str  # lockstep | realtime
    success: bool = False
    plan: Plan | None = None
    refusal: dict | None = None
    monitor: MonitorReport | None = None
    steps: list[StepRecord] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    timing: dict[str, dict] = field(default_factory=dict)
    timing_samples: dict[str, np.ndarray] = field(default_factory=dict)  # per layer [n, 3]
    interventions: dict[str, int] = field(default_factory=dict)
    intervention_samples: list[Intervention] = field(default_factory=list)
    trajectory: dict[str, np.ndarray] = field(default_factory=dict)
    joint_names: list[str] = field(default_factory=list)
    scene_before: str = ""
    scene_after: str = ""
    sim_s: float = 0.0
    wall_s: float = 0.0
    notices: list[str] = field(default_factory=list)
    video: str | None = None
    report: str | None = None
    fallback_from: str | None = None  # the checkpoint asked for, when the experts ran instead

    @property
    def verdict(self) -> str:
        return verdict(self.success, self.fallback_from)

    @property
    def retries(self) -> int:
        return self.monitor.retries if self.monitor else 0

    @property
    def replans(self) -> int:
        return self.monitor.replans if self.monitor else 0

    def step_rows(self) -> list[dict[str, Any]]:
        """Each executed step with the monitor's verdict on it."""
        outcomes = self.monitor.outcomes if self.monitor else []
        rows = []
        for i, rec in enumerate(self.steps):
            row = rec.to_dict()
            if i < len(outcomes):
                o = outcomes[i]
                row |= {"attempt": o.attempt, "effects_ok": o.ok, "failed_effects": o.failed,
                        "broken_goals": o.broken, "next": o.action, "why": o.reason}
            row["outcome"] = step_outcome(rec.reason, row.get("effects_ok"))
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction, "seed": self.seed, "embodiment": self.embodiment,
            "policy": self.policy, "mode": self.mode, "success": self.success,
            "verdict": self.verdict, "fallback_from": self.fallback_from,
            "plan": self.plan.to_dict() if self.plan else None, "refusal": self.refusal,
            "steps": self.step_rows(), "retries": self.retries, "replans": self.replans,
            "message": self.monitor.message if self.monitor else (self.refusal or {}).get("message", ""),
            "scene_before": self.scene_before, "scene_after": self.scene_after,
            "sim_s": round(self.sim_s, 3), "wall_s": round(self.wall_s, 3),
            "layers": self.layers, "timing": self.timing, "interventions": self.interventions,
            "notices": self.notices, "video": self.video, "report": self.report,
        }


class StackExecutor:
    """The brain's `Executor` over a runtime: one plan step = one skill run through the stack.

    `progress` gets a line as each step starts and ends (a learned step runs for many seconds
    of wall time; without it `embodia run` is silent for minutes). `plan` (the first plan)
    numbers the steps "2/3"; a step of a later plan reads "replanned"."""

    def __init__(self, runtime: Runtime, default_arm: str, control_rate_hz: float,
                 progress: Callable[[str], None] | None = None, plan: Plan | None = None,
                 arms: tuple[str, ...] | None = None) -> None:
        self.runtime, self.default_arm, self.rate = runtime, default_arm, control_rate_hz
        self.records: list[StepRecord] = []
        self.progress, self.plan_steps = progress, list(plan.steps) if plan else []
        self.arms = arms or (default_arm,)

    def _label(self, step: PlanStep, attempt: int) -> str:
        name = f"{step.skill}({', '.join(step.args)})"
        where = next((f"step {i}/{len(self.plan_steps)}" for i, s in enumerate(self.plan_steps, 1)
                      if s is step), "replanned step")
        return f"{where} {name}" + (f", attempt {attempt}" if attempt > 1 else "")

    def execute(self, step: PlanStep) -> SceneGraph:
        budget = S.get_skill(step.skill).max_steps / self.rate
        attempt = 1  # the same step right after its own failure (a retry, or a replan's first step)
        for r in reversed(self.records):
            if r.success or (r.skill, tuple(r.args)) != (step.skill, tuple(step.args)):
                break
            attempt += 1
        label = self._label(step, attempt) if self.progress else ""
        if self.progress:
            self.progress(f"{label}: running...")
        rec = self.runtime.run_step(step.skill, tuple(step.args), step.instruction,
                                    step.arm or self.default_arm, budget, attempt)
        self.records.append(rec)
        graph = self.runtime.scene_graph()
        if self.progress:  # the step's own effects, as the monitor checks them next
            state = State.from_scene_graph(graph, self.arms)
            ok = all(state.holds(e) for e in step.effect_literals)
            self.progress(f"{label}: {step_outcome(rec.reason, ok)} after {rec.duration_s:.1f} s, "
                          f"{rec.chunks} chunks")
        return graph

    def observe(self) -> SceneGraph:
        return self.runtime.scene_graph()


class EmbodiedAgent:
    """Brain + cerebellum + body, on the lockstep clock (default) or in real time."""

    def __init__(self, brain: Planner, cerebellum: ChunkPolicy, body: SimBody,
                 config: RuntimeConfig | None = None, realtime: bool = False,
                 record_video: bool = False, max_retries: int = 1, max_replans: int = 2,
                 progress: Callable[[str], None] | None = None) -> None:
        self.brain, self.cerebellum, self.body = brain, cerebellum, body
        self.progress = progress  # a line per step start and end (see StackExecutor)
        self.config = config or RuntimeConfig()
        self.realtime, self.record_video = realtime, record_video
        self.max_retries, self.max_replans = max_retries, max_replans

    def _runtime(self) -> Runtime:
        if self.realtime:
            from embodia.runtime.realtime import RealtimeRuntime

            return RealtimeRuntime(self.body, self.cerebellum, self.config, self.record_video)
        return LockstepRuntime(self.body, self.cerebellum, self.config, self.record_video)

    def run(self, instruction: str, seed: int) -> tuple[AgentReport, list[np.ndarray]]:
        """Plan, execute with monitoring, report. Returns the report and the video frames."""
        emb = self.body.embodiment
        rep = AgentReport(instruction, seed, emb.name, self.cerebellum.name,
                          "realtime" if self.realtime else "lockstep")
        rep.joint_names = [f"{a.name}.{j}" for a in emb.arms for j in a.joints]
        graph = self.body.scene_graph()
        rep.scene_before = graph.summary()
        w0, t0 = time.perf_counter(), self.body.time
        try:
            rep.plan = self.brain.plan(instruction, graph)
        except Refusal as r:
            rep.refusal = r.to_dict()
            rep.wall_s = time.perf_counter() - w0
            rep.scene_after = rep.scene_before
            return rep, []
        runtime = self._runtime()
        rep.layers = [s.to_dict() for s in runtime.layers]
        executor = StackExecutor(runtime, emb.arms[0].name, emb.control_rate_hz, self.progress,
                                 rep.plan, emb.arm_names)
        try:
            runtime.start(seed)
            monitor = Monitor(self.brain, executor, emb.arm_names, self.max_retries, self.max_replans)
            rep.monitor = monitor.run(rep.plan)
            rep.success = rep.monitor.success
            rep.scene_after = runtime.scene_graph().summary()
        finally:
            runtime.close()
        rep.steps = executor.records
        rep.timing = runtime.summaries()
        rep.timing_samples = {n: _decimate(s.samples(), 20_000) for n, s in runtime.stats.items()}
        control = getattr(runtime, "control_report", None) or _control_report(runtime)
        rep.interventions = control["counts"]
        rep.intervention_samples = control["samples"]
        rep.trajectory = control["trajectory"]
        rep.sim_s = self.body.time - t0
        rep.wall_s = time.perf_counter() - w0
        return rep, list(runtime.frames)


def _decimate(rows: np.ndarray, n: int) -> np.ndarray:
    return rows if len(rows) <= n else rows[:: int(np.ceil(len(rows) / n))]


def _control_report(runtime: Any) -> dict[str, Any]:
    c = runtime.control
    return {"counts": c.counts, "samples": list(c.interventions)[:200], "trajectory": c.log.arrays()}


# ------------------------------------------------------------------------ builders
def make_body(embodiment: str = "arm7", seed: int = 0, start: str = "pick",
              cameras: tuple[str, ...] = (), image_size: int = 96,
              render_size: int = 256) -> SimBody:
    """A seeded tabletop scene: the start state of skill `start` (as `embodia scene`)."""
    env = TabletopEnv(embodiment=embodiment, skill=start, cameras=cameras, image_size=image_size,
                      render_size=render_size)
    env.reset(seed=seed)
    return SimBody.from_env(env)


def make_cerebellum(policy: str, embodiment: str = "arm7", rtc: bool = True,
                    execute: int | None = None, fallback_expert: bool = False, retreat: bool = True
                    ) -> tuple[ChunkPolicy, list[str]]:
    """'expert' or a checkpoint folder. With `fallback_expert`, a checkpoint that cannot be
    loaded gives the scripted experts and a notice saying so (never silently). `retreat`: a
    retried step first lifts the hand clear (`policies.retreat_chunk`)."""
    from embodia.body.embodiments import get_embodiment

    rate = get_embodiment(embodiment).control_rate_hz
    if policy == "expert":
        return ExpertChunkPolicy(embodiment, rate), []
    from embodia.cerebellum.checkpoint import load_checkpoint

    try:
        learned = load_checkpoint(policy, embodiment=embodiment)
    except (FileNotFoundError, ValueError) as e:
        if not fallback_expert:
            raise
        return ExpertChunkPolicy(embodiment, rate), [
            f"could not load the policy checkpoint {policy}: {e}; running the scripted experts instead"]
    return LearnedChunkPolicy(learned, rtc=rtc, execute=execute, retreat_clearance=RETREAT_CLEARANCE if retreat else None), []


def run_instruction(instruction: str, seed: int, brain: Planner, cerebellum: ChunkPolicy,
                    embodiment: str = "arm7", start: str = "pick", config: RuntimeConfig | None = None,
                    realtime: bool = False, video: str | Path | None = None,
                    report: str | Path | None = None, notices: list[str] | None = None,
                    fallback_from: str | None = None,
                    progress: Callable[[str], None] | None = None) -> AgentReport:
    """What `embodia run` does: build the seeded scene, run the agent, write video and report.

    `fallback_from`: the checkpoint that was asked for when `cerebellum` is the scripted
    experts standing in for it (the verdict says so); `progress`: a line per step."""
    body = make_body(embodiment, seed, start, cameras=tuple(cerebellum.cameras),
                     image_size=cerebellum.image_size)
    try:
        agent = EmbodiedAgent(brain, cerebellum, body, config, realtime, record_video=video is not None,
                              progress=progress)
        rep, frames = agent.run(instruction, seed)
    finally:
        if body.env is not None:
            body.env.close()
    rep.notices = list(notices or [])
    rep.fallback_from = fallback_from
    if video is not None and frames:
        from embodia.data.video import encode_mp4

        encode_mp4(video, frames, (config or RuntimeConfig()).video_hz)
        rep.video = str(video)
    if report is not None:
        from embodia.runtime.report import write_report

        rep.report = str(report)
        write_report(report, rep.to_dict(), rep.trajectory, rep.joint_names, rep.timing_samples,
                     rep.intervention_samples)
    return rep
