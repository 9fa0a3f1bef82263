"""Diffusion policy (Chi et al. 2023, "Diffusion Policy: Visuomotor Policy Learning via Action
Diffusion").

Why: denoising the whole chunk from noise represents multi-modal action distributions and keeps
the chunk temporally consistent. Training is DDPM (Ho et al. 2020): a random step t of
`train_steps` (the paper's 100) with the squared-cosine noise schedule (Nichol & Dhariwal 2021),
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and the denoiser predicts eps under an MSE loss.
Inference is DDIM (Song et al. 2021; deterministic, eta = 0) over `inference_steps` (10) of the
training steps, which the paper uses to cut latency ~10x at little cost; the predicted x_0 is
clipped to [-clip_sample, clip_sample] at each step (the normalizer's quantile range is [-1, 1]).

Denoisers (`spec.options["denoiser"]`):
- "unet" (default, the paper's CNN variant): a 1-D temporal conv U-Net over the chunk whose
  residual blocks are FiLM-modulated by a global condition = [diffusion-step embedding, the
  masked mean of the prefix]; the paper found it the robust default that needs little tuning.
  The chunk is zero-padded in time to a multiple of 2^(levels - 1) and cropped back.
- "transformer" (the paper's time-series transformer variant): one token per chunk step plus
  the step embedding, cross-attending to the prefix (its keys/values computed once per chunk,
  reused by all denoising steps).

Options: train_steps (100), inference_steps (10), clip_sample (1.0; None: off), denoiser,
unet_dims ([64, 128]), kernel_size (5), n_groups (8), step_embed_dim (64), ff_mult (4),
dropout (0.0).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodia.cerebellum.heads.base import ActionHead, HeadSpec, masked_mean
from embodia.cerebellum.heads.cross_attention import CrossBlock, Memory, key_mask, masked_pool


def squared_cosine_betas(steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's schedule: abar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2), s = 0.008,
    beta_i = 1 - abar((i + 1) / T) / abar(i / T), capped at `max_beta`."""
    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - abar((i + 1) / steps) / abar(i / steps), max_beta) for i in range(steps)],
                        dtype=torch.float64)


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer diffusion steps [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / max(half - 1, 1))
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, groups: int) -> None:
        super().__init__(nn.Conv1d(cin, cout, k, padding=k // 2), nn.GroupNorm(_groups(cout, groups), cout), nn.Mish())


def _groups(channels: int, groups: int) -> int:
    """The largest group count <= `groups` that divides `channels`."""
    return next(g for g in range(min(groups, channels), 0, -1) if channels % g == 0)


class _FiLMResBlock(nn.Module):
    """Two conv blocks; the condition sets a per-channel scale and bias after the first (FiLM,
    Perez et al. 2018), as in the paper's conditional residual block."""

    def __init__(self, cin: int, cout: int, cond_dim: int, k: int, groups: int) -> None:
        super().__init__()
        self.conv1 = _ConvBlock(cin, cout, k, groups)
        self.conv2 = _ConvBlock(cout, cout, k, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond)[..., None].chunk(2, dim=1)
        h = self.conv1(x) * (1 + scale) + bias  # identity at init: a near-zero scale would mute the block
        return self.conv2(h) + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """x [B, D, H'] (H' a multiple of 2^(len(dims) - 1)), cond [B, cond_dim] -> eps [B, D, H']."""

    def __init__(self, action_dim: int, cond_dim: int, dims: list[int], k: int, groups: int) -> None:
        super().__init__()
        chans = [action_dim, *dims]
        pairs = list(zip(chans[:-1], chans[1:], strict=True))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(nn.ModuleList([_FiLMResBlock(cin, cout, cond_dim, k, groups),
                                            _FiLMResBlock(cout, cout, cond_dim, k, groups),
                                            nn.Identity() if last else nn.Conv1d(cout, cout, 3, 2, 1)]))
        self.mid = nn.ModuleList([_FiLMResBlock(dims[-1], dims[-1], cond_dim, k, groups) for _ in range(2)])
        self.up = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):  # each up stage undoes one downsampling
            self.up.append(nn.ModuleList([_FiLMResBlock(2 * cout, cin, cond_dim, k, groups),
                                          _FiLMResBlock(cin, cin, cond_dim, k, groups),
                                          nn.ConvTranspose1d(cin, cin, 4, 2, 1)]))
        self.final = nn.Sequential(_ConvBlock(dims[0], dims[0], k, groups), nn.Conv1d(dims[0], action_dim, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        skips = []
        for r1, r2, down in self.down:
            x = r2(r1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for r in self.mid:
            x = r(x, cond)
        for r1, r2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(r2(r1(x, cond), cond))
        return self.final(x)


class DiffusionHead(ActionHead):
    name = "diffusion"

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__(spec)
        d, a = spec.d_model, spec.action_dim
        self.train_steps = int(spec.option("train_steps", 100))
        self.inference_steps = int(spec.option("inference_steps", 10))
        if not 1 <= self.inference_steps <= self.train_steps:
            raise ValueError(f"diffusion: inference_steps must be in [1, train_steps={self.train_steps}], "
                             f"got {self.inference_steps}")
        clip = spec.option("clip_sample", 1.0)
        self.clip_sample = None if clip is None else float(clip)
        self.denoiser = str(spec.option("denoiser", "unet"))
        self.step_dim = int(spec.option("step_embed_dim", 64))
        betas = squared_cosine_betas(self.train_steps)
        self.register_buffer("alphas_cumprod", torch.cumprod(1.0 - betas, 0).float(), persistent=False)
        self.step_mlp = nn.Sequential(nn.Linear(self.step_dim, 4 * self.step_dim), nn.Mish(),
                                      nn.Linear(4 * self.step_dim, self.step_dim))
        if self.denoiser == "unet":
            dims = [int(c) for c in spec.option("unet_dims", [64, 128])]
            self.levels = len(dims)
            self.unet = ConditionalUnet1D(a, self.step_dim + d, dims, int(spec.option("kernel_size", 5)),
                                          int(spec.option("n_groups", 8)))
        elif self.denoiser == "transformer":
            ff = int(spec.option("ff_mult", 4)) * d
            dropout = float(spec.option("dropout", 0.0))
            self.action_in = nn.Linear(a, d)
            self.step_in = nn.Linear(self.step_dim, d)
            self.pos = nn.Parameter(torch.zeros(1, spec.horizon, d))
            nn.init.normal_(self.pos, std=0.02)
            self.blocks = nn.ModuleList(CrossBlock(d, spec.n_heads, ff, dropout) for _ in range(spec.layers))
            self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, a))
        else:
            raise ValueError(f"diffusion: denoiser must be 'unet' or 'transformer', got {self.denoiser!r}")

    # --- the denoiser -------------------------------------------------------------------------

    def condition(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None) -> torch.Tensor | list[Memory]:
        """What the denoiser reads of the prefix, computed once per chunk: the pooled prefix
        (U-Net) or every block's cross-attention keys/values (transformer)."""
        if self.denoiser == "unet":
            return masked_pool(prefix, prefix_pad)
        mask = key_mask(prefix_pad)
        return [blk.memory_kv(prefix, mask) for blk in self.blocks]

    def epsilon(self, cond: torch.Tensor | list[Memory], x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise [B, H, D] for x_t [B, H, D] at integer steps t [B]."""
        s = self.step_mlp(step_embedding(t, self.step_dim))
        if self.denoiser == "unet":
            h = x_t.shape[1]
            mult = 2 ** (self.levels - 1)
            x = F.pad(x_t.transpose(1, 2), (0, -h % mult))
            return self.unet(x, torch.cat([s, cond], dim=-1))[..., :h].transpose(1, 2)
        x = self.action_in(x_t) + self.pos + self.step_in(s)[:, None]
        for blk, mem in zip(self.blocks, cond, strict=True):
            x = blk(x, mem)
        return self.out(x)

    # --- the interface ------------------------------------------------------------------------

    def fit(self, action_chunks: np.ndarray) -> None:
        """Nothing to fit: the schedule is fixed."""

    def compute_loss(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, actions: torch.Tensor,
                     action_pad: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """DDPM epsilon-prediction MSE at a uniformly drawn step (padded steps ignored)."""
        b = actions.shape[0]
        t = torch.randint(0, self.train_steps, (b,), device=actions.device)
        noise = torch.randn_like(actions)
        ab = self.alphas_cumprod[t].to(actions.dtype)[:, None, None]
        x_t = ab.sqrt() * actions + (1 - ab).sqrt() * noise
        loss = masked_mean((self.epsilon(self.condition(prefix, prefix_pad), x_t, t) - noise) ** 2, action_pad)
        return loss, {"eps_mse": float(loss.detach())}

    def ddim_steps(self) -> list[int]:
        """The training steps DDIM visits, last first ("leading" spacing: 90, 80, ..., 0 for 10
        of 100)."""
        ratio = self.train_steps // self.inference_steps
        return [i * ratio for i in reversed(range(self.inference_steps))]

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from Gaussian noise drawn with `generator`."""
        b = prefix.shape[0]
        cond = self.condition(prefix, prefix_pad)
        x = torch.randn(b, self.spec.horizon, self.spec.action_dim, generator=generator,
                        device=generator.device if generator is not None else prefix.device).to(prefix)
        steps = self.ddim_steps()
        ratio = self.train_steps // self.inference_steps
        ab_all = self.alphas_cumprod.to(prefix.dtype)
        for t in steps:
            ab = ab_all[t]
            ab_prev = ab_all[t - ratio] if t - ratio >= 0 else ab.new_tensor(1.0)
            eps = self.epsilon(cond, x, torch.full((b,), t, device=prefix.device, dtype=torch.long))
            x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
            if self.clip_sample is not None:
                x0 = x0.clamp(-self.clip_sample, self.clip_sample)
                eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # the noise consistent with the clipped x0
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x
