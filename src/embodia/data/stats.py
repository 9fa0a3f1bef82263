"""Normalization statistics computed in one streaming pass: mean/std (Chan's parallel
merge), min/max, and q01/q10/q50/q90/q99 from a bounded, seeded reservoir sample."""

from __future__ import annotations

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


class StreamingStats:
    """Per-dimension statistics of a stream of [N, D] arrays."""

    def __init__(self, dim: int, reservoir: int = 50_000, seed: int = 0) -> None:
        self.dim = dim
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)
        self.capacity = reservoir
        self.sample = np.empty((0, dim))
        self._seen = 0
        self._rng = np.random.default_rng(seed)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.dim)
        n = len(x)
        if n == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError("statistics input contains NaN or inf")
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        delta = mean_b - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2_b + delta**2 * self.count * n / total
        self.count = total
        self.min = np.minimum(self.min, x.min(0))
        self.max = np.maximum(self.max, x.max(0))
        self._reservoir(x)

    def _reservoir(self, x: np.ndarray) -> None:
        room = self.capacity - len(self.sample)
        if room > 0:
            take = x[:room]
            self.sample = np.concatenate([self.sample, take])
            self._seen += len(take)
            x = x[room:]
        if len(x) == 0:
            return
        # Algorithm R, vectorised: row i (1-based count n_i) replaces slot j ~ U[0, n_i)
        n = self._seen + np.arange(1, len(x) + 1)
        j = (self._rng.random(len(x)) * n).astype(np.int64)
        for row, slot in zip(x[j < self.capacity], j[j < self.capacity], strict=True):
            self.sample[slot] = row
        self._seen += len(x)

    def to_dict(self) -> dict[str, list[float]]:
        if self.count == 0:
            raise ValueError("no data to compute statistics from")
        out = {
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "mean": self.mean.tolist(),
            "std": np.sqrt(self.m2 / self.count).tolist(),
            "count": [int(self.count)],
        }
        qs = np.quantile(self.sample, list(QUANTILES.values()), axis=0)
        for name, q in zip(QUANTILES, qs, strict=True):
            out[name] = q.tolist()
        return out


def image_channel_stats(frames: np.ndarray, stride: int = 4) -> dict[str, list]:
    """Per-channel stats of uint8 [T, H, W, 3] frames, scaled to [0, 1], LeRobot-shaped [3,1,1]."""
    sub = frames[::stride, ::2, ::2].reshape(-1, 3).astype(np.float64) / 255.0
    def c(v: np.ndarray) -> list:
        return v.reshape(3, 1, 1).tolist()
    return {"min": c(sub.min(0)), "max": c(sub.max(0)), "mean": c(sub.mean(0)),
            "std": c(sub.std(0)), "count": [int(len(frames))]}


def merge_image_stats(parts: list[dict]) -> dict[str, list]:
    """Pool per-episode image stats (count-weighted moments, global min/max)."""
    counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
    means = np.stack([np.asarray(p["mean"]).reshape(3) for p in parts])
    stds = np.stack([np.asarray(p["std"]).reshape(3) for p in parts])
    w = counts[:, None] / counts.sum()
    mean = (w * means).sum(0)
    var = (w * (stds**2 + (means - mean) ** 2)).sum(0)
    def c(v: np.ndarray) -> list:
        return v.reshape(3, 1, 1).tolist()
    return {"min": c(np.min([np.asarray(p["min"]).reshape(3) for p in parts], 0)),
            "max": c(np.max([np.asarray(p["max"]).reshape(3) for p in parts], 0)),
            "mean": c(mean), "std": c(np.sqrt(var)), "count": [int(counts.sum())]}
