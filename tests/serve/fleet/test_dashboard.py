"""The ops dashboard in headless Chromium (Playwright) against the real `embodia fleet serve`:
three `embodia fleet robot` agents heartbeating, one recording and uploading a task, a train job, live updates, a robot going stale, a wrong
token, and a service that stops while the page holds its stream open."""

import hashlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fastapi.testclient import TestClient

from embodia.data.children import popen_kwargs
from embodia.serve.fleet.app import FleetConfig, create_app
from embodia.serve.fleet.dashboard import PAGE
from embodia.serve.fleet.database import open_database
from embodia.serve.fleet.tokens import create_token
from tests.serve.fleet.test_crash import call, free_port, serve, token

CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/install_system_deps.sh); never `playwright install`
# Where the screenshot goes: a file of this run's, or (to refresh the docs' picture)
# FLEET_DASHBOARD_SCREENSHOT=docs/img/fleet_dashboard.png
SHOT = os.environ.get("FLEET_DASHBOARD_SCREENSHOT")


def robot_agent(port, tok, name, tmp_path):
    """A simulated robot: `embodia fleet robot` (registers, heartbeats, runs queued tasks)."""
    (tmp_path / f"{name}.token").write_text(tok + "\n")
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "embodia.cli", "fleet", "robot", "--server", f"http://127.0.0.1:{port}",
                             "--token-file", str(tmp_path / f"{name}.token"), "--name", name, "--site", "lab",
                             "--spool", str(tmp_path / f"spool-{name}"), "--cameras", "none", "--poll-s", "0.5"],
                            stdout=log, stderr=subprocess.STDOUT, **popen_kwargs())


def stop(agent):
    if agent.poll() is None:
        agent.terminate()
        agent.wait(30)


