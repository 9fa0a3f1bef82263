"""The policy server: a websocket endpoint (openpi-client compatible) over one VLA policy.

One event loop does the I/O: handshake (API key, /healthz, /metrics) and replies; decoding
and validation run in a small thread pool under a structure budget, and the model in the
batcher's worker thread, so no message can stall the loop. A bad request costs its sender an
error frame and nothing else: no other client, no server state, no traceback on the wire. A
client that disconnects has its pending work dropped and its slot freed at once. Log lines
never carry an API key (see `RedactingLogger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from embodia.serve.auth import SCHEME, ApiKeyAuth, RedactingLogger, redact
from embodia.serve.background import BackgroundLoop
from embodia.serve.batching import Batcher, BatchingConfig, Overloaded
from embodia.serve.codec import BudgetExceeded, Codec, DecodeError, DecodeLimits, unpackb
from embodia.serve.metrics import ServerMetrics
from embodia.serve.protocol import (
    ENV_STATE,
    STATE,
    Observation,
    ObservationSpec,
    RequestError,
    make_metadata,
    spec_from_config,
    validate_observation,
)

log = logging.getLogger("embodia.serve")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ChunkPredictor(Protocol):
    """What the server needs from a policy (VLAPolicy is one)."""

    cfg: Any

    def predict_chunk(self, batch: dict[str, Any]) -> torch.Tensor: ...


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback unless asked otherwise
    port: int = 8000  # 0 picks a free port
    max_message_bytes: int = 4 * 2**20  # larger gets a "too_large" error reply
    max_message_depth: int = 32  # nesting of maps/lists; deeper gets "too_large"
    max_message_items: int = 10_000  # msgpack objects in one message; more gets "too_large"
    decode_threads: int = 2  # decoding and validation run here, off the event loop
    max_clients: int = 256
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    warmup: bool = True  # one model call before listening (loads the language model)
    ping_interval_s: float | None = 20.0

    @property
    def transport_max_bytes(self) -> int:
        """Hard cap: past it the connection is closed (1009) instead of read into memory."""
        return 2 * self.max_message_bytes + 65536

    @property
    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(self.max_message_bytes, self.max_message_depth, self.max_message_items)


@dataclass
class Session:
    """Per-client state; every connection has its own and they never mix."""

    id: int
    remote: str
    connected_at: float = field(default_factory=time.monotonic)
    requests: int = 0
    errors: int = 0
    prev_total_ms: float | None = None  # openpi's server_timing field, per client
    queued: bool = False  # the current request is in the batcher (else it is decoded or answered)


def stack_batch(items: list[Observation], spec: ObservationSpec) -> dict[str, Any]:
    """Checked observations -> the policy's batch format (state [B, S], images [B, 3, H, W])."""
    batch: dict[str, Any] = {
        "task": [o.task for o in items], "embodiment": [spec.embodiment] * len(items),
        STATE: torch.from_numpy(np.stack([o.state for o in items])),
    }
    if spec.env_state_dim:
        batch[ENV_STATE] = torch.from_numpy(np.stack([o.env_state for o in items]))
    for k in spec.image_keys:
        hwc = np.stack([o.images[k] for o in items])  # [B, H, W, 3], a fresh writable copy
        batch[k] = torch.from_numpy(hwc).permute(0, 3, 1, 2)
    return batch


