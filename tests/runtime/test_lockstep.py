"""The lockstep runtime: deterministic, layers at their declared rates, asynchronous
inference with latency compensation exercised on the simulated clock."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.body.env import TabletopEnv
from embodia.runtime.body import SimBody
from embodia.runtime.layers import LayerSpec, RuntimeConfig
from embodia.runtime.lockstep import LockstepRuntime
from embodia.runtime.policies import ExpertChunkPolicy, LearnedChunkPolicy
from tests.runtime.conftest import tiny_policy


def _body(seed: int, skill: str = "pick", cameras=(), image_size: int = 96) -> SimBody:
    env = TabletopEnv(skill=skill, cameras=cameras, image_size=image_size)
    env.reset(seed=seed)
    return SimBody.from_env(env)


def _expert_step(seed: int, cfg: RuntimeConfig | None = None):
    body = _body(seed)
    rt = LockstepRuntime(body, ExpertChunkPolicy("arm7", 10.0), cfg)
    rt.start(seed)
    skill, args = body.env.plan[0]
    rec = rt.run_step(skill, args, "pick it up", "main", 8.0)
    log = rt.control.log.arrays()
    body.env.close()
    return rec, log, rt


def test_same_seed_same_run_and_the_expert_succeeds():
    a, log_a, rt = _expert_step(3)
    b, log_b, _ = _expert_step(3)
    assert a.success and a.reason == "success" and a.chunks > 10
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(log_a["q"], log_b["q"])
    s = rt.summaries()
    assert {n: round(v["achieved_hz"]) for n, v in s.items()} == {
        "reasoning": 5, "perception": 10, "control": 500, "hal": 500}
    assert s["control"]["ticks"] == round(a.duration_s * 500)


def test_control_rate_is_configurable_and_checked():
    from embodia.runtime.control import ControlConfig

    rec, _, rt = _expert_step(4, RuntimeConfig(control=ControlConfig(rate_hz=1000.0)))
    assert rec.success and rt.summaries()["control"]["ticks"] == round(rec.duration_s * 1000)
    with pytest.raises(ValueError, match="whole number"):
        _expert_step(4, RuntimeConfig(reasoning_hz=3.0))
    with pytest.raises(ValueError, match="100-1000 Hz"):
        ControlConfig(rate_hz=2000.0)
    with pytest.raises(ValueError, match="1-5 Hz"):
        LayerSpec("reasoning", 10.0, (1.0, 5.0), "")


def test_latency_is_compensated_and_the_stream_never_runs_dry():
    """A chunk takes 0.25 s to compute: 3 slots (0.0, 0.1, 0.2) pass meanwhile. They are
    skipped in the new chunk, run from the old one, and RTC freezes exactly those."""
    body = _body(1, cameras=("front", "wrist"), image_size=32)
    policy = LearnedChunkPolicy(tiny_policy(horizon=10, n_action_steps=4))
    seen = []
    infer = policy.infer

    def spy(obs, prefix=None, frozen=0):
        seen.append((None if prefix is None else len(prefix), frozen))
        return infer(obs, prefix, frozen)

    policy.infer = spy
    rt = LockstepRuntime(body, policy, RuntimeConfig(sim_latency_s=0.25))
    rt.start(0)
    rec = rt.run_step("pick", body.env.plan[0][1], "pick up the cube", "main", 2.0)
    body.env.close()
    assert rec.reason == "timeout"  # a random policy does not pick anything
    assert rec.chunks >= 4 and rec.latency_ms and min(rec.latency_ms) == pytest.approx(250.0)
    # the first chunk finds slot 0.2 in progress but not yet run (nothing to run it from):
    # it runs late instead of being skipped; every later chunk skips all three
    assert rec.skipped_actions == 3 * rec.chunks - 1
    assert "watchdog_hold" not in rec.interventions  # requested early enough: never starved
    assert seen[0] == (None, 0) and all(f == 3 for _, f in seen[1:])
