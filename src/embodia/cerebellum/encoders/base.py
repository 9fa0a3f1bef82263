"""What an image encoder is built from, and the FiLM layer that lets language condition it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncoderSpec:
    """Saved in config.json (`encoder`). `cond_dim` 0 turns FiLM off."""

    kind: str = "resnet"  # "resnet" (ResNet-18 layout, GroupNorm, spatial softmax) or "vit"
    d_model: int = 128
    width: int = 16  # resnet: channels of the first stage (x2 per stage); vit: unused
    keypoints: int = 16  # resnet: spatial-softmax keypoints = tokens (+1 pooled token)
    cond_dim: int = 384
    patch: int = 8  # vit: patch size in pixels
    layers: int = 2  # vit: transformer layers
    tokens: int = 8  # vit: attention-pooled output tokens per camera
    n_heads: int = 4

    def __post_init__(self) -> None:
        if self.kind not in ("resnet", "vit"):
            raise ValueError(f"encoder.kind must be 'resnet' or 'vit', got {self.kind!r}")
        for name in ("d_model", "width", "keypoints", "patch", "layers", "tokens", "n_heads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"encoder.{name} must be a positive integer, got {v!r}")
        if self.cond_dim < 0:
            raise ValueError(f"encoder.cond_dim must be >= 0, got {self.cond_dim}")


class ImageEncoder(nn.Module):
    """images [N, 3, H, W] in [-1, 1], cond [N, cond_dim] or None -> tokens [N, n_tokens, d]."""

    n_tokens: int

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec


class FiLM(nn.Module):
    """Feature-wise affine modulation (1 + gamma) * x + beta from a condition vector. Zero
    initialized, so an untrained FiLM is the identity and language is added gradually."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        gamma, beta = self.proj(cond).chunk(2, dim=-1)  # [N, C]
        shape = [x.shape[0]] + [1] * (x.ndim - 1)
        shape[channel_dim] = gamma.shape[-1]
        return x * (1 + gamma.view(shape)) + beta.view(shape)
