"""FAST action tokenizer (pi0-FAST, Pertsch et al. 2025): DCT, quantize, BPE.

Why: uniform bins give H * D tokens per chunk, and at high control rates consecutive tokens
are nearly identical, so next-token prediction learns little per token. FAST compresses the
chunk first. Per action dimension a type-II orthonormal DCT over the chunk's time axis turns a
smooth trajectory into a few large low-frequency coefficients and many near-zero ones; scaling
by `scale` (the paper's default 10) and rounding gives integers; these are flattened
low-frequency first across dimensions (all dimensions' first coefficient, then their second,
...), so the long tail of zeros comes last, and byte-pair encoding over the integer sequences
(a vocabulary of 1024 in the paper) merges the frequent runs into single tokens.

Decoding inverts BPE -> integers -> inverse DCT. A generated sequence that is undecodable
(unknown ids) or of the wrong length is repaired, never refused: unknown ids are dropped, and
the coefficient vector is truncated or zero-padded (missing high frequencies = a smoother
chunk). The round trip is exact up to rounding: each coefficient is off by at most 0.5 / scale,
so (the DCT being orthonormal) each dimension's chunk is off by at most
0.5 * sqrt(H) / scale in L2 norm, plus what clipping to the fitted integer range removes.

numpy only (the DCT is an explicit orthonormal matrix; chunks are short). The state is a small
JSON-able dict (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix C [n, n]: coefficients = C @ x, x = C.T @ coefficients
    (scipy.fft.dct(x, type=2, norm="ortho") along the time axis)."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * t + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c


def _replace_pair(seq: np.ndarray, a: int, b: int, new: int) -> np.ndarray:
    """Replace the non-overlapping occurrences of the adjacent pair (a, b), left to right, by
    `new` (separators, -1, never match)."""
    if seq.size < 2:
        return seq
    hit = np.flatnonzero((seq[:-1] == a) & (seq[1:] == b))
    if hit.size == 0:
        return seq
    if a == b:  # in a run "a a a" only every other start is a merge (left to right)
        run_start = np.ones(hit.size, dtype=bool)
        run_start[1:] = hit[1:] != hit[:-1] + 1
        first = np.maximum.accumulate(np.where(run_start, np.arange(hit.size), 0))
        hit = hit[(np.arange(hit.size) - first) % 2 == 0]
    out = seq.copy()
    out[hit] = new
    return np.delete(out, hit + 1)


class FastTokenizer:
    """DCT + scale/round + BPE over action chunks [H, D] (normalized, roughly in [-1, 1]).

    Token ids: 0 .. n_base - 1 are the integers low .. high (clipped into that range), then one
    id per BPE merge, so the vocabulary is n_base + len(merges) <= vocab_size.
    """

    def __init__(self, horizon: int, action_dim: int, scale: float = 10.0, vocab_size: int = 1024,
                 low: int | None = None, high: int | None = None,
                 merges: Sequence[Sequence[int]] = ()) -> None:
        if horizon < 1 or action_dim < 1:
            raise ValueError(f"horizon and action_dim must be >= 1, got {horizon}, {action_dim}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.horizon, self.action_dim = int(horizon), int(action_dim)
        self.scale, self.vocab_size = float(scale), int(vocab_size)
        if low is None or high is None:  # unfitted: |DC coefficient| <= sqrt(H) for |x| <= 1
            bound = math.ceil(self.scale * math.sqrt(self.horizon))
            low, high = self._cap(-bound, bound)
        self.low, self.high = int(low), int(high)
        if self.high < self.low:
            raise ValueError(f"FAST: high ({high}) < low ({low})")
        if self.n_base + len(merges) > self.vocab_size:
            raise ValueError(f"FAST: {self.n_base} integers + {len(merges)} merges exceed the vocabulary {self.vocab_size}")
        self.merges = [(int(a), int(b)) for a, b in merges]
        self._dct = dct_matrix(self.horizon)
        self._expand: list[np.ndarray] = [np.array([i]) for i in range(self.n_base)]
        for a, b in self.merges:
            if not (0 <= a < len(self._expand) and 0 <= b < len(self._expand)):
                raise ValueError(f"FAST: merge ({a}, {b}) names an id not defined before it")
            self._expand.append(np.concatenate([self._expand[a], self._expand[b]]))

    @property
    def n_base(self) -> int:
        return self.high - self.low + 1

    @property
    def n_tokens(self) -> int:
        """Ids in use (n_base + merges)."""
        return len(self._expand)

    @property
    def length(self) -> int:
        """Coefficients per chunk (H * D): the most tokens an encoding can have."""
        return self.horizon * self.action_dim

    def _cap(self, low: int, high: int) -> tuple[int, int]:
        """Keep at least half the vocabulary for merges (clip the rare extreme integers)."""
        half = max(1, self.vocab_size // 4)
        return max(low, -half), min(high, half)

    # --- DCT and quantization -------------------------------------------------------------

    def coefficients(self, chunks: np.ndarray) -> np.ndarray:
        """Chunks [N, H, D] -> integers [N, H * D], low frequency first, clipped to [low, high]."""
        x = np.asarray(chunks, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f"FAST: chunks must be [N, {self.horizon}, {self.action_dim}], got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("FAST: chunks contain NaN or inf")
        c = np.einsum("kt,ntd->nkd", self._dct, x)  # [N, freq, D]
        q = np.rint(c * self.scale).astype(np.int64)
        return np.clip(q, self.low, self.high).reshape(len(x), -1)

    def from_coefficients(self, ints: np.ndarray) -> np.ndarray:
        """Integers [N, H * D] -> chunks [N, H, D] (inverse DCT of ints / scale)."""
        c = np.asarray(ints, dtype=np.float64).reshape(-1, self.horizon, self.action_dim) / self.scale
        return np.einsum("kt,nkd->ntd", self._dct, c)

    # --- BPE --------------------------------------------------------------------------------

    def fit(self, chunks: np.ndarray, max_chunks: int = 4096, seed: int = 0) -> FastTokenizer:
        """Learn the integer range and the BPE merges from training chunks [N, H, D]; returns
        self. At most `max_chunks` (a random subset) are used: the merges are statistics of
        the coefficient distribution, which a few thousand chunks pin down."""
        x = np.asarray(chunks, dtype=np.float64)
        if len(x) > max_chunks:
            x = x[np.random.default_rng(seed).choice(len(x), max_chunks, replace=False)]
        self.low, self.high = -1, 1  # provisional (coefficients() clips): widen from the data
        c = np.rint(np.einsum("kt,ntd->nkd", self._dct, x) * self.scale).astype(np.int64)
        low, high = self._cap(int(min(c.min(initial=0), 0)), int(max(c.max(initial=0), 0)))
        self.low, self.high = low, high
        ints = self.coefficients(x) - self.low
        self.merges, self._expand = [], [np.array([i]) for i in range(self.n_base)]
        seq = _with_separators(ints)
        for _ in range(self.vocab_size - self.n_base):
            a, b = seq[:-1], seq[1:]
            ok = (a >= 0) & (b >= 0)
            if not ok.any():
                break
            width = self.n_tokens
            counts = np.bincount(a[ok] * width + b[ok], minlength=width * width)
            best = int(counts.argmax())
            if counts[best] < 2:  # a merge seen once compresses nothing in general
                break
            pa, pb = divmod(best, width)
            new = self.n_tokens
            self.merges.append((pa, pb))
            self._expand.append(np.concatenate([self._expand[pa], self._expand[pb]]))
            seq = _replace_pair(seq, pa, pb, new)
        return self

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        """Chunks [N, H, D] -> N token-id arrays (variable length, <= H * D). Merges apply in
        the order they were learned (a merge's pair never contains a later merge's id, so this
        equals BPE's lowest-rank-first rule); the whole batch is merged at once."""
        ints = self.coefficients(chunks) - self.low
        seq = _with_separators(ints)
        for i, (a, b) in enumerate(self.merges):
            seq = _replace_pair(seq, a, b, self.n_base + i)
        ends = np.flatnonzero(seq < 0)
        starts = np.concatenate([[0], ends[:-1] + 1])
        return [seq[s:e] for s, e in zip(starts, ends, strict=True)]

    def decode(self, tokens: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """N token sequences -> chunks [N, H, D]. Unknown ids are dropped and the integer
        sequence is truncated or zero-padded to H * D: garbage decodes to some chunk, never
        an exception."""
        out = np.zeros((len(tokens), self.length), dtype=np.int64)
        for i, seq in enumerate(tokens):
            ids = [int(t) for t in np.asarray(seq).reshape(-1) if 0 <= int(t) < self.n_tokens]
            if ids:
                vals = np.concatenate([self._expand[t] for t in ids])[: self.length] + self.low
                out[i, : len(vals)] = vals
        return self.from_coefficients(out)

    # --- state ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state: enough to rebuild the same tokenizer (`from_dict`)."""
        return {"horizon": self.horizon, "action_dim": self.action_dim, "scale": self.scale,
                "vocab_size": self.vocab_size, "low": self.low, "high": self.high,
                "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FastTokenizer:
        return cls(d["horizon"], d["action_dim"], d["scale"], d["vocab_size"], d["low"], d["high"], d["merges"])


def _with_separators(ints: np.ndarray) -> np.ndarray:
    """Rows [N, L] of non-negative ids -> one flat array with -1 after each row (so that no
    pair spans two chunks)."""
    n = len(ints)
    return np.concatenate([ints, -np.ones((n, 1), dtype=np.int64)], axis=1).reshape(-1)
