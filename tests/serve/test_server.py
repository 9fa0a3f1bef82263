import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from embodia.serve.codec import packb, unpackb
from embodia.serve.protocol import RequestError
from embodia.serve.server import ServerConfig
from tests.serve.conftest import API_KEY, make_obs


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
    bad = {
        "malformed": b"\xc1\x00garbage",
        "bad_observation": packb({**good, "observation.state": np.zeros(3, np.float32)}),
        "wrong_embodiment": packb({**good, "embodiment": "humanoid_upper"}),
        "too_large": packb({**good, "padding": np.zeros(300 * 1024, np.uint8)}),
    }
    with _raw(vla_server.port) as ws:
        for kind, message in bad.items():
            ws.send(message)
            reply = ws.recv(timeout=5)
            assert isinstance(reply, str), kind
            err = RequestError.from_frame(reply)
            assert err.kind == kind and "Traceback" not in reply
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
