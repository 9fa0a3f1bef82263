"""`embodia fleet robot` against a real service: tasks, resumable uploads, the outbox while
offline, site scene memory, and pulling a skill version."""

import json
import subprocess
import sys

import httpx2 as httpx
import pytest

from embodia.serve.fleet.robot import FleetError, FleetRobot, RobotConfig
from tests.serve.fleet.test_crash import call, free_port, serve, token


@pytest.fixture
def fleet(tmp_path):
    db, data, port = f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path / "data", free_port()
    ctx = {"db": db, "data": data, "port": port, "op": token(db, "operator"), "tmp": tmp_path}
    ctx["service"] = serve(db, data, port, "--no-jobs")
    yield ctx
    ctx["service"].terminate()
    ctx["service"].wait(30)


def robot(ctx, name="r1", site="lab", **kw):
    tok = token(ctx["db"], "robot")
    cfg = RobotConfig(server=f"http://127.0.0.1:{ctx['port']}", token=tok, name=name, site=site,
                      spool=ctx["tmp"] / f"spool-{name}", cameras=(), heartbeat_s=0.2, poll_s=0.1, **kw)
    return FleetRobot(cfg)


def queue(ctx, robot_id, dataset="flywheel", episodes=2, seed_start=0):
    status, task = call(ctx["port"], ctx["op"], "POST", f"/api/robots/{robot_id}/tasks",
                        {"skill": "pick", "episodes": episodes, "seed_start": seed_start, "dataset": dataset})
    assert status == 201, task
    return task


def test_robot_runs_queued_tasks_and_uploads_in_chunks(fleet):
    r = robot(fleet, chunk_bytes=4096, max_tasks=1)
    rid = r.register()
    bad = call(fleet["port"], fleet["op"], "POST", f"/api/robots/{rid}/tasks", {"skill": "juggle", "dataset": "d"})
    assert bad[0] == 422 and "skill" in str(bad[1]["detail"])
    task = queue(fleet, rid)
    sent = []
    real = r.request

    def spy(method, path, **kw):
        sent.append(kw.get("headers", {}).get("Content-Range"))
        return real(method, path, **kw)

    r.request = spy
    assert r.run() == 1
    ranges = [c for c in sent if c and not c.startswith("bytes */")]
    assert len(ranges) > 2  # several chunks, each starting where the last ended
    ds = call(fleet["port"], fleet["op"], "GET", "/api/datasets")[1]
    assert ds[0]["name"] == "flywheel" and ds[0]["episodes"] == 2 and ds[0]["tier"] == "synthetic"
    assert ds[0]["successes"] == 2  # the scripted experts (no skill version assigned yet) succeed
    t = call(fleet["port"], fleet["op"], "GET", f"/api/robots/{rid}/tasks")[1][0]
    assert t["id"] == task["id"] and t["state"] == "succeeded" and t["result"]["successes"] == 2
    assert t["result"]["policy"] == "expert" and t["result"]["stored"]["episodes"] == 2
    mem = call(fleet["port"], fleet["op"], "GET", "/api/sites/lab/objects")[1]["objects"]
    assert {"red_cube", "bowl"} <= {o["name"] for o in mem} and all(len(o["position"]) == 3 for o in mem)
    assert not list((r.cfg.spool / "outbox").iterdir())  # sent: nothing left behind


def test_offline_robot_keeps_its_episodes_and_resumes_the_upload(fleet):
    r = robot(fleet, chunk_bytes=2048)
    rid = r.register()
    task = queue(fleet, rid)
    assert r.take_task()  # recorded into the outbox
    (item,) = r.outbox()
    first = item.archive.read_bytes()[:2048]  # one chunk reaches the service before the link drops
    assert r.request("PUT", f"/api/datasets/flywheel/episodes/{item.sha256}", content=first,
                     headers={"Content-Range": f"bytes 0-2047/{item.archive.stat().st_size}"}).status_code == 202
    fleet["service"].kill()
    fleet["service"].wait()
    with pytest.raises(httpx.TransportError):
        r.flush()
    assert r.outbox() == [item]  # kept locally while the service is away
    fleet["service"] = serve(fleet["db"], fleet["data"], fleet["port"], "--no-jobs")
    # a new process on the same spool: the task is not recorded again, only sent, from byte 2048
    again = FleetRobot(r.cfg)
    again.robot_id = rid
    starts = []
    real = again.request
    again.request = lambda m, p, **kw: (starts.append(kw.get("headers", {}).get("Content-Range")), real(m, p, **kw))[1]
    assert again.take_task()  # the service hands back the unfinished task; the outbox has it
    again.flush()
    data_ranges = [c for c in starts if c and not c.startswith("bytes */")]
    assert data_ranges[0].startswith("bytes 2048-")
    ds = call(fleet["port"], fleet["op"], "GET", "/api/datasets")[1]
    assert ds[0]["uploads"] == 1 and ds[0]["episodes"] == 2
    t = call(fleet["port"], fleet["op"], "GET", f"/api/robots/{rid}/tasks")[1][0]
    assert t["id"] == task["id"] and t["state"] == "succeeded"


