"""Run an asyncio service (the policy server, the impairment proxy) in a daemon thread.

Why: robot code, tests and benchmarks are synchronous; they need a server on a real port
beside them without giving up their own thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class BackgroundLoop:
    """An event loop in its own thread; `call(coro_fn)` runs a coroutine there and waits."""

    def __init__(self, name: str = "embodia-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], Awaitable[Any]], timeout: float | None = 30.0) -> Any:
        async def wrapped() -> Any:
            return await fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()
