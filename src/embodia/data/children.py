"""Child processes that die with their parent.

A `kill -9` of a parent gives it no chance to stop its workers: without help they run on as
orphans and keep writing (a resumed `collect` then found more episodes than it asked for).
On Linux the kernel can signal a child when its parent dies (`prctl(PR_SET_PDEATHSIG)`);
elsewhere a daemon thread in the child polls its parent pid. Children also stay in the
parent's process group (nothing here calls `setsid`), so a signal to the group (Ctrl-C in
a terminal, `kill -- -PGID`) reaches them too.

Caveat (Linux): the death signal fires when the *thread* that started the child exits.
Start children from a thread that lives as long as they should (the main thread, or a
`ProcessPoolExecutor`'s own submit path).

Usable from any layer: `multiprocessing` pools pass `die_with_parent` as `initializer`
(with `os.getpid()` of the parent as its argument); `subprocess.Popen` takes
`**popen_kwargs()`; `init_ray` is the one way to start (or join) Ray, whose local servers
otherwise outlive a killed parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

PR_SET_PDEATHSIG = 1
POLL_S = 0.5  # the fallback watcher's period


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only);
    returns whether it was set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(POLL_S)


def die_with_parent(parent_pid: int, use_signal: bool = True) -> None:
    """Worker initializer: end this process when `parent_pid` (its parent) dies.

    Checks the parent once after arming the signal: a parent that died while the child was
    starting would otherwise never be noticed. `use_signal=False` polls instead: for a pool
    whose workers may be started from a short-lived thread (the death signal would fire when
    that thread ends, not the parent).
    """
    if not (use_signal and set_parent_death_signal()):
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                         name="embodia-parent-watch").start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _preexec() -> None:
    set_parent_death_signal()


def popen_kwargs() -> dict[str, Any]:
    """Keyword arguments for `subprocess.Popen` so the child gets SIGKILL when this process
    dies (Linux; the signal survives `exec`). Elsewhere: none (the child stays in our
    process group)."""
    return {"preexec_fn": _preexec} if sys.platform.startswith("linux") else {}


# Ray's local servers (gcs_server, raylet) are children of the process that called ray.init;
# they may or may not die with it, but what they started (agents, workers and their children)
# is reparented and runs on. This watcher keeps the tree of the servers' descendants while
# that process lives (pid and start time, so a reused pid is never hit) and kills all of it
# once the process is gone. It ends by itself when the tree is gone first (`ray.shutdown()`).
RAY_REAPER = """
import os, signal, sys, time
parent, roots = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]

def scan():  # live processes: pid -> (parent pid, start time)
    procs = {}
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                procs[int(d)] = (int(fields[1]), fields[19])
        except (OSError, ValueError, IndexError):
            pass
    return procs

procs = scan()
tree = {p: procs[p][1] for p in roots if p in procs}
while True:
    new = tree
    while new:  # what the tree started since the last look
        new = {p: t for p, (pp, t) in procs.items() if pp in new and p not in tree}
        tree.update(new)
    if os.getppid() != parent or not tree:
        break
    time.sleep(0.5)
    procs = scan()
    tree = {p: t for p, t in tree.items() if procs.get(p, (0, None))[1] == t}
procs = scan()
for p, t in tree.items():
    if procs.get(p, (0, None))[1] == t:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
"""


def _children() -> set[int]:
    """Pids whose parent is this process (Linux /proc; elsewhere none)."""
    me, found = os.getpid(), set()
    try:
        entries = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return found
    for d in entries:
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                    found.add(int(d))
        except (OSError, ValueError, IndexError):
            continue
    return found


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at `address`, or start a local instance with `num_cpus`
    (None: Ray counts them) whose servers die with this process even on `kill -9`.

    Does nothing when Ray is already initialized in this process. The caller owns the
    instance: call `ray.shutdown()` when done (the watcher then ends by itself).
    """
    import ray

    if ray.is_initialized():
        return
    before = _children()
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             **({"num_cpus": num_cpus} if address is None and num_cpus is not None else {}))
    started = sorted(_children() - before)
    if started:  # a local instance: its servers must not outlive a killed parent
        subprocess.Popen([sys.executable, "-c", RAY_REAPER, str(os.getpid()), *map(str, started)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
