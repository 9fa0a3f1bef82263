"""Random, truncated and structurally wrong messages: the server answers each with a named
error (or actions), never crashes, never leaks a traceback, and keeps serving."""

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from embodia.serve.codec import packb, unpackb
from embodia.serve.protocol import RequestError
from tests.serve.conftest import API_KEY, make_obs

LEAKS = ("Traceback", 'File "', "Error(", "/site-packages/", "embodia/serve")

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=30) | st.binary(max_size=8), kids, max_size=4), max_leaves=12)
array_maps = st.fixed_dictionaries({
    b"__ndarray__": st.booleans(), b"data": st.binary(max_size=64),
    b"dtype": st.sampled_from(["<f4", "|u1", "|O", "<U3", "|V4", "xx", "<f8", "|b1", b"<i4", ",0=", "(2,)f4",
                               "f4,f4", "<M8[s]", "float32", ">f8"]) | st.text(max_size=6),
    b"shape": st.lists(st.integers(-3, 70), max_size=4) | values,
})


@pytest.fixture(scope="module")
def conn(vla_server):
    ws = connect(f"ws://127.0.0.1:{vla_server.port}", additional_headers={"Authorization": f"Api-Key {API_KEY}"},
                 compression=None, max_size=None, legacy=True)
    unpackb(ws.recv())
    yield ws
    ws.close()


def _ask(ws, message):
    ws.send(message)
    reply = ws.recv(timeout=10)
    if isinstance(reply, str):
        assert not any(s in reply for s in LEAKS), reply
        err = RequestError.from_frame(reply)
        assert err.kind != "internal", reply  # every bad input is named, none reaches a bug
        return err
    return unpackb(reply)


def _valid(tiny_policy, seed=0):
    return packb(make_obs(tiny_policy.cfg, seed))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_messages_get_named_errors(conn, tiny_policy, data):
    kind = data.draw(st.sampled_from(["bytes", "truncated", "structure", "array", "mutated_obs", "deep"]))
    if kind == "bytes":
        message = data.draw(st.binary(max_size=300))
    elif kind == "truncated":
        full = _valid(tiny_policy, data.draw(st.integers(0, 5)))
        message = full[: data.draw(st.integers(0, len(full) - 1))]
    elif kind == "structure":
        message = msgpack.packb(data.draw(values))
    elif kind == "array":
        message = msgpack.packb({"observation.state": data.draw(array_maps)})
    elif kind == "deep":  # nesting around the depth budget, lists or maps
        depth = data.draw(st.integers(1, 80))
        message = (b"\x91" if data.draw(st.booleans()) else b"\x81\xa1k") * depth + b"\xc0"
    else:
        obs = make_obs(tiny_policy.cfg)
        key = data.draw(st.sampled_from(sorted(obs)))
        obs[key] = data.draw(values | array_maps.map(lambda m: np.zeros(3, np.float32)))
        message = packb(obs)
    reply = _ask(conn, message)
    assert isinstance(reply, RequestError | dict)


def test_server_still_serves_after_the_fuzzing(conn, vla_server, tiny_policy):
    reply = _ask(conn, _valid(tiny_policy))
    assert reply["actions"].shape == (tiny_policy.cfg.horizon, tiny_policy.cfg.action_dim)
    m = vla_server.metrics()
    assert m["errors_total"] > 0 and "internal" not in m["errors"]
