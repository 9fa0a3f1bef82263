"""The real-time runtime: wall-clock layers, the control loop in a process of its own.

Why a process: in one Python process the control thread competes for the GIL with
perception, rendering and the policy; a 1 kHz loop then sees multi-millisecond stalls. Here
the control layer and the HAL (the simulated robot: drivers and physics, which keeps pace
with the wall clock) run in a spawned process, pinned to a core, with the garbage collector
frozen, 1 ns timer slack and a hybrid sleep+spin wait. It publishes the robot state every
tick into shared memory (a seqlock: the writer never waits on readers) and receives chunks
and signals on a pipe it polls without blocking. The main process runs perception at the
policy's rate on a mirror of the world (state from shared memory, rendering, scene graph),
reasoning on top, and inference on a worker thread that sends each chunk to the control
process the moment it is ready. Messages between our own processes are pickled dataclasses
on a private pipe; nothing from outside is ever unpickled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from embodia.body.sim import Simulation
from embodia.runtime.async_inference import ThreadedInference
from embodia.runtime.body import SceneSnapshot, SimBody, restore_scene, snapshot_scene
from embodia.runtime.clock import WallClock, monotonic, reduce_timer_slack
from embodia.runtime.control import ControlConfig, ControlLayer
from embodia.runtime.layers import RuntimeConfig, declare_layers
from embodia.runtime.lockstep import count_diff, ticks_per
from embodia.runtime.messages import ActionChunk, ControlSignal, SkillCommand, StepRecord
from embodia.runtime.perception import PerceptionLayer
from embodia.runtime.policies import ChunkPolicy
from embodia.runtime.safety import SafetyConfig
from embodia.runtime.timing import LoopStats

HEADER = 3  # seq, wall time, sim time


class StateBus:
    """Shared-memory robot state with a seqlock: [seq, t_wall, t_sim, qpos, qvel, ctrl]."""

    def __init__(self, nq: int, nv: int, nu: int, raw: Any | None = None) -> None:
        self.nq, self.nv, self.nu = nq, nv, nu
        n = HEADER + nq + nv + nu
        self.raw = raw if raw is not None else mp.get_context("spawn").RawArray("d", n)
        self.buf = np.frombuffer(self.raw, dtype=np.float64, count=n)

    def write(self, t_wall: float, t_sim: float, qpos: np.ndarray, qvel: np.ndarray,
              ctrl: np.ndarray) -> None:
        b, a = self.buf, HEADER
        b[0] += 1.0  # odd: writing
        b[1], b[2] = t_wall, t_sim
        b[a:a + self.nq] = qpos
        b[a + self.nq:a + self.nq + self.nv] = qvel
        b[a + self.nq + self.nv:] = ctrl
        b[0] += 1.0  # even: consistent

    def read(self, tries: int = 1000) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray] | None:
        b, a = self.buf, HEADER
        for _ in range(tries):
            s1 = b[0]
            if s1 % 2 or s1 == 0:
                continue
            snap = b.copy()
            if b[0] == s1:
                q = snap[a:a + self.nq]
                v = snap[a + self.nq:a + self.nq + self.nv]
                return snap[1], snap[2], q, v, snap[a + self.nq + self.nv:]
        return None


@dataclass
class ControlProcessSpec:
    snapshot: SceneSnapshot
    space: str
    control: ControlConfig
    safety: SafetyConfig
    cpu: int | None
    rt_priority: bool
    spin_s: float


def _lock_memory() -> bool:
    """mlockall(MCL_CURRENT | MCL_FUTURE): no page of this process (code included) can be
    paged out, so heavy disk I/O elsewhere cannot stall a tick on a page fault."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.mlockall(1 | 2) == 0
    except (OSError, AttributeError):
        return False


def _setup_process(cpu: int | None, rt_priority: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": None, "sched_fifo": False, "timer_slack_1ns": reduce_timer_slack(1)}
    if rt_priority:
        info["memory_locked"] = _lock_memory()
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
            info["cpu"] = cpu
        except OSError as e:
            info["cpu_error"] = str(e)
    if rt_priority and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(80))
            info["sched_fifo"] = True
        except (OSError, PermissionError) as e:
            info["sched_error"] = str(e)
    return info


