"""`flow`: a pi0-style flow-matching action expert over the general core's prefix.

Training: t ~ Beta(1.5, 1) (weighting the noisier end, as pi0), x_t = t * noise + (1 - t) * a,
regress the velocity u = noise - a with a bidirectional decoder over the H steps of the chunk
that cross-attends to the prefix. Inference: start at t = 1 and take `steps` Euler steps to
t = 0; the prefix's cross-attention keys/values are computed once per chunk, not per step.

Option `prior` (default on, from the object-centric preset's measurements: a flow from pure
noise learned to read the prefix slowly on CPU budgets): the source is N(mu, sigma^2) around a
chunk mu the same decoder regresses from the prefix (trained with MSE), so the observation is
in x_t from the first step. `temperature` scales the sampling noise at inference (0: the flow
refines the regressed chunk deterministically).

Options: steps (10), beta ([1.5, 1.0]), prior (true), sigma (0.5), temperature (1.0),
ff_mult (2), dropout (0.0).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embodia.cerebellum.heads.base import ActionHead, HeadSpec, masked_mean
from embodia.cerebellum.heads.decoder import KV, DecoderBlock


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    ang = t[:, None].float() * 1000.0 * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


def unpadded(prefix_pad: torch.Tensor | None) -> None:
    """The object-centric decoder block attends to every prefix token: refuse a padded prefix
    rather than attend to padding (the general core's prefix is never padded)."""
    if prefix_pad is not None and bool(prefix_pad.any()):
        raise ValueError("this head takes an unpadded prefix (prefix_pad must be None or all False)")


class FlowMatchingHead(ActionHead):
    name = "flow"

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__(spec)
        d, o = spec.d_model, spec.option
        self.steps = int(o("steps", 10))
        a, b = (float(x) for x in o("beta", [1.5, 1.0]))
        self.use_prior = bool(o("prior", True))
        self.sigma = float(o("sigma", 0.5))
        self.temperature = float(o("temperature", 1.0))
        if self.steps < 1 or a <= 0 or b <= 0 or self.sigma <= 0 or self.temperature < 0:
            raise ValueError(f"head_spec.options: steps >= 1, beta > 0, sigma > 0, temperature >= 0; got "
                             f"{spec.options}")
        ff, drop = int(o("ff_mult", 2)) * d, float(o("dropout", 0.0))
        self.action_in = nn.Linear(spec.action_dim, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.pos = nn.Parameter(torch.randn(1, spec.horizon, d) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(d, spec.n_heads, ff, drop) for _ in range(spec.layers))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, spec.action_dim))
        if self.use_prior:
            self.prior_query = nn.Parameter(torch.randn(1, spec.horizon, d) * 0.02)
            self.prior_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, spec.action_dim))
        self.beta = torch.distributions.Beta(torch.tensor(a), torch.tensor(b))

    def _decode(self, mem: list[KV], h: torch.Tensor) -> torch.Tensor:
        for blk, kv in zip(self.blocks, mem, strict=True):
            h = blk(h, kv, causal=False)
        return h

    def velocity(self, mem: list[KV], x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.action_in(x_t) + self.pos + self.time_mlp(time_embedding(t, self.spec.d_model).to(x_t.dtype))[:, None]
        return self.out(self._decode(mem, h))

    def prior(self, mem: list[KV]) -> torch.Tensor:
        b = mem[0][0].shape[0]
        return self.prior_out(self._decode(mem, self.prior_query.expand(b, -1, -1) + self.pos))

    def compute_loss(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, actions: torch.Tensor,
                     action_pad: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        unpadded(prefix_pad)
        mem = [blk.memory_kv(prefix) for blk in self.blocks]
        b = actions.shape[0]
        t = (self.beta.sample((b,)).to(actions) * 0.999 + 0.001)
        noise = torch.randn_like(actions)
        logs: dict[str, float] = {}
        loss = actions.new_zeros(())
        if self.use_prior:
            mu = self.prior(mem)
            reg = masked_mean((mu - actions) ** 2, action_pad)
            logs["prior_mse"] = float(reg.detach())
            loss = loss + reg
            noise = mu.detach() + self.sigma * noise
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        flow = masked_mean((self.velocity(mem, x_t, t) - (noise - actions)) ** 2, action_pad)
        logs["flow_mse"] = float(flow.detach())
        return loss + flow, logs

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        unpadded(prefix_pad)
        b = prefix.shape[0]
        mem = [blk.memory_kv(prefix) for blk in self.blocks]  # once per chunk
        noise = torch.randn(b, self.spec.horizon, self.spec.action_dim, generator=generator).to(prefix)
        noise = self.temperature * noise
        x = self.prior(mem) + self.sigma * noise if self.use_prior else noise
        dt = -1.0 / self.steps
        for i in range(self.steps):
            t = torch.full((b,), 1.0 + i * dt, device=prefix.device)
            x = x + dt * self.velocity(mem, x, t)
        return x
