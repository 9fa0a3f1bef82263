"""A ResNet-18-layout CNN (four stages of two basic blocks) with GroupNorm and spatial-softmax
keypoints, trained from scratch.

Why these parts (diffusion policy's vision encoder, Chi et al. 2023): BatchNorm's batch
statistics drift under the small, correlated batches of behaviour cloning and do not survive an
EMA of the weights, GroupNorm has neither problem; spatial softmax turns each feature map into
the image position where it fires, which is what a manipulation policy needs (where is the
gripper, where is the object) and keeps position that global pooling throws away. The stem is a
stride-2 3×3 conv, not ResNet's 7×7 + max-pool: the images here are 64-128 px, not 224.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embodia.cerebellum.encoders.base import EncoderSpec, FiLM, ImageEncoder


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    """conv-GN-ReLU-conv-GN (+ FiLM) + skip, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, cond_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = group_norm(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), group_norm(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.film = FiLM(cond_dim, cout) if cond_dim else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        if self.film is not None and cond is not None:
            h = self.film(h, cond)
        return F.relu(h + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Feature map [N, C, h, w] -> K keypoints [N, K, 2] (expected x, y in [-1, 1])."""

    def __init__(self, channels: int, keypoints: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        logits = self.proj(x).flatten(2) / self.log_temperature.exp()  # [N, K, h*w]
        attn = logits.softmax(-1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)  # (x, y)
        return attn @ grid


class ResNetKeypoints(ImageEncoder):
    """Tokens: one per keypoint (its (x, y) projected, plus a learned keypoint embedding) and
    one pooled appearance token."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        w, cond = spec.width, spec.cond_dim
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), group_norm(w), nn.ReLU())
        chans = [w, 2 * w, 4 * w, 8 * w]
        blocks, cin = [], w
        for i, c in enumerate(chans):
            for j in range(2):
                blocks.append(BasicBlock(cin, c, 2 if (j == 0 and i > 0) else 1, cond))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.keypoints = SpatialSoftmax(cin, spec.keypoints)
        self.kp_proj = nn.Linear(2, spec.d_model)
        self.kp_embed = nn.Parameter(torch.randn(spec.keypoints, spec.d_model) * 0.02)
        self.pool_proj = nn.Linear(cin, spec.d_model)
        self.n_tokens = spec.keypoints + 1

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(images)
        for blk in self.blocks:
            x = blk(x, cond)
        kp = self.kp_proj(self.keypoints(x)) + self.kp_embed  # [N, K, d]
        pooled = self.pool_proj(x.mean(dim=(2, 3)))[:, None]  # [N, 1, d]
        return torch.cat([kp, pooled], dim=1)
