"""The transformer decoder block both action heads share: self-attention over the action
sequence, cross-attention to the prefix (its keys/values computed once per chunk and reused,
by every autoregressive token or every denoising step), MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random `p` of the samples (rescaling the
    rest). Like dropout it trains an implicit ensemble of sub-networks, but it draws one number
    per sample instead of one per activation (elementwise dropout's random draws cost this
    small model 65-80% more time per compiled CPU step)."""
    if not training or p == 0.0:
        return x
    keep = (torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=torch.float32) >= p).to(x.dtype)
    return x * keep / (1.0 - p)


def _split(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, L, d] -> [B, heads, L, d / heads]."""
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, L, dh] -> [B, L, heads * dh]."""
    return x.transpose(1, 2).flatten(2)


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to memory, MLP."""

    def __init__(self, d: int, n_heads: int, ff: int, dropout: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.cross_q = nn.Linear(d, d)
        self.cross_kv = nn.Linear(d, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.norm3 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def memory_kv(self, memory: torch.Tensor) -> KV:
        k, v = self.cross_kv(memory).chunk(2, dim=-1)
        return _split(k, self.n_heads), _split(v, self.n_heads)

    def forward(self, x: torch.Tensor, mem: KV, cache: KV | None = None, pos: int = 0,
                causal: bool = True) -> torch.Tensor:
        """Without `cache`: x [B, L, d] is the whole sequence (causal unless `causal=False`,
        as for the flow head's chunk, whose steps all see each other). With `cache`
        (preallocated [B, heads, L_max, dh] keys and values): x [B, 1, d] is position `pos`,
        its key/value written into the cache; it attends to positions 0..pos."""
        p = self.dropout if self.training else 0.0
        q, k, v = (_split(t, self.n_heads) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        else:
            ck, cv = cache
            ck[:, :, pos] = k[:, :, 0]
            cv[:, :, pos] = v[:, :, 0]
            # the one new query sees the whole cache so far: no mask needed
            a = F.scaled_dot_product_attention(q, ck[:, :, :pos + 1], cv[:, :, :pos + 1], dropout_p=p)
        x = x + drop_path(self.drop(self.self_out(_merge(a))), self.drop_path, self.training)
        q = _split(self.cross_q(self.norm2(x)), self.n_heads)
        a = F.scaled_dot_product_attention(q, mem[0], mem[1], dropout_p=p)
        x = x + drop_path(self.drop(self.cross_out(_merge(a))), self.drop_path, self.training)
        return x + drop_path(self.drop(self.mlp(self.norm3(x))), self.drop_path, self.training)
