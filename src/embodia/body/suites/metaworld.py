"""Meta-World (metaworld 3.1.1) behind the env contract: the `sawyer` embodiment's tasks.

One env is one Meta-World task (`push-v3`, ...). Seed S both draws the task variation (the
object and goal positions Meta-World calls `rand_vec`) and resets: `reset(seed=S)` seeds the
task's own generator (`env.seed(S)`, `seeded_rand_vec`), never NumPy's global one, so episode
S reproduces exactly in any process and in any order.

Observations follow the contract: `observation.state` is the robot's own part of Meta-World's
39-D observation (hand xyz + finger opening, obs[0:4], LeRobot's `agent_pos`);
`observation.environment_state` is the rest (obs[4:39]: up to two objects' position +
quaternion, the same 18 numbers of the previous frame, the goal), privileged as everywhere;
`observation.images.corner2` is LeRobot's Meta-World camera (`lerobot.envs.metaworld`: corner2
moved to (0.75, 0.075, 0.7), the image flipped on both axes), 84x84 by default, rendered with
shadows and reflections off into an offscreen buffer of exactly the image size (the full
640x480 buffer with both on costs ~5x more per frame in software GL; the skybox stays, as in
LeRobot's images, at no measurable cost: benchmarks/metaworld_render.py). `task` is the task's
language description. An episode ends on Meta-World's `info["success"]` or after 500 steps.

The scripted experts are Meta-World's own (`metaworld.policies`); they read the full 39-D
observation, rebuilt here from state + environment state, so they act through the same
`reset()` / `select_action(obs)` interface as any learned policy.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from embodia.body.embodiments import get_embodiment
from embodia.body.rendering import SceneRenderer

NAME = "metaworld"
EMBODIMENT = "sawyer"
CAMERA = "corner2"
# lerobot.envs.metaworld (LeRobot 0.6.1) moves corner2 here (after arXiv:2206.14244) and flips
# its images on both axes
CAMERA_POS = (0.75, 0.075, 0.7)
IMAGE_SIZE = 84
MAX_STEPS = 500  # Meta-World's max_path_length: stepping past it is an error there
STATE_DIM = 4
OBS_DIM = 39

MT10 = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")

# The tasks' language descriptions (Meta-World paper, Yu et al. 2019), worded as LeRobot's
# Meta-World env and datasets word them, so `task` texts match theirs.
DESCRIPTIONS: dict[str, str] = {
    "assembly-v3": "Pick up a nut and place it onto a peg",
    "basketball-v3": "Dunk the basketball into the basket",
    "bin-picking-v3": "Grasp the puck from one bin and place it into another bin",
    "box-close-v3": "Grasp the cover and close the box with it",
    "button-press-topdown-v3": "Press a button from the top",
    "button-press-topdown-wall-v3": "Bypass a wall and press a button from the top",
    "button-press-v3": "Press a button",
    "button-press-wall-v3": "Bypass a wall and press a button",
    "coffee-button-v3": "Push a button on the coffee machine",
    "coffee-pull-v3": "Pull a mug from a coffee machine",
    "coffee-push-v3": "Push a mug under a coffee machine",
    "dial-turn-v3": "Rotate a dial 180 degrees",
    "disassemble-v3": "Pick a nut out of a peg",
    "door-close-v3": "Close a door with a revolving joint",
    "door-lock-v3": "Lock the door by rotating the lock clockwise",
    "door-open-v3": "Open a door with a revolving joint",
    "door-unlock-v3": "Unlock the door by rotating the lock counter-clockwise",
    "hand-insert-v3": "Insert the gripper into a hole",
    "drawer-close-v3": "Push and close a drawer",
    "drawer-open-v3": "Open a drawer",
    "faucet-open-v3": "Rotate the faucet counter-clockwise",
    "faucet-close-v3": "Rotate the faucet clockwise",
    "hammer-v3": "Hammer a screw on the wall",
    "handle-press-side-v3": "Press a handle down sideways",
    "handle-press-v3": "Press a handle down",
    "handle-pull-side-v3": "Pull a handle up sideways",
    "handle-pull-v3": "Pull a handle up",
    "lever-pull-v3": "Pull a lever down 90 degrees",
    "peg-insert-side-v3": "Insert a peg sideways",
    "pick-place-wall-v3": "Pick a puck, bypass a wall and place the puck",
    "pick-out-of-hole-v3": "Pick up a puck from a hole",
    "reach-v3": "Reach a goal position",
    "push-back-v3": "Push the puck to a goal",
    "push-v3": "Push the puck to a goal",
    "pick-place-v3": "Pick and place a puck to a goal",
    "plate-slide-v3": "Slide a plate into a cabinet",
    "plate-slide-side-v3": "Slide a plate into a cabinet sideways",
    "plate-slide-back-v3": "Get a plate from the cabinet",
    "plate-slide-back-side-v3": "Get a plate from the cabinet sideways",
    "peg-unplug-side-v3": "Unplug a peg sideways",
    "soccer-v3": "Kick a soccer into the goal",
    "stick-push-v3": "Grasp a stick and push a box using the stick",
    "stick-pull-v3": "Grasp a stick and pull a box with the stick",
    "push-wall-v3": "Bypass a wall and push a puck to a goal",
    "reach-wall-v3": "Bypass a wall and reach a goal",
    "shelf-place-v3": "Pick and place a puck onto a shelf",
    "sweep-into-v3": "Sweep a puck into a hole",
    "sweep-v3": "Sweep a puck off the table",
    "window-open-v3": "Push and open a window",
    "window-close-v3": "Push and close a window",
}


def _frame_names(prefix: str) -> list[str]:
    names = [f"{prefix}ee_x", f"{prefix}ee_y", f"{prefix}ee_z", f"{prefix}gripper_opening"]
    for i in range(2):
        names += [f"{prefix}obj{i}_{c}" for c in ("x", "y", "z", "q0", "q1", "q2", "q3")]
    return names


def env_state_names() -> list[str]:
    """Names of obs[4:39]: the current frame's objects, the previous frame, the goal."""
    return _frame_names("")[STATE_DIM:] + _frame_names("prev.") + ["goal_x", "goal_y", "goal_z"]


