"""The real-time runtime: the control loop in its own process, state over shared memory,
chunks and signals over a pipe. No timing is asserted here (benchmarks measure it)."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.brain.planner import make_planner
from embodia.runtime.agent import make_body, run_instruction
from embodia.runtime.policies import ExpertChunkPolicy
from embodia.runtime.realtime import RealtimeRuntime, StateBus


def test_state_bus_round_trip():
    bus = StateBus(3, 2, 1)
    assert bus.read(tries=3) is None  # never written
    bus.write(1.5, 0.25, np.arange(3.0), np.ones(2), np.array([7.0]))
    t_wall, t_sim, q, v, u = bus.read()
    assert (t_wall, t_sim) == (1.5, 0.25) and q.tolist() == [0, 1, 2] and v.tolist() == [1, 1] and u[0] == 7
    other = StateBus(3, 2, 1, bus.raw)  # what the other process attaches to
    assert other.read()[2].tolist() == [0, 1, 2]


def test_steps_run_in_real_time_and_the_emergency_stop_holds_until_reset():
    body = make_body("arm7", 4)
    rt = RealtimeRuntime(body, ExpertChunkPolicy("arm7", 10.0))
    try:
        rt.start(4)
        rec = rt.run_step("pick", ("red_cube",), "pick up the red cube", "main", 1.0)
        assert rec.reason in ("timeout", "success") and rec.chunks >= 5 and rec.latency_ms
        rt.emergency_stop("test")
        rt.scene_graph()  # syncs the mirror from shared memory
        q0 = body.read_joints().q["main"].copy()
        rec = rt.run_step("pick", ("red_cube",), "pick up the red cube", "main", 0.6)
        assert rec.reason == "estop" and rec.chunks == 0  # chunks sent during the stop are refused
        rt.scene_graph()
        assert np.abs(body.read_joints().q["main"] - q0).max() < 0.02
        rt.reset_emergency_stop()
        rec = rt.run_step("pick", ("red_cube",), "pick up the red cube", "main", 0.6)
        assert rec.reason != "estop" and rec.chunks >= 3
    finally:
        rt.close()
        body.env.close()
    s = rt.summaries()
    assert s["control"]["ticks"] > 500 and s["hal"]["ticks"] == s["control"]["ticks"]
    assert s["process"]["physics_steps_per_s"] > 0
    assert rt.control_report["counts"]["estop"] == 1
    assert len(rt.control_report["trajectory"]["t"]) > 20


@pytest.mark.slow
def test_agent_in_real_time(tmp_path):
    rep = run_instruction("put the red cube in the bowl", 4, make_planner("symbolic", "arm7"),
                          ExpertChunkPolicy("arm7", 10.0), realtime=True, report=tmp_path / "r.html")
    d = rep.to_dict()
    assert d["mode"] == "realtime" and d["success"], d["message"]
    assert d["timing"]["control"]["ticks"] > 0 and "control process" in (tmp_path / "r.html").read_text()
