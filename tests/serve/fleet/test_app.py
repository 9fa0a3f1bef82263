"""The fleet REST API on a real SQLite database: roles, robots, skills and promotion, uploads."""

import hashlib
import io
import tarfile
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from embodia.body.embodiments import get_embodiment
from embodia.data.writer import DatasetWriter, EpisodeBuffer
from embodia.serve.fleet.app import FleetConfig, create_app
from embodia.serve.fleet.database import open_database
from embodia.serve.fleet.episodes import pack
from embodia.serve.fleet.models import Robot, Token, Upload
from embodia.serve.fleet.tokens import create_token

HASH = "ab" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"t{uuid.uuid4().hex[:12]}")
    sessions = open_database(url)
    app = create_app(FleetConfig(db=url, data_dir=str(tmp_path / "data"), max_upload_bytes=2_000_000,
                                 run_jobs=False),
                     sessions)
    client = TestClient(app)

    def token(role):
        with sessions() as s:
            return {"Authorization": f"Bearer {create_token(s, role)}"}

    return client, token, sessions, tmp_path


def register(client, robot, name="r1", embodiment="arm7"):
    r = client.post("/api/robots", headers=robot,
                    json={"name": name, "embodiment": embodiment, "software_version": "0.1.0"})
    assert r.status_code == 201, r.text
    return r.json()


def test_tokens_are_hashed_and_checked_before_work(fleet):
    client, token, sessions, _ = fleet
    op = token("operator")
    with sessions() as s:
        digests = [t.digest for t in s.scalars(select(Token))]
    assert op["Authorization"].split()[1] not in digests and len(digests[0]) == 64
    assert client.get("/api/robots").status_code == 401
    assert client.get("/api/robots", headers={"Authorization": "Bearer emb_nope"}).status_code == 401
    assert client.get("/api/robots", headers={"Authorization": op["Authorization"].replace("Bearer", "Basic")}).status_code == 401
    # a wrong role is 403 even with a body that would not validate: the body is never looked at
    viewer = token("viewer")
    assert client.post("/api/skills", headers=viewer, json={"bogus": 1}).status_code == 403
    assert client.post("/api/robots", headers=op, json={}).status_code == 403
    assert client.get("/api/robots", headers=viewer).status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "embodia fleet"


def test_robot_registers_heartbeats_and_sees_only_itself(fleet):
    client, token, sessions, _ = fleet
    a, b = token("robot"), token("robot")
    ra = register(client, a, "alpha")
    assert register(client, a, "alpha")["id"] == ra["id"]  # idempotent per token
    rb = register(client, b, "beta", "humanoid_upper")
    hb = client.post(f"/api/robots/{ra['id']}/heartbeat", headers=a, json={"status": "busy"})
    assert hb.status_code == 200 and hb.json()["skill"] is None
    assert client.post(f"/api/robots/{rb['id']}/heartbeat", headers=a, json={}).status_code == 403
    assert client.get(f"/api/robots/{rb['id']}/skill", headers=a).status_code == 403
    assert client.get("/api/robots", headers=a).status_code == 403
    listed = {r["name"]: r for r in client.get("/api/robots", headers=token("viewer")).json()}
    assert listed["alpha"]["status"] == "busy" and listed["alpha"]["heartbeat_age_s"] < 5
    assert listed["beta"]["heartbeat_age_s"] is None


def test_bad_input_names_the_field_and_changes_nothing(fleet):
    client, token, sessions, _ = fleet
    robot, op = token("robot"), token("operator")
    r = client.post("/api/robots", headers=robot, json={"name": "x", "embodiment": "tractor", "software_version": "1"})
    assert r.status_code == 422 and "embodiment" in str(r.json()["detail"][0]["loc"])
    r = client.post("/api/robots", headers=robot, json={"name": "x", "embodiment": "arm7", "software_version": "1", "colour": 3})
    assert r.status_code == 422 and "colour" in r.text
    r = client.post("/api/skills", headers=op, json={"name": "pick", "embodiment": "arm7", "head": "flow",
                                                      "checkpoint_hash": "xyz"})
    assert r.status_code == 422 and "checkpoint_hash" in str(r.json()["detail"][0]["loc"])
    with sessions() as s:
        assert s.scalar(select(func.count(Robot.id))) == 0
    rid = register(client, robot)["id"]
    k = client.post("/api/skills", headers=op, json={"name": "pick", "embodiment": "humanoid_upper",
                                                      "head": "flow", "checkpoint_hash": HASH}).json()
    r = client.put(f"/api/robots/{rid}/skill", headers=op, json={"skill_id": k["id"]})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "skill_id"
    assert client.get(f"/api/robots/{rid}/skill", headers=robot).json()["skill"] is None


