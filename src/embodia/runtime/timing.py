"""Per-layer loop statistics: achieved rate, wake-up jitter and deadline misses.

Why preallocated arrays: the recorder runs inside the 1 kHz loop, so one record is three
float stores, with no allocation and no Python list growth. `summary()` does the maths later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LoopSummary:
    name: str
    target_hz: float
    ticks: int
    achieved_hz: float
    jitter_ms_p50: float  # |wake - scheduled|
    jitter_ms_p99: float
    jitter_ms_max: float
    busy_ms_p50: float  # work per tick
    busy_ms_p99: float
    deadline_misses: int  # ticks that finished after the next tick was due
    miss_rate: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class LoopStats:
    """Records (scheduled, woke, finished) per tick, in seconds, up to `capacity` ticks
    (later ticks overwrite the oldest, so a long run keeps its most recent window)."""

    def __init__(self, name: str, rate_hz: float, capacity: int = 200_000) -> None:
        if rate_hz <= 0:
            raise ValueError(f"{name}: rate must be positive, got {rate_hz}")
        self.name, self.rate_hz, self.period = name, float(rate_hz), 1.0 / rate_hz
        self._buf = np.zeros((capacity, 3))
        self.count = 0

    def record(self, scheduled: float, woke: float, finished: float) -> None:
        row = self._buf[self.count % len(self._buf)]
        row[0], row[1], row[2] = scheduled, woke, finished
        self.count += 1

    def samples(self) -> np.ndarray:
        """[n, 3] rows in time order."""
        n = min(self.count, len(self._buf))
        if self.count <= len(self._buf):
            return self._buf[:n].copy()
        k = self.count % len(self._buf)
        return np.concatenate([self._buf[k:], self._buf[:k]])

    def summary(self) -> LoopSummary:
        s = self.samples()
        if len(s) == 0:
            return LoopSummary(self.name, self.rate_hz, 0, 0.0, *(float("nan"),) * 5, 0, 0.0)
        jitter = np.abs(s[:, 1] - s[:, 0]) * 1e3
        busy = (s[:, 2] - s[:, 1]) * 1e3
        span = s[-1, 1] - s[0, 1]
        hz = (len(s) - 1) / span if span > 0 else 0.0
        misses = int(np.sum(s[:, 2] > s[:, 0] + self.period))
        return LoopSummary(self.name, self.rate_hz, self.count, float(hz),
                           float(np.percentile(jitter, 50)), float(np.percentile(jitter, 99)),
                           float(jitter.max()), float(np.percentile(busy, 50)),
                           float(np.percentile(busy, 99)), misses, misses / len(s))

    def merge_from(self, rows: np.ndarray) -> None:
        """Append rows recorded elsewhere (the control process sends its samples back)."""
        for r in np.asarray(rows).reshape(-1, 3):
            self.record(*r)