def test_resumable_upload_refuses_bad_ranges_and_changes_nothing(fleet):
    r = robot(fleet)
    r.register()
    url = "/api/datasets/d/episodes/" + "ab" * 32
    with pytest.raises(FleetError) as e:  # not where the held bytes end
        r.request("PUT", url, content=b"x" * 10, headers={"Content-Range": "bytes 5-14/100"})
    assert e.value.status == 409 and e.value.detail["received"] == 0
    with pytest.raises(FleetError) as e:  # the body is not what Content-Range announces
        r.request("PUT", url, content=b"x" * 3, headers={"Content-Range": "bytes 0-9/100"})
    assert e.value.status == 422 and e.value.detail["field"] == "body"
    assert r.request("PUT", url, headers={"Content-Range": "bytes */100"}).json()["received"] == 0
    with pytest.raises(FleetError) as e:
        r.request("PUT", url, content=b"x", headers={"Content-Range": f"bytes 0-0/{10**12}"})
    assert e.value.status == 413 and e.value.detail["field"] == "Content-Range"
    with pytest.raises(FleetError) as e:  # complete, but not the archive the path names
        r.request("PUT", url, content=b"y" * 4, headers={"Content-Range": "bytes 0-3/4"})
    assert e.value.status == 422 and e.value.detail["field"] == "sha256"
    assert call(fleet["port"], fleet["op"], "GET", "/api/datasets")[1] == []
    assert not list((fleet["data"] / "partial").rglob("*.part"))


def test_site_memory_is_shared_within_a_site_only(fleet):
    a, b, c = robot(fleet, "a", "lab"), robot(fleet, "b", "lab"), robot(fleet, "c", "depot")
    for x in (a, b, c):
        x.register()
    new = {"objects": [{"name": "red_cube", "position": [0.5, 0.1, 0.02], "seen_at": "2026-12-03T10:00:00+00:00"}]}
    old = {"objects": [{"name": "red_cube", "position": [0.0, 0.0, 0.0], "seen_at": "2026-12-03T09:00:00+00:00"}]}
    a.request("PUT", "/api/sites/lab/objects", json=new)
    b.request("PUT", "/api/sites/lab/objects", json=old)  # a late, older report does not win
    (o,) = b.request("GET", "/api/sites/lab/objects").json()["objects"]
    assert o["position"] == [0.5, 0.1, 0.02] and o["robot_id"] == a.robot_id
    with pytest.raises(FleetError) as e:
        c.request("GET", "/api/sites/lab/objects")
    assert e.value.status == 403
    with pytest.raises(FleetError) as e:
        a.request("PUT", "/api/sites/lab/objects", json={"objects": [{"name": "x", "position": [1, 2]}]})
    assert e.value.status == 422


def test_robot_pulls_its_assigned_skill_and_checks_its_hash(fleet, tmp_path):
    """A trained checkpoint registered as a skill version reaches the robot intact."""

    ckpt = tmp_path / "ckpt"
    out = subprocess.run([sys.executable, "-m", "embodia.cli", "collect", "--skill", "pick", "--episodes", "1",
                          "--cameras", "none", "--out", str(tmp_path / "demo"), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "embodia.cli", "train", "--data", str(tmp_path / "demo"), "--out",
                          str(ckpt), "--max-steps", "2", "--batch-size", "2", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    from embodia.serve.fleet.database import open_database
    from embodia.serve.fleet.episodes import file_sha256
    from embodia.serve.fleet.models import Skill

    digest = file_sha256(ckpt / "model.safetensors")
    with open_database(fleet["db"])() as s:
        k = Skill(name="pick", embodiment="arm7", head="flow", checkpoint_hash=digest, checkpoint_path=str(ckpt),
                  metrics={"success_rate": 0.5})
        s.add(k)
        s.commit()
        skill_id = k.id
    r, other = robot(fleet, "r1"), robot(fleet, "r2", max_tasks=1)
    rid = r.register()
    other_id = other.register()
    with pytest.raises(FleetError) as e:  # not assigned to this robot yet
        r.request("GET", f"/api/skills/{skill_id}/checkpoint")
    assert e.value.status == 403
    promoted = call(fleet["port"], fleet["op"], "POST", f"/api/skills/{skill_id}/promote")[1]
    assert sorted(promoted["robots"]) == sorted([rid, other_id])  # rolled out to every arm7 robot
    r.heartbeat()
    assert r.skill["id"] == skill_id
    path = r.policy_path()
    assert file_sha256(path / "model.safetensors") == digest
    assert json.loads((path / "config.json").read_text())
    # the other robot runs its next task on the new version, and says so in the result
    queue(fleet, other_id, episodes=1, seed_start=7)
    assert other.run() == 1
    t = call(fleet["port"], fleet["op"], "GET", f"/api/robots/{other_id}/tasks")[1][0]
    assert t["state"] == "succeeded" and t["result"]["policy"] == digest and t["result"]["skill_id"] == skill_id
