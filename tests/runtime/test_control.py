"""The control layer on a bare simulated arm: one action per slot, hold on silence,
emergency stop until reset, refusal of bad chunks."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.body.sim import Simulation
from embodia.runtime.body import SimBody
from embodia.runtime.control import ControlConfig, ControlLayer
from embodia.runtime.messages import ActionChunk, ControlSignal
from embodia.runtime.safety import SafetyConfig

RATE = 500.0


@pytest.fixture
def rig():
    body = SimBody(Simulation("arm7"))
    ctl = ControlLayer(body.embodiment, "ee_delta", body.kinematics(), body.limits(SafetyConfig()),
                       ControlConfig(rate_hz=RATE, watchdog_s=0.3))
    ctl.init(body.read_joints(), body.commanded_grip())
    return body, ctl


def run(body, ctl, t0: float, seconds: float, chunks=()):
    """Tick for `seconds` from t0; `chunks` are (arrival time, chunk) pairs."""
    pending = sorted(chunks, key=lambda c: c[0])
    n = int(round(seconds * RATE))
    cmds = []
    for k in range(n):
        t = t0 + k / RATE
        while pending and pending[0][0] <= t + 1e-9:
            ctl.receive(pending.pop(0)[1], t)
        cmd = ctl.tick(t, body.read_joints())
        body.command(cmd)
        body.advance_to(t + 1 / RATE)
        cmds.append(cmd)
    return cmds


def rise(t0: float, n: int = 10, dz: float = 0.01, seq: int = 0, step_id: int = 1) -> ActionChunk:
    a = np.zeros((n, 7), np.float32)
    a[:, 2] = dz
    return ActionChunk(a, t0, 0.1, "ee_delta", "arm7", step_id, seq)


def tcp_z(body) -> float:
    return float(body.sim.tcp_pose("main")[0][2])


def test_one_action_per_slot_even_when_chunks_repeat(rig):
    body, ctl = rig
    ctl.start_step(1, 0.0, 0.1, body.read_joints())
    z0 = float(ctl.mapper.commanded["main"][0][2])
    # the same plan delivered three times, mid-slot: each slot still runs exactly once
    run(body, ctl, 0.0, 1.0, [(0.0, rise(0.0)), (0.05, rise(0.0, seq=1)), (0.33, rise(0.3, seq=2))])
    assert ctl.last_slot == 9  # slots 0..9, once each
    assert float(ctl.mapper.commanded["main"][0][2]) - z0 == pytest.approx(0.10, abs=6e-3)
    assert tcp_z(body) - z0 > 0.07  # the servo follows
    assert ctl.skipped_actions >= 1  # the copy that came at 0.05 found its slot already run


def test_silence_means_hold(rig):
    body, ctl = rig
    ctl.start_step(1, 0.0, 0.1, body.read_joints())
    cmds = run(body, ctl, 0.0, 1.0, [(0.0, rise(0.0, n=2))])
    assert not cmds[100].holding and cmds[-1].holding
    assert ctl.counts.get("watchdog_hold") == 1
    q_hold = cmds[-1].q["main"]
    run(body, ctl, 1.0, 0.4)
    assert np.allclose(body.read_joints().q["main"], q_hold, atol=2e-3)


def test_emergency_stop_halts_and_needs_reset(rig):
    body, ctl = rig
    ctl.start_step(1, 0.0, 0.1, body.read_joints())
    run(body, ctl, 0.0, 0.3, [(0.0, rise(0.0, n=30))])
    ctl.signal(ControlSignal.ESTOP, 0.3, "test")
    z_stop = tcp_z(body)
    cmds = run(body, ctl, 0.3, 0.6, [(0.4, rise(0.4, n=30, seq=1))])
    assert all(c.holding for c in cmds)
    assert abs(tcp_z(body) - z_stop) < 0.01  # the arm stopped (it was moving 0.1 m/s)
    assert np.abs(body.read_joints().qd["main"]).max() < 0.05
    ctl.signal(ControlSignal.RESET_ESTOP, 0.9)
    cmds = run(body, ctl, 0.9, 0.2, [(0.9, rise(0.9, n=30, seq=2))])
    assert not cmds[-1].holding and tcp_z(body) > z_stop + 0.005


def test_bad_chunks_are_refused_and_reported(rig):
    body, ctl = rig
    ctl.start_step(1, 0.0, 0.1, body.read_joints())
    bad = rise(0.0)
    nan = ActionChunk(np.full((3, 7), np.nan, np.float32), 0.0, 0.1, "ee_delta", "arm7", 1, 0)
    assert not ctl.receive(nan, 0.0)
    assert not ctl.receive(ActionChunk(bad.actions, 0.0, 0.1, "ee_delta", "humanoid_upper", 1, 1), 0.0)
    assert not ctl.receive(ActionChunk(bad.actions[:, :5], 0.0, 0.1, "ee_delta", "arm7", 1, 2), 0.0)
    assert not ctl.receive(rise(0.0, step_id=0), 0.0)  # an older step's chunk: dropped silently
    assert ctl.counts["chunk_rejected"] == 3 and ctl.chunks_accepted == 0


@pytest.mark.parametrize("reanchor_pos, keeps_moves", [(None, True), (0.03, False)])
def test_fast_moves_accumulate_on_the_commanded_pose_despite_tracking_lag(rig, reanchor_pos, keeps_moves):
    """Interpolated setpoints leave the hand a few cm behind during a fast move; the mapper
    must still add each delta to the commanded pose (env.step's 3 cm re-anchoring rule, here,
    re-anchored on the lagging hand every slot and each move fell short)."""
    body, ctl = rig
    if reanchor_pos is not None:
        ctl.mapper.reanchor_pos = reanchor_pos
    y0 = float(body.sim.tcp_pose("main")[0][1])
    a = np.zeros((12, 7), np.float32)
    a[:5, 1] = -0.035  # five fast moves (the learned policy's reach is about this fast), then still
    chunk = ActionChunk(a, 0.0, 0.1, "ee_delta", "arm7", 1, 0)
    ctl.start_step(1, 0.0, 0.1, body.read_joints())
    run(body, ctl, 0.0, 1.2, [(0.0, chunk)])
    moved = y0 - float(body.sim.tcp_pose("main")[0][1])
    assert (abs(moved - 0.175) < 0.01) == keeps_moves, moved


def test_warm_up_changes_nothing_the_loop_sees():
    """Two identical rigs, one warmed up: the same commands, tick for tick."""
    def rig_cmds(warm: bool) -> list[np.ndarray]:
        body = SimBody(Simulation("arm7"))
        ctl = ControlLayer(body.embodiment, "ee_delta", body.kinematics(), body.limits(SafetyConfig()),
                           ControlConfig(rate_hz=RATE, watchdog_s=0.3))
        ctl.init(body.read_joints(), body.commanded_grip())
        if warm:
            ctl.warm_up(body.read_joints())
        ctl.start_step(1, 0.0, 0.1, body.read_joints())
        return [c.q["main"] for c in run(body, ctl, 0.0, 0.5, [(0.0, rise(0.0))])]

    cold, warm = rig_cmds(False), rig_cmds(True)
    assert len(cold) == len(warm) and all(np.array_equal(a, b) for a, b in zip(cold, warm, strict=True))
    assert not np.array_equal(cold[0], cold[-1])  # the rig did move
