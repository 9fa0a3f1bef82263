"""Policy-server load test on loopback, printed as JSON.

Two 96x96 cameras + state per request, the default-size flow policy (a fixed instruction
embedding stands in for the sentence model, whose output is cached per instruction anyway).
Reported:
- codec: pack + unpack + validate of one observation and its reply, in-process (no socket);
- overhead_batch1: one client, one request at a time, against a server whose model returns
  instantly: the whole serialization + transport + server cost of a request; and against the
  real model: round trip minus the model time the server reports;
- load: 1, 8 and 32 concurrent clients (each sends its next request when the reply arrives):
  requests/s, latency p50/p99, mean batch size, the model's own time per batch.
The server runs in its own process so client-side encoding does not share its GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import statistics
import time

import numpy as np
import torch

KEY = "benchmark-key-0123456789"


class FixedLanguage:
    def encode(self, texts: list[str]) -> torch.Tensor:
        return torch.ones(len(texts), 384) / 384**0.5


class NullPolicy:
    """Answers instantly: what is left of a round trip is serialization and transport."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def predict_chunk(self, batch: dict) -> torch.Tensor:
        return torch.zeros(len(batch["task"]), self.cfg.horizon, self.cfg.action_dim)


def _stats(cfg) -> dict:
    return {"observation.state": {"mean": [0.0] * cfg.state_dim, "std": [1.0] * cfg.state_dim},
            "action": {"q01": [-1.0] * cfg.action_dim, "q99": [1.0] * cfg.action_dim}}


def make_policy(kind: str):
    from embodia.cerebellum.config import PolicyConfig
    from embodia.cerebellum.policy import VLAPolicy, normalizer_modes
    from embodia.data.normalize import Normalizer

    cfg = PolicyConfig()
    if kind == "null":
        return NullPolicy(cfg)
    torch.manual_seed(0)
    return VLAPolicy(cfg, Normalizer(_stats(cfg), normalizer_modes(cfg)), FixedLanguage()).eval()


def obs_for(cfg, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.normal(size=cfg.state_dim).astype(np.float32),
           "task": "pick up the red cube", "embodiment": cfg.embodiment}
    for cam in cfg.cameras:
        obs[f"observation.images.{cam}"] = rng.integers(0, 256, (cfg.image_size, cfg.image_size, 3), np.uint8)
    return obs


def _serve(kind: str, port: int, threads: int, max_batch: int) -> None:
    torch.set_num_threads(threads)
    from embodia.serve.batching import BatchingConfig
    from embodia.serve.server import ServerConfig, run_policy_server

    run_policy_server(make_policy(kind), KEY, ServerConfig(port=port, batching=BatchingConfig(max_batch=max_batch)))


class ServerProcess:
    def __init__(self, kind: str, threads: int, max_batch: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = mp.get_context("spawn").Process(target=_serve, args=(kind, self.port, threads, max_batch),
                                                    daemon=True)
        self.proc.start()
        from embodia.serve.client import LinkError, PolicyConnection

        deadline = time.monotonic() + 120
        while True:
            try:
                PolicyConnection(self.url, KEY).close()
                return
            except LinkError:
                if time.monotonic() > deadline or not self.proc.is_alive():
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 3)


def bench_codec(cfg, n: int) -> dict:
    from embodia.serve.codec import Codec, unpackb
    from embodia.serve.protocol import spec_from_config, validate_observation

    codec, spec, obs = Codec(), spec_from_config(cfg), obs_for(cfg, 0)
    reply = {"actions": np.zeros((cfg.horizon, cfg.action_dim), np.float32), "server_timing": {"infer_ms": 1.0}}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        validate_observation(unpackb(codec.pack(obs)), spec)
        unpackb(codec.pack(reply))
        times.append((time.perf_counter() - t0) * 1e3)
    return {"request_bytes": len(codec.pack(obs)), "reply_bytes": len(codec.pack(reply)),
            "ms_p50": pct(times, 50), "ms_p99": pct(times, 99)}


def bench_sequential(url: str, cfg, n: int) -> dict:
    from embodia.serve.client import PolicyConnection

    rtt, server_infer = [], []
    with PolicyConnection(url, KEY) as conn:
        for i in range(n + 5):
            obs = obs_for(cfg, i)
            t0 = time.perf_counter()
            reply = conn.infer(obs)
            if i >= 5:  # warm
                rtt.append((time.perf_counter() - t0) * 1e3)
                server_infer.append(reply["server_timing"]["infer_ms"])
    over = [r - m for r, m in zip(rtt, server_infer, strict=True)]
    return {"requests": n, "rtt_ms_p50": pct(rtt, 50), "rtt_ms_p99": pct(rtt, 99),
            "model_ms_p50": pct(server_infer, 50),
            "overhead_ms_p50": pct(over, 50), "overhead_ms_p99": pct(over, 99)}


async def _client(url: str, cfg, seconds: float, seed: int, lat: list, batch: list, infer: list) -> int:
    from websockets.asyncio.client import connect

    from embodia.serve.codec import Codec, unpackb

    codec, done = Codec(), 0
    payloads = [codec.pack(obs_for(cfg, seed * 100 + i)) for i in range(4)]
    async with connect(url, additional_headers={"Authorization": f"Api-Key {KEY}"}, compression=None,
                       max_size=None) as ws:
        await ws.recv()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await ws.send(payloads[done % 4])
            reply = unpackb(await ws.recv())
            lat.append((time.perf_counter() - t0) * 1e3)
            batch.append(reply["server_timing"]["batch_size"])
            infer.append(reply["server_timing"]["infer_ms"])
            done += 1
    return done


def bench_load(url: str, cfg, clients: int, seconds: float) -> dict:
    lat: list[float] = []
    batch: list[int] = []
    infer: list[float] = []

    async def run() -> int:
        counts = await asyncio.gather(*[_client(url, cfg, seconds, i, lat, batch, infer) for i in range(clients)])
        return sum(counts)

    t0 = time.perf_counter()
    total = asyncio.run(run())
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(wall, 2), "requests": total,
            "requests_per_s": round(total / wall, 1), "latency_ms_p50": pct(lat, 50), "latency_ms_p99": pct(lat, 99),
            "mean_batch_size": round(statistics.fmean(batch), 2), "model_ms_per_batch_p50": pct(infer, 50)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=8.0, help="per load level")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    ap.add_argument("--max-batch", type=int, default=32)
    args = ap.parse_args()
    from embodia.cerebellum.config import PolicyConfig
    from embodia.eval.machine import machine_info

    cfg = PolicyConfig()
    report: dict = {"benchmark": "serve_load", "machine": machine_info(),
                    "policy": {"head": cfg.head, "d_model": cfg.d_model, "cameras": cfg.cameras,
                               "image_size": cfg.image_size, "horizon": cfg.horizon, "action_dim": cfg.action_dim},
                    "server_torch_threads": args.threads, "max_batch": args.max_batch,
                    "codec": bench_codec(cfg, 500)}
    null = ServerProcess("null", args.threads, args.max_batch)
    try:
        report["overhead_batch1_null_model"] = bench_sequential(null.url, cfg, 500)
    finally:
        null.close()
    server = ServerProcess("flow", args.threads, args.max_batch)
    try:
        report["overhead_batch1_flow_model"] = bench_sequential(server.url, cfg, 100)
        report["load"] = [bench_load(server.url, cfg, int(n), args.seconds) for n in args.clients.split(",")]
    finally:
        server.close()
    report["target"] = {"overhead_ms_at_batch1": 1.0,
                        "met": report["overhead_batch1_null_model"]["rtt_ms_p50"] <= 1.0}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
