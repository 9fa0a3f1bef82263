"""pi0-style flow-matching action expert.

Training: t ~ Beta(1.5, 1) (weighting the noisier end), x_t = t * noise + (1 - t) * action,
regress the velocity u = noise - action. Inference: start from noise at t = 1 and take N
Euler steps to t = 0, attending to the same prefix at every step: the prefix and its
cross-attention keys/values are computed once per chunk, not once per step.

With `flow_prior`, the source is not N(0, I) but N(mu, sigma^2 I) around a chunk mu that the
same decoder regresses from the prefix (one more pass, trained with MSE). Why: on a CPU
budget of a few thousand steps a flow learns to read the prefix through cross-attention
slowly and samples close to the marginal (one frame's samples pointed every way); a
regressed mean is learned fast, and starting from it puts the observation into x_t itself,
while the flow still models the spread around it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.heads.decoder import KV, DecoderBlock
from embodia.cerebellum.tracing import TraceCache, tracing_applies


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
            DecoderBlock(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, cfg.drop_path) for _ in range(cfg.head_layers))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.action_dim))
        if cfg.flow_prior:
            self.prior_query = nn.Parameter(torch.zeros(1, cfg.horizon, d))
            nn.init.normal_(self.prior_query, std=0.02)
            self.prior_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.action_dim))
        a, b = cfg.flow_beta
        self.beta = torch.distributions.Beta(torch.tensor(float(a)), torch.tensor(float(b)))
        self._fast_velocity = TraceCache("_velocity_flat")
        self._fast_prior = TraceCache("_prior_flat")

    def memory_kv(self, memory: torch.Tensor) -> list[KV]:
        return [blk.memory_kv(memory) for blk in self.blocks]

    def velocity(self, mem: list[KV], x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity field at (x_t, t); sampling runs a trace of it (`tracing`)."""
        if tracing_applies(self):
            return self._fast_velocity(self, x_t, t, *_flat(mem))
        return self._velocity(mem, x_t, t)

    def _velocity_flat(self, x_t: torch.Tensor, t: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
        return self._velocity(_pairs(kv), x_t, t)

    def _velocity(self, mem: list[KV], x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.action_in(x_t) + self.pos + self.time_mlp(time_embedding(t, self.cfg.d_model))[:, None]
        for blk, kv in zip(self.blocks, mem, strict=True):
            h = blk(h, kv, causal=False)
        return self.out(h)

    def prior(self, mem: list[KV]) -> torch.Tensor:
        """The regressed chunk mu [B, H, D] (flow_prior only)."""
        if tracing_applies(self):
            return self._fast_prior(self, *_flat(mem))
        return self._prior(mem)

    def _prior_flat(self, *kv: torch.Tensor) -> torch.Tensor:
        return self._prior(_pairs(kv))

    def _prior(self, mem: list[KV]) -> torch.Tensor:
        b = mem[0][0].shape[0]
        h = self.prior_query.expand(b, -1, -1) + self.pos
        for blk, kv in zip(self.blocks, mem, strict=True):
            h = blk(h, kv, causal=False)
        return self.prior_out(h)

    def source(self, mem: list[KV], noise: torch.Tensor) -> torch.Tensor:
        """Where integration starts (t = 1) for standard-normal `noise`."""
        if not self.cfg.flow_prior:
            return noise
        return self.prior(mem) + self.cfg.flow_sigma * noise

    def draws(self, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss's random inputs (time and noise), drawn outside it so that the loss itself
        is a pure tensor function (what `torch.compile` traces without breaks)."""
        t = self.beta.sample((actions.shape[0],)).to(actions) * 0.999 + 0.001
        return {"t": t, "noise": torch.randn_like(actions)}

    def loss(self, memory: torch.Tensor, actions: torch.Tensor, pad: torch.Tensor,
             draws: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow-matching loss (plus the prior's MSE); logs are detached tensors."""
        draws = draws if draws is not None else self.draws(actions)
        t, noise = draws["t"], draws["noise"]
        mem = self.memory_kv(memory)
        keep = (~pad).float()
        logs = {}
        reg = None
        if self.cfg.flow_prior:
            mu = self.prior(mem)
            reg = (((mu - actions) ** 2).mean(-1) * keep).sum() / keep.sum().clamp(min=1.0)
            logs["prior_mse"] = reg.detach()
            noise = mu.detach() + self.cfg.flow_sigma * noise
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        v = self.velocity(mem, x_t, t)
        err = ((v - (noise - actions)) ** 2).mean(-1)
        loss = (err * keep).sum() / keep.sum().clamp(min=1.0)
        logs["flow_mse"] = loss.detach()
        return (loss + reg if reg is not None else loss), logs

    @torch.no_grad()
    def sample(self, memory: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = memory.shape[0]
        mem = self.memory_kv(memory)
        noise = torch.randn(b, self.cfg.horizon, self.cfg.action_dim, generator=generator).to(memory)
        x = self.source(mem, self.cfg.flow_temperature * noise)
        n = self.cfg.flow_steps
        dt = -1.0 / n
        for i in range(n):
            t = torch.full((b,), 1.0 + i * dt, device=memory.device)
            x = x + dt * self.velocity(mem, x, t)
        return x



def _flat(mem: list[KV]) -> list[torch.Tensor]:
    """Per-block (keys, values) -> one flat list (what a trace takes); `_pairs` inverts it."""
    return [z for kv in mem for z in kv]


def _pairs(flat: tuple[torch.Tensor, ...]) -> list[KV]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