def task_names() -> list[str]:
    """Every single task Meta-World 3.1.1 knows (its ALL_V3_ENVIRONMENTS)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


def resolve_tasks(spec: str) -> list[str]:
    """`mt10`, one task (`push-v3`, or `push`), or a comma-separated list -> task names.

    Raises ValueError naming the unknown task and listing the valid ones.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("task: give a Meta-World task name or 'mt10'")
    if spec.strip().lower() == "mt10":
        return list(MT10)
    known = task_names()
    out = []
    for part in (p.strip() for p in spec.split(",")):
        name = part if part.endswith("-v3") else f"{part}-v3"
        if name not in known:
            raise ValueError(f"unknown Meta-World task {part!r}; valid: 'mt10' or one of {known}")
        out.append(name)
    return out


def description(task: str) -> str:
    return DESCRIPTIONS.get(task, task.removesuffix("-v3").replace("-", " "))


@dataclass(frozen=True)
class MetaWorldConfig:
    """How an env observes: cameras (() renders nothing), image size, episode budget."""

    cameras: tuple[str, ...] = (CAMERA,)
    image_size: int = IMAGE_SIZE
    max_steps: int = MAX_STEPS

    def __post_init__(self) -> None:
        unknown = [c for c in self.cameras if c != CAMERA]
        if unknown:
            raise ValueError(f"cameras: unknown camera(s) {unknown} for Meta-World; cameras: [{CAMERA!r}]")
        if not 8 <= int(self.image_size) <= 1024:
            raise ValueError(f"image_size must be between 8 and 1024 pixels, got {self.image_size}")
        if not 1 <= int(self.max_steps) <= MAX_STEPS:
            raise ValueError(f"max_steps must be in [1, {MAX_STEPS}] (Meta-World's max_path_length), "
                             f"got {self.max_steps}")


