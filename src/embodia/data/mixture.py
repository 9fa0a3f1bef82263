"""The data pyramid: one dataset that samples several sources by weight.

Why: generalist policies train on a pyramid of data -- a little real robot data, more
synthetic rollouts, lots of action-free human video -- and the mixing weights, not the
raw sizes, decide what the policy sees. Sample i picks a source with probability
proportional to its weight, then a uniform index inside it.

The choice for sample i is a pure function of (seed, i), computed with a counter-based
hash (SplitMix64) rather than a stateful RNG, so it is identical in every DataLoader worker,
across restarts and for any shuffling of the indices, needs no per-sample memory, and lets
`source_counts()` / `tier_counts()` report the exact realized mixture of all samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_COUNT_CHUNK = 1 << 20


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _uniforms(seed: int, index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in [0, 1), one per index, for the given seed and stream."""
    key = _splitmix64(np.asarray([(seed * 2 + stream) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        bits = _splitmix64(index.astype(np.uint64) ^ key)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class MixtureDataset(Dataset):
    """`num_samples` items drawn from `datasets` in proportion to `weights` (see the module docstring)."""

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float], num_samples: int,
                 seed: int = 0, names: Sequence[str] | None = None) -> None:
        datasets = list(datasets)
        weights = list(weights)
        if not datasets:
            raise ValueError("a mixture needs at least one dataset")
        if len(weights) != len(datasets):
            raise ValueError(f"got {len(weights)} weights for {len(datasets)} datasets; give one weight per dataset")
        for i, w in enumerate(weights):
            if not isinstance(w, int | float | np.floating | np.integer) or not math.isfinite(w) or w <= 0:
                raise ValueError(f"weight {i} is {w!r}; every weight must be a positive finite number")
        sizes = [len(d) for d in datasets]  # type: ignore[arg-type]
        empty = [i for i, n in enumerate(sizes) if n == 0]
        if empty:
            raise ValueError(f"dataset(s) {empty} of the mixture are empty")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if names is not None and len(names) != len(datasets):
            raise ValueError(f"got {len(names)} names for {len(datasets)} datasets")
        self.datasets = datasets
        self.sizes = np.asarray(sizes, dtype=np.int64)
        total = float(sum(weights))
        self.weights = np.asarray(weights, dtype=np.float64) / total
        self._cdf = np.cumsum(self.weights)
        self._cdf[-1] = 1.0
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.names = list(names) if names is not None else [f"dataset{i}" for i in range(len(datasets))]

    def __len__(self) -> int:
        return self.num_samples

    def sources(self, indices: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(dataset number, index inside it) for each sample index; vectorized, deterministic."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise IndexError(f"sample index out of range for a mixture of {self.num_samples}")
        which = np.searchsorted(self._cdf, _uniforms(self.seed, idx, 0), side="right")
        which = np.minimum(which, len(self.datasets) - 1)
        inner = np.floor(_uniforms(self.seed, idx, 1) * self.sizes[which]).astype(np.int64)
        return which, np.minimum(inner, self.sizes[which] - 1)

    def source(self, index: int) -> tuple[int, int]:
        which, inner = self.sources([index])
        return int(which[0]), int(inner[0])

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += self.num_samples
        d, j = self.source(index)
        item = self.datasets[d][j]
        if isinstance(item, dict):
            item = dict(item)
            item["mixture_source"] = d
        return item

    # ------------------------------------------------------------------ reporting
    def _chunks(self):
        for start in range(0, self.num_samples, _COUNT_CHUNK):
            yield np.arange(start, min(start + _COUNT_CHUNK, self.num_samples))

    def source_counts(self) -> dict[str, int]:
        """How many of the `num_samples` samples each source provides (exact)."""
        counts = np.zeros(len(self.datasets), np.int64)
        for idx in self._chunks():
            counts += np.bincount(self.sources(idx)[0], minlength=len(self.datasets))
        return {n: int(c) for n, c in zip(self.names, counts, strict=True)}

    def realized_weights(self) -> dict[str, float]:
        """The realized fraction of samples per source (compare with `weights`)."""
        return {k: v / self.num_samples for k, v in self.source_counts().items()}

    def tier_counts(self) -> dict[str, int]:
        """Samples per data tier (real / synthetic / human). A source that can tell the tier
        of its items (`tiers_of(indices)`, as WindowDataset does) is counted per item; any
        other source counts under its name."""
        out: dict[str, int] = {}
        for idx in self._chunks():
            which, inner = self.sources(idx)
            for d in np.unique(which):
                sel = inner[which == d]
                ds = self.datasets[int(d)]
                if hasattr(ds, "tiers_of"):
                    tiers, counts = np.unique(np.asarray(ds.tiers_of(sel), dtype=str), return_counts=True)
                else:
                    tiers, counts = np.asarray([self.names[int(d)]]), np.asarray([len(sel)])
                for t, c in zip(tiers, counts, strict=True):
                    out[str(t)] = out.get(str(t), 0) + int(c)
        return dict(sorted(out.items()))
