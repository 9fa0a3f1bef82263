"""The brain as a separate HTTP service, and `RemoteBrain`, a Planner that calls it.

Why a service: in the edge/cloud split the brain (1-5 Hz, possibly an LLM) runs in the cloud
while the cerebellum sits at the edge. Planning is request/response at low rate, so plain
HTTP + JSON is enough: `POST /plan {"instruction", "scene"}` -> the Plan JSON, a refusal is
`422 {"refusal": {...}}` (the same fields as `Refusal`), bad input is 400 naming the problem,
and a wrong or missing `Authorization: Api-Key` is 401 before the planner is touched.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from embodia.body.scene_graph import SceneGraph
from embodia.brain.plan import Plan
from embodia.brain.planner import Planner
from embodia.brain.refusal import Refusal
from embodia.serve.auth import SCHEME, ApiKeyAuth

log = logging.getLogger("embodia.serve.brain")


class BrainServiceError(RuntimeError):
    """The brain service could not answer (unreachable, bad request, planner backend down)."""


@dataclass(frozen=True)
class BrainServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8001  # 0 picks a free port
    max_body_bytes: int = 1 << 20


class _BadRequest(ValueError):
    pass


class BrainService:
    """HTTP front of one planner. Planners are not assumed thread-safe: calls are serialized."""

    def __init__(self, planner: Planner, api_key: str | None, config: BrainServiceConfig | None = None) -> None:
        self.planner = planner
        self.auth = ApiKeyAuth(api_key) if api_key is not None else None
        self.config = config or BrainServiceConfig()
        self._lock = threading.Lock()
        self.counts = {"plans": 0, "refusals": 0, "errors": 0}
        self._httpd = ThreadingHTTPServer((self.config.host, self.config.port), self._handler_class())
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self) -> BrainService:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="embodia-brain", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> BrainService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ request handling
    def _answer(self, path: str, body: Any) -> tuple[HTTPStatus, dict]:
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object")
        try:
            scene = SceneGraph.from_dict(body.get("scene"))
        except ValueError as e:
            raise _BadRequest(f"'scene': {e}") from None
        with self._lock:
            try:
                if path == "/plan":
                    instruction = body.get("instruction")
                    if not isinstance(instruction, str) or not instruction.strip():
                        raise _BadRequest("'instruction' must be a non-empty string")
                    plan = self.planner.plan(instruction, scene)
                else:
                    try:
                        old = Plan.from_dict(body.get("plan"))
                    except (ValueError, KeyError, TypeError, AttributeError) as e:
                        raise _BadRequest(f"'plan': {e}") from None
                    seg = body.get("from_segment", 0)
                    if type(seg) is not int or seg < 0:
                        raise _BadRequest("'from_segment' must be a non-negative integer")
                    plan = self.planner.replan(old, scene, seg)
            except Refusal as r:
                self.counts["refusals"] += 1
                return HTTPStatus.UNPROCESSABLE_ENTITY, {"refusal": r.to_dict()}
        self.counts["plans"] += 1
        return HTTPStatus.OK, plan.to_dict()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "embodia-brain"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
                log.debug("%s " + format, self.client_address[0], *args)

            def _send(self, status: HTTPStatus, body: dict, extra: dict[str, str] | None = None) -> None:
                data = (json.dumps(body) + "\n").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: HTTPStatus, kind: str, message: str) -> None:
                service.counts["errors"] += 1
                extra = {"WWW-Authenticate": SCHEME} if status == HTTPStatus.UNAUTHORIZED else None
                self._send(status, {"error": kind, "message": message}, extra)

            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                if self.path.split("?", 1)[0] == "/healthz":
                    self._send(HTTPStatus.OK, {"status": "ok", "planner": getattr(service.planner, "name", "")})
                else:
                    self._error(HTTPStatus.NOT_FOUND, "not_found", "GET /healthz; POST /plan or /replan")

            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                path = self.path.split("?", 1)[0]
                if service.auth is not None and not service.auth.check(self.headers.get("Authorization")):
                    return self._error(HTTPStatus.UNAUTHORIZED, "unauthorized",
                                       f"send 'Authorization: {SCHEME} <key>' with a valid key")
                if path not in ("/plan", "/replan"):
                    return self._error(HTTPStatus.NOT_FOUND, "not_found", "POST /plan or /replan")
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    return self._error(HTTPStatus.LENGTH_REQUIRED, "bad_request", "Content-Length required")
                if length < 0 or length > service.config.max_body_bytes:
                    self.close_connection = True
                    return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large",
                                       f"body of {length} bytes; at most {service.config.max_body_bytes}")
                try:
                    body = json.loads(self.rfile.read(length))
                    status, reply = service._answer(path, body)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return self._error(HTTPStatus.BAD_REQUEST, "bad_request", "the body is not valid JSON")
                except _BadRequest as e:
                    return self._error(HTTPStatus.BAD_REQUEST, "bad_request", str(e))
                except Exception as e:  # planner backend (e.g. an LLM endpoint) or a bug: logged, not leaked
                    log.exception("planning failed")
                    return self._error(HTTPStatus.BAD_GATEWAY, "planner_failed",
                                       f"the planner failed ({type(e).__name__}); see the brain service log")
                self._send(status, reply)

        return Handler


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
                raise Refusal(r["kind"], r.get("phrase", ""), r.get("reason", ""), list(r.get("present", []))) from None
            raise BrainServiceError(f"brain service answered {e.code}: {reply.get('message', e.reason)}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise BrainServiceError(f"brain service at {self.url} unreachable: {e}") from None

    def plan(self, instruction: str, scene: SceneGraph) -> Plan:
        return self._post("/plan", {"instruction": instruction, "scene": scene.to_dict()})

    def replan(self, plan: Plan, scene: SceneGraph, from_segment: int = 0) -> Plan:
        return self._post("/replan", {"plan": plan.to_dict(), "scene": scene.to_dict(), "from_segment": from_segment})
