"""Executors the monitor tests drive: one on symbolic states, one on the MuJoCo simulator
with the body's scripted experts. Each takes `inject(index, step, world)` to cause failures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from embodia.body.env import TabletopEnv
from embodia.body.experts import ScriptedExpert
from embodia.body.scene_graph import SceneGraph
from embodia.brain import effects as E
from embodia.brain.plan import PlanStep
from embodia.brain.state import State


class StateExecutor:
    """Steps succeed exactly as `effects.apply` says, unless `inject` changes the world."""

    def __init__(self, state: State, inject: Callable[[int, PlanStep, State], State] | None = None):
        self.state, self.inject, self.count, self.log = state, inject, 0, []

    def execute(self, step: PlanStep) -> SceneGraph:
        self.log.append(f"{step.skill}({', '.join(step.args)})")
        with contextlib.suppress(E.StepError):  # a real robot would just fail to do it
            self.state = E.apply(self.state, step.skill, step.args, step.arm or "main")
        if self.inject is not None:
            self.state = self.inject(self.count, step, self.state)
        self.count += 1
        return self.state.to_scene_graph()

    def observe(self) -> SceneGraph:
        return self.state.to_scene_graph()


class SimExecutor:
    """Runs each step with the scripted expert in TabletopEnv (continuing the episode)."""

    def __init__(self, env: TabletopEnv, seed: int,
                 inject: Callable[[int, PlanStep, TabletopEnv], None] | None = None):
        self.env, self.inject, self.count, self.log = env, inject, 0, []
        self.rng = np.random.default_rng(seed)

    def execute(self, step: PlanStep) -> SceneGraph:
        env = self.env
        env.reset(options={"continue": True, "skill": step.skill, "args": step.args, "arm": step.arm})
        expert = ScriptedExpert(env.sim, step.skill, step.args, step.arm, self.rng)
        while True:
            _, _, term, trunc, _ = env.step(expert.act())
            if term or trunc:
                break
        self.log.append(f"{step.skill}({', '.join(step.args)})")
        if self.inject is not None:
            self.inject(self.count, step, env)
        self.count += 1
        return env.scene_graph()

    def observe(self) -> SceneGraph:
        return self.env.scene_graph()
