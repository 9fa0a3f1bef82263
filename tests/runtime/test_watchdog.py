from __future__ import annotations

import pytest

from embodia.runtime.watchdog import EmergencyStop, Watchdog


def test_watchdog_trips_once_per_silence_and_recovers():
    w = Watchdog(0.5)
    assert w.expired(0.0)  # never fed: nothing fresh
    w.arm(1.0)
    assert not w.expired(1.4)
    assert w.expired(1.6) and w.expired(1.7)
    assert w.trips == 2  # the unfed start, then one silence (counted once)
    w.feed(1.8)
    assert not w.expired(2.0)
    with pytest.raises(ValueError):
        Watchdog(0.0)


def test_emergency_stop_latches_until_reset():
    e = EmergencyStop()
    e.trigger("bumper", 1.0)
    e.trigger("again", 2.0)
    assert e.latched and e.reason == "bumper" and e.count == 1
    e.reset()
    assert not e.latched and e.reason == ""
