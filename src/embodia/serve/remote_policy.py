"""The runtime's cerebellum, served: a `ChunkPolicy` whose chunks come from a policy server.

`RemoteChunkPolicy(url)` connects once, reads the server's metadata frame (embodiment, action
space, chunk length, control rate, cameras, image size) and answers `infer(obs)` with one
request per chunk over a synchronous `PolicyConnection`. The runtime's own scheduling (lockstep
or real time) decides when to ask, exactly as for a local checkpoint; a dropped link is
reconnected once per request, and a server that stays unreachable fails the run with a
`RemotePolicyError` (a RuntimeError) rather than a traceback. The server's flow head runs
plain `predict_chunk`, so real-time chunking (RTC) is not offered remotely.

Imports flow one way: `serve` uses `runtime`, never the reverse.
"""

from __future__ import annotations

import numpy as np

from embodia.runtime.body import SimBody
from embodia.runtime.messages import Observation, SkillCommand
from embodia.serve.auth import load_api_key
from embodia.serve.client import LinkError, PolicyConnection
from embodia.serve.protocol import IMAGE_PREFIX, STATE, RequestError


class RemotePolicyError(RuntimeError):
    """The policy server could not be reached, refused us, or answered something unusable."""


class RemoteChunkPolicy:
    """A ChunkPolicy over `ws://host:port` (see `runtime.policies.ChunkPolicy`)."""

    supports_rtc = False

    def __init__(self, url: str, api_key: str | None = None, execute: int | None = None,
                 open_timeout_s: float = 10.0, request_timeout_s: float = 30.0) -> None:
        """api_key None reads EMBODIA_API_KEY (no key at all is allowed: a keyless server)."""
        self.url = url
        self.api_key = api_key if api_key is not None else load_api_key()
        self._timeouts = (open_timeout_s, request_timeout_s)
        self._conn: PolicyConnection | None = None
        meta = self._connect().metadata
        try:
            self.embodiment = str(meta["embodiment"])
            self.space = str(meta["action_space"]["name"])
            self.action_dim = int(meta["action_dim"])
            self.horizon = int(meta["chunk_length"])
            self.dt = 1.0 / float(meta["control_rate_hz"])
            obs_meta = meta["observation"]
            self._image_keys = tuple(str(k) for k in obs_meta["image_keys"])
            self.image_size = int(obs_meta["image_shape"][0])
            default_execute = int(meta["n_action_steps"])
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            self.close()
            raise RemotePolicyError(f"policy server at {url} sent unusable metadata: {e!r}") from None
        self.cameras = tuple(k.removeprefix(IMAGE_PREFIX) for k in self._image_keys)
        self.execute = int(execute or default_execute)
        if not 1 <= self.execute <= self.horizon:
            raise ValueError(f"execute must be in 1..{self.horizon}, got {self.execute}")
        self.name = f"remote-{meta.get('server', 'policy')}"
        self.metadata = meta
        self.requests = 0
        self.reconnects = 0
        self.server_ms: list[float] = []

    # ------------------------------------------------------------ link
    def _connect(self) -> PolicyConnection:
        open_s, req_s = self._timeouts
        try:
            self._conn = PolicyConnection(self.url, self.api_key, open_timeout_s=open_s, request_timeout_s=req_s)
        except LinkError as e:
            raise RemotePolicyError(f"policy server at {self.url}: {e}") from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RemoteChunkPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ ChunkPolicy
    def start_episode(self, seed: int) -> None:
        pass  # the server keeps no per-episode state (each request is one predict_chunk)

    def start_step(self, cmd: SkillCommand, body: SimBody) -> None:
        pass

    def warmup(self, obs: Observation) -> None:
        self.infer(obs)  # the first request pays connection and server-side first-call costs

    def request(self, obs: Observation) -> dict:
        """Only the keys the server expects (state, images, task, embodiment)."""
        data = obs.data
        out = {k: data[k] for k in (STATE, *self._image_keys) if k in data}
        out["task"] = data.get("task", "")
        out["embodiment"] = data.get("embodiment", self.embodiment)
        if STATE in out:
            out[STATE] = np.asarray(out[STATE], dtype=np.float32)
        return out

    def infer(self, obs: Observation, prefix: np.ndarray | None = None, frozen: int = 0) -> np.ndarray:
        msg = self.request(obs)
        for attempt in (0, 1):
            conn = self._conn or self._connect()
            try:
                reply = conn.infer(msg)
                break
            except RequestError as e:
                raise RemotePolicyError(f"policy server refused the observation ({e.kind}): {e.message}") from None
            except LinkError as e:
                self.close()
                if attempt:
                    raise RemotePolicyError(f"policy server at {self.url}: {e}") from None
                self.reconnects += 1
        actions = np.asarray(reply["actions"], dtype=np.float32)
        if actions.shape != (self.horizon, self.action_dim):
            raise RemotePolicyError(f"policy server sent actions of shape {actions.shape}, "
                                    f"expected ({self.horizon}, {self.action_dim})")
        self.requests += 1
        timing = reply.get("server_timing")
        if isinstance(timing, dict) and "server_ms" in timing:
            self.server_ms.append(float(timing["server_ms"]))
        return actions
