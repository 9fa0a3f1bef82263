"""The perception and planning layer (the policy's rate): observations, the scene graph, and
when to ask the cerebellum for the next chunk.

It requests the next chunk before the current one runs out: as soon as no more than
`horizon - execute + d` actions remain, d being the inference latency in action slots, so
the new chunk lands when `execute` actions of the old one have run. It keeps its own copy
of the chunks it handed to control, which tells it what remains and which actions a
continuation must agree with (the first d are committed: they run while inference does).
"""

from __future__ import annotations

import math
from typing import Protocol

from embodia.runtime.async_inference import InferenceRequest
from embodia.runtime.body import SimBody
from embodia.runtime.chunking import BlendConfig, ChunkBuffer
from embodia.runtime.messages import ActionChunk, SceneUpdate, SkillCommand
from embodia.runtime.policies import ChunkPolicy


class Inference(Protocol):
    @property
    def busy(self) -> bool: ...

    def request(self, req: InferenceRequest, now: float) -> bool: ...


def latency_slots(latency_s: float, dt: float) -> int:
    """Slots whose action starts before a chunk requested at a slot start arrives."""
    return 0 if latency_s <= 1e-9 else int(math.floor(latency_s / dt + 1e-9)) + 1


class PerceptionLayer:
    def __init__(self, body: SimBody, policy: ChunkPolicy, inference: Inference,
                 blend: BlendConfig, rtc: bool, latency_s: float) -> None:
        self.body, self.policy, self.inference = body, policy, inference
        self.rtc = rtc and policy.supports_rtc
        self.sent = ChunkBuffer(blend)
        self.latency_s = latency_s
        self.cmd: SkillCommand | None = None
        self.origin = 0.0
        self.seq = 0
        self.requests = 0

    def start_step(self, cmd: SkillCommand, origin: float) -> None:
        self.cmd, self.origin, self.seq = cmd, origin, 0
        self.sent.clear()
        self.policy.start_step(cmd, self.body)

    def wants_chunk(self, t_slot: float) -> bool:
        p = self.policy
        d = latency_slots(self.latency_s, p.dt)
        return len(self.sent) == 0 or self.sent.remaining(t_slot) <= p.horizon - p.execute + d

    def tick(self, t_slot: float, now: float) -> bool:
        """At the start of an action slot: observe and request a chunk if one is due."""
        if self.cmd is None or self.inference.busy or not self.wants_chunk(t_slot):
            return False
        obs = self.body.observe(self.cmd.instruction)
        prefix, frozen = None, 0
        if self.rtc and len(self.sent):
            prefix = self.sent.upcoming(t_slot, self.policy.horizon)
            frozen = min(latency_slots(self.latency_s, self.policy.dt), len(prefix))
        req = InferenceRequest(obs, t_slot, self.cmd.step_id, self.seq, prefix, frozen)
        if self.inference.request(req, now):
            self.seq += 1
            self.requests += 1
            return True
        return False

    def delivered(self, chunk: ActionChunk, now: float) -> None:
        """A chunk reached control at `now`: remember it, and learn the latency."""
        if self.cmd is None or chunk.step_id != self.cmd.step_id:
            return
        self.sent.add(chunk, now)
        self.latency_s = 0.7 * self.latency_s + 0.3 * max(0.0, now - chunk.t0)

    def scene(self, t: float, graph: bool = True) -> SceneUpdate:
        """The running step's predicate, and the scene graph (skipped when `graph` is False:
        only reasoning reads it, and only when a step ends)."""
        done = self.cmd is not None and self.body.step_done(self.cmd.skill, self.cmd.args)
        return SceneUpdate(t, self.body.scene_graph() if graph else None, done)
