"""A simulated robot of the fleet (`embodia fleet robot`): the data flywheel's edge.

It registers with the fleet service, heartbeats, runs the skill version the service assigns
it (downloaded once per checkpoint hash; the scripted experts while it has none), takes the
tasks an operator queues for it, records each task's episodes as a LeRobot-v3 dataset with
success labels, shares what it saw with its site's scene memory, and uploads.

Why an outbox: a robot keeps working when the link drops. A finished task's archive and its
report wait in `<spool>/outbox/` (written atomically), and are sent, resumably, in chunks,
whenever the service answers; a robot restarted mid-task re-records only what it had not
finished, and never records a task twice once its archive is in the outbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx

from embodia import __version__
from embodia.serve.fleet.episodes import file_sha256, pack

log = logging.getLogger("embodia.fleet.robot")
OFFLINE = (httpx.TransportError,)  # the link or the service is down: keep working, retry later


@dataclass
class RobotConfig:
    server: str  # http://host:port of `embodia fleet serve`
    token: str  # a robot token (`embodia fleet token create --role robot`)
    embodiment: str = "arm7"
    name: str = "robot"
    site: str = "default"
    spool: Path = Path("robot_spool")  # outbox, downloaded skills, recordings in progress
    cameras: tuple[str, ...] | None = None  # recorded cameras; None: the embodiment's, (): none
    image_size: int = 96
    tier: str = "synthetic"  # a simulated robot's episodes are synthetic data
    heartbeat_s: float = 1.0
    poll_s: float = 2.0  # how often an idle robot asks for work
    chunk_bytes: int = 1 << 20  # resumable upload chunk
    max_tasks: int | None = None  # stop after this many tasks are done and sent (None: run on)
    timeout_s: float = 30.0


@dataclass
class Outgoing:
    """A finished task's episodes waiting in the outbox, with the report to send after them."""

    archive: Path
    sha256: str
    dataset: str
    tier: str
    task_id: int
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> Path:
        return self.archive.with_suffix("").with_suffix(".json")


