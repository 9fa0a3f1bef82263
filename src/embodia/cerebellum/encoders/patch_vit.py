"""A small patch transformer (ViT) from scratch: conv patchify, fixed 2-D sine-cosine
positions (so any H×W works without resizing), FiLM on the patch tokens, a few encoder
layers, then attention pooling by learned queries to a handful of tokens per camera.

Why pooling: at 84 px and 8 px patches a camera is 100 patch tokens; passing them all to the
backbone would make its attention cost grow with cameras² on a CPU. A few learned queries
keep the backbone's sequence short, as Perceiver-style resamplers do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from embodia.cerebellum.encoders.base import EncoderSpec, FiLM, ImageEncoder


def sincos_2d(h: int, w: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[h*w, dim] fixed positions: half the channels encode the row, half the column."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    parts = [f(v.flatten()[:, None] * freqs[None]) for v in (ys, xs) for f in (torch.sin, torch.cos)]
    pos = torch.cat(parts, dim=-1)
    return F.pad(pos, (0, dim - pos.shape[-1])).to(dtype)


class PatchTransformer(ImageEncoder):
    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        d = spec.d_model
        self.patchify = nn.Conv2d(3, d, spec.patch, spec.patch)
        self.film = FiLM(spec.cond_dim, d) if spec.cond_dim else None
        layer = nn.TransformerEncoderLayer(d, spec.n_heads, 2 * d, 0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.layers, enable_nested_tensor=False)
        self.queries = nn.Parameter(torch.randn(spec.tokens, d) * 0.02)
        self.pool = nn.MultiheadAttention(d, spec.n_heads, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.n_tokens = spec.tokens

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patchify(images)  # [N, d, h, w]
        n, d, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + sincos_2d(h, w, d, x.device, x.dtype)
        if self.film is not None and cond is not None:
            x = self.film(x, cond, channel_dim=2)
        x = self.encoder(x)
        q = self.queries.expand(n, -1, -1)
        return self.norm(self.pool(q, x, x, need_weights=False)[0])
