import time

import numpy as np
import pytest

from embodia.serve.client import (
    AuthError,
    ChunkQueue,
    ClientConfig,
    LinkError,
    PolicyConnection,
    RemoteCerebellum,
    hold_action,
)
from embodia.serve.impair import BackgroundLink, Impairment
from embodia.serve.protocol import RequestError
from tests.serve.conftest import API_KEY, make_obs


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_chunk_queue_skips_actions_whose_time_passed_and_never_repeats():
    clock = FakeClock()
    q = ChunkQueue(10.0, clock)  # 0.1 s per action
    assert q.pop() is None and q.remaining() == 0
    chunk = np.arange(6, dtype=np.float32)[:, None].repeat(2, 1)
    q.push(chunk, t_obs=clock.t - 0.25)  # the reply took 250 ms: actions 0 and 1 are stale
    assert q.remaining() == 4
    assert q.pop()[0] == 2 and q.skipped == 2
    assert q.pop()[0] == 3  # called again within the same slot: the next action, not a repeat
    clock.t += 0.25  # the control loop stalled
    assert q.pop()[0] == 5 and q.skipped == 3
    assert q.pop() is None and q.expired == 2  # ran out: the caller holds
    q.push(chunk * 10, t_obs=clock.t)  # a newer chunk replaces it
    q.push(chunk * 100, t_obs=clock.t - 1)  # an older one never does
    assert q.pop()[0] == 0 and q.pop()[0] == 10
    with pytest.raises(ValueError, match="finite"):
        q.push(np.full((2, 2), np.nan), clock.t)


def test_hold_action_stops_motion_and_keeps_the_gripper():
    space = {"name": "ee_delta", "gripper_dims": [6]}
    last = np.array([0.01, 0.02, 0.0, 0.1, 0.0, 0.0, 0.8], np.float32)
    np.testing.assert_array_equal(hold_action(space, last), np.array([0, 0, 0, 0, 0, 0, 0.8], np.float32))
    np.testing.assert_array_equal(hold_action({"name": "joint_pos"}, last), last)
    assert hold_action(space, None) is None


def test_policy_connection_errors(echo_server):
    with pytest.raises(AuthError):
        PolicyConnection(echo_server.url, api_key="wrong-key-0123456789")
    with pytest.raises(LinkError):
        PolicyConnection("ws://127.0.0.1:9", api_key=API_KEY, open_timeout_s=1)
    with PolicyConnection(echo_server.url, api_key=API_KEY) as conn:
        assert conn.metadata["embodiment"] == "arm7"
        with pytest.raises(RequestError, match="missing"):
            conn.infer({"task": "x"})
        obs = make_obs(echo_server.server.policy.cfg)
        np.testing.assert_array_equal(conn.infer(obs)["actions"][0], obs["observation.state"][:7])


def _control_loop(robot, obs, seconds, dt=0.05):
    """A stand-in for the control layer: one action per tick, hold when none is fresh."""
    ticks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        robot.set_observation(obs)
        action, fresh = robot.act()
        ticks.append((fresh, action))
        time.sleep(dt)
    return ticks


def test_link_loss_holds_position_and_reconnects_when_the_link_returns(echo_server):
    cfg = echo_server.server.policy.cfg
    obs = make_obs(cfg)
    with BackgroundLink(echo_server.url, Impairment(delay_s=0.01, jitter_s=0.005)) as link:
        config = ClientConfig(api_key=API_KEY, embodiment="arm7", request_timeout_s=0.5,
                              backoff_initial_s=0.05, backoff_max_s=0.2)
        with RemoteCerebellum(link.url, config) as robot:
            robot.wait_ready(5)
            before = _control_loop(robot, obs, 1.0)
            assert sum(f for f, _ in before) >= 0.7 * len(before)  # fresh actions flow
            link.set_up(False)
            down = _control_loop(robot, obs, 1.2)
            assert not robot.status.connected and robot.status.failed_connects >= 1
            tail = down[len(down) // 2:]  # the last chunk (horizon 4 at 10 Hz = 0.4 s) has run out
            assert not any(f for f, _ in tail)
            for _, action in tail:  # hold: no motion, the gripper keeps its last command
                np.testing.assert_array_equal(action[:6], 0)
                assert action[6] == obs["observation.state"][6]
            link.set_up(True)
            after = _control_loop(robot, obs, 1.5)
            assert any(f for f, _ in after[-10:])
            assert robot.status.connects >= 2 and robot.status.disconnects >= 1


def test_added_delay_is_compensated_by_skipping_stale_actions(echo_server):
    link = BackgroundLink(echo_server.url, Impairment(delay_s=0.08))  # 160 ms round trip
    with link, RemoteCerebellum(link.url, ClientConfig(api_key=API_KEY, refill_at=0)) as robot:
        robot.wait_ready(5)
        _control_loop(robot, make_obs(echo_server.server.policy.cfg), 1.2)
        assert min(robot.status.rtt_ms) >= 160
        assert robot.queue.skipped >= 1  # action 0 of each chunk was due while it travelled


def test_dropped_messages_cost_a_reconnect_not_the_robot(echo_server):
    with BackgroundLink(echo_server.url, Impairment(drop_prob=0.2), seed=1) as link:
        config = ClientConfig(api_key=API_KEY, request_timeout_s=0.2, backoff_initial_s=0.02, backoff_max_s=0.1)
        with RemoteCerebellum(link.url, config) as robot:
            robot.wait_ready(5)
            ticks = _control_loop(robot, make_obs(echo_server.server.policy.cfg), 2.0)
            assert link.link.dropped >= 1 and robot.status.disconnects >= 1
            assert sum(f for f, _ in ticks) >= 4
