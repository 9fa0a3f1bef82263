"""Batching across clients: requests that arrive close together share one model call.

Why: a VLA's cost per call is dominated by fixed overhead at small batch sizes, so stacking the
observations of many robots into one `predict_chunk` raises throughput. A batch closes when
every connected client already has a request in it (waiting longer cannot help), when it is
full, or when the window expires, so a lone client never waits. The model runs in one worker
thread, which keeps the event loop free to read, validate and answer other clients; requests
that arrive while the model is busy form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 32
    window_s: float = 0.002  # the longest a request waits for company
    max_pending: int = 1024  # beyond this, requests are refused as "overloaded"

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.window_s < 0 or self.max_pending < 1:
            raise ValueError(f"invalid batching config {self}")


@dataclass(frozen=True)
class BatchInfo:
    size: int
    queue_s: float  # enqueued -> batch started
    infer_s: float  # the model call for the whole batch


class Overloaded(RuntimeError):
    pass


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future
    enqueued: float


class Batcher(Generic[T, R]):
    """`await submit(item)` -> (result, BatchInfo). `fn(items) -> results` (same length) runs in
    a dedicated thread; if it raises, every request in that batch gets the exception.

    Cancelling a `submit` (its client went away) drops the request before the model sees it:
    a client that sends and disconnects costs nothing but a queue slot until it is collected.
    `on_dropped(n)` counts such requests."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], config: BatchingConfig,
                 expected_clients: Callable[[], int] = lambda: 1,
                 on_batch: Callable[[int], None] | None = None,
                 on_dropped: Callable[[int], None] | None = None) -> None:
        self._fn = fn
        self.config = config
        self._expected = expected_clients
        self._on_batch = on_batch
        self._on_dropped = on_dropped
        self._queue: asyncio.Queue[_Pending[T, R]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embodia-model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="embodia-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            p = self._queue.get_nowait()
            if not p.future.done():
                p.future.set_exception(Overloaded("server is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, item: T) -> tuple[R, BatchInfo]:
        if self._queue.qsize() >= self.config.max_pending:
            raise Overloaded(f"{self._queue.qsize()} requests pending")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, fut, time.perf_counter()))
        return await fut

    def _keep(self, batch: list[_Pending[T, R]], p: _Pending[T, R]) -> None:
        """Add p unless its client went away (its submit was cancelled)."""
        if p.future.done():
            if self._on_dropped is not None:
                self._on_dropped(1)
        else:
            batch.append(p)

    async def _collect(self) -> list[_Pending[T, R]]:
        loop = asyncio.get_running_loop()
        batch: list[_Pending[T, R]] = []
        while not batch:
            self._keep(batch, await self._queue.get())
        deadline = loop.time() + self.config.window_s
        while len(batch) < self.config.max_batch:
            try:
                self._keep(batch, self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if len(batch) >= self._expected() or remaining <= 0:
                break
            try:
                self._keep(batch, await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        dropped = [p for p in batch if p.future.done()]  # went away while the batch was collected
        if dropped and self._on_dropped is not None:
            self._on_dropped(len(dropped))
        return [p for p in batch if not p.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._fn, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as e:  # handed to each waiting request; the loop keeps going
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            infer = time.perf_counter() - start
            if self._on_batch is not None:
                self._on_batch(len(batch))
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result((r, BatchInfo(len(batch), start - p.enqueued, infer)))