def control_process_main(spec: ControlProcessSpec, raw: Any, conn: Any) -> None:
    """Entry point of the control process: control layer + HAL + physics, at the control rate."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the run through the main process
    sim = Simulation(spec.snapshot.embodiment)
    restore_scene(sim, spec.snapshot)
    body = SimBody(sim)
    bus = StateBus(sim.model.nq, sim.model.nv, sim.model.nu, raw)
    control = ControlLayer(sim.embodiment, spec.space, body.kinematics(), body.limits(spec.safety),
                           spec.control)
    control.init(body.read_joints(), body.commanded_grip())
    info = _setup_process(spec.cpu, spec.rt_priority)
    control.warm_up(body.read_joints())  # after the memory lock: its allocations happen now
    clock = WallClock(spin_s=spec.spin_s)
    period = 1.0 / spec.control.rate_hz
    stats = {"control": LoopStats("control", spec.control.rate_hz),
             "hal": LoopStats("hal", spec.control.rate_hz)}
    skipped_ticks = physics_steps = 0
    # ticks that mapped a new action (the IK solve) and how many of them missed: where misses
    # come from (an action tick's extra work, or stalls anywhere)
    action_ticks = action_misses = 0
    wall0, sim0 = clock.now(), body.time
    bus.write(wall0, sim0, sim.data.qpos, sim.data.qvel, sim.data.ctrl)
    conn.send(("ready", info))
    gc.collect()
    gc.freeze()
    gc.disable()
    counts0: dict[str, int] = {}
    next_t = clock.now() + period
    try:
        while True:
            woke = clock.wait_until(next_t)
            stop = False
            while conn.poll():
                msg = conn.recv()
                kind = msg[0]
                if kind == "chunk":
                    control.receive(msg[1], woke)
                elif kind == "step":
                    _, step_id, origin, dt_action = msg
                    counts0 = control.counts
                    control.start_step(step_id, origin, dt_action, body.read_joints())
                elif kind == "signal":
                    control.signal(msg[1], woke, msg[2])
                elif kind == "report":  # small on purpose: it is sent inside a tick
                    conn.send(("report", {
                        "chunks": control.chunks_accepted, "skipped": control.skipped_actions,
                        "latency_s": list(control.latency_s),
                        "step_counts": count_diff(control.counts, counts0),
                        "estop": control.estop.latched}))
                elif kind == "stop":
                    stop = True
            if stop:
                break
            js = body.read_joints()
            slot = control.last_slot
            command = control.tick(woke, js)
            t_hal = monotonic()
            if control.last_slot != slot:
                action_ticks += 1
                action_misses += t_hal > next_t + period
            body.command(command)
            physics_steps += body.advance_to(sim0 + (t_hal - wall0))
            bus.write(t_hal, body.time, sim.data.qpos, sim.data.qvel, sim.data.ctrl)
            done = monotonic()
            stats["control"].record(next_t, woke, t_hal)
            stats["hal"].record(t_hal, t_hal, done)
            next_t += period
            if done > next_t:  # overran: drop the ticks already due rather than bunch them up
                late = int((done - next_t) / period) + 1
                skipped_ticks += late
                next_t += late * period
    finally:
        gc.enable()
    elapsed = clock.now() - wall0
    conn.send(("stopped", {
        "info": info, "skipped_ticks": skipped_ticks, "action_ticks": action_ticks,
        "action_tick_misses": action_misses,
        "physics_steps_per_s": physics_steps / elapsed if elapsed > 0 else 0.0,
        "samples": {k: s.samples() for k, s in stats.items()}, "counts": control.counts,
        "interventions": list(control.interventions)[:200], "log": control.log.arrays()}))


def pin_threads(cpus: set[int]) -> bool:
    """Pin every thread of this process (Linux affinity is per thread) to `cpus`."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        for tid in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(tid), cpus)
        return True
    except OSError:
        return False


