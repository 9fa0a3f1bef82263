"""The ops dashboard: the page at `/` and the live stream it reads, `GET /api/events`.

Why this shape: the page is one static file (inline CSS and JS, no build step, nothing fetched
from elsewhere) and holds no data, so it loads without a token; everything it shows comes from
the stream, which needs an operator or viewer token like the REST reads (401/403 before it
starts). The stream is server-sent events read with `fetch` (EventSource cannot send an
`Authorization` header): an `event: snapshot` whenever the fleet's state changed (the database is
read about once a second, in a worker thread, and a snapshot is sent only when its JSON differs),
and a `: keepalive` comment when nothing was sent for a while. A snapshot is built from what the
REST reads (`/api/robots`, `/api/jobs`, `/api/skills`, `/api/datasets`) answer, by calling their
own handlers, so the two never disagree (stale robots included). A stream ends when its client
goes away or the server is stopping: uvicorn waits for open responses before it shuts down, so
the service's SIGINT/SIGTERM handler is wrapped to raise a flag the streams poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session, sessionmaker

from embodia.serve.fleet.app import FleetConfig, Readers
from embodia.serve.fleet.tokens import Principal

log = logging.getLogger("embodia.serve.fleet.dashboard")
PAGE = Path(__file__).with_name("static") / "dashboard.html"
POLL_S = 1.0  # how often a stream reads the database
TICK_S = 0.25  # how often it checks for a gone client or a stopping server
KEEPALIVE_S = 15.0
JOBS_SHOWN = 20
LOG_LINES = 6
# No script, style or connection from anywhere but this page and this service.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}
READS = {"robots": "/api/robots", "jobs": "/api/jobs", "skills": "/api/skills", "datasets": "/api/datasets"}


def _handler(app: FastAPI, path: str) -> Callable[[Session, Principal], list[dict[str, Any]]]:
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == path and "GET" in route.methods:
            return route.endpoint
    raise LookupError(f"the fleet app has no GET {path}")


def snapshot_of(reads: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What the page shows, cut from the REST reads' answers."""
    robots = [{"id": r["id"], "name": r["name"], "embodiment": r["embodiment"], "site": r["site"],
               "software_version": r["software_version"], "status": r["status"],
               "heartbeat_age_s": r["heartbeat_age_s"],
               "skill": {"id": r["skill"]["id"], "name": r["skill"]["name"]} if r["skill"] else None}
              for r in reads["robots"]]
    jobs = [{"id": j["id"], "kind": j["kind"], "state": j["state"], "progress": j["progress"],
             "attempts": j["attempts"], "error": j["error"],
             "name": j["params"].get("name") or j["params"].get("dataset") or j["params"].get("skill"),
             "log": (j["log_tail"] or "").strip().splitlines()[-LOG_LINES:],
             "created_at": j["created_at"], "finished_at": j["finished_at"]}
            for j in reads["jobs"][:JOBS_SHOWN]]
    skills = [{"id": k["id"], "name": k["name"], "embodiment": k["embodiment"], "head": k["head"],
               "status": k["status"], "success_rate": (k["metrics"] or {}).get("success_rate"),
               "created_at": k["created_at"]} for k in reads["skills"]]
    datasets = [{"name": d["name"], "embodiment": d["embodiment"], "tier": d["tier"], "uploads": d["uploads"],
                 "episodes": d["episodes"], "successes": d["successes"]} for d in reads["datasets"]]
    return {"robots": robots, "jobs": jobs, "skills": skills, "datasets": datasets}


def sse(event: str, data: str) -> bytes:
    """One server-sent event; `data` is one line (JSON from json.dumps has no raw newline)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


def add_dashboard(app: FastAPI, sessions: sessionmaker[Session], config: FleetConfig) -> None:
    """Add `GET /` (the page) and `GET /api/events` (the live snapshots) to the fleet app."""
    handlers = {name: _handler(app, path) for name, path in READS.items()}
    stopping = threading.Event()  # set by SIGINT/SIGTERM or the app's shutdown: open streams end
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        stopping.clear()
        restore = _chain_exit_signals(stopping.set)
        try:
            async with inner(a) as state:
                yield state
        finally:
            stopping.set()
            restore()

    app.router.lifespan_context = lifespan

    def read(p: Principal) -> str:
        with sessions() as s:
            reads = {name: handler(s, p) for name, handler in handlers.items()}
        return json.dumps(snapshot_of(reads), separators=(",", ":"))

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        """The dashboard (no data in it: it reads /api/events with the token typed into it)."""
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers=PAGE_HEADERS)

    @app.get("/api/events", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "`event: snapshot` with the fleet's state as JSON, on change"}})
    async def events(request: Request, p: Readers) -> StreamingResponse:
        """Server-sent events: a snapshot of robots, jobs, skill versions and datasets now, then
        again whenever it changed (checked about once a second); `: keepalive` every ~15 s."""

        async def stream() -> AsyncIterator[bytes]:
            last, sent_at, read_at = None, time.monotonic(), -POLL_S
            while not stopping.is_set() and not await request.is_disconnected():
                if time.monotonic() - read_at >= POLL_S:
                    read_at = time.monotonic()
                    try:
                        data = await run_in_threadpool(read, p)
                    except Exception:  # a database that went away: end; the page reconnects
                        log.exception("dashboard snapshot")
                        return
                    if data != last:
                        last, sent_at = data, time.monotonic()
                        yield sse("snapshot", data)
                if time.monotonic() - sent_at >= KEEPALIVE_S:
                    sent_at = time.monotonic()
                    yield b": keepalive\n\n"
                await asyncio.sleep(TICK_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _chain_exit_signals(on_exit: Callable[[], None]) -> Callable[[], None]:
    """Call `on_exit` on SIGINT/SIGTERM before the handler already installed (uvicorn's, which
    then waits for open responses); returns what puts the previous handlers back. Only the main
    thread can set handlers: elsewhere (a test client's thread) nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        prev = signal.getsignal(sig)
        if not callable(prev):  # SIG_DFL / SIG_IGN: not a server that waits on us; leave it
            continue

        def handler(signum, frame, prev=prev):
            on_exit()
            prev(signum, frame)

        previous[sig] = (prev, handler)
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, (prev, handler) in previous.items():
            if signal.getsignal(sig) is handler:  # nobody replaced ours meanwhile
                signal.signal(sig, prev)
    return restore
