"""The robot side of the edge/cloud split: a remote cerebellum.

`PolicyConnection` is one synchronous websocket to a policy server (the same protocol
openpi-client speaks, plus timeouts and typed errors). `RemoteCerebellum` is what a robot's
perception/planning layer uses: it keeps the newest observation, asks the server for the next
chunk in a background thread before the current one runs out, reconnects with exponential
backoff when the link drops, and hands the control loop one action per tick from a
`ChunkQueue` that skips actions whose time has already passed (latency compensation). When no
fresh action is left the control loop gets a hold action instead, so a lost link stops the arm
rather than replaying stale commands.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from embodia.serve.auth import SCHEME
from embodia.serve.codec import Codec, DecodeError, unpackb
from embodia.serve.protocol import RequestError

log = logging.getLogger("embodia.serve.client")
Clock = Callable[[], float]


class LinkError(ConnectionError):
    """The server could not be reached, went away, or did not answer in time."""


class AuthError(LinkError):
    """The server refused the API key (HTTP 401 at the handshake)."""


class PolicyConnection:
    """One websocket to a policy server. `infer(obs)` -> reply dict with `actions` [H, D].
    Raises RequestError for the server's error frames and LinkError for the link."""

    def __init__(self, url: str, api_key: str | None = None, open_timeout_s: float = 5.0,
                 request_timeout_s: float = 5.0, max_message_bytes: int = 16 * 2**20) -> None:
        headers = {"Authorization": f"{SCHEME} {api_key}"} if api_key else None
        self.request_timeout_s = request_timeout_s
        self._codec = Codec()
        try:
            self._ws: ClientConnection = connect(url, additional_headers=headers, compression=None,
                                                 open_timeout=open_timeout_s, max_size=max_message_bytes,
                                                 legacy=True)
        except InvalidStatus as e:
            status = e.response.status_code
            raise (AuthError if status == 401 else LinkError)(f"server refused the connection: HTTP {status}") from None
        except (OSError, TimeoutError, WebSocketException) as e:
            raise LinkError(f"cannot connect to {url}: {e}") from None
        self.metadata: dict = self._recv()
        if not isinstance(self.metadata, dict):
            self.close()
            raise LinkError("server did not send a metadata map")

    def _recv(self) -> Any:
        try:
            data = self._ws.recv(timeout=self.request_timeout_s)
        except TimeoutError:
            raise LinkError(f"no reply within {self.request_timeout_s} s") from None
        except (ConnectionClosed, OSError) as e:
            raise LinkError(f"connection lost: {e}") from None
        if isinstance(data, str):
            raise RequestError.from_frame(data)
        try:
            return unpackb(data)
        except DecodeError as e:
            raise LinkError(f"undecodable reply: {e}") from None

    def infer(self, obs: dict) -> dict:
        try:
            self._ws.send(self._codec.pack(obs))
        except (ConnectionClosed, OSError) as e:
            raise LinkError(f"connection lost: {e}") from None
        reply = self._recv()
        if not isinstance(reply, dict) or "actions" not in reply:
            raise LinkError("reply has no 'actions'")
        return reply

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChunkQueue:
    """The current action chunk on a timeline. Action k of a chunk computed from an
    observation taken at t_obs is meant for [t_obs + k/rate, t_obs + (k+1)/rate); `pop(now)`
    returns the action for now, skipping those whose slot has passed and never repeating one.
    A newer chunk replaces the old one (receding horizon). Thread-safe."""

    def __init__(self, control_rate_hz: float, clock: Clock = time.monotonic) -> None:
        if control_rate_hz <= 0:
            raise ValueError("control_rate_hz must be positive")
        self.rate = control_rate_hz
        self.clock = clock
        self._lock = threading.Lock()
        self._chunk: np.ndarray | None = None
        self._t0 = 0.0
        self._next = 0
        self.popped = 0
        self.skipped = 0
        self.expired = 0  # pops that found nothing fresh

    def push(self, chunk: np.ndarray, t_obs: float) -> None:
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or not np.isfinite(chunk).all():
            raise ValueError(f"a chunk must be a finite [H, D] array, got shape {chunk.shape}")
        with self._lock:
            if self._chunk is not None and t_obs < self._t0:
                return  # older than what we run
            self._chunk, self._t0, self._next = chunk, t_obs, 0

    def _slot(self, now: float) -> int:
        return max(math.floor((now - self._t0) * self.rate + 1e-9), self._next)

    def remaining(self, now: float | None = None) -> int:
        """Fresh actions left (0 when there is no chunk or it has run out)."""
        with self._lock:
            if self._chunk is None:
                return 0
            return max(len(self._chunk) - self._slot(self.clock() if now is None else now), 0)

    def pop(self, now: float | None = None) -> np.ndarray | None:
        with self._lock:
            if self._chunk is None:
                self.expired += 1
                return None
            k = self._slot(self.clock() if now is None else now)
            if k >= len(self._chunk):
                self.expired += 1
                return None
            self.skipped += k - self._next
            self._next = k + 1
            self.popped += 1
            return self._chunk[k]

    def clear(self) -> None:
        with self._lock:
            self._chunk, self._next = None, 0


def hold_action(action_space: dict, last: np.ndarray | None) -> np.ndarray | None:
    """What the control layer sends when no fresh action is due: for end-effector deltas, no
    motion with the last gripper command; for joint targets, the last target. None before any
    command (the controller then holds its measured state)."""
    if last is None:
        return None
    if action_space.get("name") == "ee_delta":
        hold = np.zeros_like(last)
        for d in action_space.get("gripper_dims", []):
            hold[d] = last[d]
        return hold
    return np.array(last, copy=True)


