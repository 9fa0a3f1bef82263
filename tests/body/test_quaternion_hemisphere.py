"""The recorded end-effector quaternion keeps one hemisphere, continuous frame to frame."""

import numpy as np

from embodia.body.sim import Simulation


def _sweep(n=11):
    """A top-down hand wobbling through w = 0 (the old w >= 0 rule flipped ee_qx here)."""
    out = []
    for w in np.linspace(-0.05, 0.05, n):
        q = np.array([w, 0.97, 0.2, 0.01])
        out.append(q / np.linalg.norm(q))
    return out


def _recorded(sim, quats, monkeypatch):
    arm = next(iter(sim.arms))
    pos = np.zeros(3)
    frames = iter(quats)
    monkeypatch.setattr(sim, "tcp_pose", lambda name: (pos, next(frames).copy()))
    names = sim.embodiment.state_names
    cols = [names.index(f"{arm}.ee_q{c}") for c in "wxyz"]
    return np.array([sim.state_vector()[cols] for _ in quats])


def test_no_sign_flip_through_w_zero(monkeypatch):
    sim = Simulation("arm7")
    q = _recorded(sim, _sweep(), monkeypatch)
    assert np.all(q[:, 1] > 0.9), q[:, 1]  # ee_qx stays +0.97: no jump to -0.97
    assert np.all(np.sum(q[1:] * q[:-1], axis=1) > 0)  # continuous with the previous frame


def test_each_episode_starts_in_the_down_quat_hemisphere(monkeypatch):
    sim = Simulation("arm7")
    down = np.array(sim.embodiment.arms[0].down_quat)
    # an episode that rotates far (continuity carries the sign along) ...
    turn = [np.array([np.cos(a), np.sin(a), 0.0, 0.0]) for a in np.linspace(0.1, 3.0, 30)]
    q = _recorded(sim, turn, monkeypatch)
    assert np.all(np.sum(q[1:] * q[:-1], axis=1) > 0)
    # ... then a reset: the next first frame is chosen against down_quat, not the last frame
    sim.reset_quaternion_continuity()
    start = _recorded(sim, [-_sweep()[0]], monkeypatch)[0]
    assert float(np.dot(start, down)) > 0


def test_env_reset_restarts_the_hemisphere(make_env):
    env = make_env(skill="pick")
    env.reset(seed=0)
    env.sim._quat_ref = {a: -np.array(env.sim.embodiment.arm(a).down_quat) for a in env.sim.arms}
    obs, _ = env.reset(seed=0)
    names = env.embodiment.state_names
    arm = env.arm
    q = obs["observation.state"][[names.index(f"{arm}.ee_q{c}") for c in "wxyz"]]
    assert float(np.dot(q, env.embodiment.arm(arm).down_quat)) > 0
