"""Watchdog and emergency stop: the two ways the control layer stops trusting its input.

The watchdog holds position when no fresh action chunk arrived within a deadline (a stalled
policy, a dropped network link): the arm freezes where it is instead of replaying stale
actions. It lets go by itself when chunks come back. The emergency stop latches: it halts all
motion until someone calls `reset()` explicitly, whatever arrives meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Watchdog:
    deadline_s: float
    last_feed: float | None = None
    trips: int = 0
    _tripped: bool = False

    def __post_init__(self) -> None:
        if self.deadline_s <= 0:
            raise ValueError(f"watchdog deadline must be positive, got {self.deadline_s}")

    def feed(self, t: float) -> None:
        self.last_feed = t
        self._tripped = False

    def arm(self, t: float) -> None:
        """Start the deadline now (a new step: the first chunk is due within the deadline)."""
        self.feed(t)

    def expired(self, t: float) -> bool:
        """True when nothing fresh came for `deadline_s`; counts each separate trip once."""
        late = self.last_feed is None or t - self.last_feed > self.deadline_s
        if late and not self._tripped:
            self.trips += 1
        self._tripped = late
        return late


@dataclass
class EmergencyStop:
    latched: bool = False
    reason: str = ""
    t: float | None = None
    count: int = 0

    def trigger(self, reason: str, t: float) -> None:
        if not self.latched:
            self.count += 1
            self.latched, self.reason, self.t = True, reason, t

    def reset(self) -> None:
        """The explicit reset: motion may resume from the next fresh command."""
        self.latched, self.reason, self.t = False, "", None
