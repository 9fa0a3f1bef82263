import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from embodia.body.scene_graph import SceneGraph
from embodia.brain.llm import LLMError, LLMPlanner
from embodia.brain.plan import Plan
from embodia.brain.planner import make_planner
from embodia.brain.refusal import Refusal
from embodia.brain.testset import build_scenes
from embodia.serve.brain_service import (
    BrainService,
    BrainServiceConfig,
    BrainServiceError,
    RemoteBrain,
)
from tests.serve.conftest import API_KEY

AUTH = {"Authorization": f"Api-Key {API_KEY}", "Content-Type": "application/json"}
EMPTY_SCENE = {"objects": [], "relations": []}


@pytest.fixture(scope="module")
def scene():
    return build_scenes(["pick/0"])["pick/0"]


@pytest.fixture(scope="module")
def service():
    with BrainService(make_planner("symbolic"), API_KEY, BrainServiceConfig(port=0)) as svc:
        yield svc


class StubPlanner:
    """Does what the instruction says: 'block' waits for `release`, 'value' / 'llm' raise."""

    name = "stub"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def plan(self, instruction, scene):
        self.calls += 1
        if instruction == "block":
            self.release.wait(10)
        if instruction == "value":
            raise ValueError("no such arm")
        if instruction == "llm":
            raise LLMError("endpoint http://secret-host down")
        return Plan(instruction, [], [["held(red_cube, right)"]], [], "stub")

    def replan(self, plan, scene, from_segment=0):
        return plan


