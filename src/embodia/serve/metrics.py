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
    client_gone: int = 0  # requests whose client disconnected before the reply
    dropped_requests: int = 0  # ... of which the model never computed (dropped from the queue)
    ignored_keys: Counter = field(default_factory=Counter)  # observation keys the policy does not read
    max_ignored_keys: int = 64  # distinct keys tracked (a peer cannot grow this without bound)
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

    def record_dropped(self, n: int) -> None:
        self.dropped_requests += n

    def record_ignored(self, keys: tuple[str, ...]) -> list[str]:
        """Count ignored observation keys; returns those never seen before (to log once)."""
        new = []
        for k in keys:
            k = k[:100]
            if k not in self.ignored_keys:
                if len(self.ignored_keys) >= self.max_ignored_keys:
                    k = "<other>"
                else:
                    new.append(k)
            self.ignored_keys[k] += 1
        return new

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
            "client_gone": self.client_gone, "dropped_requests": self.dropped_requests,
            "ignored_keys": dict(self.ignored_keys),
            "batches": self.batches,
            "mean_batch_size": round(self.batched_requests / self.batches, 3) if self.batches else None,
            "latency_ms": {"total": percentiles(self.total_ms), "infer": percentiles(self.infer_ms),
                           "queue": percentiles(self.queue_ms), "window": self.window},
        }