class MetaWorldEnv(gym.Env):
    """One Meta-World task as a gymnasium env with embodia's observation keys."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, config: MetaWorldConfig | None = None) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS
        from metaworld.types import Task

        names = resolve_tasks(task)
        if len(names) != 1:
            raise ValueError(f"task: one env runs one task, got {task!r} ({len(names)} tasks)")
        self.task_name = names[0]
        self.config = config or MetaWorldConfig()
        self.embodiment = get_embodiment(EMBODIMENT)
        self.layout = self.embodiment.action_layout("ee_delta")
        self.description = description(self.task_name)
        cls = ALL_V3_ENVIRONMENTS[self.task_name]
        env = cls()
        # what MT1 does per task, minus its 50 global-RNG resets: goal observable (the MT
        # setting; the scripted experts read the goal), then draw each variation from the
        # env's own seeded generator at every reset
        kwargs = {k: v for k, v in ML1_ARGS_KWARGS[self.task_name]["kwargs"].items() if k != "task_id"}
        box = env._random_reset_space
        placeholder = (box.low + box.high) / 2.0
        env.set_task(Task(env_name=self.task_name, data=pickle.dumps(
            dict(kwargs, rand_vec=placeholder, env_cls=cls, partially_observable=False))))
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        self._env = env
        model = env.model
        cam = model.camera(CAMERA).id
        model.cam_pos[cam] = CAMERA_POS
        size = int(self.config.image_size)
        self.image_size = (size, size)
        self._renderer: SceneRenderer | None = None
        if self.config.cameras:
            model.vis.global_.offwidth = size  # the buffer at the image size, not 640x480
            model.vis.global_.offheight = size
            self._renderer = SceneRenderer(model, skybox=True)
        obs_spaces: dict[str, spaces.Space] = {
            f"observation.images.{c}": spaces.Box(0, 255, (size, size, 3), np.uint8) for c in self.config.cameras
        }
        obs_spaces["observation.state"] = spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
        obs_spaces["observation.environment_state"] = spaces.Box(-np.inf, np.inf, (OBS_DIM - STATE_DIM,),
                                                                 np.float32)
        obs_spaces["task"] = spaces.Text(256)
        obs_spaces["embodiment"] = spaces.Text(64)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(self.layout.low, self.layout.high, dtype=np.float32)
        self.max_steps = int(self.config.max_steps)
        self.elapsed = 0
        self._raw: np.ndarray | None = None

    @property
    def raw_obs(self) -> np.ndarray:
        """Meta-World's own 39-D observation of the current step (float64)."""
        if self._raw is None:
            raise RuntimeError("call reset() before reading the observation")
        return self._raw

    @property
    def task_variation(self) -> np.ndarray:
        """The variation this episode drew (Meta-World's rand_vec: object/goal positions)."""
        return np.asarray(self._env._last_rand_vec, dtype=np.float64).copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            if seed < 0:
                raise ValueError(f"seed must be >= 0, got {seed}")
            self._env.seed(int(seed))  # the task's own generator draws the variation
        raw, _ = self._env.reset()
        self._raw = np.asarray(raw, dtype=np.float64)
        self.elapsed = 0
        return self._obs(), {"success": False, "elapsed_steps": 0, "task": self.task_name}

    def step(self, action):
        if self._raw is None:
            raise RuntimeError("call reset() before step()")
        if self.elapsed >= self.max_steps:
            raise RuntimeError(f"the episode is over ({self.max_steps} steps); call reset()")
        a = self.layout.check(action).astype(np.float32)  # names a bad field before the sim runs
        raw, reward, _, mw_trunc, mw_info = self._env.step(a)
        self._raw = np.asarray(raw, dtype=np.float64)
        self.elapsed += 1
        success = bool(mw_info.get("success", 0.0))
        truncated = (not success) and (self.elapsed >= self.max_steps or bool(mw_trunc))
        info = {"success": success, "elapsed_steps": self.elapsed, "task": self.task_name, "action": a}
        return self._obs(), float(reward), success, truncated, info

    def render(self) -> np.ndarray:
        """The corner2 view at the configured size (works with cameras=() too, for videos)."""
        if self._renderer is None:
            model = self._env.model
            model.vis.global_.offwidth, model.vis.global_.offheight = self.image_size[1], self.image_size[0]
            self._renderer = SceneRenderer(model, skybox=True)
        img = self._renderer.render(self._env.data, CAMERA, *self.image_size)
        return np.ascontiguousarray(np.flip(img, (0, 1)))  # LeRobot's corner2 flip

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()

    def _obs(self) -> dict[str, Any]:
        raw = self.raw_obs
        obs: dict[str, Any] = {f"observation.images.{c}": self.render() for c in self.config.cameras}
        obs["observation.state"] = raw[:STATE_DIM].astype(np.float32)
        obs["observation.environment_state"] = raw[STATE_DIM:].astype(np.float32)
        obs["task"] = self.description
        obs["embodiment"] = EMBODIMENT
        return obs


class MetaWorldExpert:
    """Meta-World's scripted policy for one task, behind `reset()` / `select_action(obs)`.

    It reads the raw 39-D observation: from `raw_obs` when given the env (exact, float64), else
    rebuilt from the observation's state + environment state (float32, what a dataset holds).
    """

    def __init__(self, task: str, env: MetaWorldEnv | None = None) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        names = resolve_tasks(task)
        if len(names) != 1:
            raise ValueError(f"task: one expert drives one task, got {task!r}")
        self.task_name = names[0]
        if self.task_name not in ENV_POLICY_MAP:
            raise ValueError(f"Meta-World has no scripted policy for {self.task_name!r}")
        self.policy = ENV_POLICY_MAP[self.task_name]()
        self.env = env

    def reset(self) -> None:
        """Meta-World's scripted policies are memoryless: nothing to clear."""

    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        if self.env is not None:
            raw = self.env.raw_obs
        else:
            raw = np.concatenate([np.asarray(obs["observation.state"], np.float64),
                                  np.asarray(obs["observation.environment_state"], np.float64)])
        with warnings.catch_warnings():  # "Constant(s) may be too high": it clips, as we do
            warnings.simplefilter("ignore", UserWarning)
            action = self.policy.get_action(raw)
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)


@dataclass(frozen=True)
class MetaWorldSuite:
    """The suite object `body.suites.get_suite("metaworld")` returns."""

    name: str = NAME
    embodiment: str = EMBODIMENT
    camera: str = CAMERA
    image_size: int = IMAGE_SIZE
    max_steps: int = MAX_STEPS

    def resolve_tasks(self, spec: str) -> list[str]:
        return resolve_tasks(spec)

    def description(self, task: str) -> str:
        return description(task)

    def env_state_names(self) -> list[str]:
        return env_state_names()

    def make_env(self, task: str, cameras: tuple[str, ...] | None = None, image_size: int = IMAGE_SIZE,
                 max_steps: int = MAX_STEPS) -> MetaWorldEnv:
        cams = (CAMERA,) if cameras is None else tuple(cameras)
        return MetaWorldEnv(task, MetaWorldConfig(cameras=cams, image_size=image_size, max_steps=max_steps))

    def make_expert(self, task: str, env: MetaWorldEnv | None = None) -> MetaWorldExpert:
        return MetaWorldExpert(task, env)