class RealtimeRuntime:
    mode = "realtime"

    def __init__(self, body: SimBody, policy: ChunkPolicy, cfg: RuntimeConfig | None = None,
                 record_video: bool = False) -> None:
        self.cfg = cfg = cfg or RuntimeConfig()
        if policy.embodiment != body.embodiment.name:
            raise ValueError(f"policy drives {policy.embodiment!r}, the body is {body.embodiment.name!r}")
        self.body, self.policy = body, policy  # `body` becomes the perception-side mirror
        self.clock = WallClock()
        self.layers = declare_layers(cfg, 1.0 / policy.dt, cfg.control.rate_hz)
        self.stats = {s.name: LoopStats(s.name, s.rate_hz) for s in self.layers}
        self.reason_slots = ticks_per(1.0 / cfg.reasoning_hz, policy.dt, "the reasoning") \
            if policy.dt * cfg.reasoning_hz <= 1.0 else 1
        self.record_video = record_video
        self.frames: list[np.ndarray] = []
        self.control_report: dict[str, Any] | None = None
        self.process_info: dict[str, Any] = {}
        self._delivered: queue.SimpleQueue[ActionChunk] = queue.SimpleQueue()
        self._send_lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._step_id = 0
        self._counts: dict[str, int] = {}
        self._switch = sys.getswitchinterval()
        m = body.sim.model
        self.bus = StateBus(m.nq, m.nv, m.nu)
        self.inference: ThreadedInference | None = None
        self.perception: PerceptionLayer | None = None

    # ------------------------------------------------------------------ lifecycle
    def _send(self, msg: tuple) -> None:
        with self._send_lock:
            self._conn.send(msg)

    def _deliver(self, chunk: ActionChunk) -> None:
        """Worker thread: straight to the control process, then tell perception."""
        try:
            self._send(("chunk", chunk))
        except (OSError, BrokenPipeError):
            return  # the control process is gone; the step loop finds out and reports it
        self._delivered.put(chunk)

    def start(self, seed: int) -> None:
        cfg = self.cfg
        ncpu = os.cpu_count() or 1
        cpu = None if cfg.control_cpu is None or ncpu < 2 else cfg.control_cpu % ncpu
        spec = ControlProcessSpec(snapshot_scene(self.body.sim), self.policy.space, cfg.control,
                                  cfg.safety, cpu, cfg.rt_priority, cfg.spin_s)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        self._conn = parent
        self._proc = ctx.Process(target=control_process_main, args=(spec, self.bus.raw, child),
                                 name="embodia-control", daemon=True)
        self._proc.start()
        child.close()
        if not parent.poll(60.0):
            self.close()
            raise RuntimeError("the control process did not start within 60 s")
        kind, info = parent.recv()
        self.process_info = dict(info)
        if cpu is not None:
            others = set(range(ncpu)) - {cpu}
            self.process_info["main_pinned"] = pin_threads(others)
            if "torch" in sys.modules:
                import torch

                torch.set_num_threads(max(1, len(others)))
        sys.setswitchinterval(cfg.switch_interval_s)
        self.policy.start_episode(seed)
        self.policy.warmup(self.body.observe("warm up"))  # first-call costs (models, caches) now
        self.inference = ThreadedInference(self.policy, self._deliver, self.clock.now)
        self.perception = PerceptionLayer(self.body, self.policy, self.inference, cfg.control.blend,
                                          cfg.rtc, cfg.latency_guess_s)
        self._sync()

    def _sync(self) -> float:
        got = self.bus.read()
        if got is None:
            raise RuntimeError("could not read a consistent robot state from shared memory")
        t_wall, t_sim, q, v, u = got
        self.body.sync(q, v, u, t_sim)
        return t_wall

    def emergency_stop(self, reason: str = "operator") -> None:
        self._send(("signal", ControlSignal.ESTOP, reason))

    def reset_emergency_stop(self) -> None:
        self._send(("signal", ControlSignal.RESET_ESTOP, ""))

    def close(self) -> None:
        if self.inference is not None:
            self.inference.close()
            self.inference = None
        if self._proc is not None:
            try:
                self._send(("stop",))
                while self._conn.poll(10.0):
                    kind, payload = self._conn.recv()
                    if kind == "stopped":
                        self._finish(payload)
                        break
            except (EOFError, OSError, BrokenPipeError):
                pass
            self._proc.join(timeout=10.0)
            if self._proc.is_alive():
                self._proc.terminate()
            self._proc = None
        sys.setswitchinterval(self._switch)

    def _finish(self, payload: dict[str, Any]) -> None:
        for name, rows in payload["samples"].items():
            self.stats[name].merge_from(rows)
        self.process_info |= payload["info"] | {
            "skipped_ticks": payload["skipped_ticks"], "action_ticks": payload["action_ticks"],
            "action_tick_misses": payload["action_tick_misses"],
            "physics_steps_per_s": round(payload["physics_steps_per_s"], 1)}
        self.control_report = {"counts": payload["counts"], "samples": payload["interventions"],
                               "trajectory": payload["log"]}

    # ------------------------------------------------------------------ one step
    def _report(self, timeout_s: float = 10.0) -> dict[str, Any]:
        self._send(("report",))
        while True:
            if not self._conn.poll(timeout_s):
                alive = self._proc is not None and self._proc.is_alive()
                raise RuntimeError(f"the control process {'is not answering' if alive else 'has died'}")
            kind, payload = self._conn.recv()
            if kind == "report":
                return payload

    def run_step(self, skill: str, args: tuple[str, ...], instruction: str, arm: str,
                 timeout_s: float, attempt: int = 1) -> StepRecord:
        assert self.perception is not None and self.inference is not None, "start() first"
        self._step_id += 1
        cmd = SkillCommand(self._step_id, skill, tuple(args), instruction, arm, timeout_s, attempt)
        dt = self.policy.dt
        self.inference.cancel(before_step=cmd.step_id)
        origin = self.clock.now() + 0.02  # both sides agree on the slot grid before it starts
        self._send(("step", cmd.step_id, origin, dt))
        self._sync()
        self.perception.start_step(cmd, origin)
        k, reason = 0, "timeout"
        next_frame = origin
        while True:
            t_slot = origin + k * dt
            woke = self.clock.wait_until(t_slot)
            while not self._delivered.empty():
                chunk = self._delivered.get()
                self.perception.delivered(chunk, chunk.t_ready)
            self._sync()
            if k and k % self.reason_slots == 0:
                update = self.perception.scene(t_slot, graph=False)
                self.stats["reasoning"].record(t_slot, woke, self.clock.now())
                if update.step_done:
                    reason = "success"
                    break
                if t_slot - origin >= timeout_s - 1e-9:
                    break
            self.perception.tick(t_slot, self.clock.now())
            self.stats["perception"].record(t_slot, woke, self.clock.now())
            if self.record_video and t_slot >= next_frame:
                self.frames.append(self.body.render())
                next_frame += 1.0 / self.cfg.video_hz
            k += 1
        t_end = self.clock.now()
        rep = self._report()
        if rep["estop"]:
            reason = "estop" if reason != "success" else reason
        return StepRecord(cmd.step_id, skill, tuple(args), instruction, reason == "success", reason,
                          origin, t_end, rep["chunks"], rep["skipped"],
                          [x * 1e3 for x in rep["latency_s"]], rep["step_counts"])

    def scene_graph(self):
        self._sync()
        return self.body.scene_graph()

    def summaries(self) -> dict[str, dict]:
        out = {n: s.summary().to_dict() for n, s in self.stats.items()}
        skipped = int(self.process_info.get("skipped_ticks", 0))
        for n in ("control", "hal"):  # ticks dropped after an overrun are misses too
            c = out[n]
            c["deadline_misses"] += skipped
            c["miss_rate"] = round(c["deadline_misses"] / max(1, c["ticks"] + skipped), 6)
        out["process"] = dict(self.process_info)
        return out
