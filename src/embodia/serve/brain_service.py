"""The brain as a separate HTTP service (FastAPI on uvicorn), and `RemoteBrain`, a Planner
that calls it.

Why a service: in the edge/cloud split the brain (1-5 Hz, possibly an LLM) runs in the cloud
while the cerebellum sits at the edge. Planning is request/response at low rate, so plain
HTTP + JSON is enough: `POST /plan {"instruction", "scene"}` -> the Plan JSON, a refusal is
`422 {"refusal": {...}}` (the same fields as `Refusal`).

Why the limits: a planner is slow and single-threaded, so one client must not be able to
starve the others. A wrong or missing `Authorization: Api-Key` is 401 before the body is
read; headers and body each have a deadline (a half-sent request is dropped, `408`); the body
has a size cap (`413`); bodies are pydantic models whose limits (instruction length, scene
objects, `from_segment` inside the plan) answer `422` naming the field; planning runs on one
worker thread with a bounded queue (`503` when full) and a per-request time limit (`504`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from embodia.body.scene_graph import SceneGraph
from embodia.brain.instruction import MAX_INSTRUCTION_CHARS
from embodia.brain.llm import LLMError
from embodia.brain.plan import Plan
from embodia.brain.planner import Planner
from embodia.brain.refusal import Refusal
from embodia.serve.auth import SCHEME, ApiKeyAuth
from embodia.serve.http_limits import ApiKeyGate, BodyLimits, deadline_protocol

log = logging.getLogger("embodia.serve.brain")


class BrainServiceError(RuntimeError):
    """The brain service could not answer (unreachable, bad request, overloaded, planner down)."""


@dataclass(frozen=True)
class BrainServiceConfig:
    """Where to listen and every limit a client meets (sizes in bytes, times in seconds)."""

    host: str = "127.0.0.1"
    port: int = 8001  # 0 picks a free port
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 8 * 1024
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS  # the planners' own cap
    max_scene_objects: int = 32
    max_scene_relations: int = 128
    plan_timeout_s: float = 30.0  # queue wait + planning, per request
    max_pending: int = 4  # requests waiting behind the one being planned; more get 503
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_connections: int = 64

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_bytes", "max_instruction_chars", "max_scene_objects",
                     "max_scene_relations", "plan_timeout_s", "header_timeout_s", "body_timeout_s",
                     "keep_alive_s", "max_connections"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BrainServiceConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.max_pending < 0:
            raise ValueError(f"BrainServiceConfig.max_pending must be >= 0, got {self.max_pending!r}")


# ------------------------------------------------------------------ request bodies
def _limits(info: ValidationInfo) -> BrainServiceConfig:
    return (info.context or {}).get("limits") or BrainServiceConfig()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene: dict[str, Any]
    _graph: SceneGraph = PrivateAttr()

    @field_validator("scene")
    @classmethod
    def _scene(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        lim = _limits(info)
        for key, cap in (("objects", lim.max_scene_objects), ("relations", lim.max_scene_relations)):
            items = v.get(key, [])
            if not isinstance(items, list):
                raise ValueError(f"'{key}' must be a list")
            if len(items) > cap:
                raise ValueError(f"{len(items)} {key}; at most {cap}")
        SceneGraph.from_dict(v)  # a ValueError naming the bad part
        return v

    def model_post_init(self, _context: Any) -> None:
        self._graph = SceneGraph.from_dict(self.scene)

    @property
    def graph(self) -> SceneGraph:
        return self._graph


def _check_instruction(v: str, info: ValidationInfo) -> str:
    cap = _limits(info).max_instruction_chars
    if not v.strip():
        raise ValueError("must not be empty")
    if len(v) > cap:
        raise ValueError(f"{len(v)} characters; at most {cap}")
    return v


class PlanRequest(_Body):
    """`POST /plan`."""

    instruction: str

    @field_validator("instruction")
    @classmethod
    def _instruction(cls, v: str, info: ValidationInfo) -> str:
        return _check_instruction(v, info)


class ReplanRequest(_Body):
    """`POST /replan`: `from_segment` indexes the plan's goal segments."""

    plan: dict[str, Any]
    from_segment: int = Field(default=0, ge=0, strict=True)
    _old: Plan = PrivateAttr()

    @field_validator("plan")
    @classmethod
    def _plan(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        p = _read_plan(v)
        _check_instruction(p.instruction, info)
        return v

    @field_validator("from_segment")
    @classmethod
    def _segment(cls, v: int, info: ValidationInfo) -> int:
        if "plan" in info.data:  # the plan itself was valid
            n = len(info.data["plan"].get("goals", []))
            if v >= max(n, 1):
                raise ValueError(f"{v} is past the plan's {n} goal segment(s); use 0..{max(n - 1, 0)}")
        return v

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._old = _read_plan(self.plan)

    @property
    def old(self) -> Plan:
        return self._old


def _read_plan(v: dict[str, Any]) -> Plan:
    try:
        return Plan.from_dict(v)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"malformed plan: {type(e).__name__} {e}") from None


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status, headers=headers)


