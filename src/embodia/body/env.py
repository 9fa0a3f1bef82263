"""`TabletopEnv`: the gymnasium environment over the simulated tabletop world.

Observations follow the DESIGN.md contract (LeRobot key names): `observation.images.<camera>`
uint8 HxWx3, `observation.state` float32, `task` (the current meta-skill instruction) and
`embodiment`. One env runs either a single `skill` or a multi-step `task`; an episode of one
skill can continue from where another left off (`reset(options={"continue": True, ...})`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from embodia.body import skills as S
from embodia.body.controllers import ArmController
from embodia.body.embodiments import get_embodiment
from embodia.body.mujoco_drivers import MujocoCamera
from embodia.body.rendering import SceneRenderer
from embodia.body.scene_graph import SceneGraph, build_scene_graph
from embodia.body.sim import Simulation
from embodia.body.start_states import sample_start
from embodia.body.tasks import bind, get_task, task_placeholders

SETTLE_STEPS = 10  # control steps a finished plan gets for its goals to come to rest
TEXT_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.'-_"


def _size(v: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(v, int):
        v = (v, v)
    h, w = int(v[0]), int(v[1])
    if not (8 <= h <= 1024 and 8 <= w <= 1024):
        raise ValueError(f"image_size must be between 8 and 1024 pixels, got {v}")
    return h, w


class TabletopEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, embodiment: str = "arm7", skill: str | None = None, task: str | None = None,
                 arm: str | None = None, cameras: tuple[str, ...] | list[str] | None = None,
                 image_size: int | tuple[int, int] = 96, action_space: str = "ee_delta",
                 max_steps: int | None = None, instruction_split: str = "train",
                 render_mode: str | None = "rgb_array", render_size: int | tuple[int, int] = 256,
                 seed: int | None = None) -> None:
        spec = get_embodiment(embodiment)
        if skill is not None and task is not None:
            raise ValueError("give either `skill` or `task`, not both")
        if skill is None and task is None:
            skill = "pick"
        if skill is not None:
            S.get_skill(skill)
        self.task_spec = get_task(task) if task is not None else None
        self.skill = skill
        self.arm = spec.arm(arm).name
        if instruction_split not in ("train", "heldout", "all"):
            raise ValueError(f"instruction_split must be train, heldout or all, got {instruction_split!r}")
        self.instruction_split = instruction_split
        known = [c.name for c in spec.cameras]
        cams = tuple(known if cameras is None else cameras)
        unknown = [c for c in cams if c not in known]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown} for {embodiment!r}; cameras: {known}")
        self.image_size = _size(image_size)
        self.render_size = _size(render_size)
        self.render_mode = render_mode
        self.max_steps_override = max_steps
        self.sim = Simulation(spec)
        self.embodiment = self.sim.embodiment
        self.controller = ArmController(self.sim, action_space)
        self.renderer = SceneRenderer(self.sim.model)
        self.cameras = {c: MujocoCamera(self.sim, self.renderer, c, *self.image_size) for c in cams}
        layout = self.controller.layout
        self.action_space = spaces.Box(layout.low, layout.high, dtype=np.float32)
        obs_spaces: dict[str, spaces.Space] = {
            f"observation.images.{c}": spaces.Box(0, 255, (*self.image_size, 3), np.uint8) for c in cams
        }
        obs_spaces["observation.state"] = spaces.Box(-np.inf, np.inf, (self.embodiment.state_dim,), np.float32)
        n_env = len(self.sim.environment_state_names())
        obs_spaces["observation.environment_state"] = spaces.Box(-np.inf, np.inf, (n_env,), np.float32)
        obs_spaces["task"] = spaces.Text(256, charset=TEXT_CHARSET)
        obs_spaces["embodiment"] = spaces.Text(64, charset=TEXT_CHARSET)
        self.observation_space = spaces.Dict(obs_spaces)
        self.plan: list[tuple[str, tuple[str, ...]]] = []
        self.instructions: list[str] = []
        self.step_index = 0
        self.elapsed = 0
        self.max_steps = 0
        self._rng = np.random.default_rng(seed)
        self._goal: tuple[int, ...] = ()
        self._ready = False

    # ----------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        opts = dict(options or {})
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        arm = opts.get("arm", self.arm)
        self.embodiment.arm(arm)
        skill = opts.get("skill", self.skill)
        args = opts.get("args")
        if opts.get("continue"):
            if not self._ready:
                raise RuntimeError("reset(options={'continue': True}) needs a previous episode")
            if skill is None:
                raise ValueError("continuing needs options['skill']")
            args = tuple(args or ())
            S.check_args(self.sim, skill, args)
            self.plan = [(skill, args)]
        elif self.task_spec is not None and "skill" not in opts:
            first = self.task_spec.steps[0][0]
            for _ in range(20):  # a scene with as many cubes as the task names
                sample_start(self.sim, first, rng, arm=arm, args=())
                cubes = [n for n in self.sim.active if self.sim.catalogue[n].cls == "cube"]
                if len(cubes) >= len(task_placeholders(self.task_spec)):
                    break
            self.plan = bind(self.task_spec, cubes, rng)
        else:
            if skill is None:
                raise ValueError("no skill to reset to")
            chosen = sample_start(self.sim, skill, rng, arm=arm,
                                  args=tuple(args) if args is not None else None)
            self.plan = [(skill, chosen)]
        self.arm = arm
        single = self.task_spec is None or "skill" in opts or opts.get("continue")
        self._goal = (len(self.plan) - 1,) if single else (self.task_spec.goal or (len(self.plan) - 1,))
        for s, a in self.plan:
            S.check_args(self.sim, s, a)
        classes = {n: i.cls for n, i in self.sim.catalogue.items()}
        self.instructions = [S.instruction(s, a, self.sim.colours, classes, rng, self.instruction_split)
                             for s, a in self.plan]
        self.controller.reset()
        if not opts.get("continue"):
            self.sim.reset_quaternion_continuity()  # a new episode: the quaternion's hemisphere restarts
        self.step_index = 0
        self.elapsed = 0
        self._plan_done_at: int | None = None
        budget = sum(S.get_skill(s).max_steps for s, _ in self.plan)
        self.max_steps = self.max_steps_override or budget
        self._ready = True
        return self._obs(), self._info(success=False)

    def step(self, action):
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        applied = self.controller.apply(action)  # raises before touching the sim on bad input
        self.sim.step()
        self.elapsed += 1
        while self.step_index < len(self.plan) and S.success(self.sim, *self.plan[self.step_index]):
            self.step_index += 1
        plan_done = self.step_index >= len(self.plan)
        # a task succeeds only if its goals still hold at the end (a cube knocked out of the
        # drawer while closing it is a failure, even though every step once succeeded)
        done_all = plan_done and all(S.success(self.sim, *self.plan[i]) for i in self._goal)
        reward = 1.0 if done_all else 0.0
        if plan_done and self._plan_done_at is None:
            self._plan_done_at = self.elapsed
        settling = plan_done and self.elapsed - self._plan_done_at < SETTLE_STEPS
        truncated = (not done_all) and ((plan_done and not settling) or self.elapsed >= self.max_steps)
        info = self._info(success=done_all)
        info["action"] = applied
        return self._obs(), reward, done_all, truncated, info

    def render(self) -> np.ndarray:
        return self.renderer.render(self.sim.data, self.embodiment.cameras[0].name, *self.render_size)

    def close(self) -> None:
        self.renderer.close()

    # ------------------------------------------------------------------- helpers
    @property
    def current_step(self) -> tuple[str, tuple[str, ...]] | None:
        return self.plan[self.step_index] if self.step_index < len(self.plan) else None

    @property
    def instruction(self) -> str:
        i = min(self.step_index, len(self.instructions) - 1)
        return self.instructions[i] if self.instructions else ""

    def scene_graph(self) -> SceneGraph:
        return build_scene_graph(self.sim)

    def _obs(self) -> dict[str, Any]:
        obs: dict[str, Any] = {f"observation.images.{c}": cam.read() for c, cam in self.cameras.items()}
        obs["observation.state"] = self.sim.state_vector()
        obs["observation.environment_state"] = self.sim.environment_state()
        obs["task"] = self.instruction
        obs["embodiment"] = self.embodiment.name
        return obs

    def _info(self, success: bool) -> dict[str, Any]:
        step = self.current_step
        return {
            "success": success,
            "is_success": success,
            "skill": step[0] if step else None,
            "args": step[1] if step else None,
            "arm": self.arm,
            "step_index": self.step_index,
            "steps_total": len(self.plan),
            "plan": list(self.plan),
            "instruction": self.instruction,
            "elapsed_steps": self.elapsed,
        }
