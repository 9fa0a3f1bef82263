"""Server counters and latency percentiles, served as JSON on /metrics.

Only the event-loop thread writes them, so no locks; latencies are kept in a bounded window
(the last N requests) so percentiles describe the server now, not since boot.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np


def percentiles(xs: deque[float] | list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    a = np.fromiter(xs, dtype=np.float64, count=len(xs))
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "max": round(float(a.max()), 3)}


@dataclass
class ServerMetrics:
    window: int = 4096
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    replies: int = 0
    errors: Counter = field(default_factory=Counter)
    auth_failures: int = 0
    connections_open: int = 0
    connections_total: int = 0
    batches: int = 0
    batched_requests: int = 0
    total_ms: deque = field(init=False)  # message received -> reply sent
    infer_ms: deque = field(init=False)  # model time of the batch the request rode in
    queue_ms: deque = field(init=False)  # waiting for the batch to start

    def __post_init__(self) -> None:
        self.total_ms = deque(maxlen=self.window)
        self.infer_ms = deque(maxlen=self.window)
        self.queue_ms = deque(maxlen=self.window)

    def record_batch(self, size: int) -> None:
        self.batches += 1
        self.batched_requests += size

    def record_reply(self, total_ms: float, infer_ms: float, queue_ms: float) -> None:
        self.replies += 1
        self.total_ms.append(total_ms)
        self.infer_ms.append(infer_ms)
        self.queue_ms.append(queue_ms)

    def snapshot(self) -> dict:
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests": self.requests, "replies": self.replies,
            "errors": dict(self.errors), "errors_total": sum(self.errors.values()),
            "auth_failures": self.auth_failures,
            "connections": {"open": self.connections_open, "total": self.connections_total},
            "batches": self.batches,
            "mean_batch_size": round(self.batched_requests / self.batches, 3) if self.batches else None,
            "latency_ms": {"total": percentiles(self.total_ms), "infer": percentiles(self.infer_ms),
                           "queue": percentiles(self.queue_ms), "window": self.window},
        }