def _post(service, path, body, key=API_KEY, timeout=10):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    req = urllib.request.Request(service.url + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _raw(service, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def test_scene_graph_round_trips_through_json(scene):
    again = SceneGraph.from_dict(json.loads(json.dumps(scene.to_dict())))
    assert again == scene
    with pytest.raises(ValueError, match="position"):
        SceneGraph.from_dict({"objects": [{"name": "a", "cls": "cube", "position": [0, 0],
                                           "orientation": [1, 0, 0, 0], "size": [1]}]})


def test_remote_brain_plans_like_the_local_planner(service, scene):
    remote = RemoteBrain(service.url, API_KEY)
    local = make_planner("symbolic").plan("put the red cube in the bowl", scene)
    plan = remote.plan("put the red cube in the bowl", scene)
    assert plan.skills == local.skills and plan.instructions == local.instructions
    assert remote.replan(plan, scene).skills == local.skills
    with pytest.raises(Refusal) as e:
        remote.plan("put the unicorn in the bowl", scene)
    assert e.value.kind == "unknown" and "unicorn" in str(e.value)


def test_bad_requests_and_auth(service, scene):
    plans_before = service.counts["plans"]
    assert _post(service, "/plan", b"{}", key=None)[0] == 401
    assert _post(service, "/plan", b"{}", key="wrong-key-0123456789")[0] == 401
    status, body = _post(service, "/plan", b"{not json")
    assert status == 400 and "JSON" in body["message"]
    status, body = _post(service, "/plan", {"instruction": "x", "scene": {"objects": [{}]}})
    assert status == 422 and body["fields"] == ["scene"] and "scene" in body["message"]
    status, body = _post(service, "/plan", {"instruction": 3, "scene": scene.to_dict()})
    assert status == 422 and body["fields"] == ["instruction"]
    status, body = _post(service, "/plan", {"instruction": "x", "scene": scene.to_dict(), "colour": 1})
    assert status == 422 and body["fields"] == ["colour"] and "unknown field" in body["message"]
    status, body = _post(service, "/plan", [1, 2])
    assert status == 422 and body["fields"] == ["body"]
    status, body = _post(service, "/replan", {"plan": {"x": 1}, "scene": scene.to_dict()})
    assert status == 422 and body["fields"] == ["plan"]
    assert service.counts["plans"] == plans_before
    with pytest.raises(BrainServiceError, match="401"):
        RemoteBrain(service.url, "wrong-key-0123456789").plan("put the red cube in the bowl", scene)
    with pytest.raises(BrainServiceError, match="unreachable"):
        RemoteBrain("http://127.0.0.1:9", API_KEY, timeout_s=2).plan("x", scene)


def test_wrong_key_is_401_before_the_body_is_read(service):
    """A huge declared body with a wrong key: 401 at once, nothing read, nothing planned."""
    status, headers, _ = _raw(service, "POST", "/plan", b"",
                              {"Authorization": "Api-Key wrong-key-0123456789", "Content-Length": str(50 << 20)})
    assert status == 401 and dict(headers)["www-authenticate"] == "Api-Key"


def test_body_over_the_cap_is_413(service, scene):
    cap = service.config.max_body_bytes
    status, _, body = _raw(service, "POST", "/plan", b"", {**AUTH, "Content-Length": str(cap + 1)})
    assert status == 413 and json.loads(body)["error"] == "too_large"

    # no Content-Length: the body is counted while it arrives, and cut off past the cap
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as s:
        s.sendall(f"POST /plan HTTP/1.1\r\nHost: x\r\nAuthorization: Api-Key {API_KEY}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for _ in range(cap // 1024 + 1):  # just past the cap: every byte sent is read
                s.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")
        except OSError:  # the server answered and closed mid-upload
            pass
        assert s.recv(4096).startswith(b"HTTP/1.1 413 ")


def test_long_instruction_is_422_naming_instruction(service, scene):
    before = service.counts["plans"]
    t0 = time.monotonic()
    status, body = _post(service, "/plan", {"instruction": "put the red cube in the bowl " * 1100,
                                            "scene": scene.to_dict()})
    assert status == 422 and body["fields"] == ["instruction"] and "at most 2000" in body["message"]
    assert time.monotonic() - t0 < 2.0 and service.counts["plans"] == before


def test_scene_with_too_many_objects_is_422_naming_scene(service, scene):
    d = scene.to_dict()
    d["objects"] = [{**d["objects"][0], "name": f"cube_{i}"} for i in range(100)]
    t0 = time.monotonic()
    status, body = _post(service, "/plan", {"instruction": "put the red cube in the bowl", "scene": d})
    assert status == 422 and body["fields"] == ["scene"] and "100 objects; at most 32" in body["message"]
    assert time.monotonic() - t0 < 2.0


def test_from_segment_out_of_range_is_422(service, scene):
    plan = RemoteBrain(service.url, API_KEY).plan("put the red cube in the bowl", scene)
    for seg in (999, len(plan.goals), -1, "0", 1.5, True):
        status, body = _post(service, "/replan", {"plan": plan.to_dict(), "scene": scene.to_dict(),
                                                  "from_segment": seg})
        assert status == 422 and body["fields"] == ["from_segment"], (seg, body)
    with pytest.raises(BrainServiceError, match="from_segment"):
        RemoteBrain(service.url, API_KEY).replan(plan, scene, 999)


def test_every_reply_has_exactly_one_content_type(service, scene):
    ok = json.dumps({"instruction": "put the red cube in the bowl", "scene": scene.to_dict()}).encode()
    refused = json.dumps({"instruction": "put the unicorn in the bowl", "scene": scene.to_dict()}).encode()
    for method, path, body, headers, want in [
        ("GET", "/healthz", b"", {}, 200),
        ("POST", "/plan", ok, AUTH, 200),
        ("POST", "/plan", refused, AUTH, 422),
        ("POST", "/plan", b"{", AUTH, 400),
        ("POST", "/plan", ok, {}, 401),
        ("POST", "/nowhere", ok, AUTH, 404),
        ("GET", "/plan", b"", AUTH, 405),
    ]:
        status, got, _ = _raw(service, method, path, body, headers)
        types = [v for k, v in got if k.lower() == "content-type"]
        assert status == want and types == ["application/json"], (path, status, got)


def test_half_sent_requests_neither_block_others_nor_stay_open(scene):
    cfg = BrainServiceConfig(port=0, header_timeout_s=2.0, body_timeout_s=2.0)
    with BrainService(make_planner("symbolic"), API_KEY, cfg) as svc:
        half_head = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(20)]
        for s in half_head:
            s.sendall(b"POST /plan HTTP/1.1\r\nHost: x\r\nContent-Le")
        half_body = socket.create_connection(("127.0.0.1", svc.port))
        half_body.sendall(f"POST /plan HTTP/1.1\r\nHost: x\r\nAuthorization: Api-Key {API_KEY}\r\n"
                          "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"instr".encode())
        t0 = time.monotonic()
        plan = RemoteBrain(svc.url, API_KEY, timeout_s=5).plan("put the red cube in the bowl", scene)
        assert plan.skills and time.monotonic() - t0 < 1.5  # not held until their 2 s deadline
        for s in [*half_head, half_body]:
            s.settimeout(5.0)
        assert b" 408 " in half_body.recv(4096).split(b"\r\n")[0]
        for s in half_head:
            assert s.recv(4096) == b""  # dropped by the server
            s.close()
        half_body.close()


def test_slow_planning_is_504_and_a_full_queue_is_503():
    stub = StubPlanner()
    cfg = BrainServiceConfig(port=0, plan_timeout_s=0.5, max_pending=1)
    with BrainService(stub, API_KEY, cfg) as svc:
        try:
            results: list = []
            slow = [threading.Thread(target=lambda: results.append(
                _post(svc, "/plan", {"instruction": "block", "scene": EMPTY_SCENE}))) for _ in range(2)]
            for t in slow:
                t.start()
            time.sleep(0.2)  # one planning, one waiting: the queue is full
            t0 = time.monotonic()
            status, body = _post(svc, "/plan", {"instruction": "quick", "scene": EMPTY_SCENE})
            assert status == 503 and body["error"] == "overloaded" and time.monotonic() - t0 < 0.5
            for t in slow:
                t.join(5)
            assert [s for s, _ in results] == [504, 504]
            assert "0.5 s" in results[0][1]["message"]
        finally:
            stub.release.set()
        deadline = time.monotonic() + 5
        while True:  # the abandoned job finishes and frees its slot
            status, body = _post(svc, "/plan", {"instruction": "quick", "scene": EMPTY_SCENE})
            if status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200 and body["instruction"] == "quick"


def test_planner_errors_are_not_502_unless_the_backend_failed():
    stub = StubPlanner()
    with BrainService(stub, API_KEY, BrainServiceConfig(port=0)) as svc:
        status, body = _post(svc, "/plan", {"instruction": "value", "scene": EMPTY_SCENE})
        assert status == 422 and "no such arm" in body["message"]
        status, body = _post(svc, "/plan", {"instruction": "llm", "scene": EMPTY_SCENE})
        assert status == 502 and body["error"] == "planner_failed" and "secret-host" not in body["message"]


def test_service_refuses_an_unverifiable_llm_plan_unless_started_to_accept_it(tmp_path, scene):
    steps = [{"skill": "pick", "args": ["red_cube"]}, {"skill": "place", "args": ["red_cube", "bowl"]}]
    (tmp_path / "replies.json").write_text(json.dumps([json.dumps({"steps": steps})]))
    server = Path(__file__).parents[1] / "brain" / "chat_server.py"
    proc = subprocess.Popen([sys.executable, str(server), str(tmp_path / "replies.json"),
                             str(tmp_path / "log.jsonl")], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
        grounder = make_planner("symbolic").parser.grounder
        unreadable = "zorble the red cube into the bowl"  # no verb the grammar knows or reads by meaning
        with BrainService(LLMPlanner(base_url=url, model="tiny", grounder=grounder), API_KEY,
                          BrainServiceConfig(port=0)) as svc:
            with pytest.raises(Refusal) as e:
                RemoteBrain(svc.url, API_KEY).plan(unreadable, scene)
            assert e.value.kind == "unsupported" and "could not be checked" in e.value.reason
        with BrainService(LLMPlanner(base_url=url, model="tiny", grounder=grounder, accept_unverified=True),
                          API_KEY, BrainServiceConfig(port=0)) as svc:
            plan = RemoteBrain(svc.url, API_KEY).plan(unreadable, scene)
            assert plan.skills[-1] == ("place", ("red_cube", "bowl")) and plan.goals == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
