"""The cerebellum as the runtime sees it: something that turns an observation into a chunk.

`LearnedChunkPolicy` wraps a `VLAPolicy` checkpoint (with the RTC continuation for the flow
head); `ExpertChunkPolicy` wraps the scripted experts as a policy of one action per chunk,
the reference the learned policy is measured against and a fast stand-in for tests.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from embodia.body.experts import ScriptedExpert
from embodia.runtime.body import SimBody
from embodia.runtime.messages import Observation, SkillCommand

POLICY_SEED_OFFSET = 1_000_003  # as eval/rollout.py: policy randomness apart from scene seeds
HOLDING_SKILLS = ("place", "stack")  # skills that start with the object in the hand
RETREAT_CLEARANCE = 0.15  # m above the table a retried step's hand is lifted to first


def retreat_chunk(embodiment: str, arm: str, skill: str, state: np.ndarray, horizon: int,
                  clearance: float) -> np.ndarray:
    """`ee_delta` actions that lift `arm`'s hand straight up until it is `clearance` metres
    above the table, the gripper as the skill starts (closed on the object for place and
    stack, open otherwise), then hold.

    Why: a learned skill starts from a hand in free space, as every demonstration did. A
    retry from where the failed attempt stopped (fingers closed beside the cube, the hand
    still at the drawer handle) starts from a state no demonstration started from, and a
    deterministic policy tends to repeat the same failure there."""
    from embodia.body.embodiments import get_embodiment

    emb = get_embodiment(embodiment)
    dims = emb.arm_action_slice("ee_delta", arm)
    z = float(state[emb.state_names.index(f"{arm}.ee_z")])
    step = 0.8 * emb.max_ee_translation
    chunk = np.zeros((horizon, emb.action_layout("ee_delta").dim), np.float32)
    for k in range(horizon):
        lift = float(np.clip(clearance - z, 0.0, step))
        chunk[k, dims.start + 2] = lift
        z += lift
    chunk[:, dims.stop - 1] = 1.0 if skill in HOLDING_SKILLS else 0.0
    return chunk


class ChunkPolicy(Protocol):
    name: str
    embodiment: str
    space: str  # ee_delta | joint_pos
    dt: float  # seconds between actions
    horizon: int
    execute: int  # actions of a chunk to run before the next one takes over
    cameras: tuple[str, ...]
    image_size: int
    supports_rtc: bool

    def start_episode(self, seed: int) -> None: ...

    def start_step(self, cmd: SkillCommand, body: SimBody) -> None: ...

    def warmup(self, obs: Observation) -> None:
        """Pay first-call costs (loading models, filling caches) before the clock runs."""

    def infer(self, obs: Observation, prefix: np.ndarray | None = None, frozen: int = 0) -> np.ndarray:
        """[H, D] actions; with a prefix, a continuation of it (only if `supports_rtc`)."""


class ExpertChunkPolicy:
    """Scripted experts, one closed-loop action per chunk (they read the simulator)."""

    name = "expert"
    space = "ee_delta"
    horizon = 1
    execute = 1
    cameras: tuple[str, ...] = ()
    image_size = 96
    supports_rtc = False

    def __init__(self, embodiment: str, control_rate_hz: float, noise: float = 0.003) -> None:
        self.embodiment, self.dt, self.noise = embodiment, 1.0 / control_rate_hz, noise
        self._rng = np.random.default_rng(0)
        self._expert: ScriptedExpert | None = None

    def start_episode(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed + POLICY_SEED_OFFSET)

    def start_step(self, cmd: SkillCommand, body: SimBody) -> None:
        self._expert = ScriptedExpert(body.sim, cmd.skill, cmd.args, cmd.arm, self._rng, self.noise)

    def warmup(self, obs: Observation) -> None:
        pass

    def infer(self, obs: Observation, prefix: np.ndarray | None = None, frozen: int = 0) -> np.ndarray:
        if self._expert is None:
            raise RuntimeError("start_step() before infer()")
        return self._expert.act().astype(np.float32)[None]


class LearnedChunkPolicy:
    """A `VLAPolicy` checkpoint: chunks of `horizon`, `execute` of them run per chunk."""

    def __init__(self, policy, rtc: bool = True, execute: int | None = None,
                 retreat_clearance: float | None = RETREAT_CLEARANCE, rtc_soft: bool = False) -> None:
        import torch

        from embodia.cerebellum.config import PolicyConfig

        cfg: PolicyConfig = policy.cfg
        self.policy, self.cfg = policy, cfg
        self.name = f"{cfg.head}-vla"
        self.embodiment, self.space = cfg.embodiment, cfg.action_space
        self.dt = 1.0 / cfg.control_rate_hz
        self.horizon = cfg.horizon
        self.execute = int(execute or cfg.n_action_steps)
        if not 1 <= self.execute <= self.horizon:
            raise ValueError(f"execute must be in 1..{self.horizon}, got {self.execute}")
        self.cameras, self.image_size = tuple(cfg.cameras), cfg.image_size
        # the RTC continuation steers one flow head; an ensemble's average has none to steer
        # (and only the object-centric preset's FlowHead: the general core has no RTC continuation)
        self.supports_rtc = (rtc and cfg.head == "flow" and len(policy.configs()) == 1
                             and hasattr(cfg, "env_state_input"))
        self.rtc_soft = rtc_soft  # also pull the uncommitted overlap toward the old chunk (rtc.py)
        self._generator = torch.Generator().manual_seed(0)
        # a retried step first lifts the hand clear (retreat_chunk); None: retry from where it is
        self.retreat_clearance = retreat_clearance if self.space == "ee_delta" else None
        self._retreat: SkillCommand | None = None

    def start_episode(self, seed: int) -> None:
        self.policy.reset()
        self._generator.manual_seed(seed + POLICY_SEED_OFFSET)

    def start_step(self, cmd: SkillCommand, body: SimBody) -> None:
        self.policy.reset()
        self._retreat = cmd if cmd.attempt > 1 and self.retreat_clearance is not None else None

    def warmup(self, obs: Observation) -> None:
        state, retreat, self._retreat = self._generator.get_state(), self._retreat, None
        self.infer(obs)  # the sentence model loads on first use; the generator is restored
        self._generator.set_state(state)
        self._retreat = retreat

    def infer(self, obs: Observation, prefix: np.ndarray | None = None, frozen: int = 0) -> np.ndarray:
        from embodia.cerebellum.policy import STATE, batch_from_obs

        if self._retreat is not None:  # the first chunk of a retried step
            cmd, self._retreat = self._retreat, None
            return retreat_chunk(self.embodiment, cmd.arm, cmd.skill, np.asarray(obs.data[STATE]),
                                 self.horizon, self.retreat_clearance)
        batch = batch_from_obs(obs.data, self.cfg)
        if self.supports_rtc and prefix is not None and len(prefix):
            from embodia.runtime.rtc import rtc_predict_chunk

            chunk = rtc_predict_chunk(self.policy, batch, prefix, frozen, self._generator, self.rtc_soft)
        else:
            self.policy._generator = self._generator
            chunk = self.policy.predict_chunk(batch)
        return chunk[0].numpy().astype(np.float32)
