"""`kill -9` of the running service: during a resumable upload and during a train job, then a restart."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from embodia.data.children import popen_kwargs
from tests.serve.fleet.test_app import episodes_archive


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(db, data, port, *extra):
    p = subprocess.Popen([sys.executable, "-m", "embodia.cli", "fleet", "serve", "--db", db, "--port", str(port),
                          "--data-dir", str(data), *extra], stderr=subprocess.DEVNULL, **popen_kwargs())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return p
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise AssertionError("the fleet service did not start")


def call(port, token, method, path, body=None, headers=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def token(db, role):
    out = subprocess.run([sys.executable, "-m", "embodia.cli", "fleet", "token", "create", "--role", role, "--db", db],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def ray_servers(_parent_pid):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"gcs_server" in cmd or b"/raylet/raylet" in cmd:
                found.append(int(d))
    return found


def test_kill_during_upload_and_train_then_restart(tmp_path):
    db, data, port = f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path / "data", free_port()
    op, robot = token(db, "operator"), token(db, "robot")
    service = serve(db, data, port)
    before_ray = set(ray_servers(service.pid))
    try:
        assert call(port, robot, "POST", "/api/robots", {"name": "r", "embodiment": "arm7",
                                                         "software_version": "1"})[0] == 201
        body = episodes_archive(tmp_path)
        sha = hashlib.sha256(body).hexdigest()
        status, first = call(port, robot, "POST", "/api/datasets/d/episodes", body, {"X-Content-SHA256": sha})
        assert status == 201  # acknowledged: must survive the crash
        status, job = call(port, op, "POST", "/api/jobs", {"job": {"kind": "train", "name": "pick", "datasets": ["d"],
                                                                  "max_steps": 1_000_000, "max_minutes": 5,
                                                                  "batch_size": 2}})
        assert status == 201
        deadline = time.monotonic() + 300
        while call(port, op, "GET", f"/api/jobs/{job['id']}")[1]["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        time.sleep(8)  # the training is under way
        other = episodes_archive(tmp_path / "b", name="ds2") if (tmp_path / "b").mkdir() is None else b""
        osha, cut = hashlib.sha256(other).hexdigest(), len(other) // 3
        url = f"/api/datasets/d/episodes/{osha}"
        status, part = call(port, robot, "PUT", url, other[:cut], {"Content-Range": f"bytes 0-{cut - 1}/{len(other)}"})
        assert status == 202 and part["received"] == cut  # acknowledged: a resumed upload goes on from here
        half = socket.create_connection(("127.0.0.1", port))  # the next chunk, cut off by the kill
        half.sendall((f"PUT {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {robot}\r\n"
                      f"Content-Range: bytes {cut}-{len(other) - 1}/{len(other)}\r\n"
                      f"Content-Length: {len(other) - cut}\r\n\r\n").encode() + other[cut: cut + cut // 2])
        time.sleep(0.5)
        ray_now = set(ray_servers(service.pid)) - before_ray
        assert ray_now, "the job's Ray servers should be up"
        service.send_signal(signal.SIGKILL)
        service.wait()
        half.close()
        deadline = time.monotonic() + 20
        while set(ray_servers(service.pid)) & ray_now and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not set(ray_servers(service.pid)) & ray_now, "Ray's servers outlived the killed service"

        service = serve(db, data, port, "--no-jobs")  # recovery is checked on the record, not re-run here
        ds = call(port, op, "GET", "/api/datasets")[1]
        assert ds[0]["uploads"] == 1 and ds[0]["episodes"] == first["episodes"]  # nothing acknowledged lost
        assert not list((data / "staging").iterdir())  # no half-unpacked upload left behind
        status, held = call(port, robot, "PUT", url, None, {"Content-Range": f"bytes */{len(other)}"})
        assert status == 200 and cut <= held["received"] < len(other)  # what was acknowledged is there
        start = held["received"]
        status, done = call(port, robot, "PUT", url, other[start:],
                            {"Content-Range": f"bytes {start}-{len(other) - 1}/{len(other)}"})
        assert status == 201 and done["duplicate"] is False and done["episodes"] >= 1, done  # resumed, it lands
        j = call(port, op, "GET", f"/api/jobs/{job['id']}")[1]
        assert j["state"] == "queued" and j["attempts"] == 1 and "resuming" in j["log_tail"]
    finally:
        service.terminate()
        service.wait(30)
