import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from embodia.serve.batching import BatchingConfig
from embodia.serve.codec import packb, unpackb
from embodia.serve.protocol import RequestError
from embodia.serve.server import BackgroundServer, PolicyServer, ServerConfig
from tests.serve.conftest import API_KEY, SMALL, EchoPolicy, PolicyConfig, make_obs


def _http(port, path, key=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Api-Key {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_loopback_is_the_default_bind():
    assert ServerConfig().host == "127.0.0.1"


def test_openpi_client_gets_metadata_and_action_chunks(vla_server, tiny_policy):
    client = WebsocketClientPolicy("127.0.0.1", vla_server.port, api_key=API_KEY)
    md = client.get_server_metadata()
    assert md["embodiment"] == "arm7" and md["chunk_length"] == 4 and md["action_space"]["name"] == "ee_delta"
    cfg = tiny_policy.cfg
    for seed in range(3):
        reply = client.infer(make_obs(cfg, seed))
        assert reply["actions"].shape == (cfg.horizon, cfg.action_dim) and reply["actions"].dtype == np.float32
        assert np.isfinite(reply["actions"]).all()
        timing = reply["server_timing"]
        assert timing["infer_ms"] > 0 and timing["batch_size"] == 1
    assert "prev_total_ms" in timing  # openpi's field, per client


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789"])
def test_wrong_or_missing_key_is_refused_at_the_handshake(echo_server, key):
    before = list(echo_server.policy.batch_sizes)
    with pytest.raises(InvalidStatus) as e:
        WebsocketClientPolicy("127.0.0.1", echo_server.port, api_key=key)
    assert e.value.response.status_code == 401
    assert echo_server.policy.batch_sizes == before  # no model work
    assert echo_server.metrics()["auth_failures"] >= 1


def test_healthz_is_open_and_metrics_need_the_key(echo_server):
    assert _http(echo_server.port, "/healthz") == (200, {"status": "ok", "embodiment": "arm7"})
    assert _http(echo_server.port, "/metrics")[0] == 401
    client = WebsocketClientPolicy("127.0.0.1", echo_server.port, api_key=API_KEY)
    client.infer(make_obs(echo_server.server.policy.cfg))
    with pytest.raises(RuntimeError):
        client.infer({"nope": 1})
    status, m = _http(echo_server.port, "/metrics", API_KEY)
    assert status == 200 and m["replies"] >= 1 and m["errors"]["bad_observation"] >= 1
    assert m["latency_ms"]["total"]["p50"] > 0 and m["latency_ms"]["total"]["p99"] >= m["latency_ms"]["total"]["p50"]
    assert m["connections"]["total"] >= 1


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(echo_server):
    cfg = echo_server.server.policy.cfg
    n, results, errors = 8, {}, []
    start = threading.Barrier(n)

    def robot(i):
        try:
            client = WebsocketClientPolicy("127.0.0.1", echo_server.port, api_key=API_KEY)
            start.wait()
            for r in range(4):
                obs = make_obs(cfg, seed=100 * i + r)
                actions = client.infer(obs)["actions"]
                np.testing.assert_array_equal(actions, np.tile(obs["observation.state"][:7], (cfg.horizon, 1)))
            results[i] = True
        except Exception as e:  # surfaced below
            errors.append(e)

    echo_server.policy.batch_sizes.clear()
    threads = [threading.Thread(target=robot, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == n
    assert max(echo_server.policy.batch_sizes) > 1  # requests from different clients shared a call


def test_a_failing_request_does_not_take_its_batch_down_and_leaks_nothing(echo_server):
    cfg = echo_server.server.policy.cfg
    out = {}

    def robot(task):
        client = WebsocketClientPolicy("127.0.0.1", echo_server.port, api_key=API_KEY)
        try:
            out[task] = client.infer(make_obs(cfg, task=task))["actions"].shape
        except RuntimeError as e:
            out[task] = str(e)

    threads = [threading.Thread(target=robot, args=(t,)) for t in ("explode", "pick", "place")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out["pick"] == out["place"] == (cfg.horizon, cfg.action_dim)
    assert "inference_failed" in out["explode"]
    assert "boom" not in out["explode"] and "Traceback" not in out["explode"]


def _raw(port):
    ws = connect(f"ws://127.0.0.1:{port}", additional_headers={"Authorization": f"Api-Key {API_KEY}"},
                 compression=None, max_size=None, legacy=True)
    unpackb(ws.recv())  # metadata
    return ws


def test_bad_requests_get_named_errors_and_the_connection_keeps_working(vla_server, tiny_policy):
    cfg = tiny_policy.cfg
    good = make_obs(cfg)
    state = good["observation.state"]
    odd_dtype = {b"__ndarray__": True, b"data": state.tobytes(), b"dtype": ",0=", b"shape": [15]}
    bad = [
        ("malformed", b"\xc1\x00garbage", "malformed"),
        ("malformed", packb({**good, "observation.state": odd_dtype}), "array dtype ',0=' is not allowed"),
        ("bad_observation", packb({**good, "observation.state": np.zeros(3, np.float32)}), r"\(15,\)"),
        ("bad_observation", packb({**good, "observation.state": np.full(15, 1e300)}),
         r"'observation.state'\[0\] = 1e\+300 is outside the float32 range"),
        ("wrong_embodiment", packb({**good, "embodiment": "humanoid_upper"}), "humanoid_upper"),
        ("too_large", packb({**good, "padding": np.zeros(300 * 1024, np.uint8)}), "exceeds the limit"),
        ("too_large", msgpack.packb([{}] * 200_000), "more than 10000 items"),  # 200 KB, under the byte limit
        ("too_large", b"\x91" * 100 + b"\xc0", "deeper than 32 levels"),
    ]
    with _raw(vla_server.port) as ws:
        for kind, message, match in bad:
            ws.send(message)
            reply = ws.recv(timeout=5)
            assert isinstance(reply, str), kind
            err = RequestError.from_frame(reply)
            assert err.kind == kind and "Traceback" not in reply, reply
            assert match is None or re.search(match, err.message), (match, err.message)
        ws.send("a text frame")
        assert RequestError.from_frame(ws.recv(timeout=5)).kind == "malformed"
        ws.send(packb(good))
        assert unpackb(ws.recv(timeout=5))["actions"].shape == (cfg.horizon, cfg.action_dim)


def test_payload_past_the_hard_cap_closes_only_that_connection(vla_server, tiny_policy):
    other = _raw(vla_server.port)
    huge = np.zeros(vla_server.server.config.transport_max_bytes + 1, np.uint8)
    with _raw(vla_server.port) as ws:
        ws.send(packb({"x": huge}))
        with pytest.raises(ConnectionClosedError) as e:
            ws.recv(timeout=5)
        assert e.value.rcvd.code == 1009  # message too big
    other.send(packb(make_obs(tiny_policy.cfg)))
    assert "actions" in unpackb(other.recv(timeout=5))
    other.close()


class RecordingEcho(EchoPolicy):
    """EchoPolicy that remembers which instructions the model actually computed."""

    def __init__(self, cfg: PolicyConfig, delay_s: float) -> None:
        super().__init__(cfg, delay_s)
        self.tasks: list[str] = []

    def predict_chunk(self, batch: dict):
        self.tasks += batch["task"]
        return super().predict_chunk(batch)


def _wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_requests_of_clients_that_went_away_are_dropped_and_their_slots_freed():
    """Clients that send and disconnect (more of them than max_clients) cost no model time and
    no slot: a real client connects and is answered without waiting for their work."""
    cfg = PolicyConfig(**SMALL)
    policy = RecordingEcho(cfg, delay_s=0.2)  # each model call is slow, one request per call
    config = ServerConfig(port=0, warmup=False, max_clients=8, batching=BatchingConfig(max_batch=1))
    n_gone = 24
    with BackgroundServer(policy, API_KEY, config) as srv:
        for i in range(n_gone):
            ws = _raw(srv.port)  # before the fix the 9th connect got 503: slots held by gone clients
            ws.send(packb(make_obs(cfg, seed=i, task="gone")))
            ws.close()
        _wait_for(lambda: srv.metrics()["client_gone"] == n_gone)
        assert srv.metrics()["connections"]["open"] == 0  # every slot is free again
        client = WebsocketClientPolicy("127.0.0.1", srv.port, api_key=API_KEY)
        reply = client.infer(make_obs(cfg, task="real"))
        assert reply["server_timing"]["queue_ms"] < 2000  # not behind 24 x 200 ms of dead work
        computed_gone = policy.tasks.count("gone")
        assert computed_gone <= 3 and policy.tasks[-1] == "real"
        m = srv.metrics()
        assert m["dropped_requests"] == n_gone - computed_gone  # every other one never reached the model


def test_a_message_past_the_structure_budget_is_refused_while_others_are_served(echo_server):
    """4 MiB of empty maps (msgpack alone spends seconds building them) is refused by the
    budget walk; another client is served meanwhile."""
    n = 4 * 2**20 - 5
    flood = b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n
    cfg = echo_server.server.policy.cfg
    client = WebsocketClientPolicy("127.0.0.1", echo_server.port, api_key=API_KEY)
    out: dict[str, object] = {}

    def attacker():
        with _raw(echo_server.port) as ws:
            ws.send(flood)
            out["attacker"] = RequestError.from_frame(ws.recv(timeout=10))

    t = threading.Thread(target=attacker)
    t.start()
    out["robot"] = client.infer(make_obs(cfg))["actions"].shape
    t.join(20)
    assert out["robot"] == (cfg.horizon, cfg.action_dim)
    err = out["attacker"]
    assert err.kind == "too_large" and "more than 10000 items" in err.message


def test_decoding_runs_off_the_event_loop(monkeypatch):
    """A message whose decode is stuck (here: waiting until the robot has its answer) does not
    hold up another client. With the decode on the event loop the robot is never answered
    while the stuck decode waits, so the wait times out and the order comes out reversed."""
    cfg = PolicyConfig(**SMALL)
    heavy = packb({**make_obs(cfg), "marker": np.zeros(1, np.float32)})
    robot_answered, heavy_decoding = threading.Event(), threading.Event()
    decode = PolicyServer._decode

    def stuck_decode(self, message):
        if message == heavy:
            heavy_decoding.set()
            robot_answered.wait(10)
        return decode(self, message)

    monkeypatch.setattr(PolicyServer, "_decode", stuck_decode)
    done: list[str] = []
    with BackgroundServer(EchoPolicy(cfg), API_KEY, ServerConfig(port=0, warmup=False)) as srv:
        robot = WebsocketClientPolicy("127.0.0.1", srv.port, api_key=API_KEY)

        def heavy_sender():
            with _raw(srv.port) as ws:
                ws.send(heavy)
                ws.recv(timeout=30)
                done.append("heavy")

        t = threading.Thread(target=heavy_sender)
        t.start()
        assert heavy_decoding.wait(10)
        robot.infer(make_obs(cfg))
        done.append("robot")
        robot_answered.set()
        t.join(30)
    assert done == ["robot", "heavy"]


def test_api_keys_never_reach_the_log(echo_server, caplog):
    """Not from the server's own lines, not from websockets' debug log (which prints the path
    and every header): a key in the query string, the header, right or wrong."""
    caplog.set_level(logging.DEBUG)
    port = echo_server.port
    in_url, token, wrong = "url-key-0123456789abcdef", "tok-0123456789abcdef", "wrong-key-0123456789zz"
    client = WebsocketClientPolicy("127.0.0.1", port, api_key=API_KEY)
    client.infer(make_obs(echo_server.server.policy.cfg))
    with pytest.raises(InvalidStatus) as e:
        connect(f"ws://127.0.0.1:{port}/ws?api_key={in_url}&token={token}", open_timeout=5)
    assert e.value.response.status_code == 401 and b"not accepted" in e.value.response.body
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{port}", additional_headers={"Authorization": f"Api-Key {wrong}"}, open_timeout=5)
    assert _http(port, f"/metrics?api_key={API_KEY}", API_KEY)[0] == 200
    server_side = [r for r in caplog.records if r.name.startswith(("embodia", "websockets.server"))]
    assert any("refused /ws?api_key=<redacted>&token=<redacted>" in r.getMessage() for r in server_side)
    assert any("Authorization: <redacted>" in r.getMessage() for r in server_side)  # websockets' debug line
    for r in server_side:
        text = r.getMessage()
        assert not any(secret in text for secret in (API_KEY, in_url, token, wrong)), text


def test_an_observation_straight_from_tabletop_env_is_served(tiny_policy, caplog):
    """TabletopEnv's observation carries observation.environment_state, which the policy does
    not read: it is served, and the ignored key is logged once and counted in /metrics."""
    from embodia.body.env import TabletopEnv

    cfg = tiny_policy.cfg
    env = TabletopEnv(skill="pick", cameras=tuple(cfg.cameras), image_size=cfg.image_size)
    caplog.set_level(logging.INFO, logger="embodia.serve")
    try:
        with BackgroundServer(tiny_policy, API_KEY, ServerConfig(port=0)) as srv:
            client = WebsocketClientPolicy("127.0.0.1", srv.port, api_key=API_KEY)
            obs, _ = env.reset(seed=0)
            assert "observation.environment_state" in obs
            for _ in range(3):
                actions = client.infer(obs)["actions"]
                assert actions.shape == (cfg.horizon, cfg.action_dim) and np.isfinite(actions).all()
                obs, *_ = env.step(actions[0])
            _, m = _http(srv.port, "/metrics", API_KEY)
    finally:
        env.close()
    assert m["ignored_keys"] == {"observation.environment_state": 3} and m["replies"] == 3
    lines = [r.getMessage() for r in caplog.records if "observation.environment_state" in r.getMessage()]
    assert len(lines) == 1 and "ignoring" in lines[0]
