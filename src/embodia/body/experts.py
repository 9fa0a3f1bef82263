"""Scripted experts: one per meta-skill, built from motion primitives over the IK action space.

Each expert is a closed-loop script (a generator) that re-reads object poses every step, so
it recovers from small slips, and draws per-episode offsets plus per-step noise so the
demonstrations it records are diverse. Multi-step tasks chain experts step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from embodia.body import predicates as P
from embodia.body.rotations import quat_error, quat_mul, quat_yaw, yaw_quat
from embodia.body.scene import CUBE_HALF, DRAWER_FLOOR, DRAWER_TRAVEL, PLATE_HALF_THICK
from embodia.body.sim import Simulation

Vec = np.ndarray
ArmAction = np.ndarray  # [dx, dy, dz, drx, dry, drz, gripper]
TRANSIT_HEIGHT = 0.16  # m: what a carry rises to before travelling over


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


class Motion:
    """Motion primitives for one arm: move to a pose, hold, with noise and speed limits."""

    def __init__(self, sim: Simulation, arm: str, rng: np.random.Generator, noise: float = 0.003):
        self.sim, self.arm, self.rng, self.noise = sim, arm, rng, noise
        emb = sim.embodiment
        self.max_t = emb.max_ee_translation * 0.8
        self.max_r = emb.max_ee_rotation * 0.8
        self.down = np.array(emb.arm(arm).down_quat)
        self.grip = 0.0

    def tcp(self) -> tuple[Vec, Vec]:
        return self.sim.tcp_pose(self.arm)

    def yaw(self) -> float:
        return _wrap(quat_yaw(self.tcp()[1]) - quat_yaw(self.down))

    def obj(self, name: str) -> Vec:
        return self.sim.object_pose(name)[0]

    def aligned_yaw(self, yaw: float, period: float = np.pi / 2) -> float:
        """The hand yaw equivalent to `yaw` (mod `period`) closest to the current one."""
        cur = self.yaw()
        k = np.round((cur - yaw) / period)
        return _wrap(yaw + k * period)

    def action(self, target: Vec, yaw: float, grip: float) -> ArmAction:
        pos, quat = self.tcp()
        dp = np.clip(target - pos, -self.max_t, self.max_t)
        dp = dp + self.rng.normal(0.0, self.noise, 3) * (np.linalg.norm(dp) > 0.005)
        tq = quat_mul(yaw_quat(yaw), self.down)
        dr = np.clip(quat_error(tq, quat), -self.max_r, self.max_r)
        self.grip = grip
        return np.concatenate([dp, dr, [grip]])

    def move_to(self, target: Callable[[], Vec] | Vec, yaw: float, grip: float, tol: float = 0.01,
                max_steps: int = 30) -> Iterator[ArmAction]:
        fn = target if callable(target) else (lambda: np.asarray(target))
        for _ in range(max_steps):
            t = fn()
            if np.linalg.norm(t - self.tcp()[0]) < tol:
                return
            yield self.action(t, yaw, grip)

    def hold(self, grip: float, steps: int, yaw: float | None = None) -> Iterator[ArmAction]:
        y = self.yaw() if yaw is None else yaw
        pos = self.tcp()[0]
        for _ in range(steps):
            yield self.action(pos, y, grip)

    def transport(self, xy: Callable[[], Vec], z: float, yaw: float, grip: float,
                  transit: float = TRANSIT_HEIGHT, tol: float = 0.008) -> Iterator[ArmAction]:
        """Rise to a transit height, travel over, then descend to `z`."""
        lift = max(transit, self.tcp()[0][2])
        start = self.tcp()[0]
        # rise with the gripper as it was (closing it here could grab what was just released)
        yield from self.move_to(np.array([start[0], start[1], lift]), self.yaw(), self.grip, tol=0.03,
                                max_steps=10)
        yield from self.move_to(lambda: np.r_[xy(), lift], yaw, grip, tol=0.015)
        yield from self.move_to(lambda: np.r_[xy(), lift], yaw, grip, tol=0.006, max_steps=3)
        # descend straight down on the xy measured from above (contacts spoil measurements)
        yield from self.move_to(np.r_[xy(), z], yaw, grip, tol=tol, max_steps=25)


# ---------------------------------------------------------------------------- skills

PICK_ATTEMPTS = 3
STACK_NEAR_XY = 0.05  # m: a held cube this close to over its base, ...
STACK_NEAR_ABOVE = 0.04  # m: ... and the hand under this above its release height, is "near"
STACK_NEAR_RISE = 0.015  # m: the rise before lining up from near


def pick(m: Motion, obj: str) -> Iterator[ArmAction]:
    """Align over the cube, descend, close; if the fingers closed beside it (it slipped or was
    nudged), open and go again, up to PICK_ATTEMPTS grasps. The re-grasps are what a cloned
    policy needs to see: after a miss it otherwise lifts its empty closed hand."""
    off = m.rng.uniform(-0.003, 0.003, 2)
    approach = m.rng.uniform(0.07, 0.11)
    grasp_dz = m.rng.uniform(-0.002, 0.004)
    for attempt in range(PICK_ATTEMPTS):
        yaw = m.aligned_yaw(quat_yaw(m.sim.object_pose(obj)[1]))
        yield from m.transport(lambda: m.obj(obj)[:2] + off, m.obj(obj)[2] + approach, yaw, 0.25,
                               tol=0.012)
        yield from m.move_to(lambda: m.obj(obj) + np.r_[off, grasp_dz], yaw, 0.25, tol=0.005,
                             max_steps=20)
        yield from m.hold(1.0, 5, yaw)
        if P.holder(m.sim, obj) == m.arm or attempt == PICK_ATTEMPTS - 1:
            break
        yield from m.hold(0.25, 3, yaw)  # missed: open before rising for another try
    top = m.tcp()[0] + np.r_[0.0, 0.0, m.rng.uniform(0.12, 0.16)]
    yield from m.move_to(top, yaw, 1.0, tol=0.01, max_steps=20)


def _release_and_retreat(m: Motion) -> Iterator[ArmAction]:
    yield from m.hold(0.0, 4)
    up = m.tcp()[0] + np.r_[0.0, 0.0, 0.08]
    yield from m.move_to(up, m.yaw(), 0.0, tol=0.01, max_steps=10)


def _held_offset(m: Motion, obj: str) -> Vec:
    return m.obj(obj) - m.tcp()[0]


def _carry_xy(m: Motion, obj: str, goal_xy: Callable[[], Vec]) -> Callable[[], Vec]:
    """TCP xy that brings the held object's centre over `goal_xy`, re-measured every step
    (so a cube that shifted in the fingers still lands where it should)."""
    return lambda: m.tcp()[0][:2] + goal_xy() - m.obj(obj)[:2]


def place(m: Motion, obj: str, target: str) -> Iterator[ArmAction]:
    off = _held_offset(m, obj)
    jitter = m.rng.uniform(-0.012, 0.012, 2)
    sim = m.sim
    if target == "bowl":
        def xy() -> Vec:
            return m.obj("bowl")[:2] + jitter * 0.6
        z_cube = sim.surface_height("bowl") + CUBE_HALF + 0.02
    elif target == "plate":
        def xy() -> Vec:
            return m.obj("plate")[:2] + jitter
        z_cube = m.obj("plate")[2] + 2 * PLATE_HALF_THICK + CUBE_HALF + 0.015
    elif target == "drawer":
        def xy() -> Vec:
            front = m.obj("drawer")
            exposed = sim.drawer_opening() - 0.012
            return np.r_[front[0] + 0.012 + exposed * 0.45, front[1]] + jitter * [0.5, 1.0]
        z_cube = DRAWER_FLOOR + CUBE_HALF + 0.02
    else:
        raise ValueError(f"unknown place target {target!r}")
    yaw = m.yaw()
    yield from m.transport(_carry_xy(m, obj, xy), z_cube - off[2], yaw, 1.0, transit=0.17)
    yield from _release_and_retreat(m)


def stack(m: Motion, obj: str, base: str) -> Iterator[ArmAction]:
    off = _held_offset(m, obj)
    held_yaw = quat_yaw(m.sim.object_pose(obj)[1])
    base_yaw = quat_yaw(m.sim.object_pose(base)[1])
    # turn the hand so the held cube's faces line up with the base cube's
    yaw = m.aligned_yaw(base_yaw - (held_yaw - m.yaw()))
    z = m.obj(base)[2] + 2 * CUBE_HALF + 0.006
    carry = _carry_xy(m, obj, lambda: m.obj(base)[:2])
    # already low and near the base (a recovery that starts where a policy was about to let go
    # off-centre): rise only STACK_NEAR_RISE and line up from there; from anywhere else, the
    # usual transit height
    tcp_z = m.tcp()[0][2]
    near = (float(np.linalg.norm(m.obj(obj)[:2] - m.obj(base)[:2])) < STACK_NEAR_XY
            and tcp_z < z - off[2] + STACK_NEAR_ABOVE)
    transit = tcp_z + STACK_NEAR_RISE if near else TRANSIT_HEIGHT
    yield from m.transport(carry, z - off[2], yaw, 1.0, tol=0.005, transit=transit)
    yield from m.hold(1.0, 2, yaw)
    yield from _release_and_retreat(m)


def push(m: Motion, obj: str) -> Iterator[ArmAction]:
    sim = m.sim
    push_z = 0.022 + m.rng.uniform(-0.003, 0.003)
    standoff = CUBE_HALF + 0.012 + 0.008

    def direction() -> Vec:
        d = sim.zone_center() - m.obj(obj)[:2]
        return d / max(np.linalg.norm(d), 1e-6)

    def hand_yaw(d: Vec) -> float:
        return m.aligned_yaw(float(np.arctan2(d[1], d[0])) + np.pi / 2, period=np.pi)

    for _attempt in range(4):
        d = direction()
        yaw = hand_yaw(d)
        behind = m.obj(obj)[:2] - d * (standoff + 0.02)
        yield from m.transport(lambda b=behind: b, push_z, yaw, 1.0, transit=0.08, tol=0.01)
        for _ in range(60):
            c = m.obj(obj)[:2]
            goal = sim.zone_center()
            if np.linalg.norm(goal - c) < 0.02:
                break
            d = direction()
            tcp = m.tcp()[0][:2]
            rel = tcp - (c - d * standoff)
            lateral = rel - d * (rel @ d)
            if np.linalg.norm(lateral) > 0.02 or rel @ d > 0.015:
                break  # lost the cube: back off and line up again
            remaining = np.linalg.norm(goal - c)
            step = d * min(0.03, remaining + 0.005) - lateral
            yield m.action(np.r_[tcp + step, push_z], hand_yaw(d), 1.0)
        if np.linalg.norm(sim.zone_center() - m.obj(obj)[:2]) < 0.03:
            break
        up = m.tcp()[0] + np.r_[-0.0, 0.0, 0.06]
        yield from m.move_to(up, m.yaw(), 1.0, tol=0.015, max_steps=6)
    up = m.tcp()[0] + np.r_[0.0, 0.0, 0.08]
    yield from m.move_to(up, m.yaw(), 1.0, tol=0.015, max_steps=8)


def open_drawer(m: Motion) -> Iterator[ArmAction]:
    yaw = m.aligned_yaw(np.pi / 2, period=np.pi)
    dy = m.rng.uniform(-0.01, 0.01)
    yield from m.transport(lambda: m.sim.handle_position()[:2] + [0.0, dy], m.sim.handle_position()[2] + 0.005, yaw, 0.45,
                           transit=0.18, tol=0.006)
    yield from m.hold(1.0, 5, yaw)
    goal = m.rng.uniform(0.145, DRAWER_TRAVEL)
    for _ in range(25):
        if m.sim.drawer_opening() >= goal:
            break
        h = m.sim.handle_position()
        yield m.action(h + np.r_[-0.035, 0.0, 0.0], yaw, 1.0)
    yield from _release_and_retreat(m)


def close_drawer(m: Motion) -> Iterator[ArmAction]:
    yaw = m.aligned_yaw(0.0, period=np.pi)
    front = np.r_[-(0.006 + 0.012 + 0.012), m.rng.uniform(-0.015, 0.015), 0.0]
    yield from m.transport(lambda: (m.sim.handle_position() + front)[:2], m.sim.handle_position()[2] + 0.0, yaw, 1.0,
                           transit=0.18, tol=0.008)
    for _ in range(25):
        if P.drawer_is_closed(m.sim) and m.sim.drawer_opening() < 0.006:
            break
        yield m.action(m.tcp()[0] + np.r_[0.035, 0.0, 0.0], yaw, 1.0)
    back = m.tcp()[0] + np.r_[-0.05, 0.0, 0.06]
    yield from m.move_to(back, m.yaw(), 1.0, tol=0.015, max_steps=8)


SCRIPTS: dict[str, Callable[..., Iterator[ArmAction]]] = {
    "pick": pick,
    "place": place,
    "stack": stack,
    "push": push,
    "open_drawer": open_drawer,
    "close_drawer": close_drawer,
}


class ScriptedExpert:
    """Acts for one skill on one arm; the other arms hold still with open grippers."""

    def __init__(self, sim: Simulation, skill: str, args: tuple[str, ...], arm: str | None = None,
                 rng: np.random.Generator | None = None, noise: float = 0.003) -> None:
        if skill not in SCRIPTS:
            raise ValueError(f"no scripted expert for skill {skill!r}; known: {sorted(SCRIPTS)}")
        self.sim = sim
        self.arm = arm or sim.embodiment.arms[0].name
        self.motion = Motion(sim, self.arm, rng or np.random.default_rng(0), noise)
        held = bool(args) and P.holder(sim, args[0]) == self.arm
        self.motion.grip = 1.0 if held else 0.0
        self._script = SCRIPTS[skill](self.motion, *args)
        self.done = False

    def act(self) -> np.ndarray:
        """The next full action (every arm) in the `ee_delta` space."""
        try:
            arm_action = next(self._script)
        except StopIteration:
            self.done = True
            arm_action = next(self.motion.hold(self.motion.grip, 1))
        emb = self.sim.embodiment
        full = np.zeros(emb.action_layout("ee_delta").dim)
        full[emb.arm_action_slice("ee_delta", self.arm)] = arm_action
        return np.clip(full, emb.action_layout("ee_delta").low, emb.action_layout("ee_delta").high)


EXPERT_SEED_OFFSET = 1_000_003  # = eval.rollout.POLICY_SEED_OFFSET: recorded datasets reproduce


class ChainedExpert:
    """The scripted experts chained over the steps of an env's plan (the `Agent` shape:
    `reset(env, seed)`, then `act(obs, env)`). Lives in body/ so that recording (data/)
    and evaluation (eval/) drive the same expert without data/ importing eval/."""

    def __init__(self, noise: float = 0.003) -> None:
        self.noise = noise
        self._expert: ScriptedExpert | None = None
        self._step = -1
        self._rng = np.random.default_rng(0)

    def reset(self, env, seed: int) -> None:
        self._rng = np.random.default_rng(seed + EXPERT_SEED_OFFSET)
        self._expert, self._step = None, -1

    def act(self, obs: dict, env) -> np.ndarray:
        if env.current_step is None:  # plan finished, goals settling: hold still
            if self._expert is None:
                return np.zeros(env.action_space.shape)
            return self._expert.act()
        if self._expert is None or env.step_index != self._step:
            step = env.current_step
            self._step = env.step_index
            self._expert = ScriptedExpert(env.sim, step[0], step[1], env.arm, self._rng, self.noise)
        return self._expert.act()
