"""Task success versus added round-trip delay, through the network impairment layer, printed as JSON.

The shipped checkpoint (`checkpoints/arm7_flow_ensemble_chain`, 1 torch thread) is served by an in-process
`PolicyServer` on loopback; an `ImpairedLink` proxy in front of it adds a one-way delay of d/2
in each direction (round trip d). The robot side is the real-time client the serving layer
ships: `RemoteCerebellum` (asynchronous chunk requests, latency compensation that skips actions
whose slot has passed, a hold action when nothing fresh is due) feeding `TabletopEnv` stepped
on a wall-clock 10 Hz loop. Delay only matters in real time, so lockstep runs would not show it.

Several robots (threads, each with its own env and client connection) run episodes side by
side to keep wall time down; every robot's loop is paced independently and late ticks are
counted. Reported per delay and skill: successes/episodes with Wilson 95%, the request round
trip the client measured through the proxy (p50/p99), hold actions, skipped (stale) actions,
and late ticks. The server samples the flow head with its own unseeded noise, so runs differ
slightly from one another even with the same scene seeds.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KEY = "benchmark-key-0123456789"
KEYS = ("observation.state", "observation.images.front", "observation.images.wrist", "task")


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 2) if xs else None


def run_episode(url: str, skill: str, seed: int, cfg, dt: float) -> dict:
    from embodia.body.env import TabletopEnv
    from embodia.serve.client import ClientConfig, RemoteCerebellum

    env = TabletopEnv(embodiment="arm7", skill=skill, cameras=tuple(cfg.cameras), image_size=cfg.image_size)
    client = RemoteCerebellum(url, ClientConfig(api_key=KEY, embodiment="arm7", request_timeout_s=5.0))
    holds = late = 0
    try:
        client.wait_ready(30)
        obs, info = env.reset(seed=seed)

        def send(o: dict) -> None:
            msg = {k: o[k] for k in KEYS if k in o}
            msg["embodiment"] = "arm7"
            client.set_observation(msg)

        send(obs)
        first_wait = time.monotonic()
        while client.queue is None or client.queue.remaining() == 0:  # the robot waits for its first command
            if time.monotonic() - first_wait > 30:
                raise RuntimeError(f"no first chunk: {client.status.last_error}")
            time.sleep(0.002)
        first_wait = time.monotonic() - first_wait
        t0, k = time.monotonic(), 0
        while True:
            action, fresh = client.act()
            if action is None:  # cannot happen after the first chunk, kept for safety
                action = np.zeros(env.action_space.shape, np.float32)
            holds += not fresh
            obs, _, terminated, truncated, info = env.step(np.asarray(action, np.float64))
            send(obs)
            if terminated or truncated:
                break
            k += 1
            wait = t0 + k * dt - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.5 * dt:
                late += 1
        q = client.queue
        return {"seed": seed, "success": bool(info["success"]), "steps": int(info["elapsed_steps"]),
                "holds": holds, "late_ticks": late, "skipped": q.skipped if q else 0,
                "first_chunk_ms": round(first_wait * 1e3, 1), "rtt_ms": list(client.status.rtt_ms),
                "disconnects": client.status.disconnects}
    finally:
        client.close()
        env.close()


def run_cell(url: str, skill: str, seeds: list[int], cfg, robots: int) -> list[dict]:
    jobs: queue.Queue = queue.Queue()
    for s in seeds:
        jobs.put(s)
    out: list[dict] = []
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            try:
                seed = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                out.append(run_episode(url, skill, seed, cfg, 1.0 / cfg.control_rate_hz))
            except BaseException as e:  # noqa: BLE001 - reported after the join
                errors.append(e)
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(robots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sorted(out, key=lambda e: e["seed"])


def summarize_cell(eps: list[dict]) -> dict:
    from embodia.eval.stats import wilson_interval

    n, succ = len(eps), sum(e["success"] for e in eps)
    rtt = [r for e in eps for r in e["rtt_ms"]]
    steps = sum(e["steps"] for e in eps)
    lo, hi = wilson_interval(succ, n)
    return {"episodes": n, "successes": succ, "success_rate": round(succ / n, 3),
            "wilson95": [round(lo, 4), round(hi, 4)], "requests": len(rtt),
            "rtt_ms_p50": pct(rtt, 50), "rtt_ms_p99": pct(rtt, 99),
            "first_chunk_ms_p50": pct([e["first_chunk_ms"] for e in eps], 50),
            "steps": steps, "hold_actions": sum(e["holds"] for e in eps),
            "skipped_actions": sum(e["skipped"] for e in eps),
            "late_ticks": sum(e["late_ticks"] for e in eps),
            "disconnects": sum(e["disconnects"] for e in eps),
            "successful_seeds": [e["seed"] for e in eps if e["success"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "arm7_flow_ensemble_chain"))
    ap.add_argument("--delays-ms", default="0,50,100,200", help="added round trip")
    ap.add_argument("--skills", default="close_drawer,place")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed-start", type=int, default=10000)
    ap.add_argument("--robots", type=int, default=5, help="episodes run side by side")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from embodia.cerebellum.checkpoint import load_checkpoint
    from embodia.eval.machine import machine_info
    from embodia.serve.impair import BackgroundLink, Impairment
    from embodia.serve.server import BackgroundServer, ServerConfig

    policy = load_checkpoint(args.checkpoint, embodiment="arm7")
    cfg = policy.cfg
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    report: dict = {"benchmark": "serve_delay", "machine": machine_info(),
                    "checkpoint": str(Path(args.checkpoint).relative_to(ROOT)) if Path(args.checkpoint).is_relative_to(ROOT)
                    else args.checkpoint,
                    "server_torch_threads": args.threads, "control_rate_hz": cfg.control_rate_hz,
                    "chunk_length": cfg.horizon, "n_action_steps": cfg.n_action_steps,
                    "robots_side_by_side": args.robots, "seeds": [seeds[0], seeds[-1]],
                    "delay_split": "half of the added round trip each direction", "results": {}}
    t_start = time.monotonic()
    with BackgroundServer(policy, KEY, ServerConfig(port=0)) as server, BackgroundLink(server.url) as link:
        for d_ms in (float(x) for x in args.delays_ms.split(",")):
            link.set_impairment(Impairment(delay_s=d_ms / 2e3))
            row = {}
            for skill in args.skills.split(","):
                t0 = time.monotonic()
                row[skill] = summarize_cell(run_cell(link.url, skill, seeds, cfg, args.robots))
                row[skill]["wall_s"] = round(time.monotonic() - t0, 1)
            report["results"][f"{d_ms:g}"] = row
        report["server_metrics"] = {k: v for k, v in server.metrics().items() if not isinstance(v, dict | list)}
    report["wall_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
