"""The runtime's two clocks.

`SimClock`: simulated lockstep time. Nothing waits; the scheduler advances it tick by tick,
so a run depends only on its seed (what evaluation needs). `WallClock`: CLOCK_MONOTONIC,
the same time base in every process on the machine, with a hybrid sleep-then-spin wait:
`time.sleep` alone overshoots by 50-100 us on Linux, spinning alone burns a core, so the
loop sleeps until `spin_s` before the deadline and spins the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


@dataclass
class SimClock:
    """Simulated time in seconds, advanced explicitly by the lockstep scheduler."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ValueError(f"time cannot go backwards (dt={dt})")
        self.t += dt


def monotonic() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class WallClock:
    """Real time on CLOCK_MONOTONIC (shared by all processes), with a precise wait."""

    spin_s: float = 0.0003

    def now(self) -> float:
        return monotonic()

    def wait_until(self, deadline: float) -> float:
        """Sleep, then spin, until `deadline`; returns the time it woke (never before it)."""
        remaining = deadline - monotonic()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        now = monotonic()
        while now < deadline:
            now = monotonic()
        return now


def reduce_timer_slack(ns: int = 1) -> bool:
    """Ask Linux for `ns` of timer slack (default 50 us) so sleeps end closer to their target.
    Returns whether it worked (other systems: False, harmless)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        PR_SET_TIMERSLACK = 29
        return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
