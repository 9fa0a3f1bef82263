"""pi0-style flow-matching action expert.

Training: t ~ Beta(1.5, 1) (weighting the noisier end), x_t = t * noise + (1 - t) * action,
regress the velocity u = noise - action. Inference: start from noise at t = 1 and take N
Euler steps to t = 0, attending to the same prefix at every step: the prefix and its
cross-attention keys/values are computed once per chunk, not once per step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.heads.decoder import KV, DecoderBlock


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    ang = t[:, None] * 1000.0 * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class FlowHead(nn.Module):
    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.action_in = nn.Linear(cfg.action_dim, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.pos = nn.Parameter(torch.zeros(1, cfg.horizon, d))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            DecoderBlock(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout) for _ in range(cfg.head_layers))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.action_dim))
        a, b = cfg.flow_beta
        self.beta = torch.distributions.Beta(torch.tensor(float(a)), torch.tensor(float(b)))

    def memory_kv(self, memory: torch.Tensor) -> list[KV]:
        return [blk.memory_kv(memory) for blk in self.blocks]

    def velocity(self, mem: list[KV], x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.action_in(x_t) + self.pos + self.time_mlp(time_embedding(t, self.cfg.d_model))[:, None]
        for blk, kv in zip(self.blocks, mem, strict=True):
            h = blk(h, kv, causal=False)
        return self.out(h)

    def loss(self, memory: torch.Tensor, actions: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, dict]:
        b = actions.shape[0]
        t = self.beta.sample((b,)).to(actions) * 0.999 + 0.001
        noise = torch.randn_like(actions)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        v = self.velocity(self.memory_kv(memory), x_t, t)
        err = ((v - (noise - actions)) ** 2).mean(-1)
        keep = (~pad).float()
        loss = (err * keep).sum() / keep.sum().clamp(min=1.0)
        return loss, {"flow_mse": float(loss.detach())}

    @torch.no_grad()
    def sample(self, memory: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = memory.shape[0]
        x = torch.randn(b, self.cfg.horizon, self.cfg.action_dim, generator=generator).to(memory)
        n = self.cfg.flow_steps
        dt = -1.0 / n
        mem = self.memory_kv(memory)
        for i in range(n):
            t = torch.full((b,), 1.0 + i * dt, device=memory.device)
            x = x + dt * self.velocity(mem, x, t)
        return x
