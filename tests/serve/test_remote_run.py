"""`embodia run --policy-url ws://... --brain-url http://...`: the agent with the cerebellum
and the brain both remote over loopback (a tiny random checkpoint; success is not the point)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from embodia.brain.planner import make_planner
from embodia.runtime.agent import run_instruction
from embodia.serve.brain_service import BrainService, BrainServiceConfig, RemoteBrain
from embodia.serve.remote_policy import RemoteChunkPolicy, RemotePolicyError
from embodia.serve.server import BackgroundServer, ServerConfig
from tests.serve.conftest import API_KEY, SMALL

INSTRUCTION = "pick up the red cube"


@pytest.fixture(scope="module")
def servers(tiny_policy):
    with BackgroundServer(tiny_policy, API_KEY, ServerConfig(port=0)) as policy_srv, \
            BrainService(make_planner("symbolic"), API_KEY, BrainServiceConfig(port=0)) as brain_srv:
        yield policy_srv, brain_srv


def test_remote_chunk_policy_reads_the_metadata(servers, monkeypatch):
    policy_srv, _ = servers
    monkeypatch.setenv("EMBODIA_API_KEY", API_KEY)
    with RemoteChunkPolicy(policy_srv.url) as p:
        assert (p.embodiment, p.space, p.horizon, p.execute) == ("arm7", "ee_delta", SMALL["horizon"],
                                                                 SMALL["n_action_steps"])
        assert p.cameras == ("front", "wrist") and p.image_size == SMALL["image_size"]
        assert not p.supports_rtc
    monkeypatch.setenv("EMBODIA_API_KEY", "wrong-key-0123456789")
    with pytest.raises(RemotePolicyError, match="401"):
        RemoteChunkPolicy(policy_srv.url)


def test_run_with_cerebellum_and_brain_remote(servers):
    policy_srv, brain_srv = servers
    before = policy_srv.metrics()["requests"]
    brain = RemoteBrain(brain_srv.url, API_KEY)
    with RemoteChunkPolicy(policy_srv.url, API_KEY) as cerebellum:
        rep = run_instruction(INSTRUCTION, 0, brain, cerebellum)
        sent = cerebellum.requests
    local = make_planner("symbolic").plan(INSTRUCTION, _scene())
    assert rep.refusal is None and rep.monitor is not None  # ran to a verdict (random weights: fails)
    assert rep.plan.planner == local.planner and rep.plan.skills == local.skills
    assert rep.steps and {s.instruction for s in rep.steps} <= set(local.instructions)
    assert rep.policy == cerebellum.name and rep.steps[0].chunks > 0
    assert sent > 0 and policy_srv.metrics()["requests"] - before == sent


@pytest.mark.slow
def test_cli_run_with_policy_url_and_brain_url(servers, monkeypatch):
    from embodia.cli import app

    policy_srv, brain_srv = servers
    monkeypatch.setenv("EMBODIA_API_KEY", API_KEY)
    before = policy_srv.metrics()["requests"]
    res = CliRunner().invoke(app, ["run", INSTRUCTION, "--seed", "0", "--policy", "does/not/exist",
                                   "--policy-url", policy_srv.url, "--brain-url", brain_srv.url, "--json"])
    assert res.exit_code in (0, 1), res.output  # a verdict, not an error (random weights: 1)
    out = json.loads(res.stdout)
    assert out["policy"].startswith("remote") and out["plan"]["steps"] and out["steps"]
    assert {s["instruction"] for s in out["steps"]} <= {s["instruction"] for s in out["plan"]["steps"]}
    assert policy_srv.metrics()["requests"] > before
    res = CliRunner().invoke(app, ["run", INSTRUCTION, "--policy-url", "ws://127.0.0.1:9", "--json"])
    assert res.exit_code == 2 and "cannot connect" in res.output


def _scene():
    from embodia.runtime.agent import make_body

    body = make_body("arm7", 0, "pick")
    try:
        return body.scene_graph()
    finally:
        body.env.close()
