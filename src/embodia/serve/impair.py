"""A websocket proxy that impairs the link for tests: added delay, jitter, dropped messages,
and a switch that cuts the link (open connections die, new ones are refused) and restores it.

Why a websocket proxy rather than a TCP one: delaying and dropping whole messages keeps the
stream well-formed, which is what a congested or flaky network looks like to the application
(TCP retransmits lost segments, so losses show up as late messages, or as a dead connection).
The handshake, API key included, is forwarded, so a 401 upstream is a 401 here.
"""

from __future__ import annotations

import asyncio
import http
import random
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.http11 import Request, Response

from embodia.serve.background import BackgroundLoop


@dataclass
class Impairment:
    delay_s: float = 0.0  # added one-way delay, each direction (round trip: twice this)
    jitter_s: float = 0.0  # plus uniform [0, jitter_s), order preserved
    drop_prob: float = 0.0  # per message, each direction

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0 or not 0 <= self.drop_prob <= 1:
            raise ValueError(f"invalid impairment {self}")


class ImpairedLink:
    """ws://host:port here -> `upstream`, through the impairment (changeable while running)."""

    def __init__(self, upstream: str, impairment: Impairment | None = None, host: str = "127.0.0.1",
                 port: int = 0, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.impairment = impairment or Impairment()
        self.host, self.port = host, port
        self.up = True
        self.dropped = 0
        self.forwarded = 0
        self._rng = random.Random(seed)
        self._server: Server | None = None
        self._upstreams: dict[int, ClientConnection] = {}
        self._live: set[tuple[ServerConnection, ClientConnection]] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> int:
        self._server = await serve(self._handler, self.host, self.port, compression=None, max_size=None,
                                   process_request=self._open_upstream, ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def set_up(self, up: bool) -> None:
        """Down: every open connection is cut (no close handshake), new ones get 503."""
        self.up = up
        if not up:
            self._cut()

    def _cut(self) -> None:
        for downstream, upstream in list(self._live):
            downstream.transport.abort()
            upstream.transport.abort()
        self._live.clear()

    async def _open_upstream(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.up:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "link down\n")
        await asyncio.sleep(2 * self.impairment.delay_s)  # the handshake's round trip
        headers = {k: v for k, v in request.headers.raw_items() if k.lower() == "authorization"}
        try:
            upstream = await connect(self.upstream + request.path, additional_headers=headers,
                                     compression=None, max_size=None, ping_interval=None, open_timeout=5)
        except InvalidStatus as e:
            return connection.respond(e.response.status_code, e.response.body.decode(errors="replace"))
        except (OSError, TimeoutError, WebSocketException):
            return connection.respond(http.HTTPStatus.BAD_GATEWAY, "upstream unreachable\n")
        self._upstreams[id(connection)] = upstream
        return None

    async def _handler(self, downstream: ServerConnection) -> None:
        upstream = self._upstreams.pop(id(downstream))
        pair = (downstream, upstream)
        self._live.add(pair)
        pumps = [asyncio.create_task(self._pump(downstream, upstream)),
                 asyncio.create_task(self._pump(upstream, downstream))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in pumps:
                t.cancel()
            self._live.discard(pair)
            await upstream.close()

    async def _pump(self, src: ServerConnection | ClientConnection, dst: ServerConnection | ClientConnection) -> None:
        """Forward src -> dst; each message waits its delay in a queue, so delay does not
        limit throughput, and leaves in the order it came."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def sender() -> None:
            while True:
                due, message = await queue.get()
                await asyncio.sleep(max(due - loop.time(), 0.0))
                try:
                    await dst.send(message)
                except ConnectionClosed:
                    return
                self.forwarded += 1
                queue.task_done()

        task = asyncio.create_task(sender())
        last_due = 0.0
        try:
            async for message in src:
                imp = self.impairment
                if imp.drop_prob and self._rng.random() < imp.drop_prob:
                    self.dropped += 1
                    continue
                due = max(loop.time() + imp.delay_s + self._rng.random() * imp.jitter_s, last_due)
                last_due = due
                queue.put_nowait((due, message))
            await asyncio.wait_for(queue.join(), timeout=5 + self.impairment.delay_s)  # deliver what is in flight
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            task.cancel()


class BackgroundLink:
    """An ImpairedLink on its own event-loop thread, for synchronous tests."""

    def __init__(self, upstream: str, impairment: Impairment | None = None, seed: int = 0) -> None:
        self.link = ImpairedLink(upstream, impairment, seed=seed)
        self._loop = BackgroundLoop("embodia-impaired-link")
        self.port: int = self._loop.call(self.link.start)

    @property
    def url(self) -> str:
        return self.link.url

    def set_up(self, up: bool) -> None:
        self._loop.call(lambda: self.link.set_up(up))

    def set_impairment(self, impairment: Impairment) -> None:
        self.link.impairment = impairment  # read per message by the pumps

    def close(self) -> None:
        try:
            self._loop.call(self.link.close)
        finally:
            self._loop.stop()

    def __enter__(self) -> BackgroundLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
