"""The transformer block the act, diffusion (transformer denoiser) and tokens heads share:
self-attention over the head's own sequence (causal or not), cross-attention to the prefix
with its padding masked, MLP; pre-norm.

Why not the object-centric preset's `DecoderBlock`: the general core's prefix is padded (a
variable number of instruction tokens, cameras), so cross-attention needs a key mask. The
prefix's keys/values are computed once per chunk (`memory_kv`) and reused by every
autoregressive token or denoising step, and an optional preallocated key/value cache serves
autoregressive decoding one position at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Memory(NamedTuple):
    """One block's cross-attention keys and values [B, heads, T, dh] and the key mask
    [B, 1, 1, T] (True = attend; None = attend to everything)."""

    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor | None


def key_mask(pad: torch.Tensor | None) -> torch.Tensor | None:
    """Padding [B, T] (True = pad) -> an attention mask [B, 1, 1, T] (True = attend), or None
    when nothing is padded. A row padded everywhere attends to all its tokens instead (a
    softmax over no keys is NaN)."""
    if pad is None:
        return None
    pad = pad.bool()
    pad = pad & ~pad.all(-1, keepdim=True)
    if not bool(pad.any()):
        return None
    return (~pad)[:, None, None, :]


def masked_pool(x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    """Mean over the non-padded tokens of x [B, T, d] -> [B, d] (all tokens where a row is
    padded everywhere)."""
    if pad is None:
        return x.mean(1)
    keep = (~pad.bool()).to(x.dtype)
    keep = torch.where(keep.sum(-1, keepdim=True) > 0, keep, torch.ones_like(keep))
    return (x * keep[..., None]).sum(1) / keep.sum(-1, keepdim=True)


def _split(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).flatten(2)


class CrossBlock(nn.Module):
    """Pre-norm: self-attention, masked cross-attention to the prefix, GELU MLP."""

    def __init__(self, d: int, n_heads: int, ff: int, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
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

    def memory_kv(self, memory: torch.Tensor, mask: torch.Tensor | None) -> Memory:
        k, v = self.cross_kv(memory).chunk(2, dim=-1)
        return Memory(_split(k, self.n_heads), _split(v, self.n_heads), mask)

    def forward(self, x: torch.Tensor, mem: Memory, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                pos: int = 0) -> torch.Tensor:
        """Without `cache`: x [B, L, d] is the whole sequence. With `cache` (preallocated keys
        and values [B, heads, L_max, dh]): x [B, 1, d] is position `pos`, written into the
        cache, attending to positions 0..pos (causal decoding)."""
        p = self.dropout if self.training else 0.0
        q, k, v = (_split(t, self.n_heads) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        else:
            ck, cv = cache
            ck[:, :, pos] = k[:, :, 0]
            cv[:, :, pos] = v[:, :, 0]
            a = F.scaled_dot_product_attention(q, ck[:, :, : pos + 1], cv[:, :, : pos + 1], dropout_p=p)
        x = x + self.drop(self.self_out(_merge(a)))
        q = _split(self.cross_q(self.norm2(x)), self.n_heads)
        a = F.scaled_dot_product_attention(q, mem.k, mem.v, attn_mask=mem.mask, dropout_p=p)
        x = x + self.drop(self.cross_out(_merge(a)))
        return x + self.drop(self.mlp(self.norm3(x)))