@dataclass(frozen=True)
class ClientConfig:
    api_key: str | None = None
    embodiment: str | None = None  # refuse a server for another body
    open_timeout_s: float = 2.0
    request_timeout_s: float = 2.0  # a reply later than this counts as a lost link
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    backoff_factor: float = 2.0
    refill_at: int | None = None  # ask for the next chunk when this many actions are left
    #                               (None: chunk_length - n_action_steps from the metadata)


@dataclass
class ClientStatus:
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    failed_connects: int = 0
    requests: int = 0
    request_errors: int = 0
    last_error: str | None = None
    rtt_ms: deque = field(default_factory=lambda: deque(maxlen=256))


class RemoteCerebellum:
    """Robot-side client: `set_observation(obs)` from perception, `act()` from the control loop."""

    def __init__(self, url: str, config: ClientConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.url = url
        self.config = config or ClientConfig()
        self.clock = clock
        self.status = ClientStatus()
        self.metadata: dict | None = None
        self.queue: ChunkQueue | None = None
        self._cond = threading.Condition()
        self._obs: dict | None = None
        self._obs_t = 0.0
        self._obs_seq = 0
        self._sent_seq = 0
        self._last_action: np.ndarray | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._conn: PolicyConnection | None = None
        self._thread = threading.Thread(target=self._run, name="embodia-remote-cerebellum", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ robot-facing API
    def wait_ready(self, timeout: float = 10.0) -> dict:
        """Block until the first connection delivered the server's metadata."""
        if not self._ready.wait(timeout):
            raise LinkError(f"no policy server at {self.url} within {timeout} s "
                            f"(last error: {self.status.last_error})")
        assert self.metadata is not None
        return self.metadata

    def set_observation(self, obs: dict, t: float | None = None) -> None:
        """The newest observation and when it was taken (default: now)."""
        with self._cond:
            self._obs, self._obs_t = obs, self.clock() if t is None else t
            self._obs_seq += 1
            self._cond.notify_all()

    def next_action(self, now: float | None = None) -> np.ndarray | None:
        """The fresh action due now, or None when the link has not delivered one in time."""
        if self.queue is None:
            return None
        action = self.queue.pop(now)
        if action is not None:
            self._last_action = action
            with self._cond:
                self._cond.notify_all()  # the worker may want to refill
        return action

    def act(self, now: float | None = None) -> tuple[np.ndarray | None, bool]:
        """(action, fresh): the due action, or the hold action with fresh=False."""
        action = self.next_action(now)
        if action is not None:
            return action, True
        space = (self.metadata or {}).get("action_space", {})
        return hold_action(space, self._last_action), False

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        conn = self._conn
        if conn is not None:
            conn.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RemoteCerebellum:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ worker thread
    def _connect(self) -> PolicyConnection:
        cfg = self.config
        conn = PolicyConnection(self.url, cfg.api_key, cfg.open_timeout_s, cfg.request_timeout_s)
        md = conn.metadata
        if cfg.embodiment is not None and md.get("embodiment") != cfg.embodiment:
            conn.close()
            raise LinkError(f"server drives {md.get('embodiment')!r}, this robot is {cfg.embodiment!r}")
        if self.queue is None:
            self.queue = ChunkQueue(float(md["control_rate_hz"]), self.clock)
        self.metadata = md
        return conn

    def _refill_at(self) -> int:
        md = self.metadata or {}
        if self.config.refill_at is not None:
            return self.config.refill_at
        return int(md.get("chunk_length", 1)) - int(md.get("n_action_steps", 1))

    def _wait_for_work(self) -> tuple[dict, float, int] | None:
        """Block until there is an observation not yet sent and the queue needs a refill."""
        with self._cond:
            while not self._stop.is_set():
                assert self.queue is not None
                if self._obs_seq > self._sent_seq and self.queue.remaining() <= self._refill_at():
                    self._sent_seq = self._obs_seq
                    return self._obs, self._obs_t, self._obs_seq  # type: ignore[return-value]
                self._cond.wait(timeout=0.005)
        return None

    def _run(self) -> None:
        cfg, rng = self.config, random.Random()
        backoff = cfg.backoff_initial_s
        while not self._stop.is_set():
            try:
                self._conn = self._connect()
            except LinkError as e:
                self.status.failed_connects += 1
                self.status.last_error = str(e)
                self._stop.wait(backoff * (0.5 + rng.random()))  # jitter: robots don't reconnect in lockstep
                backoff = min(backoff * cfg.backoff_factor, cfg.backoff_max_s)
                continue
            backoff = cfg.backoff_initial_s
            self.status.connected = True
            self.status.connects += 1
            self._ready.set()
            try:
                self._serve(self._conn)
            except LinkError as e:
                self.status.last_error = str(e)
                self.status.disconnects += 1
            finally:
                self.status.connected = False
                self._conn.close()
                self._conn = None

    def _serve(self, conn: PolicyConnection) -> None:
        assert self.queue is not None
        while True:
            work = self._wait_for_work()
            if work is None:
                return
            obs, t_obs, _ = work
            t0 = time.perf_counter()
            self.status.requests += 1
            try:
                reply = conn.infer(obs)
            except RequestError as e:  # the server named a problem with this observation
                self.status.request_errors += 1
                self.status.last_error = f"{e.kind}: {e.message}"
                continue
            self.status.rtt_ms.append((time.perf_counter() - t0) * 1e3)
            try:
                self.queue.push(np.asarray(reply["actions"], dtype=np.float32), t_obs)
            except ValueError as e:
                self.status.request_errors += 1
                self.status.last_error = str(e)
