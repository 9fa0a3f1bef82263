"""The interface every general-core action head implements.

A head turns the backbone's prefix (the fused language, state and camera tokens of one
observation) into a normalized action chunk [B, H, D]. The policy owns everything the heads
share (the encoders, the backbone, the normalizer, chunking, `select_action`), so a new head is
one file with one class plus one registry line in `heads/__init__.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class HeadSpec:
    """What every head is built from; saved in the checkpoint's config.json (`head_spec`) and
    passed back unchanged on load, so a head must be rebuildable from it alone.

    `options` holds head-specific settings and any state `fit` learns (e.g. FAST's BPE
    vocabulary); it must stay JSON-able (str/int/float/bool/None, lists, str-keyed dicts).
    """

    d_model: int
    n_heads: int
    layers: int
    action_dim: int
    horizon: int
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any) -> Any:
        """A head option with its default (the default is not written back)."""
        return self.options.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"head_spec: unknown field(s) {unknown}")
        missing = sorted(names - set(d) - {"options"})
        if missing:
            raise ValueError(f"head_spec: missing field(s) {missing}")
        for k in ("d_model", "n_heads", "layers", "action_dim", "horizon"):
            if not isinstance(d[k], int) or isinstance(d[k], bool) or d[k] < 1:
                raise ValueError(f"head_spec.{k} must be a positive integer, got {d[k]!r}")
        opts = d.get("options", {})
        if not isinstance(opts, dict):
            raise ValueError(f"head_spec.options must be an object, got {type(opts).__name__}")
        return cls(**{**d, "options": dict(opts)})


class ActionHead(nn.Module):
    """Base class of the general core's heads.

    Conventions (every head, so the policy never special-cases one):
    - `prefix` [B, T, d_model]: the backbone's output; `prefix_pad` [B, T] bool, True where a
      token is padding (None: no padding). The prefix is computed once per chunk; a head that
      samples iteratively should compute its cross-attention keys/values once per `sample`.
    - `actions` [B, H, D]: normalized (the policy's Normalizer); `action_pad` [B, H] bool, True
      where the step lies past the episode's end (the window loader's `action_is_pad`), which
      the loss must ignore (None: nothing padded).
    - `sample` returns a normalized chunk [B, H, D]; `generator` makes it reproducible.
    - State that `fit` learns must live in `spec.options` (saved in config.json) or in
      buffers whose shapes the spec fixes, so a checkpoint rebuilds the same head.
    """

    name: str = ""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        if spec.d_model % spec.n_heads:
            raise ValueError(f"head_spec.d_model ({spec.d_model}) must be divisible by n_heads ({spec.n_heads})")
        self.spec = spec

    def fit(self, action_chunks: np.ndarray) -> None:
        """Optional, once before training: normalized chunks [N, H, D] from the training set
        (padded steps already dropped or held at the episode's last action). Default: nothing."""

    def compute_loss(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, actions: torch.Tensor,
                     action_pad: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss and logs (plain floats)."""
        raise NotImplementedError

    def sample(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """A normalized chunk [B, H, D] (no gradients needed)."""
        raise NotImplementedError


def masked_mean(err: torch.Tensor, action_pad: torch.Tensor | None) -> torch.Tensor:
    """Mean of a per-step error [B, H] (or [B, H, D], averaged over D first) over the steps
    that are not padding; every head's loss reduces this way."""
    if err.ndim == 3:
        err = err.mean(-1)
    if action_pad is None:
        return err.mean()
    keep = (~action_pad.bool()).to(err.dtype)
    return (err * keep).sum() / keep.sum().clamp(min=1.0)
