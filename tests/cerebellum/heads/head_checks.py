"""Shared checks for the act, diffusion and tokens heads: a small random batch, overfitting it,
and a safetensors round trip of a head's state_dict."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from embodia.cerebellum.heads import ActionHead, HeadSpec, build_head

B, T, D_MODEL, H, D = 4, 10, 32, 8, 3


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random prefixes (the last tokens of two rows padded) and smooth chunks in [-1, 1] (the
    last steps of row 0 padded)."""
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randn(B, T, D_MODEL, generator=g)
    prefix_pad = torch.zeros(B, T, dtype=torch.bool)
    prefix_pad[1, 7:] = True
    prefix_pad[2, 4:] = True
    t = torch.linspace(0, 1, H)[None, :, None]
    actions = (0.8 * torch.sin(4 * t + 3 * torch.rand(B, 1, D, generator=g))).clamp(-1, 1)
    action_pad = torch.zeros(B, H, dtype=torch.bool)
    action_pad[0, 6:] = True
    return {"prefix": prefix, "prefix_pad": prefix_pad, "actions": actions, "action_pad": action_pad}


def spec(**options: object) -> HeadSpec:
    return HeadSpec(d_model=D_MODEL, n_heads=4, layers=2, action_dim=D, horizon=H, options=dict(options))


def overfit(head: ActionHead, data: dict[str, torch.Tensor], steps: int = 50, lr: float = 2e-3) -> list[float]:
    """Losses of `steps` AdamW steps on one batch (seeded, so the check is reproducible)."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    head.train()
    losses = []
    for _ in range(steps):
        loss, logs = head.compute_loss(data["prefix"], data["prefix_pad"], data["actions"], data["action_pad"])
        assert torch.isfinite(loss), logs
        assert all(isinstance(v, float) for v in logs.values()), logs
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    head.eval()
    return losses


def decreased(losses: list[float], factor: float) -> bool:
    """The mean of the last 5 losses is below `factor` times the mean of the first 5."""
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    return last < factor * first


def reloaded(head: ActionHead, name: str, tmp_path: Path) -> ActionHead:
    """A fresh head of the same spec with `head`'s state_dict through a safetensors file."""
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path))
    fresh = build_head(name, HeadSpec.from_dict(head.spec.to_dict()))
    fresh.load_state_dict(load_file(str(path)), strict=True)
    return fresh.eval()


def sample(head: ActionHead, data: dict[str, torch.Tensor], seed: int = 0) -> torch.Tensor:
    out = head.sample(data["prefix"], data["prefix_pad"], torch.Generator().manual_seed(seed))
    assert out.shape == (B, H, D)
    assert torch.isfinite(out).all()
    return out


def seeded_loss(head: ActionHead, data: dict[str, torch.Tensor], n: int = 16) -> float:
    """The loss averaged over `n` fixed draws of its randomness (diffusion's step and noise):
    a single step's loss is too noisy to show a trend in 50 steps."""
    head.eval()
    out = []
    with torch.no_grad():
        for s in range(n):
            torch.manual_seed(100 + s)
            loss, _ = head.compute_loss(data["prefix"], data["prefix_pad"], data["actions"], data["action_pad"])
            out.append(float(loss))
    return sum(out) / n