class FleetRobot:
    def __init__(self, cfg: RobotConfig) -> None:
        from embodia.body.embodiments import get_embodiment

        self.cfg = cfg
        self.spec = get_embodiment(cfg.embodiment)  # an unknown embodiment fails here, before any request
        self.http = httpx.Client(base_url=cfg.server.rstrip("/"), timeout=cfg.timeout_s,
                                 headers={"Authorization": f"Bearer {cfg.token}"})
        for sub in ("outbox", "skills", "recordings"):
            (cfg.spool / sub).mkdir(parents=True, exist_ok=True)
        self.robot_id: str | None = None
        self.status = "idle"
        self.online = False
        self.skill: dict[str, Any] | None = None  # the version the service assigns (from heartbeats)
        self.sightings: list[dict[str, Any]] = []  # scene memory not yet sent
        self.done = 0
        self._stop = threading.Event()
        self._policies: dict[str, Any] = {}

    # ------------------------------------------------------------------ link
    def request(self, method: str, path: str, **kw) -> httpx.Response:
        """One request; a 4xx/5xx raises with the service's own message (it names the field)."""
        r = self.http.request(method, path, **kw)
        self.online = True
        if r.status_code >= 400:
            raise FleetError(r.status_code, method, path, r.text)
        return r

    def register(self) -> str:
        r = self.request("POST", "/api/robots", json={"name": self.cfg.name, "embodiment": self.cfg.embodiment,
                                                      "software_version": __version__, "site": self.cfg.site})
        body = r.json()
        self.robot_id, self.skill = body["id"], body["skill"]
        (self.cfg.spool / "robot.json").write_text(json.dumps({"id": self.robot_id, "server": self.cfg.server}))
        log.info("registered as %s (%s, site %s)", self.robot_id, self.cfg.embodiment, self.cfg.site)
        return self.robot_id

    def heartbeat(self) -> None:
        r = self.request("POST", f"/api/robots/{self.robot_id}/heartbeat", json={"status": self.status})
        self.skill = r.json()["skill"]

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.cfg.heartbeat_s):
            try:
                self.heartbeat()
            except OFFLINE:
                if self.online:
                    log.warning("service unreachable; recording locally, will upload when it is back")
                self.online = False
            except FleetError as e:
                log.warning("heartbeat refused: %s", e)

    # ------------------------------------------------------------------ the loop
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Work until stopped (or `max_tasks` are done and sent); returns the tasks done."""
        while self.robot_id is None:
            try:
                self.register()
            except OFFLINE:
                log.warning("service %s unreachable; retrying", self.cfg.server)
                if self._stop.wait(self.cfg.poll_s) or should_stop():
                    return 0
        beat = threading.Thread(target=self._heartbeats, name="fleet-heartbeat", daemon=True)
        beat.start()
        try:
            while not (should_stop() or self._stop.is_set()):
                try:
                    self.flush()
                    if self.cfg.max_tasks is not None and self.done >= self.cfg.max_tasks:
                        if not self.outbox():
                            break
                    elif self.take_task():
                        continue
                except OFFLINE:
                    self.online = False
                self._stop.wait(self.cfg.poll_s)
        finally:
            self._stop.set()
            beat.join(timeout=self.cfg.heartbeat_s + self.cfg.timeout_s)
            self.http.close()
        return self.done

    def stop(self) -> None:
        self._stop.set()

    def take_task(self) -> bool:
        r = self.request("POST", f"/api/robots/{self.robot_id}/tasks/next")
        if r.status_code == 204:
            return False
        task = r.json()
        if any(o.task_id == task["id"] for o in self.outbox()):  # recorded before a restart: only send it
            return True
        self.status = "busy"
        try:  # the version assigned now (a promotion may have landed since the last heartbeat)
            self.skill = self.request("GET", f"/api/robots/{self.robot_id}/skill").json()["skill"]
            self.run_task(task)
        except (ValueError, RuntimeError, OSError) as e:  # a task this robot cannot do: say why
            log.error("task %s failed: %s", task["id"], e)
            self.request("POST", f"/api/robots/{self.robot_id}/tasks/{task['id']}/result",
                         json={"state": "failed", "error": str(e)[:4000]})
            self.done += 1
        finally:
            self.status = "idle"
        return True

    # ------------------------------------------------------------------ skills
    def policy_path(self) -> Path | None:
        """The assigned skill's checkpoint, downloaded once per hash and checked against it."""
        if self.skill is None:
            return None
        digest = self.skill["checkpoint_hash"]
        dest = self.cfg.spool / "skills" / digest
        if dest.is_dir():
            return dest
        tmp = self.cfg.spool / "skills" / f".{digest}.download"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        archive = tmp / "checkpoint.tar.gz"
        with self.http.stream("GET", f"/api/skills/{self.skill['id']}/checkpoint") as r:
            if r.status_code >= 400:
                r.read()
                raise FleetError(r.status_code, "GET", "checkpoint", r.text)
            with archive.open("wb") as f:
                for block in r.iter_bytes():
                    f.write(block)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        got = file_sha256(tmp / "checkpoint" / "model.safetensors")
        if got != digest:
            raise RuntimeError(f"skill {self.skill['id']}'s checkpoint hashes to {got}, not {digest}")
        (tmp / "checkpoint").rename(dest)
        shutil.rmtree(tmp)
        log.info("pulled skill %s (%s) %s", self.skill["id"], self.skill["name"], digest[:12])
        return dest

    def agent(self):
        """The assigned skill version as an evaluation agent (the scripted experts without one)."""
        from embodia.eval.rollout import ExpertAgent, InferenceOverrides, PolicyAgent, load_policy

        path = self.policy_path()
        if path is None:
            return ExpertAgent(), None
        if str(path) not in self._policies:  # the checkpoint as shipped: no overrides
            self._policies = {str(path): load_policy(path, self.cfg.embodiment, InferenceOverrides())}
        policy = self._policies[str(path)]
        return PolicyAgent(policy), policy

    # ------------------------------------------------------------------ recording
    def run_task(self, task: dict[str, Any]) -> Outgoing:
        """Record the task's episodes with the current skill version, put them in the outbox."""
        from embodia.body.env import TabletopEnv
        from embodia.body.sim import Simulation
        from embodia.data.writer import DatasetWriter, EpisodeBuffer

        p = task["params"]
        agent, policy = self.agent()
        record = list(self.cfg.cameras) if self.cfg.cameras is not None else [c.name for c in self.spec.cameras]
        needs = list(getattr(policy.cfg, "cameras", ())) if policy is not None else []
        size = policy.cfg.image_size if needs else self.cfg.image_size
        root = self.cfg.spool / "recordings" / f"task-{task['id']}"
        shutil.rmtree(root, ignore_errors=True)  # ours: an interrupted recording starts over
        writer = DatasetWriter(root, self.spec, record, (size, size),
                               env_state_names=Simulation(self.spec).environment_state_names())
        env = TabletopEnv(embodiment=self.cfg.embodiment, skill=p["skill"], cameras=tuple(dict.fromkeys(record + needs)),
                          image_size=size)
        kept = {f"observation.images.{c}" for c in record}
        successes, version = 0, self.skill["id"] if self.skill else None
        try:
            for seed in range(p["seed_start"], p["seed_start"] + p["episodes"]):
                obs, _ = env.reset(seed=seed)
                agent.reset(env, seed)
                ep = EpisodeBuffer(task=env.instructions[0], tier=self.cfg.tier, skill=p["skill"], seed=seed)
                while True:
                    before = obs
                    obs, _, term, trunc, info = env.step(agent.act(obs, env))
                    ep.add({k: v for k, v in before.items() if not k.startswith("observation.images.") or k in kept},
                           info["action"])
                    if term or trunc:
                        break
                ep.success = bool(info["success"])
                successes += ep.success
                writer.stage(ep, f"{p['skill']}-robot-{seed:08d}")
                self.see(env)
                log.info("task %s: seed %d %s (%d frames)", task["id"], seed, "ok" if ep.success else "failed", len(ep))
        finally:
            env.close()
        writer.consolidate()
        result = {"episodes": p["episodes"], "successes": successes, "skill_id": version,
                  "policy": "expert" if policy is None else self.skill["checkpoint_hash"]}
        return self.put_in_outbox(root, p["dataset"], task["id"], result)

    def see(self, env) -> None:
        """Remember where the objects are now (sent to the site's scene memory)."""
        at = datetime.now(UTC).isoformat()
        for o in env.scene_graph().objects:
            self.sightings.append({"name": o.name, "position": [round(float(x), 4) for x in o.position],
                                   "kind": o.cls, "color": o.colour, "seen_at": at})

    # ------------------------------------------------------------------ outbox
    def put_in_outbox(self, root: Path, dataset: str, task_id: int, result: dict[str, Any]) -> Outgoing:
        data = pack(root, dataset)
        sha = hashlib.sha256(data).hexdigest()
        out = Outgoing(self.cfg.spool / "outbox" / f"{sha}.tar.gz", sha, dataset, self.cfg.tier, task_id,
                       result | {"sha256": sha})
        tmp = out.archive.with_name(out.archive.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out.archive)
        out.meta.with_name(out.meta.name + ".tmp").write_text(json.dumps(
            {"dataset": dataset, "tier": out.tier, "task_id": task_id, "result": out.result}))
        out.meta.with_name(out.meta.name + ".tmp").replace(out.meta)  # last: an item is whole once its meta is there
        shutil.rmtree(root)
        return out

    def outbox(self) -> list[Outgoing]:
        items = []
        for meta in sorted((self.cfg.spool / "outbox").glob("*.json")):
            m = json.loads(meta.read_text())
            items.append(Outgoing(meta.with_suffix(".tar.gz"), meta.stem, m["dataset"], m["tier"], m["task_id"], m["result"]))
        return items

    def flush(self) -> None:
        """Send the site memory and every outbox item the service does not have yet."""
        if self.sightings:
            batch = self.sightings[-256:]
            self.request("PUT", f"/api/sites/{self.cfg.site}/objects", json={"objects": _latest(batch)})
            self.sightings = self.sightings[: len(self.sightings) - len(batch)]
        for item in self.outbox():
            stored = self.upload(item)
            self.request("POST", f"/api/robots/{self.robot_id}/tasks/{item.task_id}/result",
                         json={"state": "succeeded", "result": item.result | {"stored": stored}})
            item.meta.unlink()
            item.archive.unlink()
            self.done += 1
            log.info("task %d sent: %d/%d episodes succeeded", item.task_id, item.result["successes"],
                     item.result["episodes"])

    def upload(self, item: Outgoing) -> dict[str, Any]:
        """A resumable upload: ask how much the service holds, send the rest in chunks."""
        total = item.archive.stat().st_size
        url = f"/api/datasets/{item.dataset}/episodes/{item.sha256}"
        params = {"tier": item.tier}
        r = self.request("PUT", url, params=params, headers={"Content-Range": f"bytes */{total}"})
        body = r.json()
        with item.archive.open("rb") as f:
            while "received" in body and body["received"] < total:
                start = body["received"]
                f.seek(start)
                chunk = f.read(self.cfg.chunk_bytes)
                end = start + len(chunk) - 1
                try:
                    body = self.request("PUT", url, params=params, content=chunk,
                                        headers={"Content-Range": f"bytes {start}-{end}/{total}"}).json()
                except FleetError as e:
                    if e.status != 409 or "received" not in e.detail:
                        raise
                    body = {"received": e.detail["received"]}  # the service holds another amount: go on from there
        return body


def _latest(sightings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One sighting per object, the newest."""
    by_name: dict[str, dict[str, Any]] = {}
    for s in sightings:
        by_name[s["name"]] = s
    return list(by_name.values())


class FleetError(RuntimeError):
    """The service refused a request; `detail` is its JSON detail (it names the field)."""

    def __init__(self, status: int, method: str, path: str, text: str) -> None:
        try:
            detail = json.loads(text).get("detail", text)
        except (ValueError, AttributeError):
            detail = text
        self.status, self.detail = status, detail if isinstance(detail, dict) else {"message": detail}
        super().__init__(f"{method} {path}: {status} {detail}")