def events_status(port, tok):
    """The status and content type of GET /api/events (the stream is closed at once)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/events", headers={"Authorization": f"Bearer {tok}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.readline()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], b""


def texts(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


def robot_cells(page):
    """{robot name: (status, heartbeat text, skill text)} as the page shows them."""
    return {r["name"]: (r["status"], r["age"], r["skill"]) for r in page.eval_on_selector_all(
        "[data-testid=robot-row]", """rows => rows.map(r => ({name: r.dataset.robotName,
            status: r.querySelector('[data-testid=robot-status]').textContent,
            age: r.querySelector('[data-testid=robot-heartbeat]').textContent,
            skill: r.querySelector('[data-testid=robot-skill]').textContent}))""")}


def seconds(age_text):
    return float(re.match(r"([\d.]+) s ago", age_text)[1])


def until(what, check, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_page_needs_no_token_and_holds_no_data_the_stream_needs_a_reader(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    sessions = open_database(url)
    with sessions() as s:
        robot = create_token(s, "robot")
    app = create_app(FleetConfig(db=url, data_dir=str(tmp_path / "data"), run_jobs=False), sessions)
    with TestClient(app) as client:
        r = client.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text == PAGE.read_text() and 'data-testid="token"' in r.text
        assert "default-src 'none'" in r.headers["content-security-policy"]  # no script or data from elsewhere
        r = client.get("/api/events")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = client.get("/api/events", headers={"Authorization": f"Bearer {robot}"})
        assert r.status_code == 403 and r.json()["detail"]["field"] == "Authorization"
        assert "/api/events" in client.get("/openapi.json").json()["paths"]


def test_dashboard_live_in_chromium(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "no Chromium: run scripts/install_system_deps.sh as root"
    db, data, port = f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path / "data", free_port()
    op, viewer, robot_tokens = token(db, "operator"), token(db, "viewer"), [token(db, "robot") for _ in range(3)]
    service = serve(db, data, port)
    robots = []
    try:
        robots = [robot_agent(port, t, f"arm-{i}", tmp_path) for i, t in enumerate(robot_tokens)]
        listed = until("3 robots registered", lambda: len(r := call(port, op, "GET", "/api/robots")[1]) == 3 and r, 90)
        arm0 = next(r["id"] for r in listed if r["name"] == "arm-0")
        # the flywheel: arm-0 records two episodes and uploads them (resumably)
        status, task = call(port, op, "POST", f"/api/robots/{arm0}/tasks",
                            {"skill": "pick", "episodes": 2, "seed_start": 0, "dataset": "pick_fleet"})
        assert status == 201, task
        try:
            until("arm-0's upload", lambda: call(port, op, "GET", f"/api/robots/{arm0}/tasks")[1][0]["state"]
                  == "succeeded", 120)
        except AssertionError:
            raise AssertionError((tmp_path / "arm-0.log").read_text()[-3000:]) from None

        # two evaluated versions for the plot; the first promoted: every robot is put on it
        for name, rate in (("pick-v1", 0.4), ("pick-v2", 0.7)):
            status, k = call(port, op, "POST", "/api/skills", {"name": name, "embodiment": "arm7", "head": "flow",
                                                               "checkpoint_hash": hashlib.sha256(name.encode()).hexdigest(),
                                                               "metrics": {"success_rate": rate, "episodes": 10}})
            assert status == 201, k
            if name == "pick-v1":
                assert call(port, op, "POST", f"/api/skills/{k['id']}/promote")[0] == 200
        # the stream: a reader's token only, checked before it starts
        assert events_status(port, "nope")[0] == 401
        assert events_status(port, robot_tokens[0])[0] == 403
        status, ctype, first = events_status(port, viewer)
        assert status == 200 and ctype.startswith("text/event-stream") and first == b"event: snapshot\n"

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 640})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
            page.goto(f"http://127.0.0.1:{port}/")  # the page itself needs no token

            # a wrong token: an error, and no data
            page.fill("[data-testid=token]", "emb_wrong")
            page.click("[data-testid=connect]")
            conn = page.get_by_test_id("connection")  # expect(): polled without eval, which the page's CSP forbids
            expect(conn).to_have_text(re.compile(r"^error 401"))
            assert page.locator("[data-testid=robot-row]").count() == 0
            assert page.locator("[data-testid=dataset-row]").count() == 0

            page.fill("[data-testid=token]", viewer)
            page.click("[data-testid=connect]")
            expect(conn).to_have_text("live")
            assert page.evaluate("sessionStorage.getItem('embodia.fleet.token')") == viewer
            status, job = call(port, op, "POST", "/api/jobs", {"job": {
                "kind": "train", "name": "pick-v3", "datasets": ["pick_fleet"],
                # 1000 steps: training reports progress every 250 (its val_every), ~10 s here
                "max_steps": 1000, "batch_size": 2, "max_minutes": 5}})
            assert status == 201, job
            stop(robots[2])  # its heartbeats stop: stale after the service's 10 s

            # three robots, idle, on the promoted version, their heartbeat ages moving
            cells = until("3 idle robots", lambda: (c := robot_cells(page)) and len(c) == 3
                          and all(s == "idle" for s, _, _ in c.values()) and c)
            assert all(skill.startswith("pick-v1 #") for _, _, skill in cells.values())
            assert set(page.eval_on_selector_all("[data-testid=robot-row]", "rs => rs.map(r => r.dataset.robotId)")) \
                == {r["id"] for r in call(port, viewer, "GET", "/api/robots")[1]}
            until("heartbeat ages to change", lambda: robot_cells(page)["arm-0"][1] != cells["arm-0"][1], 10)

            # the job: queued/running with progress rising, then succeeded at 100%
            row = f"[data-testid=job-row][data-job-id='{job['id']}']"
            seen = []
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                state = page.text_content(f"{row} [data-testid=job-state]")
                progress = int(page.text_content(f"{row} [data-testid=job-progress]").rstrip("%"))
                if not seen or seen[-1] != (state, progress):
                    seen.append((state, progress))
                if state in ("succeeded", "failed"):
                    break
                time.sleep(0.1)
            assert seen[-1] == ("succeeded", 100), (seen, call(port, op, "GET", f"/api/jobs/{job['id']}")[1])
            assert seen[0][0] in ("queued", "running"), seen
            assert any(s == "running" and 0 < pr < 100 for s, pr in seen), seen  # progress shown while it ran
            assert [pr for _, pr in seen] == sorted(pr for _, pr in seen), seen
            tail = call(port, op, "GET", f"/api/jobs/{job['id']}")[1]["log_tail"].strip().splitlines()
            if tail:  # its last log lines, where it wrote any
                assert page.text_content(f"[data-job-detail='{job['id']}'] [data-testid=job-log]").endswith(tail[-1])

            # the new skill version, the plot of the evaluated ones, the dataset
            new = page.locator("[data-testid=skill-row]", has_text="pick-v3")
            new.wait_for()
            assert new.locator("[data-testid=skill-status]").text_content() == "candidate"
            assert new.locator("[data-testid=skill-success]").text_content() == "not evaluated"
            assert page.locator("[data-testid=plot-point]").count() == 2
            assert page.locator("[data-testid=plot-line]").count() == 1
            assert texts(page, "[data-testid=legend-item]") == ["arm7"]
            ds = page.locator("[data-testid=dataset-row][data-dataset=pick_fleet]")
            assert ds.locator("[data-testid=dataset-episodes]").text_content() == "2"
            assert ds.locator("[data-testid=dataset-tier]").text_content() == "synthetic"  # a simulated robot's

            # the robot without heartbeats turns stale, its age growing; the others stay idle
            until("arm-2 stale", lambda: robot_cells(page)["arm-2"][0] == "stale", 30)
            first_age = seconds(robot_cells(page)["arm-2"][1])
            until("arm-2's age to grow", lambda: seconds(robot_cells(page)["arm-2"][1]) > first_age, 10)
            assert robot_cells(page)["arm-0"][0] == robot_cells(page)["arm-1"][0] == "idle"

            page.screenshot(path=SHOT or str(tmp_path / "fleet_dashboard.png"), full_page=True)
            assert not errors, errors

            # the service stops while the page's stream is open: it must not wait on it
            for r in robots:
                stop(r)
            service.terminate()
            service.wait(30)  # uvicorn alone would wait for the stream to end
            expect(conn).to_have_text(re.compile(r"^disconnected, retrying in \d+ s"))
            browser.close()
    finally:
        for r in robots:
            stop(r)
        if service.poll() is None:
            service.terminate()
            service.wait(30)