class PolicyServer:
    def __init__(self, policy: ChunkPredictor, api_key: str | None,
                 config: ServerConfig | None = None) -> None:
        """api_key None serves without authentication (the CLI allows it on loopback only)."""
        self.policy = policy
        self.config = config or ServerConfig()
        self.auth = ApiKeyAuth(api_key) if api_key is not None else None
        secrets = (api_key,) if api_key else ()
        self.log = RedactingLogger(log, secrets)
        self._ws_log = RedactingLogger(logging.getLogger("websockets.server"), secrets)
        self.spec = spec_from_config(policy.cfg)
        self.metadata = make_metadata(policy.cfg, self.config.max_message_bytes).to_dict()
        self.metrics = ServerMetrics()
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._batcher: Batcher[Observation, np.ndarray | RequestError] | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self.port: int | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        cfg = self.config
        self._batcher = Batcher(self._predict, cfg.batching, expected_clients=lambda: len(self.sessions),
                                on_batch=self.metrics.record_batch, on_dropped=self.metrics.record_dropped)
        self._decoder = ThreadPoolExecutor(cfg.decode_threads, thread_name_prefix="embodia-decode")
        if cfg.warmup:
            await asyncio.get_running_loop().run_in_executor(None, self._warmup)
        self._batcher.start()
        self._server = await serve(
            self._handler, cfg.host, cfg.port, compression=None, process_request=self._process_request,
            max_size=cfg.transport_max_bytes, ping_interval=cfg.ping_interval_s, server_header="embodia",
            logger=self._ws_log,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.log.info("policy server for %s on ws://%s:%s", self.spec.embodiment, cfg.host, self.port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
            self._decoder = None

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.close()

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    # ------------------------------------------------------------ model side (worker thread)
    def _warmup(self) -> None:
        s = self.spec
        obs = Observation(np.zeros(s.state_dim, np.float32),
                          {k: np.zeros(s.image_shape(i), np.uint8) for i, k in enumerate(s.image_keys)},
                          "warm up")
        self.policy.predict_chunk(stack_batch([obs], s))

    def _predict(self, items: list[Observation]) -> list[np.ndarray | RequestError]:
        try:
            return self._predict_batch(items)
        except Exception:
            if len(items) == 1:
                raise
        # One request broke the batch: answer each alone so the others still get actions.
        out: list[np.ndarray | RequestError] = []
        for item in items:
            try:
                out += self._predict_batch([item])
            except Exception:
                self.log.exception("policy failed on one observation")
                out.append(RequestError("inference_failed", "the policy failed on this observation"))
        return out

    def _predict_batch(self, items: list[Observation]) -> list[np.ndarray | RequestError]:
        chunk = self.policy.predict_chunk(stack_batch(items, self.spec))
        arr = np.asarray(chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else chunk,
                         dtype=np.float32)
        cfg = self.policy.cfg
        if arr.shape != (len(items), cfg.horizon, cfg.action_dim):
            raise RuntimeError(f"policy returned {arr.shape}, expected ({len(items)}, {cfg.horizon}, {cfg.action_dim})")
        finite = np.isfinite(arr).all(axis=(1, 2))
        return [a if ok else RequestError("inference_failed", "the policy produced non-finite actions")
                for a, ok in zip(arr, finite, strict=True)]

    # ------------------------------------------------------------ HTTP side of the port
    def _json(self, connection: ServerConnection, status: http.HTTPStatus, body: dict) -> Response:
        response = connection.respond(status, json.dumps(body) + "\n")
        response.headers["Content-Type"] = "application/json"
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Runs before the websocket handshake completes: health and metrics over plain HTTP,
        and the API-key check, so an unauthenticated client never gets a model call."""
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return self._json(connection, http.HTTPStatus.OK,
                              {"status": "ok", "embodiment": self.spec.embodiment})
        authorized = self.auth is None or self.auth.check(request.headers.get("Authorization"))
        if not authorized:
            self.metrics.auth_failures += 1
            self.log.warning("refused %s %s from %s: missing or wrong API key", redact(request.path)[:120],
                             "with a key" if request.headers.get("Authorization") else "without a key",
                             connection.remote_address)
            hint = " (in that header: a key in the URL is not accepted)" if "?" in request.path else ""
            response = self._json(connection, http.HTTPStatus.UNAUTHORIZED,
                                  {"error": "unauthorized",
                                   "message": f"send 'Authorization: {SCHEME} <key>' with a valid key{hint}"})
            response.headers["WWW-Authenticate"] = SCHEME
            return response
        if path == "/metrics":
            return self._json(connection, http.HTTPStatus.OK,
                              self.metrics.snapshot() | {"clients": len(self.sessions)})
        if len(self.sessions) >= self.config.max_clients:
            return self._json(connection, http.HTTPStatus.SERVICE_UNAVAILABLE,
                              {"error": "overloaded", "message": f"at most {self.config.max_clients} clients"})
        return None

    # ------------------------------------------------------------ websocket side
    async def _handler(self, ws: ServerConnection) -> None:
        session = Session(next(self._ids), remote=str(ws.remote_address))
        self.sessions[session.id] = session
        m = self.metrics
        m.connections_open += 1
        m.connections_total += 1
        codec = Codec()
        # Resolves when the peer is gone, even while this handler waits on the model.
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await ws.send(codec.pack(self.metadata))
            async for message in ws:
                t0 = time.perf_counter()
                session.requests += 1
                m.requests += 1
                answer = asyncio.ensure_future(self._answer(message, session, codec, t0))
                await asyncio.wait((answer, closed), return_when=asyncio.FIRST_COMPLETED)
                if not answer.done():  # the client went away: drop its queued work, free the slot
                    queued = session.queued
                    answer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, RequestError):
                        await answer
                    m.client_gone += 1
                    if not queued:  # gone while decoding: it never reaches the model
                        m.record_dropped(1)  # (a queued one is counted by the batcher, or was computed)
                    break
                try:
                    reply, infer_s, queue_s = answer.result()
                except RequestError as e:
                    session.errors += 1
                    m.errors[e.kind] += 1
                    await ws.send(e.frame())
                    continue
                await ws.send(reply)
                total = time.perf_counter() - t0
                session.prev_total_ms = total * 1e3
                m.record_reply(total * 1e3, infer_s * 1e3, queue_s * 1e3)
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            m.connections_open -= 1
            del self.sessions[session.id]

    async def _answer(self, message: bytes | str, session: Session, codec: Codec,
                      t0: float) -> tuple[bytes, float, float]:
        try:
            if isinstance(message, str):
                raise RequestError("malformed", "send observations as binary msgpack frames, not text")
            limit = self.config.max_message_bytes
            if len(message) > limit:
                raise RequestError("too_large", f"message of {len(message)} bytes exceeds the limit of {limit} bytes")
            assert self._decoder is not None and self._batcher is not None
            obs = await asyncio.get_running_loop().run_in_executor(self._decoder, self._decode, message)
            new = self.metrics.record_ignored(obs.ignored)
            if new:
                self.log.info("ignoring observation keys this policy does not read: %s (first from client %s)",
                              new, session.id)
            session.queued = True
            try:
                result, info = await self._batcher.submit(obs)
            except Overloaded as e:
                raise RequestError("overloaded", str(e)) from None
            except Exception:
                self.log.exception("policy failed on a batch")
                raise RequestError("inference_failed", "the policy failed on this observation") from None
            finally:
                session.queued = False
            if isinstance(result, RequestError):
                raise result
            timing = {"infer_ms": info.infer_s * 1e3, "queue_ms": info.queue_s * 1e3,
                      "batch_size": info.size, "server_ms": (time.perf_counter() - t0) * 1e3}
            if session.prev_total_ms is not None:
                timing["prev_total_ms"] = session.prev_total_ms
            reply = codec.pack({"actions": result, "embodiment": self.spec.embodiment, "server_timing": timing})
            return reply, info.infer_s, info.queue_s
        except RequestError:
            raise
        except Exception:  # a bug of ours: log it here, say nothing specific on the wire
            self.log.exception("internal error while answering client %s", session.id)
            raise RequestError("internal", "internal server error") from None

    def _decode(self, message: bytes) -> Observation:
        """Decode and validate one message (in the decode pool): the structure budget bounds
        the work whatever the peer sends."""
        try:
            obj = unpackb(message, self.config.decode_limits)
        except BudgetExceeded as e:
            raise RequestError("too_large", str(e)) from None
        except DecodeError as e:
            raise RequestError("malformed", str(e)) from None
        return validate_observation(obj, self.spec)


class BackgroundServer:
    """A PolicyServer on its own event-loop thread (tests, benchmarks, in-process robots)."""

    def __init__(self, policy: ChunkPredictor, api_key: str | None, config: ServerConfig | None = None) -> None:
        self.server = PolicyServer(policy, api_key, config or ServerConfig(port=0))
        self._loop = BackgroundLoop("embodia-policy-server")
        try:
            self.port: int = self._loop.call(self.server.start, timeout=120)
        except BaseException:
            self._loop.stop()
            raise

    @property
    def url(self) -> str:
        return self.server.url

    def metrics(self) -> dict:
        return self._loop.call(self._snapshot)

    async def _snapshot(self) -> dict:
        return self.server.metrics.snapshot()

    def close(self) -> None:
        try:
            self._loop.call(self.server.close)
        finally:
            self._loop.stop()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_policy_server(policy: ChunkPredictor, api_key: str | None, config: ServerConfig) -> None:
    """Serve until interrupted (the CLI's entry point)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(PolicyServer(policy, api_key, config).serve_forever())


