"""A small CNN per camera, trained from scratch, optionally FiLM-conditioned on language.

It yields two kinds of tokens: a coarse grid (what is roughly where, 1/16 resolution) and
spatial-softmax keypoints (Levine et al. 2016): each keypoint is the expected image
coordinate of one feature map at 1/4 resolution, which keeps the sub-pixel precision a
grasp needs and that a 6x6 grid throws away. With FiLM, the instruction decides which
features (the red cube or the green one) the keypoints lock onto.
"""

from __future__ import annotations

import torch
from torch import nn


def image_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images -> roughly zero-mean, unit-scale floats."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    return (x - 0.5) / 0.25


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


class SpatialSoftmax(nn.Module):
    """[B, C, h, w] features -> [B, K, 2] expected (x, y) in [-1, 1] of K learned maps."""

    def __init__(self, channels: int, keypoints: int, side: int) -> None:
        super().__init__()
        self.logits = nn.Conv2d(channels, keypoints, 1)
        self.log_temp = nn.Parameter(torch.zeros(keypoints))
        lin = torch.linspace(-1.0, 1.0, side)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], -1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x).flatten(2) * self.log_temp.exp()[None, :, None]
        return torch.softmax(logits, dim=-1) @ self.grid


class VisionEncoder(nn.Module):
    """[B, 3, H, W] uint8 or float in [0, 1] -> [B, (H/16)*(W/16) + keypoints, d] tokens."""

    def __init__(self, d_model: int, image_size: int, cond_dim: int | None, keypoints: int = 32) -> None:
        super().__init__()
        fine = [(3, 32, 5, 2), (32, 64, 3, 2), (64, 64, 3, 1)]  # -> 1/4 resolution
        coarse = [(64, 64, 3, 2), (64, d_model, 3, 2)]  # -> 1/16 resolution
        self.fine = nn.ModuleList(FiLMBlock(*spec, cond_dim) for spec in fine)
        self.coarse = nn.ModuleList(FiLMBlock(*spec, cond_dim) for spec in coarse)
        side = -(-image_size // 16)
        self.pos = nn.Parameter(torch.zeros(1, side * side, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.keypoints = keypoints
        if keypoints:
            self.spatial_softmax = SpatialSoftmax(64, keypoints, -(-image_size // 4))
            self.kp_proj = nn.Linear(2, d_model)
            self.kp_embed = nn.Parameter(torch.zeros(1, keypoints, d_model))
            nn.init.normal_(self.kp_embed, std=0.02)

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = image_to_float(images)
        for b in self.fine:
            x = b(x, cond)
        feats = x
        for b in self.coarse:
            x = b(x, cond)
        grid = x.flatten(2).transpose(1, 2)
        tokens = grid + self.pos[:, : grid.shape[1]]
        if not self.keypoints:
            return tokens
        kp = self.kp_proj(self.spatial_softmax(feats)) + self.kp_embed
        return torch.cat([tokens, kp], dim=1)
