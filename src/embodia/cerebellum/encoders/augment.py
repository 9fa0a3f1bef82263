"""Random-shift augmentation (DrQ, diffusion policy): pad each image by a few pixels with its
own border and crop it back at a random offset, per sample.

Why: a policy trained from a few hundred demonstrations overfits to exact pixel positions;
shifts of ±4 px at 84 px are the cheapest augmentation that measurably helps image-based
imitation and RL, and leave the scene's geometry intact (unlike flips or large crops).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """images [N, C, H, W] (float) shifted by integers in [-pad, pad] per sample and axis."""
    if pad <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).to(images.device)
    # integer crops by a gather over rows then columns: exact pixels, no interpolation
    rows = (shifts[:, 0, None] + torch.arange(h, device=images.device)[None])  # [N, H]
    cols = (shifts[:, 1, None] + torch.arange(w, device=images.device)[None])  # [N, W]
    c = images.shape[1]
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def shift_pixels(height: int, width: int, fraction: float) -> int:
    """The pad for an image of this size: `fraction` of its larger side (4/84 in DrQ)."""
    return int(round(fraction * max(height, width)))
