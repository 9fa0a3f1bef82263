"""`l1`: OpenVLA-OFT-style parallel decoding. H learned query tokens (one per step of the
chunk) pass once through a bidirectional decoder that cross-attends to the prefix, and an MLP
reads the whole chunk off them; the loss is L1 on the normalized actions.

Why: one forward pass per chunk (no autoregression, no denoising loop) is the cheapest head
at inference, and OpenVLA-OFT found L1 regression with parallel decoding as good as
diffusion on LIBERO while 26x faster to decode. It models one mode per observation: where
demonstrations disagree it averages them (the generative heads do not).

Options: ff_mult (2), dropout (0.0).
"""

from __future__ import annotations

import torch
from torch import nn

from embodia.cerebellum.heads.base import ActionHead, HeadSpec, masked_mean
from embodia.cerebellum.heads.decoder import DecoderBlock
from embodia.cerebellum.heads.flow_matching import unpadded


class ParallelL1Head(ActionHead):
    name = "l1"

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__(spec)
        d = spec.d_model
        ff, drop = int(spec.option("ff_mult", 2)) * d, float(spec.option("dropout", 0.0))
        self.queries = nn.Parameter(torch.randn(1, spec.horizon, d) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(d, spec.n_heads, ff, drop) for _ in range(spec.layers))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, spec.action_dim))

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        h = self.queries.expand(prefix.shape[0], -1, -1)
        for blk in self.blocks:
            h = blk(h, blk.memory_kv(prefix), causal=False)
        return self.out(h)

    def compute_loss(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, actions: torch.Tensor,
                     action_pad: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        unpadded(prefix_pad)
        loss = masked_mean((self(prefix) - actions).abs(), action_pad)
        return loss, {"l1": float(loss.detach())}

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        unpadded(prefix_pad)
        return self(prefix)
