"""Asynchronous inference: the next chunk is computed while the current one runs.

`SimulatedInference` (lockstep clock) computes at once but hands the chunk over only after a
simulated latency, so latency compensation and continuation are exercised deterministically.
`ThreadedInference` (wall clock) computes on a worker thread and delivers through a callback
the moment it is done; torch releases the GIL while it computes, and the control loop lives
in another process anyway, so nothing there ever waits on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from embodia.runtime.messages import ActionChunk, Observation
from embodia.runtime.policies import ChunkPolicy


@dataclass(frozen=True)
class InferenceRequest:
    obs: Observation
    t0: float  # the slot the observation belongs to (time of the chunk's first action)
    step_id: int
    seq: int
    prefix: np.ndarray | None = None  # the actions the stream will run from t0 on (for RTC)
    frozen: int = 0  # how many of them are committed (will run before the chunk arrives)


def _chunk(policy: ChunkPolicy, req: InferenceRequest, t_ready: float) -> ActionChunk:
    actions = policy.infer(req.obs, req.prefix, req.frozen)
    return ActionChunk(np.asarray(actions, dtype=np.float32), req.t0, policy.dt, policy.space,
                       policy.embodiment, req.step_id, req.seq, t_ready)


class SimulatedInference:
    def __init__(self, policy: ChunkPolicy, latency_s: float = 0.0) -> None:
        if latency_s < 0:
            raise ValueError(f"latency must be >= 0, got {latency_s}")
        self.policy, self.latency_s = policy, latency_s
        self._pending: ActionChunk | None = None
        self.compute_s: list[float] = []

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def request(self, req: InferenceRequest, now: float) -> bool:
        if self.busy:
            return False
        t = time.perf_counter()
        self._pending = _chunk(self.policy, req, now + self.latency_s)
        self.compute_s.append(time.perf_counter() - t)
        return True

    def poll(self, now: float) -> ActionChunk | None:
        if self._pending is not None and now >= self._pending.t_ready - 1e-9:
            out, self._pending = self._pending, None
            return out
        return None

    def cancel(self) -> None:
        self._pending = None

    def close(self) -> None:
        pass


class ThreadedInference:
    """One worker thread, one request in flight; `deliver(chunk)` runs on the worker thread."""

    def __init__(self, policy: ChunkPolicy, deliver: Callable[[ActionChunk], None],
                 clock: Callable[[], float]) -> None:
        self.policy, self.deliver, self.clock = policy, deliver, clock
        self.compute_s: list[float] = []
        self.errors: list[str] = []
        self._req: InferenceRequest | None = None
        self._cv = threading.Condition()
        self._busy = False
        self._closed = False
        self._cancel_before = -1  # step ids below this are dropped when they finish
        self._thread = threading.Thread(target=self._loop, name="embodia-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy

    def request(self, req: InferenceRequest, now: float | None = None) -> bool:
        with self._cv:
            if self._busy or self._closed:
                return False
            self._req, self._busy = req, True
            self._cv.notify()
        return True

    def cancel(self, before_step: int) -> None:
        self._cancel_before = before_step

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._req is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                req = self._req
            t = time.perf_counter()
            try:
                chunk = _chunk(self.policy, req, 0.0)
            except Exception as e:  # a failing policy must not kill the loop silently
                self.errors.append(f"{type(e).__name__}: {e}")
                chunk = None
            self.compute_s.append(time.perf_counter() - t)
            if chunk is not None and req.step_id >= self._cancel_before:
                self.deliver(replace(chunk, t_ready=self.clock()))
            with self._cv:
                self._req, self._busy = None, False

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=5.0)
