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
`**popen_kwargs()`.
"""

from __future__ import annotations

import ctypes
import os
import signal
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
