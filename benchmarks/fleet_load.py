"""Fleet service load test: N simulated robots heartbeating at 1 Hz plus episode uploads,
against the real service (uvicorn, one process) on SQLite and on a real PostgreSQL server.

Prints JSON per database: requests/s, latency p50/p99/max per request kind (heartbeat,
upload), errors. Each robot keeps one HTTP/1.1 keep-alive connection (a robot's agent does);
heartbeats are jittered; every robot sends one small episode archive (2 episodes) every
`--upload-every-s` seconds. The service runs in its own process; the load generator is one
asyncio loop in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """A minimal keep-alive HTTP/1.1 client (enough for JSON replies with Content-Length)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {self.token}",
                f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.w.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.w.drain()
        status_line = await self.r.readline()
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        data = await self.r.readexactly(length) if length else b""
        return int(status_line.split()[1]), data


def archive(tmp: Path, seed: int) -> bytes:
    """A small valid LeRobot-v3 dataset (2 state-only episodes) as .tar.gz bytes."""
    import numpy as np

    from embodia.body.embodiments import get_embodiment
    from embodia.data.writer import DatasetWriter, EpisodeBuffer

    spec = get_embodiment("arm7")
    rng = np.random.default_rng(seed)
    root = tmp / f"ds{seed}"
    w = DatasetWriter(root, spec, [], (32, 32), action_space="ee_delta")
    for e in range(2):
        ep = EpisodeBuffer(task="pick up the red cube", skill="pick", seed=seed * 10 + e)
        for _ in range(20):
            ep.add({"observation.state": rng.normal(size=spec.state_dim).astype(np.float32)},
                   rng.normal(size=spec.action_layout("ee_delta").dim).astype(np.float32))
        w.stage(ep, f"k{e}")
    w.consolidate()
    from embodia.serve.fleet.episodes import pack

    return pack(root, "ds")


async def run_load(port: int, tokens: list[str], ids: list[str], seconds: float, upload_every_s: float,
                   bodies: list[bytes]) -> dict:
    lat: dict[str, list[float]] = {"heartbeat": [], "upload": []}
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def robot(i: int) -> None:
        conn = Conn(port, tokens[i])
        await asyncio.sleep(random.random())  # robots do not beat in lockstep
        next_upload = time.monotonic() + random.random() * upload_every_s
        n = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            status, _ = await conn.request("POST", f"/api/robots/{ids[i]}/heartbeat", b'{"status":"busy"}',
                                           {"Content-Type": "application/json"})
            lat["heartbeat"].append((time.perf_counter() - t0) * 1000)
            if status != 200:
                errors[f"heartbeat {status}"] = errors.get(f"heartbeat {status}", 0) + 1
            if time.monotonic() >= next_upload:
                body = bodies[(i + n) % len(bodies)]
                n += 1
                t0 = time.perf_counter()
                status, _ = await conn.request(
                    "POST", f"/api/datasets/load_{i % 8}/episodes", body,
                    {"X-Content-SHA256": hashlib.sha256(body).hexdigest(), "Content-Type": "application/gzip"})
                lat["upload"].append((time.perf_counter() - t0) * 1000)
                if status not in (200, 201):
                    errors[f"upload {status}"] = errors.get(f"upload {status}", 0) + 1
                next_upload += upload_every_s
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))

    t0 = time.perf_counter()
    await asyncio.gather(*(robot(i) for i in range(len(tokens))))
    wall = time.perf_counter() - t0
    out: dict = {"requests": sum(len(v) for v in lat.values()), "wall_s": round(wall, 2),
                 "requests_per_s": round(sum(len(v) for v in lat.values()) / wall, 1), "errors": errors}
    for k, v in lat.items():
        if v:
            v.sort()
            out[k] = {"n": len(v), "p50_ms": round(statistics.median(v), 2),
                      "p99_ms": round(v[min(len(v) - 1, int(0.99 * len(v)))], 2), "max_ms": round(v[-1], 2)}
    return out


def bench(db_url: str, work: Path, args) -> dict:
    from embodia.serve.fleet.database import open_database
    from embodia.serve.fleet.tokens import create_token

    sessions = open_database(db_url)
    with sessions() as s:
        tokens = [create_token(s, "robot") for _ in range(args.robots)]
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = ("import sys, uvicorn; from embodia.serve.fleet.app import FleetConfig, create_app; "
            f"uvicorn.run(create_app(FleetConfig(db={db_url!r}, data_dir={str(work / 'data')!r}, run_jobs=False)), "
            f"host='127.0.0.1', port={port}, log_level='warning')")
    from embodia.data.children import popen_kwargs

    server = subprocess.Popen([sys.executable, "-c", code], env=env, **popen_kwargs())
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the fleet service did not start") from None
                time.sleep(0.2)

        async def setup() -> list[str]:
            ids = []
            for i, t in enumerate(tokens):
                status, body = await Conn(port, t).request(
                    "POST", "/api/robots", json.dumps({"name": f"robot{i}", "embodiment": "arm7",
                                                       "software_version": "bench"}).encode(),
                    {"Content-Type": "application/json"})
                assert status == 201, body
                ids.append(json.loads(body)["id"])
            return ids

        ids = asyncio.run(setup())
        bodies = [archive(work, k) for k in range(args.distinct_uploads)]
        return asyncio.run(run_load(port, tokens, ids, args.seconds, args.upload_every_s, bodies))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--robots", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--upload-every-s", type=float, default=60.0, help="per robot")
    ap.add_argument("--distinct-uploads", type=int, default=16, help="distinct archives (re-sends are no-ops)")
    ap.add_argument("--db", default="sqlite,postgresql", help="which databases, comma-separated")
    args = ap.parse_args()
    from embodia.eval.machine import machine_info
    from embodia.serve.fleet.postgres import LocalPostgres

    report: dict = {"robots": args.robots, "heartbeat_hz": 1.0, "seconds": args.seconds,
                    "upload_every_s": args.upload_every_s, "results": {}}
    work = Path(tempfile.mkdtemp(prefix="embodia-fleet-load-"))
    work.chmod(0o755)  # under root the PostgreSQL server runs as `postgres` and must reach its folder
    try:
        for db in args.db.split(","):
            if db == "sqlite":
                report["results"]["sqlite"] = bench(f"sqlite:///{work / 'fleet.db'}", work / "sqlite", args)
            elif db == "postgresql":
                with LocalPostgres(work / "pg") as pg:
                    report["results"]["postgresql"] = bench(pg.create_database("fleet"), work / "postgresql", args)
            else:
                raise SystemExit(f"--db: unknown database {db!r} (sqlite, postgresql)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["machine"] = machine_info()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
