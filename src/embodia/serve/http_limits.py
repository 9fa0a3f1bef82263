"""HTTP limits for small JSON services on uvicorn: deadlines, a body cap, the API key first.

Why: uvicorn arms no timer while a request's headers are still arriving, and an ASGI app that
awaits a half-sent body waits forever, so a client that stops mid-request would hold its
connection (and, on a threaded server, a thread) indefinitely. These pieces bound every phase
of a request before the application does any work:

- `deadline_protocol(s)`: an h11 protocol that drops a connection whose request headers are
  not complete `s` seconds after their first byte (or after connecting).
- `ApiKeyGate`: `401` with `WWW-Authenticate` before the body is read, on every path but the
  open ones.
- `BodyLimits`: `413` for a body over the cap (a larger `Content-Length` is refused unread),
  `408` when the body is not complete within the deadline; the app then sees the whole body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from embodia.serve.auth import SCHEME, ApiKeyAuth

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def deadline_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """An H11Protocol subclass (pass it as uvicorn's `http=`) with a header deadline."""
    if header_timeout_s <= 0:
        raise ValueError("header_timeout_s must be positive")

    class HeaderDeadlineH11(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm()  # headers still incomplete: the first byte started the clock
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineH11


async def send_json(send: Send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    """One JSON response straight on the ASGI channel (one Content-Type, connection closed
    when `headers` says so)."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class ApiKeyGate:
    """`Authorization: Api-Key <key>` on every path except `open_paths`; no key configured
    (`auth=None`) lets everything through."""

    def __init__(self, app: ASGIApp, auth: ApiKeyAuth | None, open_paths: Collection[str] = ("/healthz",),
                 on_reject: Callable[[], None] | None = None) -> None:
        self.app, self.auth, self.open_paths, self.on_reject = app, auth, frozenset(open_paths), on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.auth is not None and scope["path"] not in self.open_paths:
            given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not self.auth.check(given):
                if self.on_reject:
                    self.on_reject()
                await send_json(send, 401, {"error": "unauthorized",
                                            "message": f"send 'Authorization: {SCHEME} <key>' with a valid key"},
                                {"WWW-Authenticate": SCHEME, "Connection": "close"})
                return
        await self.app(scope, receive, send)


class BodyLimits:
    """Reads the whole body under a size cap and a deadline, then hands it to the app."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, read_timeout_s: float) -> None:
        if max_body_bytes < 1 or read_timeout_s <= 0:
            raise ValueError("max_body_bytes and read_timeout_s must be positive")
        self.app, self.max_body_bytes, self.read_timeout_s = app, max_body_bytes, read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        close = {"Connection": "close"}
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send, 400, {"error": "bad_request", "message": "Content-Length is not a number"},
                                close)
                return
            if declared > self.max_body_bytes:
                await send_json(send, 413, self._too_large(declared), close)
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                await send_json(send, 408, {"error": "timeout", "message": f"the request body did not arrive "
                                            f"within {self.read_timeout_s:g} s"}, close)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_json(send, 413, self._too_large(size), close)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> dict:
        return {"error": "too_large", "message": f"the body has {size} bytes or more; at most "
                                                 f"{self.max_body_bytes}"}
