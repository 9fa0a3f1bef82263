"""Jobs on a real local Ray instance: collect -> train -> eval -> promote, and restarts."""

import time

import pytest
from fastapi.testclient import TestClient

from embodia.serve.fleet.app import FleetConfig, create_app
from embodia.serve.fleet.database import open_database
from embodia.serve.fleet.jobs import MAX_ATTEMPTS, JobRunner
from embodia.serve.fleet.models import Job
from embodia.serve.fleet.tokens import create_token


def wait(client, op, job_id, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        j = client.get(f"/api/jobs/{job_id}", headers=op).json()
        if j["state"] in ("succeeded", "failed"):
            return j
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {j['state']}: {j['log_tail'][-500:]}")


@pytest.fixture
def service(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    sessions = open_database(url)
    with sessions() as s:
        op = {"Authorization": f"Bearer {create_token(s, 'operator')}"}
    app = create_app(FleetConfig(db=url, data_dir=str(tmp_path / "data")), sessions)
    with TestClient(app) as client:
        yield client, op, sessions


def test_collect_train_eval_promote(service):
    client, op, _ = service
    bad = client.post("/api/jobs", headers=op, json={"job": {"kind": "train", "name": "pick", "datasets": ["none"]}})
    assert bad.status_code == 404 and bad.json()["detail"]["field"] == "job.datasets"
    bad = client.post("/api/jobs", headers=op, json={"job": {"kind": "eval", "skill_id": 1, "skill": "juggle"}})
    assert bad.status_code == 422 and "skill" in str(bad.json()["detail"][0]["loc"])
    r = client.post("/api/jobs", headers=op, json={"job": {"kind": "collect", "dataset": "pick_sim", "embodiment": "arm7",
                                                          "skill": "pick", "episodes": 2, "seed_start": 0,
                                                          "cameras": "none"}})
    assert r.status_code == 201, r.text
    j = wait(client, op, r.json()["id"])
    assert j["state"] == "succeeded", j["error"]
    ds = client.get("/api/datasets", headers=op).json()
    assert ds[0]["name"] == "pick_sim" and ds[0]["episodes"] == 2 and ds[0]["tier"] == "synthetic"
    r = client.post("/api/jobs", headers=op, json={"job": {"kind": "train", "name": "pick", "datasets": ["pick_sim"],
                                                          "max_steps": 3, "batch_size": 2}})
    j = wait(client, op, r.json()["id"])
    assert j["state"] == "succeeded", j["error"]
    assert j["progress"] == 1.0 and j["artefacts"]["skill_id"]
    skill_id = j["artefacts"]["skill_id"]
    k = client.get("/api/skills", headers=op).json()[0]
    assert k["id"] == skill_id and k["status"] == "candidate" and len(k["checkpoint_hash"]) == 64
    assert client.post(f"/api/skills/{skill_id}/promote", headers=op).status_code == 409  # not evaluated yet
    r = client.post("/api/jobs", headers=op, json={"job": {"kind": "eval", "skill_id": skill_id, "skill": "pick",
                                                          "episodes": 1}})
    j = wait(client, op, r.json()["id"])
    assert j["state"] == "succeeded", j["error"]
    k = client.get("/api/skills", headers=op).json()[0]
    assert k["metrics"]["episodes"] == 1 and 0.0 <= k["metrics"]["success_rate"] <= 1.0
    assert k["metrics"]["seed_start"] == 100_000
    assert client.post(f"/api/skills/{skill_id}/promote", headers=op).status_code == 200


def test_interrupted_jobs_resume_then_fail_with_reason(tmp_path):
    sessions = open_database(f"sqlite:///{tmp_path / 'fleet.db'}")
    with sessions() as s:
        s.add_all([Job(kind="eval", state="running", params={}, attempts=1),
                   Job(kind="eval", state="running", params={}, attempts=MAX_ATTEMPTS)])
        s.commit()
    JobRunner(sessions, tmp_path).recover()
    with sessions() as s:
        again, given_up = s.get(Job, 1), s.get(Job, 2)
        assert again.state == "queued" and "resuming" in again.log_tail
        assert given_up.state == "failed" and "stopped during this job" in given_up.error
