"""Feature normalization from a dataset's `meta/stats.json`.

Why: policies train on inputs and targets of comparable scale. Joint angles, gripper
widths and metre-sized end-effector deltas differ by orders of magnitude, and a policy's
outputs must be mapped back to robot units exactly as its targets were mapped forward, so
the parameters travel with the checkpoint (`to_dict`/`from_dict`, JSON-able).

Modes, per feature:
- "mean_std": (x - mean) / max(std, eps) -- the usual z-score.
- "quantile": q01 -> -1, q99 -> +1, linear in between, clipped to [-1, 1] -- robust to the
  rare outliers of teleoperated data (what pi0/pi0-FAST-style policies use).
- "identity": unchanged (needs no statistics).
Both non-trivial modes are affine, x_n = (x - shift) / scale, so `unnormalize` is exact
(quantile values outside [q01, q99] are clipped and cannot come back).
Parameters keep the statistics' shape, so per-channel image stats ([3, 1, 1]) broadcast
over [..., 3, H, W] and vector stats ([D]) over [..., D].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

NormMode = Literal["mean_std", "quantile", "identity"]
MODES: tuple[str, ...] = ("mean_std", "quantile", "identity")
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
_NEEDS = {"mean_std": ("mean", "std"), "quantile": ("q01", "q99"), "identity": ()}


@dataclass(frozen=True)
class FeatureNorm:
    """The affine map of one feature: x_n = (x - shift) / scale (then clipped if `clip`)."""

    mode: str
    stats: dict[str, np.ndarray]  # the statistics it was built from (for to_dict)
    shift: np.ndarray
    scale: np.ndarray
    clip: bool


class Normalizer:
    """Per-feature normalize/unnormalize for numpy arrays and torch tensors of any leading dims."""

    def __init__(self, stats: Mapping[str, Mapping[str, Any]], modes: Mapping[str, str],
                 eps: float = 1e-8) -> None:
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = float(eps)
        self.features: dict[str, FeatureNorm] = {}
        for key, mode in modes.items():
            self.features[key] = self._build(key, mode, stats)
        self._torch_cache: dict[tuple[str, str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _build(self, key: str, mode: str, stats: Mapping[str, Mapping[str, Any]]) -> FeatureNorm:
        if mode not in MODES:
            raise ValueError(f"feature {key!r}: unknown normalization mode {mode!r}; modes: {list(MODES)}")
        if mode == "identity":
            return FeatureNorm(mode, {}, np.zeros(()), np.ones(()), False)
        if key not in stats:
            raise KeyError(f"feature {key!r} is missing from the normalization stats "
                           f"(stats have {sorted(stats)}); give it stats or mode 'identity'")
        s = stats[key]
        missing = [n for n in _NEEDS[mode] if n not in s]
        if missing:
            raise KeyError(f"feature {key!r}: mode {mode!r} needs stats {missing}, which are missing")
        arrs = {n: np.asarray(s[n], dtype=np.float64) for n in _NEEDS[mode]}
        for n, a in arrs.items():
            if not np.all(np.isfinite(a)):
                raise ValueError(f"feature {key!r}: stat {n!r} has NaN or inf")
        if mode == "mean_std":
            shift, scale = arrs["mean"], np.maximum(arrs["std"], self.eps)
        else:
            lo, hi = arrs["q01"], arrs["q99"]
            if np.any(hi < lo):
                raise ValueError(f"feature {key!r}: q99 < q01 in some dimension")
            shift, scale = (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, self.eps)
        # other per-dimension statistics ride along (saved with the checkpoint) for whoever
        # reads the feature beyond its affine map
        extra = {n: np.asarray(v, dtype=np.float64) for n, v in s.items() if n not in arrs and n != "count"
                 and np.asarray(v).dtype.kind in "fiu" and np.asarray(v).shape == arrs[_NEEDS[mode][0]].shape}
        return FeatureNorm(mode, arrs | extra, shift, scale, clip=(mode == "quantile"))

    # ------------------------------------------------------------------ apply
    def __contains__(self, key: str) -> bool:
        return key in self.features

    @property
    def keys(self) -> list[str]:
        return list(self.features)

    def mode(self, key: str) -> str:
        return self._feature(key).mode

    def _feature(self, key: str) -> FeatureNorm:
        try:
            return self.features[key]
        except KeyError:
            raise KeyError(f"feature {key!r} has no normalization configured; "
                           f"normalizer features: {sorted(self.features)}") from None

    def _params(self, key: str, f: FeatureNorm, x: ArrayT) -> tuple[Any, Any]:
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            ck = (key, str(x.device), dtype)
            if ck not in self._torch_cache:
                self._torch_cache[ck] = (torch.as_tensor(f.shift, dtype=dtype, device=x.device),
                                         torch.as_tensor(f.scale, dtype=dtype, device=x.device))
            return self._torch_cache[ck]
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        return f.shift.astype(dtype), f.scale.astype(dtype)

    def _check_shape(self, key: str, f: FeatureNorm, x: ArrayT) -> None:
        """Stats must match x's trailing dims, or be 1 there ([3, 1, 1] over [..., 3, H, W])."""
        k = f.shift.ndim
        if k == 0:
            return
        tail = tuple(x.shape[x.ndim - k:]) if x.ndim >= k else None
        if tail is None or not all(s in (1, t) for s, t in zip(f.shift.shape, tail, strict=True)):
            raise ValueError(f"feature {key!r}: shape {tuple(x.shape)} does not end in its "
                             f"stats shape {f.shift.shape}")

    def _prepare(self, key: str, x: ArrayT):
        """(feature, float x, shift, scale), or None for an identity feature."""
        f = self._feature(key)
        if f.mode == "identity":
            return None
        x = _as_float(x)
        self._check_shape(key, f, x)
        return (f, x, *self._params(key, f, x))

    def normalize(self, key: str, x: ArrayT) -> ArrayT:
        """x in feature units -> normalized (same type, device and float dtype as x)."""
        prepared = self._prepare(key, x)
        if prepared is None:
            return x
        f, x, shift, scale = prepared
        y = (x - shift) / scale
        if f.clip:
            y = y.clamp(-1.0, 1.0) if isinstance(y, torch.Tensor) else np.clip(y, -1.0, 1.0)
        return y

    def unnormalize(self, key: str, x: ArrayT) -> ArrayT:
        """Normalized -> feature units (the inverse of `normalize` inside its clip range)."""
        prepared = self._prepare(key, x)
        if prepared is None:
            return x
        _, x, shift, scale = prepared
        return x * scale + shift

    def normalize_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `batch` with every configured feature present in it normalized."""
        return {k: self.normalize(k, v) if k in self.features else v for k, v in batch.items()}

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"eps", "modes": {key: mode}, "stats": {key: {stat: nested lists}}}."""
        return {
            "eps": self.eps,
            "modes": {k: f.mode for k, f in self.features.items()},
            "stats": {k: {n: a.tolist() for n, a in f.stats.items()}
                      for k, f in self.features.items() if f.mode != "identity"},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        for field_name in ("modes", "stats"):
            if field_name not in d:
                raise KeyError(f"normalizer dict lacks {field_name!r}")
        return cls(d["stats"], d["modes"], eps=float(d.get("eps", 1e-8)))


def _as_float(x: ArrayT) -> ArrayT:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.float()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)
