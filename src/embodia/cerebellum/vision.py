"""A small CNN per camera, trained from scratch, optionally FiLM-conditioned on language,
producing a grid of visual tokens."""

from __future__ import annotations

import torch
from torch import nn


class FiLMBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, cond_dim: int | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)
        self.norm = nn.GroupNorm(8, c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out) if cond_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(self.conv(x))
        if self.film is not None and cond is not None:
            gamma, beta = self.film(cond).chunk(2, dim=-1)
            h = h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return torch.relu(h)


class VisionEncoder(nn.Module):
    """[B, 3, H, W] uint8 or float in [0, 1] -> [B, (H/16)*(W/16), d] tokens."""

    def __init__(self, d_model: int, image_size: int, cond_dim: int | None) -> None:
        super().__init__()
        chans = [3, 32, 64, 64, d_model]
        kernels = [5, 3, 3, 3]
        self.blocks = nn.ModuleList(
            FiLMBlock(chans[i], chans[i + 1], kernels[i], 2, cond_dim) for i in range(4)
        )
        side = -(-image_size // 16)
        self.pos = nn.Parameter(torch.zeros(1, side * side, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        x = (x - self.mean) / self.std
        for b in self.blocks:
            x = b(x, cond)
        tokens = x.flatten(2).transpose(1, 2)
        return tokens + self.pos[:, : tokens.shape[1]]
