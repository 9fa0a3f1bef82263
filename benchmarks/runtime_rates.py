"""Real-time runtime rates, printed as JSON: the control layer at 500 Hz and 1 kHz while the
policy's inference runs beside it.

Each run starts the real-time runtime (control + HAL + physics in their own process, pinned
to the last core; perception, reasoning and inference in this process) on a seeded scene and
lets the policy drive `pick` steps for `--seconds`, with the control process under SCHED_FIFO
(the runtime's default where permitted) and under normal scheduling. Load `policy`: inference as the runtime
schedules it (a chunk every `execute` actions, rendering two cameras for each). Load
`saturated`: in addition a thread runs inference back to back, so this process is never
idle. Reported per run: each layer's achieved rate, wake-up jitter p50/p99/max, deadline
misses (a tick that finished after the next was due), inference latency, and whether the
targets hold (control p99 jitter < 0.5 ms, misses < 0.1%).

    python benchmarks/runtime_rates.py                       # checkpoints/arm7_flow_ensemble_chain, 500 Hz and 1 kHz
    python benchmarks/runtime_rates.py --policy expert --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

from embodia.eval.machine import machine_info
from embodia.runtime.agent import make_body, make_cerebellum
from embodia.runtime.control import ControlConfig
from embodia.runtime.layers import RuntimeConfig
from embodia.runtime.policies import ChunkPolicy, LearnedChunkPolicy
from embodia.runtime.realtime import RealtimeRuntime

JITTER_TARGET_MS = 0.5
MISS_TARGET = 0.001


def random_policy() -> ChunkPolicy:
    """The default architecture with random weights: the same compute as a trained one."""
    from embodia.cerebellum.config import PolicyConfig
    from embodia.cerebellum.policy import ACTION, STATE, VLAPolicy, normalizer_modes
    from embodia.data.normalize import Normalizer

    cfg = PolicyConfig()
    stats = {STATE: {"mean": [0.0] * cfg.state_dim, "std": [1.0] * cfg.state_dim},
             ACTION: {"q01": [-0.01] * cfg.action_dim, "q99": [0.01] * cfg.action_dim}}
    return LearnedChunkPolicy(VLAPolicy(cfg, Normalizer(stats, normalizer_modes(cfg))).eval())


def saturate(policy: ChunkPolicy, obs, stop: threading.Event, counter: list[int]) -> None:
    while not stop.is_set():
        policy.infer(obs)
        counter[0] += 1


def one_run(policy: ChunkPolicy, rate: float, load: str, seconds: float, seed: int, sched: str) -> dict:
    body = make_body("arm7", seed, cameras=tuple(policy.cameras), image_size=policy.image_size)
    cube = next(r.subject for r in body.scene_graph().relations if r.name == "on")
    cfg = RuntimeConfig(control=ControlConfig(rate_hz=rate), rt_priority=sched == "fifo")
    rt = RealtimeRuntime(body, policy, cfg)
    stop, count = threading.Event(), [0]
    records = []
    try:
        rt.start(seed)
        stolen0 = steal_ms(rt.process_info.get("cpu"))
        extra = None
        if load == "saturated":
            obs = body.observe(f"pick up the {cube.replace('_', ' ')}")
            extra = threading.Thread(target=saturate, args=(policy, obs, stop, count), daemon=True)
            extra.start()
        t_end = time.perf_counter() + seconds
        while (left := t_end - time.perf_counter()) > 0.3:
            records.append(rt.run_step("pick", (cube,), f"pick up the {cube.replace('_', ' ')}", "main", left))
        stop.set()
        if extra is not None:
            extra.join()
        compute = np.asarray(rt.inference.compute_s, float) * 1e3
        stolen1 = steal_ms(rt.process_info.get("cpu"))
    finally:
        stop.set()
        rt.close()
        body.env.close()
    s = rt.summaries()
    ctl = s["control"]
    lat = [x for r in records for x in r.latency_ms]
    out = {
        "control_hz": rate, "load": load, "sched": sched, "seconds": seconds,
        "layers": {n: {k: v for k, v in s[n].items() if k != "name"} for n in ("reasoning", "perception", "control", "hal")},
        "control_process": s["process"] | {
            "steal_ms": None if stolen0 is None or stolen1 is None else round(stolen1 - stolen0, 1)},
        "inference": {"chunks": sum(r.chunks for r in records),
                      "latency_ms_p50": round(float(np.median(lat)), 2) if lat else None,
                      "latency_ms_p99": round(float(np.percentile(lat, 99)), 2) if lat else None,
                      "compute_ms_p50": round(float(np.median(compute)), 2) if len(compute) else None,
                      "skipped_actions": sum(r.skipped_actions for r in records),
                      "saturating_inferences": count[0]},
        "targets": {"control_jitter_p99_ms_lt_0.5": ctl["jitter_ms_p99"] < JITTER_TARGET_MS,
                    "control_miss_rate_lt_0.1pct": ctl["miss_rate"] < MISS_TARGET},
    }
    return out


def steal_ms(cpu: int | None) -> float | None:
    """Time the hypervisor ran something else on `cpu` (Linux /proc/stat, field `steal`), in ms.
    Why: on a VM a stalled vCPU is a late tick no in-guest scheduling can prevent."""
    try:
        with open("/proc/stat") as f:
            line = next(ln for ln in f if ln.startswith(f"cpu{'' if cpu is None else cpu} "))
        return int(line.split()[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def busy_processes() -> list[str]:
    """Other processes using CPU while we measure (the numbers mean little without this)."""
    try:
        import subprocess

        ps = subprocess.run(["ps", "-eo", "pid,pcpu,comm,args", "--sort=-pcpu"], capture_output=True, text=True,
                            timeout=5).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    me = str(os.getpid())
    rows = [line.split() for line in ps]
    return [" ".join(r[1:7])[:120] for r in rows if len(r) > 2 and float(r[1]) > 20 and r[0] != me][:6]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="checkpoints/arm7_flow_ensemble_chain", help="checkpoint folder, 'expert' or 'random'")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="500,1000")
    ap.add_argument("--loads", default="policy,saturated")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--sched", default="fifo,other",
                    help="control process scheduling: fifo (SCHED_FIFO, the runtime's default where permitted) and/or other")
    args = ap.parse_args()
    notes = []
    if args.policy == "random":
        policy = random_policy()
    else:
        try:
            policy, _ = make_cerebellum(args.policy)
        except (FileNotFoundError, ValueError) as e:
            notes.append(f"could not load {args.policy} ({str(e)[:120]}...); measured with random weights "
                         "of the default architecture (same compute)")
            policy = random_policy()
    if isinstance(policy, LearnedChunkPolicy):
        import torch

        torch.set_num_threads(1)
    others = busy_processes()
    runs = []
    for sched in args.sched.split(","):
        for rate in [float(r) for r in args.rates.split(",")]:
            for load in args.loads.split(","):
                if load == "saturated" and not isinstance(policy, LearnedChunkPolicy):
                    continue
                print(f"control at {rate:g} Hz, {sched} scheduling, load {load} ...", file=sys.stderr)
                runs.append(one_run(policy, rate, load, args.seconds, args.seed, sched))
    print(json.dumps({"benchmark": "runtime_rates", "policy": args.policy, "policy_name": policy.name,
                      "notes": notes, "cpus": os.cpu_count(), "busy_processes_at_start": others,
                      "targets": {"control_jitter_p99_ms": JITTER_TARGET_MS, "control_miss_rate": MISS_TARGET},
                      "runs": runs, "machine": machine_info()}, indent=2))


if __name__ == "__main__":
    main()