def _invalid(e: ValidationError) -> JSONResponse:
    """400 for a body that is not JSON; otherwise 422 naming each bad field."""
    errors = e.errors(include_url=False)
    bad_json = [x for x in errors if x["type"] == "json_invalid"]
    if bad_json:
        return _error(HTTPStatus.BAD_REQUEST, "bad_request", f"the body is not valid JSON: {bad_json[0]['msg']}")
    fields, parts = [], []
    for x in errors:
        name = ".".join(str(p) for p in x["loc"]) or "body"
        msg = x["msg"].removeprefix("Value error, ")
        if x["type"] == "extra_forbidden":
            msg = "unknown field"
        fields.append(name)
        parts.append(f"'{name}': {msg}")
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", "; ".join(parts), fields=fields)


# ------------------------------------------------------------------ the service
class BrainService:
    """HTTP front of one planner. Planners are not assumed thread-safe, so one worker thread
    plans; at most `max_pending` requests wait behind it."""

    def __init__(self, planner: Planner, api_key: str | None, config: BrainServiceConfig | None = None) -> None:
        self.planner = planner
        self.auth = ApiKeyAuth(api_key) if api_key is not None else None
        self.config = config or BrainServiceConfig()
        self.counts = {"plans": 0, "refusals": 0, "errors": 0}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embodia-brain-plan")
        self._slots = threading.BoundedSemaphore(1 + self.config.max_pending)
        self._sock = _bind(self.config.host, self.config.port)
        self.port: int = self._sock.getsockname()[1]
        self.app = self._build_app()
        self._server = uvicorn.Server(uvicorn.Config(
            ApiKeyGate(BodyLimits(self.app, self.config.max_body_bytes, self.config.body_timeout_s),
                       self.auth, on_reject=self._count_error),
            http=deadline_protocol(self.config.header_timeout_s), ws="none", lifespan="off",
            log_config=None, access_log=False, server_header=False,
            timeout_keep_alive=self.config.keep_alive_s, timeout_graceful_shutdown=1,
            h11_max_incomplete_event_size=self.config.max_header_bytes,
            limit_concurrency=self.config.max_connections))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def start(self) -> BrainService:
        """Serve from a daemon thread; returns once the socket accepts requests."""
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="embodia-brain", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the brain service did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C / SIGTERM (uvicorn handles the signals)."""
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> BrainService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ request handling
    def _count_error(self) -> None:
        self.counts["errors"] += 1

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="embodia brain", docs_url=None, redoc_url=None, openapi_url=None)

        @app.exception_handler(StarletteHTTPException)
        async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
            self._count_error()
            if e.status_code == HTTPStatus.NOT_FOUND:
                return _error(e.status_code, "not_found", "GET /healthz; POST /plan or /replan")
            return _error(e.status_code, HTTPStatus(e.status_code).phrase.lower().replace(" ", "_"), str(e.detail),
                          headers=e.headers)

        @app.get("/healthz")
        async def healthz() -> dict:
            return {"status": "ok", "planner": getattr(self.planner, "name", "")}

        @app.post("/plan")
        async def plan(request: Request) -> JSONResponse:
            body = await self._parse(PlanRequest, request)
            if isinstance(body, JSONResponse):
                return body
            return await self._run(lambda: self.planner.plan(body.instruction, body.graph))

        @app.post("/replan")
        async def replan(request: Request) -> JSONResponse:
            body = await self._parse(ReplanRequest, request)
            if isinstance(body, JSONResponse):
                return body
            return await self._run(lambda: self.planner.replan(body.old, body.graph, body.from_segment))

        return app

    async def _parse(self, model: type[_Body], request: Request) -> Any:
        try:
            return model.model_validate_json(await request.body(), context={"limits": self.config})
        except ValidationError as e:
            self._count_error()
            return _invalid(e)

    async def _run(self, job: Callable[[], Plan]) -> JSONResponse:
        """Plan on the worker thread under the queue bound and the time limit."""
        t = self.config.plan_timeout_s
        if not self._slots.acquire(blocking=False):
            self._count_error()
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, "overloaded",
                          f"the planner is busy ({1 + self.config.max_pending} requests in progress or "
                          "waiting); retry later", {"Retry-After": "1"})
        try:
            future = self._pool.submit(job)
        except RuntimeError:  # shutting down
            self._slots.release()
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, "shutting_down", "the brain service is stopping")
        future.add_done_callback(lambda _: self._slots.release())
        try:
            plan = await asyncio.wait_for(asyncio.wrap_future(future), t)
        except TimeoutError:
            self._count_error()
            return _error(HTTPStatus.GATEWAY_TIMEOUT, "timeout",
                          f"planning did not finish within {t:g} s; the request was abandoned")
        except Refusal as r:
            self.counts["refusals"] += 1
            return JSONResponse({"refusal": r.to_dict()}, status_code=HTTPStatus.UNPROCESSABLE_ENTITY)
        except LLMError:
            self._count_error()
            log.exception("the planner's backend failed")
            return _error(HTTPStatus.BAD_GATEWAY, "planner_failed",
                          "the planner's LLM endpoint failed; see the brain service log")
        except ValueError as e:  # input the models let through but the planner cannot use
            self._count_error()
            return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", f"the planner rejected the input: {e}")
        except Exception as e:  # a bug of ours: logged, not leaked
            self._count_error()
            log.exception("planning failed")
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal",
                          f"the planner failed ({type(e).__name__}); see the brain service log")
        self.counts["plans"] += 1
        return JSONResponse(plan.to_dict())


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so a taken port fails at construction (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class RemoteBrain:
    """A Planner whose plans come from a BrainService over HTTP."""

    name = "remote"

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def _post(self, path: str, body: dict) -> Plan:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"{SCHEME} {self.api_key}"
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return Plan.from_dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            try:
                reply = json.loads(e.read())
            except ValueError:
                reply = {}
            if e.code == HTTPStatus.UNPROCESSABLE_ENTITY and "refusal" in reply:
                r = reply["refusal"]
                raise Refusal(r["kind"], r.get("phrase", ""), r.get("reason", ""), list(r.get("present", [])),
                              list(r.get("readings", [])), r.get("role", "object")) from None
            raise BrainServiceError(f"brain service answered {e.code}: {reply.get('message', e.reason)}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise BrainServiceError(f"brain service at {self.url} unreachable: {e}") from None

    def plan(self, instruction: str, scene: SceneGraph) -> Plan:
        return self._post("/plan", {"instruction": instruction, "scene": scene.to_dict()})

    def replan(self, plan: Plan, scene: SceneGraph, from_segment: int = 0) -> Plan:
        return self._post("/replan", {"plan": plan.to_dict(), "scene": scene.to_dict(), "from_segment": from_segment})
