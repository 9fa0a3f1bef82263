"""RTC-style continuation for the flow head: a new chunk that agrees with the actions
already committed from the previous one.

Real-time chunking (Black et al., 2025) treats the switch between chunks as inpainting:
while the new chunk is being computed, the robot keeps executing the old one, so the first
`frozen` actions of the new chunk are already decided. At every Euler step of the flow
(x_t = t * noise + (1 - t) * action, integrated from t = 1 to 0) the committed part of x_t is
replaced by where the straight flow path through the committed actions is at time t; the
rest of the overlap with the old chunk is pulled toward it with weights decaying linearly
to 0 (`soft`), and the new tail is free. The result starts exactly with the committed
actions and bends smoothly into the policy's fresh plan instead of jumping at the boundary.

The runtime uses the hard part only (`LearnedChunkPolicy(rtc_soft=False)`, the default):
the soft pull ties the new chunk to a plan made 0.8 s earlier from an older observation, and
measured, it costs the learned skills their corrections (benchmarks/long_horizon.py with
the v4 checkpoint: 0/30 with the soft pull, 6/30 without; open_drawer succeeded on
7 of 19 first tries against 14 of 19; docs/results.md).

Written against the cerebellum's public pieces (`policy.prefix`, `head.memory_kv`,
`head.velocity`, the normalizer) without touching them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from embodia.cerebellum.heads.flow import FlowHead
from embodia.cerebellum.policy import ACTION, VLAPolicy


def inpaint_weights(horizon: int, n_prefix: int, frozen: int, soft: bool = True) -> np.ndarray:
    """1 for the frozen actions, then (`soft`) linear decay to 0 across the rest of the
    prefix, 0 beyond it."""
    if not 0 <= frozen <= n_prefix:
        raise ValueError(f"need 0 <= frozen ({frozen}) <= prefix length ({n_prefix})")
    n_prefix = min(n_prefix, horizon)
    frozen = min(frozen, n_prefix)
    w = np.zeros(horizon, dtype=np.float32)
    w[:frozen] = 1.0
    n_soft = n_prefix - frozen
    if soft and n_soft > 0:
        w[frozen:n_prefix] = np.linspace(1.0, 0.0, n_soft + 2, dtype=np.float32)[1:-1]
    return w


@torch.no_grad()
def continue_chunk(head: FlowHead, memory: torch.Tensor, prefix: torch.Tensor, frozen: int,
                   generator: torch.Generator | None = None, soft: bool = True) -> torch.Tensor:
    """Euler integration with inpainting. `prefix` [B, P, D] is in normalized action space;
    returns [B, H, D] normalized, whose first `frozen` actions equal the prefix."""
    cfg = head.cfg
    b, horizon, dim = memory.shape[0], cfg.horizon, cfg.action_dim
    p = min(prefix.shape[1], horizon)
    if prefix.shape[0] != b or prefix.shape[2] != dim:
        raise ValueError(f"prefix must be [{b}, P, {dim}], got {tuple(prefix.shape)}")
    mem = head.memory_kv(memory)
    noise = head.source(mem, cfg.flow_temperature * torch.randn(b, horizon, dim, generator=generator).to(memory))
    target = torch.zeros_like(noise)
    target[:, :p] = prefix[:, :p].to(memory)
    w = torch.from_numpy(inpaint_weights(horizon, p, min(frozen, p), soft)).to(memory)[None, :, None]
    x = noise
    n = cfg.flow_steps
    dt = -1.0 / n
    for i in range(n):
        t = 1.0 + i * dt
        if p:
            x = w * (t * noise + (1.0 - t) * target) + (1.0 - w) * x
        x = x + dt * head.velocity(mem, x, torch.full((b,), t, device=memory.device))
    hard = (w == 1.0).to(x)
    return hard * target + (1.0 - hard) * x


def rtc_predict_chunk(policy: VLAPolicy, batch: dict[str, Any], prefix: np.ndarray, frozen: int,
                      generator: torch.Generator | None = None, soft: bool = True) -> torch.Tensor:
    """`policy.predict_chunk(batch)` continued from `prefix` [P, D] (robot units) of which the
    first `frozen` actions are committed. Returns [1, H, D] in robot units."""
    if not isinstance(policy.head, FlowHead):
        raise ValueError(f"RTC continuation needs the flow head, this policy has {policy.cfg.head!r}")
    committed = torch.as_tensor(np.asarray(prefix, np.float32))
    with torch.inference_mode():  # as predict_chunk: less per-op overhead than no_grad on CPU
        memory = policy.memory(batch)
        y = policy.normalizer.normalize(ACTION, committed[None])
        x = continue_chunk(policy.head, memory, y, frozen, generator, soft)
        out = policy.normalizer.unnormalize(ACTION, x)
    out = out.clone()
    if frozen:  # exact committed actions (normalizing clips to q01..q99, which cannot come back)
        out[:, :frozen] = committed[:frozen]
    return out
