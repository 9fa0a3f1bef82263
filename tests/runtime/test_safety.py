"""The safety filter: nothing outside the limits ever reaches an actuator (property tests
over random command sequences), and every clip or refusal is reported."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from embodia.runtime.safety import SafetyConfig, SafetyFilter, arm_limits, box_distance, max_grip

ARM = "main"
EPS = 1e-9

joint_value = st.one_of(st.floats(-10, 10, allow_nan=False), st.sampled_from([np.nan, np.inf, -np.inf]),
                        st.floats(-1e6, 1e6, allow_nan=False))
command = st.tuples(st.lists(joint_value, min_size=7, max_size=7),
                    st.one_of(st.floats(-5, 5), st.sampled_from([np.nan, np.inf])),
                    st.floats(0.0, 0.045))


def check_invariants(f: SafetyFilter, lim, prev_q, prev_p, q, g, finger) -> None:
    kin = f.kin[ARM]
    assert np.all(np.isfinite(q)) and np.isfinite(g)
    assert np.all(q >= lim.lo - EPS) and np.all(q <= lim.hi + EPS), "joint limit"
    assert np.all(np.abs(q - prev_q) <= lim.vmax * f.dt + 1e-9), "joint velocity"
    p = kin.fk(q)[0]
    assert np.linalg.norm(p - prev_p) / f.dt <= lim.max_ee_speed + 1e-6, "tool speed"
    d_prev = box_distance(prev_p, lim.box_lo, lim.box_hi)
    assert box_distance(p, lim.box_lo, lim.box_hi) <= max(0.0, d_prev) + 1e-9, "workspace"
    assert 0.0 <= g <= 1.0
    squeeze = lim.finger_kp * (finger - lim.finger_open * (1.0 - g))
    assert squeeze <= lim.max_grip_force + 1e-6, "grip force"


@settings(max_examples=60, deadline=None)
@given(st.lists(command, min_size=1, max_size=25), st.floats(-0.3, 0.3))
def test_nothing_outside_the_limits_reaches_an_actuator(arm7_body, arm7_limits, commands, offset):
    lim = arm7_limits[ARM]
    f = SafetyFilter(arm7_limits, arm7_body.kinematics(), dt=0.002)
    home = np.array(arm7_body.sim.embodiment.arm().home)
    f.reset({ARM: home + offset}, {ARM: 0.0})
    for q_raw, g_raw, finger in commands:
        prev_q, prev_p = f.q[ARM].copy(), f.kin[ARM].fk(f.q[ARM])[0]
        q, g, notes = f.filter(0.0, {ARM: np.array(q_raw)}, {ARM: g_raw}, {ARM: finger})
        check_invariants(f, lim, prev_q, prev_p, q[ARM], g[ARM], finger)
        assert all(n.kind in {"reject_nonfinite", "joint_position", "joint_velocity", "ee_speed",
                              "workspace", "gripper_force"} for n in notes)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.floats(-0.05, 0.05), min_size=7, max_size=7), st.floats(0, 1)),
                min_size=5, max_size=60))
def test_small_random_walks_stay_inside(arm7_body, arm7_limits, steps):
    """Commands near the current setpoint (what a policy sends) still never escape."""
    lim = arm7_limits[ARM]
    f = SafetyFilter(arm7_limits, arm7_body.kinematics(), dt=0.001)
    f.reset({ARM: np.array(arm7_body.sim.embodiment.arm().home)})
    for dq, g in steps:
        prev_q, prev_p = f.q[ARM].copy(), f.kin[ARM].fk(f.q[ARM])[0]
        q, grip, _ = f.filter(0.0, {ARM: prev_q + np.array(dq) * 20}, {ARM: g}, {ARM: 0.04})
        check_invariants(f, lim, prev_q, prev_p, q[ARM], grip[ARM], 0.04)


def test_each_kind_of_intervention_is_reported(arm7_body, arm7_limits):
    f = SafetyFilter(arm7_limits, arm7_body.kinematics(), dt=0.002)
    home = np.array(arm7_body.sim.embodiment.arm().home)
    f.reset({ARM: home})
    _, _, notes = f.filter(1.0, {ARM: np.full(7, np.nan)}, {ARM: 0.0}, {ARM: 0.04})
    assert [n.kind for n in notes] == ["reject_nonfinite"] and np.allclose(f.q[ARM], np.clip(home, f.limits[ARM].lo, f.limits[ARM].hi))
    far = home.copy()
    far[0] += 1.0
    _, _, notes = f.filter(1.0, {ARM: far}, {ARM: 0.0}, {ARM: 0.04})
    kinds = {n.kind for n in notes}
    assert "joint_velocity" in kinds
    over = home.copy()
    over[3] = 5.0
    _, _, notes = f.filter(1.0, {ARM: over}, {ARM: 0.0}, {ARM: 0.04})
    assert "joint_position" in {n.kind for n in notes}
    _, g, notes = f.filter(1.0, {ARM: f.q[ARM]}, {ARM: 1.0}, {ARM: 0.04})
    assert [n.kind for n in notes] == ["gripper_force"] and g[ARM] < 1.0
    assert f.counts["reject_nonfinite"] == 1 and f.counts["gripper_force"] == 1


def test_workspace_box_refuses_steps_out(arm7_body):
    """A box that excludes the arm's next position: the step is refused, the arm holds."""
    sim = arm7_body.sim
    h = sim.arms[ARM]
    home = np.array(h.spec.home)
    p_home = arm7_body.kinematics()[ARM].fk(home)[0]
    lim = arm_limits(SafetyConfig(workspace_margin=0.0, z_range=(0.0, float(p_home[2]) + 1e-4)),
                     h.ik.lo, h.ik.hi, (p_home[0] - 0.1, p_home[0] + 0.1, p_home[1] - 0.1, p_home[1] + 0.1),
                     h.spec.finger_open, 300.0)
    f = SafetyFilter({ARM: lim}, arm7_body.kinematics(), dt=0.01)
    f.reset({ARM: home})
    up = home.copy()
    up[1] -= 0.02  # joint 2 back: the hand rises
    q, _, notes = f.filter(0.0, {ARM: up}, {ARM: 0.0}, {ARM: 0.04})
    assert "workspace" in {n.kind for n in notes} and np.allclose(q[ARM], home)


def test_grip_cap_matches_the_servo_model():
    lim = arm_limits(SafetyConfig(max_grip_force=10.0), np.zeros(7), np.ones(7), (0, 1, 0, 1), 0.04, 300.0)
    assert max_grip(lim, 0.02) == 1.0  # 300 N/m * 2 cm = 6 N: closing fully is fine
    g = max_grip(lim, 0.04)
    assert abs(300.0 * (0.04 - 0.04 * (1 - g)) - 10.0) < 1e-6
