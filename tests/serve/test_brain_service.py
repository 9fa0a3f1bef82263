import json
import urllib.error
import urllib.request

import pytest

from embodia.body.scene_graph import SceneGraph
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


@pytest.fixture(scope="module")
def scene():
    return build_scenes(["pick/0"])["pick/0"]


@pytest.fixture(scope="module")
def service():
    with BrainService(make_planner("symbolic"), API_KEY, BrainServiceConfig(port=0)) as svc:
        yield svc


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


def _post(service, path, data, key=API_KEY):
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    req = urllib.request.Request(service.url + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bad_requests_and_auth(service, scene):
    plans_before = service.counts["plans"]
    assert _post(service, "/plan", b"{}", key=None)[0] == 401
    assert _post(service, "/plan", b"{}", key="wrong-key-0123456789")[0] == 401
    status, body = _post(service, "/plan", b"{not json")
    assert status == 400 and "JSON" in body["message"]
    status, body = _post(service, "/plan", json.dumps({"instruction": "x", "scene": {"objects": [{}]}}).encode())
    assert status == 400 and "scene" in body["message"]
    status, body = _post(service, "/plan", json.dumps({"instruction": 3, "scene": scene.to_dict()}).encode())
    assert status == 400 and "instruction" in body["message"]
    status, body = _post(service, "/replan", json.dumps({"plan": {"x": 1}, "scene": scene.to_dict()}).encode())
    assert status == 400 and "plan" in body["message"]
    assert service.counts["plans"] == plans_before
    with pytest.raises(BrainServiceError, match="401"):
        RemoteBrain(service.url, "wrong-key-0123456789").plan("put the red cube in the bowl", scene)
    with pytest.raises(BrainServiceError, match="unreachable"):
        RemoteBrain("http://127.0.0.1:9", API_KEY, timeout_s=2).plan("x", scene)
