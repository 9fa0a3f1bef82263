"""Uniform action tokenizer (RT-2 / OpenVLA): [-1, 1] cut into `bins` equal bins.

Actions reach it already quantile-normalized (q01 -> -1, q99 -> +1, clipped), so uniform bins
over [-1, 1] spend the vocabulary where the data is. Values outside [-1, 1] (and +-inf) fall
into the end bins; the round trip is exact up to half a bin width (1 / bins). Inputs must not
be NaN (the policy rejects NaN observations; the token head zeroes padded actions first).
"""

from __future__ import annotations

import torch


def tokenize(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Floats -> bin indices in [0, bins) (long, same shape)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.double()
    idx = torch.floor((x.clamp(-1.0, 1.0) + 1.0) * (bins / 2.0))
    return idx.clamp(0, bins - 1).long()  # x == 1 lands on `bins`: the last bin is closed


def detokenize(tokens: torch.Tensor, bins: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bin indices -> bin centres, -1 + (i + 0.5) * 2 / bins."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    t = torch.as_tensor(tokens).to(dtype)
    return -1.0 + (t + 0.5) * (2.0 / bins)