def test_promotion_only_when_not_worse(fleet):
    client, token, _, _ = fleet
    op = token("operator")
    robots = [token("robot") for _ in range(3)]
    ids = [register(client, t, f"r{i}")["id"] for i, t in enumerate(robots)]

    def skill(rate):
        metrics = {} if rate is None else {"success_rate": rate, "episodes": 20}
        return client.post("/api/skills", headers=op, json={"name": "pick", "embodiment": "arm7", "head": "flow",
                                                            "checkpoint_hash": HASH, "metrics": metrics}).json()["id"]

    v1, v2, v3, unevaluated = skill(0.6), skill(0.5), skill(0.65), skill(None)
    r = client.post(f"/api/skills/{unevaluated}/promote", headers=op)
    assert r.status_code == 409 and r.json()["detail"]["field"] == "metrics.success_rate"
    r = client.post(f"/api/skills/{v1}/promote", headers=op)
    assert r.status_code == 200 and sorted(r.json()["robots"]) == sorted(ids)
    r = client.post(f"/api/skills/{v2}/promote", headers=op)
    assert r.status_code == 409 and r.json()["detail"]["candidate"] == 0.5 and r.json()["detail"]["promoted"] == 0.6
    assert client.get(f"/api/robots/{ids[0]}/skill", headers=robots[0]).json()["skill"]["id"] == v1
    assert client.post(f"/api/skills/{v3}/promote", headers=op).status_code == 200
    states = {k["id"]: k["status"] for k in client.get("/api/skills", headers=op).json()}
    assert states[v1] == "retired" and states[v3] == "promoted" and states[v2] == "candidate"
    late = token("robot")  # a robot that joins later runs the promoted version
    assert register(client, late, "late")["skill"]["id"] == v3


def episodes_archive(tmp_path, n=2, embodiment="arm7", name="ds") -> bytes:
    rng = np.random.default_rng(0)
    spec = get_embodiment(embodiment)
    w = DatasetWriter(tmp_path / name, spec, [], (32, 32), action_space="ee_delta")
    for e in range(n):
        ep = EpisodeBuffer(task="pick up the red cube", skill="pick", seed=e)
        ep.success = e == 0
        for _ in range(4):
            ep.add({"observation.state": rng.normal(size=spec.state_dim).astype(np.float32)},
                   rng.normal(size=spec.action_layout("ee_delta").dim).astype(np.float32))
        w.stage(ep, f"k{e}")
    w.consolidate()
    return pack(tmp_path / name)


def send(client, robot, body, dataset="pick_real", sha=None):
    sha = sha or hashlib.sha256(body).hexdigest()
    return client.post(f"/api/datasets/{dataset}/episodes", headers={**robot, "X-Content-SHA256": sha},
                       content=body)


def test_upload_is_validated_idempotent_and_counted(fleet):
    client, token, sessions, tmp_path = fleet
    robot = token("robot")
    assert send(client, robot, b"x").status_code == 409  # not registered yet
    register(client, robot)
    body = episodes_archive(tmp_path)
    r = send(client, robot, body)
    assert r.status_code == 201, r.text
    assert r.json() == {"dataset": "pick_real", "sha256": hashlib.sha256(body).hexdigest(), "duplicate": False,
                        "episodes": 2, "frames": 8, "successes": 1}
    again = send(client, robot, body)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    listed = client.get("/api/datasets", headers=token("viewer")).json()
    assert listed == [{"name": "pick_real", "embodiment": "arm7", "tier": "real", "uploads": 1, "episodes": 2,
                       "frames": 8, "successes": 1}]
    with sessions() as s:
        stored = s.scalar(select(Upload))
    from embodia.data.validate import validate_dataset

    assert validate_dataset(stored.path).ok


def test_bad_uploads_store_nothing(fleet):
    client, token, sessions, tmp_path = fleet
    robot = token("robot")
    register(client, robot)
    good = episodes_archive(tmp_path)
    r = send(client, robot, good, sha=HASH)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "X-Content-SHA256"
    r = send(client, robot, b"not a tarball")
    assert r.status_code == 422 and r.json()["detail"]["field"] == "body"
    r = send(client, robot, good, dataset="../escape")
    assert r.status_code in (404, 422)
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w:gz") as tar:
        info = tarfile.TarInfo("ds/meta/info.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    r = send(client, robot, link.getvalue())
    assert r.status_code == 422 and "not a plain file" in r.json()["detail"]["message"]
    r = send(client, robot, b"\0" * 2_000_001)
    assert r.status_code == 413
    other = episodes_archive(tmp_path, embodiment="humanoid_upper", name="hum")
    r = send(client, robot, other)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "embodiment"
    with sessions() as s:
        assert s.scalar(select(func.count(Upload.id))) == 0
    assert client.get("/api/datasets", headers=token("viewer")).json() == []
    assert list((tmp_path / "data" / "staging").iterdir()) == []


def test_migrations_build_exactly_the_models_schema(fleet):
    """Every table and column of models.py comes from a migration (none made by create_all)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from embodia.serve.fleet.models import Base

    _, _, sessions, _ = fleet
    with sessions().bind.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
