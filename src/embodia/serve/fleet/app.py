"""The fleet service's REST API (FastAPI): robots, skill versions, datasets of uploaded episodes.

Why these rules: a robot token may touch only its own robot (heartbeat, uploads, its assigned
skill); an operator registers and promotes skills; a viewer only reads. A missing or unknown
token is 401 and a wrong role 403 before the body is read; bad input is a 4xx naming the field
and changes nothing; a skill reaches robots only if its evaluated success is not worse than the
version they run, and the answer shows the numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing as mp
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from embodia.data.children import die_with_parent
from embodia.serve.fleet import episodes as E
from embodia.serve.fleet.database import DEFAULT_URL, open_database
from embodia.serve.fleet.jobs import JobRunner
from embodia.serve.fleet.models import (
    TIERS,
    Dataset,
    Job,
    Robot,
    RobotTask,
    SiteObject,
    Skill,
    Token,
    Upload,
    now,
)
from embodia.serve.fleet.tokens import Principal, lookup

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+)$")


@dataclass(frozen=True)
class FleetConfig:
    """Where the service keeps its records and files, and the limits a client meets."""

    db: str = DEFAULT_URL
    data_dir: str = "fleet_data"  # uploaded datasets, under <data_dir>/datasets/<name>/<sha256>
    max_upload_bytes: int = 256 * 1024 * 1024
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    stale_after_s: float = 10.0  # a robot whose last heartbeat is older shows as `stale`
    run_jobs: bool = True  # run queued jobs in this process (on Ray); off: record them only
    ray_address: str | None = None  # None: a local Ray instance, started with the first job
    partial_ttl_s: float = 7 * 24 * 3600  # a resumable upload untouched this long is dropped at start


def bad(field: str, message: str, status: int = 422) -> HTTPException:
    return HTTPException(status, detail={"field": field, "message": message})


# ------------------------------------------------------------------ bodies
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RobotIn(Strict):
    name: str = Field(pattern=NAME)
    embodiment: str
    software_version: str = Field(min_length=1, max_length=64)
    site: str = Field("default", pattern=NAME)

    @field_validator("embodiment")
    @classmethod
    def _known(cls, v: str) -> str:
        from embodia.body.embodiments import list_embodiments

        if v not in list_embodiments():
            raise ValueError(f"unknown embodiment {v!r}; known: {list_embodiments()}")
        return v


class HeartbeatIn(Strict):
    status: Literal["idle", "busy", "recording", "error"] = "idle"


class Metrics(BaseModel):
    model_config = ConfigDict(extra="allow")
    success_rate: float | None = Field(None, ge=0.0, le=1.0)
    episodes: int | None = Field(None, ge=1)


class SkillIn(Strict):
    name: str = Field(pattern=NAME)
    embodiment: str
    head: str = Field(pattern=NAME)
    checkpoint_hash: str = Field(pattern=SHA256.pattern)
    metrics: Metrics = Field(default_factory=Metrics)

    _known = field_validator("embodiment")(RobotIn._known.__func__)


class AssignIn(Strict):
    skill_id: int


class TrainJob(Strict):
    kind: Literal["train"]
    name: str = Field(pattern=NAME)  # the skill version's name
    datasets: list[str] = Field(min_length=1, max_length=32)
    head: Literal["flow", "tokens", "act", "diffusion", "l1"] = "flow"
    max_steps: int = Field(2000, ge=1, le=10_000_000)
    max_minutes: float = Field(10.0, gt=0, le=7 * 24 * 60)
    batch_size: int = Field(8, ge=1, le=4096)
    seed: int = Field(0, ge=0)


class EvalJob(Strict):
    kind: Literal["eval"]
    skill_id: int
    skill: str  # the meta-skill it is scored on
    episodes: int = Field(10, ge=1, le=10_000)
    seed_start: int = Field(100_000, ge=0)  # held-out seeds by default: demos record from 0

    @field_validator("skill")
    @classmethod
    def _meta_skill(cls, v: str) -> str:
        from embodia.body.skills import SKILLS

        if v not in SKILLS:
            raise ValueError(f"unknown meta-skill {v!r}; known: {sorted(SKILLS)}")
        return v


class CollectJob(Strict):
    kind: Literal["collect"]
    dataset: str = Field(pattern=NAME)
    embodiment: str
    skill: str
    episodes: int = Field(10, ge=1, le=100_000)
    seed_start: int = Field(0, ge=0)
    cameras: str | None = Field(None, pattern=r"^[a-z0-9_,]+$")  # None: collect's default; 'none': state only

    _known = field_validator("embodiment")(RobotIn._known.__func__)
    _meta_skill = field_validator("skill")(EvalJob._meta_skill.__func__)


class RobotTaskIn(Strict):
    """Record `episodes` seeded episodes of a meta-skill with the robot's skill version (the
    scripted experts while it has none) and upload them, success-labelled, to `dataset`."""

    skill: str
    episodes: int = Field(2, ge=1, le=10_000)
    seed_start: int = Field(0, ge=0)
    dataset: str = Field(pattern=NAME)

    _meta_skill = field_validator("skill")(EvalJob._meta_skill.__func__)


class TaskResultIn(Strict):
    state: Literal["succeeded", "failed"]
    result: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(None, max_length=4000)


class SeenObject(Strict):
    name: str = Field(pattern=NAME)
    position: list[float] = Field(min_length=3, max_length=3)
    kind: str | None = Field(None, max_length=64)
    color: str | None = Field(None, max_length=32)
    seen_at: datetime | None = None  # when the robot saw it (default: when the service hears of it)


class SiteObjectsIn(Strict):
    objects: list[SeenObject] = Field(min_length=1, max_length=256)


class JobIn(BaseModel):
    job: Annotated[TrainJob | EvalJob | CollectJob, Field(discriminator="kind")]


# ------------------------------------------------------------------ views
def age_s(t: datetime | None) -> float | None:
    if t is None:
        return None
    return round((now() - _aware(t)).total_seconds(), 3)


def skill_view(s: Skill | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"id": s.id, "name": s.name, "embodiment": s.embodiment, "head": s.head,
            "checkpoint_hash": s.checkpoint_hash, "metrics": s.metrics, "status": s.status,
            "created_at": s.created_at.isoformat(),
            "promoted_at": s.promoted_at.isoformat() if s.promoted_at else None}


def _db(request: Request):
    with request.app.state.sessions() as s:
        yield s


DB = Annotated[Session, Depends(_db)]


TOKEN_CACHE_S = 30.0  # a token's principal is looked up at most this often


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The token's principal; 401 for a missing or unknown token (no body has been read).
    Async and cached: a heartbeat costs no thread hop and, mostly, no token query."""
    cache: dict = request.app.state.token_cache
    hit = cache.get(authorization)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    with request.app.state.sessions() as s:
        p = lookup(s, authorization)
    if p is not None:
        if len(cache) > 100_000:
            cache.clear()
        cache[authorization] = (p, time.monotonic() + TOKEN_CACHE_S)
    if p is None:
        raise HTTPException(401, detail={"field": "Authorization", "message":
                            "a valid 'Authorization: Bearer <token>' header is required"},
                            headers={"WWW-Authenticate": "Bearer"})
    return p


def role(*roles: str) -> Callable[..., Principal]:
    async def check(p: Annotated[Principal, Depends(caller)]) -> Principal:
        if p.role not in roles:
            raise HTTPException(403, detail={"field": "Authorization", "message":
                                f"a {p.role} token cannot do this (needs: {', '.join(roles)})"})
        return p
    return check


Caller = Annotated[Principal, Depends(caller)]
Robots = Annotated[Principal, Depends(role("robot"))]
Operators = Annotated[Principal, Depends(role("operator"))]
Readers = Annotated[Principal, Depends(role("operator", "viewer"))]


def create_app(config: FleetConfig | None = None, sessions: sessionmaker[Session] | None = None) -> FastAPI:
    config = config or FleetConfig()
    sessions = sessions or open_database(config.db)
    data_dir = Path(config.data_dir)
    staging = data_dir / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.iterdir():  # our own half-done uploads from before a crash
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    for part in (data_dir / "partial").glob("*/*/*.part"):  # resumable uploads nobody came back for
        if time.time() - part.stat().st_mtime > config.partial_ttl_s:
            part.unlink()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        runner = JobRunner(sessions, data_dir, config.ray_address)
        if config.run_jobs:
            runner.start()  # re-queues what a stop interrupted, then runs jobs
        else:
            runner.recover()  # nothing runs here, but nothing is left marked running either
            runner = None
        await asyncio.get_running_loop().run_in_executor(workers(), E.warm)
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()
            if _app.state.ingest_pool is not None:
                _app.state.ingest_pool.shutdown(cancel_futures=True)

    app = FastAPI(title="embodia fleet", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.sessions = sessions
    app.state.token_cache = {}
    app.state.ingest_pool = None
    app.state.config = config
    pg_heartbeats = sessions.kw["bind"].dialect.name == "postgresql"

    def own_robot(p: Principal, robot_id: str) -> None:
        if p.role == "robot" and p.robot_id != robot_id:
            raise HTTPException(403, detail={"field": "robot_id", "message":
                                "a robot token may act only for its own robot"})

    def get_robot(s: Session, robot_id: str) -> Robot:
        r = s.get(Robot, robot_id)
        if r is None:
            raise bad("robot_id", f"no robot {robot_id!r}", 404)
        return r

    def robot_view(s: Session, r: Robot) -> dict[str, Any]:
        age = age_s(r.last_heartbeat)
        status = r.status if age is not None and age <= config.stale_after_s else (
            "stale" if age is not None else r.status)
        return {"id": r.id, "name": r.name, "embodiment": r.embodiment, "software_version": r.software_version,
                "site": r.site, "status": status, "heartbeat_age_s": age,
                "skill": skill_view(s.get(Skill, r.skill_id) if r.skill_id else None)}

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    # ------------------------------------------------------------------ robots
    @app.post("/api/robots", status_code=201)
    def register(request: Request, body: RobotIn, s: DB, p: Robots) -> dict:
        """Register the calling robot (its token binds to it); again with the same token updates it."""
        token = s.get(Token, p.token_id)
        r = s.get(Robot, token.robot_id) if token.robot_id else None
        if r is None:
            r = Robot(id="r-" + uuid4().hex[:10], name=body.name, embodiment=body.embodiment,
                      software_version=body.software_version, site=body.site)
            s.add(r)
            s.flush()
            token.robot_id = r.id
            request.app.state.token_cache.clear()  # the token now speaks for this robot
        elif r.embodiment != body.embodiment:
            raise bad("embodiment", f"robot {r.id} is registered as {r.embodiment!r}, not {body.embodiment!r}", 409)
        r.name, r.software_version, r.site = body.name, body.software_version, body.site
        if r.skill_id is None:  # a new robot runs its embodiment's promoted skill
            cur = _promoted(s, r.embodiment)
            r.skill_id = cur.id if cur else None
        s.commit()
        return robot_view(s, r)

    @app.post("/api/robots/{robot_id}/heartbeat")
    async def heartbeat(robot_id: str, body: HeartbeatIn, p: Robots) -> dict:
        """The hot path (every robot, every second): one UPDATE, one read of the assigned skill,
        on the event loop (each is well under a millisecond; a thread hop would cost more).
        Heartbeats alone commit without waiting for the disk on PostgreSQL (SQLite's WAL with
        synchronous=NORMAL already does); uploads, jobs and skills wait as always."""
        own_robot(p, robot_id)
        with sessions() as s:
            if pg_heartbeats:  # a heartbeat lost in a crash is replaced a second later: no WAL flush wait
                s.execute(text("SET LOCAL synchronous_commit TO OFF"))
            row = s.execute(update(Robot).where(Robot.id == robot_id)
                            .values(status=body.status, last_heartbeat=now())
                            .returning(Robot.id, Robot.skill_id)).first()
            s.commit()
            if row is None:
                raise bad("robot_id", f"no robot {robot_id!r}", 404)
            return {"id": robot_id, "skill": skill_view(s.get(Skill, row.skill_id) if row.skill_id else None)}

    @app.get("/api/robots")
    def robots(s: DB, _: Readers) -> list[dict]:
        return [robot_view(s, r) for r in s.scalars(select(Robot).order_by(Robot.registered_at))]

    @app.get("/api/robots/{robot_id}/skill")
    def robot_skill(robot_id: str, s: DB, p: Caller) -> dict:
        own_robot(p, robot_id)
        r = get_robot(s, robot_id)
        return {"robot_id": r.id, "skill": skill_view(s.get(Skill, r.skill_id) if r.skill_id else None)}

    @app.put("/api/robots/{robot_id}/skill")
    def assign(robot_id: str, body: AssignIn, s: DB,
               _: Operators) -> dict:
        """Put one robot on a skill version (a canary), which must be for its embodiment."""
        r = get_robot(s, robot_id)
        k = s.get(Skill, body.skill_id)
        if k is None:
            raise bad("skill_id", f"no skill version {body.skill_id}", 404)
        if k.embodiment != r.embodiment:
            raise bad("skill_id", f"skill {k.id} is for {k.embodiment!r}; robot {r.id} is {r.embodiment!r}")
        r.skill_id = k.id
        s.commit()
        return robot_view(s, r)

    # ------------------------------------------------------------------ skills
    @app.get("/api/skills")
    def skills(s: DB, _: Readers) -> list[dict]:
        return [skill_view(k) for k in s.scalars(select(Skill).order_by(Skill.id))]

    @app.post("/api/skills", status_code=201)
    def add_skill(body: SkillIn, s: DB, _: Operators) -> dict:
        k = Skill(name=body.name, embodiment=body.embodiment, head=body.head,
                  checkpoint_hash=body.checkpoint_hash, metrics=body.metrics.model_dump(exclude_none=True))
        s.add(k)
        s.commit()
        return skill_view(k)

    @app.post("/api/skills/{skill_id}/promote")
    def promote(skill_id: int, s: DB, _: Operators) -> dict:
        """Roll a skill version out to every robot of its embodiment, if it is not worse than
        the promoted one (success rate on its evaluation; both numbers in the answer)."""
        k = s.get(Skill, skill_id)
        if k is None:
            raise bad("skill_id", f"no skill version {skill_id}", 404)
        new = k.metrics.get("success_rate")
        if new is None:
            raise bad("metrics.success_rate", f"skill {k.id} has no evaluated success rate; run an eval first", 409)
        cur = _promoted(s, k.embodiment)
        old = cur.metrics.get("success_rate", 0.0) if cur is not None and cur.id != k.id else None
        rule = {"rule": "promote only if success_rate >= the promoted version's", "candidate": new,
                "promoted": old, "promoted_id": cur.id if cur else None}
        if old is not None and new < old:
            raise HTTPException(409, detail={"field": "metrics.success_rate", **rule, "message":
                                f"skill {k.id} scores {new:.3f}, worse than the promoted {cur.id} at {old:.3f}"})
        if cur is not None and cur.id != k.id:
            cur.status = "retired"
        k.status, k.promoted_at = "promoted", now()
        fleet = list(s.scalars(select(Robot).where(Robot.embodiment == k.embodiment)))
        for r in fleet:
            r.skill_id = k.id
        s.commit()
        return {"skill": skill_view(k), **rule, "robots": [r.id for r in fleet]}

    # ------------------------------------------------------------------ datasets
    @app.get("/api/datasets")
    def datasets(s: DB, _: Readers) -> list[dict]:
        rows = s.execute(select(Dataset, func.count(Upload.id), func.coalesce(func.sum(Upload.episodes), 0),
                                func.coalesce(func.sum(Upload.frames), 0), func.coalesce(func.sum(Upload.successes), 0))
                         .outerjoin(Upload, Upload.dataset_id == Dataset.id).group_by(Dataset.id)
                         .order_by(Dataset.name))
        return [{"name": d.name, "embodiment": d.embodiment, "tier": d.tier, "uploads": n, "episodes": int(ep),
                 "frames": int(fr), "successes": int(ok)} for d, n, ep, fr, ok in rows]

    def upload_target(p: Principal, name: str, sha: str) -> tuple[Robot, Any]:
        """The uploading robot, and the answer for content already stored (else None)."""
        if p.robot_id is None:
            raise bad("Authorization", "register this robot (POST /api/robots) before uploading", 409)
        with sessions() as s:
            robot = s.get(Robot, p.robot_id)
            ds = s.scalar(select(Dataset).where(Dataset.name == name))
            if ds is not None and ds.embodiment != robot.embodiment:
                raise bad("name", f"dataset {name!r} holds {ds.embodiment!r} episodes; this robot is {robot.embodiment!r}")
            if ds is not None and s.scalar(select(Upload).where(Upload.dataset_id == ds.id, Upload.sha256 == sha)):
                return robot, _duplicate(s, ds, sha)
        return robot, None

    async def ingest(archive: Path, name: str, tier: str, robot: Robot, sha: str, size: int) -> dict:
        """Unpack, check and store a received archive (in the worker process), then record it."""
        work = Path(tempfile.mkdtemp(prefix="upload-", dir=staging))
        try:
            summary, dest = await asyncio.get_running_loop().run_in_executor(
                workers(), E.prepare, archive, work, data_dir / "datasets", name, sha,
                robot.embodiment, config.max_unpacked_bytes)
            return await run_in_threadpool(_record, name, tier, robot.id, robot.embodiment, sha, size, summary, dest)
        except E.UploadError as e:
            raise bad(e.field, str(e)) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @app.post("/api/datasets/{name}/episodes", status_code=201)
    async def upload(request: Request, name: Annotated[str, PathParam(pattern=NAME)],
                     p: Robots,
                     x_content_sha256: Annotated[str, Header(pattern=SHA256.pattern)],
                     tier: Annotated[str, Query(pattern="^(" + "|".join(TIERS) + ")$")] = "real",
                     content_length: Annotated[int | None, Header(ge=0)] = None) -> dict:
        """A robot sends an archive of recorded episodes in one request; the same content again
        is a no-op (200). Large archives over a weak link: the resumable PUT below."""
        if content_length is not None and content_length > config.max_upload_bytes:
            raise bad("body", f"{content_length} bytes is over the {config.max_upload_bytes}-byte limit", 413)
        robot, duplicate = upload_target(p, name, x_content_sha256)
        if duplicate is not None:
            return duplicate
        work = Path(tempfile.mkdtemp(prefix="body-", dir=staging))
        try:
            archive, h, size = work / "episodes.tar.gz", hashlib.sha256(), 0
            with archive.open("wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > config.max_upload_bytes:
                        raise bad("body", f"the body is over the {config.max_upload_bytes}-byte limit", 413)
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != x_content_sha256:
                raise bad("X-Content-SHA256", f"the body's SHA-256 is {h.hexdigest()}, not the one sent")
            return await ingest(archive, name, tier, robot, x_content_sha256, size)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    part_locks: dict[Path, asyncio.Lock] = {}

    @app.put("/api/datasets/{name}/episodes/{sha256}")
    async def upload_part(request: Request, name: Annotated[str, PathParam(pattern=NAME)],
                          sha256: Annotated[str, PathParam(pattern=SHA256.pattern)], p: Robots,
                          content_range: Annotated[str, Header(pattern=CONTENT_RANGE.pattern)],
                          tier: Annotated[str, Query(pattern="^(" + "|".join(TIERS) + ")$")] = "real"):
        """A resumable upload of the archive whose SHA-256 is in the path, in chunks:
        `Content-Range: bytes START-END/TOTAL` appends one (202 and `received` until the last,
        then 201 with what was stored, as the one-request upload answers), `bytes */TOTAL`
        asks how much the service holds. Each acknowledged chunk is on disk (fsync) and
        survives a restart of the service; a chunk that does not start where the held bytes
        end is 409 with `received`, so the robot resumes from there."""
        m = CONTENT_RANGE.match(content_range)
        total = int(m[3])
        if total > config.max_upload_bytes:
            raise bad("Content-Range", f"{total} bytes is over the {config.max_upload_bytes}-byte limit", 413)
        if total == 0:
            raise bad("Content-Range", "an empty archive cannot hold episodes")
        robot, duplicate = upload_target(p, name, sha256)
        if duplicate is not None:
            return duplicate
        part = data_dir / "partial" / robot.id / name / f"{sha256}.part"
        lock = part_locks.setdefault(part, asyncio.Lock())
        async with lock:
            have = part.stat().st_size if part.exists() else 0
            if have > total:
                raise bad("Content-Range", f"the service holds {have} bytes of this archive, more than {total}", 409)
            if m[1] is not None:
                start, end = int(m[1]), int(m[2])
                if end < start or end >= total:
                    raise bad("Content-Range", f"bytes {start}-{end} do not lie inside 0-{total - 1}")
                if start != have:
                    raise HTTPException(409, detail={"field": "Content-Range", "received": have, "message":
                                        f"the service holds bytes 0-{have - 1}; send from byte {have}"})
                await receive_chunk(request, part, have, end - start + 1)
                have = end + 1
            if have < total:
                return JSONResponse({"dataset": name, "sha256": sha256, "received": have, "total": total},
                                    status_code=202 if m[1] is not None else 200)
            try:  # all there (now, or before a restart): check and store it
                digest = await run_in_threadpool(E.file_sha256, part)
                if digest != sha256:
                    raise bad("sha256", f"the archive's SHA-256 is {digest}, not the one in the path")
                stored = await ingest(part, name, tier, robot, sha256, total)
                part.unlink(missing_ok=True)
                return stored if isinstance(stored, JSONResponse) else JSONResponse(stored, status_code=201)
            except HTTPException as e:
                if e.status_code == 422:  # bad content: the robot must send it anew
                    part.unlink(missing_ok=True)
                raise  # anything else (the service stopping): the bytes stay for the retry
            finally:
                part_locks.pop(part, None)

    async def receive_chunk(request: Request, part: Path, have: int, want: int) -> None:
        """Append one chunk; a body longer or shorter than announced, or a broken link, leaves
        the held bytes as they were."""
        part.parent.mkdir(parents=True, exist_ok=True)
        got = 0
        with part.open("ab") as f:
            try:
                async for chunk in request.stream():
                    got += len(chunk)
                    if got > want:
                        raise bad("body", f"the body is longer than the {want} bytes Content-Range announces")
                    f.write(chunk)
                if got != want:
                    raise bad("body", f"the body holds {got} bytes; Content-Range announces {want}")
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                f.flush()
                f.truncate(have)
                raise

    def workers() -> ProcessPoolExecutor:
        """One process that unpacks and checks uploads (started on the first upload; spawned, so
        nothing of the service's threads is forked; it dies with the service, by polling: it
        may be started from a request's thread)."""
        if app.state.ingest_pool is None:
            app.state.ingest_pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                                        initializer=die_with_parent, initargs=(os.getpid(), False))
        return app.state.ingest_pool

    def _record(name: str, tier: str, robot_id: str, embodiment: str, sha: str, size: int,
                summary: E.EpisodeSummary, dest: Path) -> dict:
        with sessions() as s:
            ds = dataset_for(s, name, embodiment, tier)
            if ds.embodiment != embodiment:  # created meanwhile by a robot of another embodiment
                raise E.UploadError("name", f"dataset {name!r} holds {ds.embodiment!r} episodes")
            s.add(Upload(dataset_id=ds.id, robot_id=robot_id, sha256=sha, size_bytes=size,
                         episodes=summary.episodes, frames=summary.frames, successes=summary.successes,
                         fps=summary.fps, path=str(dest)))
            try:
                s.commit()
            except IntegrityError:  # the same archive raced in on another request
                s.rollback()
                return _duplicate(s, s.scalar(select(Dataset).where(Dataset.name == name)), sha)
            return {"dataset": name, "sha256": sha, "duplicate": False, "episodes": summary.episodes,
                    "frames": summary.frames, "successes": summary.successes}

    # ------------------------------------------------------------------ skill checkpoints
    @app.get("/api/skills/{skill_id}/checkpoint")
    def checkpoint(skill_id: int, s: DB, p: Caller) -> FileResponse:
        """The skill version's checkpoint folder as a .tar.gz (a robot: only the version it is
        assigned); `X-Checkpoint-SHA256` is the skill's checkpoint hash (of model.safetensors)."""
        k = s.get(Skill, skill_id)
        if k is None:
            raise bad("skill_id", f"no skill version {skill_id}", 404)
        if p.role == "robot" and (p.robot_id is None or s.get(Robot, p.robot_id).skill_id != k.id):
            raise HTTPException(403, detail={"field": "skill_id", "message":
                                f"skill {k.id} is not the version this robot is assigned"})
        if not k.checkpoint_path or not Path(k.checkpoint_path).is_dir():
            raise bad("skill_id", f"skill {k.id} has no checkpoint stored on this service", 404)
        archive = data_dir / "checkpoints" / f"{k.id}-{k.checkpoint_hash}.tar.gz"
        if not archive.exists():  # packed once, then served from disk
            archive.parent.mkdir(parents=True, exist_ok=True)
            tmp = archive.with_suffix(f".{uuid4().hex[:8]}.tmp")
            tmp.write_bytes(E.pack(Path(k.checkpoint_path), "checkpoint"))
            tmp.replace(archive)
        return FileResponse(archive, media_type="application/gzip",
                            headers={"X-Checkpoint-SHA256": k.checkpoint_hash})

    # ------------------------------------------------------------------ robot tasks
    @app.post("/api/robots/{robot_id}/tasks", status_code=201)
    def add_task(robot_id: str, body: RobotTaskIn, s: DB, _: Operators) -> dict:
        r = get_robot(s, robot_id)
        ds = s.scalar(select(Dataset).where(Dataset.name == body.dataset))
        if ds is not None and ds.embodiment != r.embodiment:
            raise bad("dataset", f"dataset {ds.name!r} holds {ds.embodiment!r} episodes; robot {r.id} is {r.embodiment!r}")
        t = RobotTask(robot_id=r.id, params=body.model_dump())
        s.add(t)
        s.commit()
        return task_view(t)

    @app.get("/api/robots/{robot_id}/tasks")
    def robot_tasks(robot_id: str, s: DB, p: Caller) -> list[dict]:
        own_robot(p, robot_id)
        get_robot(s, robot_id)
        return [task_view(t) for t in s.scalars(select(RobotTask).where(RobotTask.robot_id == robot_id)
                                               .order_by(RobotTask.id.desc()).limit(100))]

    @app.post("/api/robots/{robot_id}/tasks/next")
    def next_task(robot_id: str, s: DB, p: Robots):
        """The robot takes its next task: one it had taken and not finished (it restarted)
        first, else the oldest queued one; 204 when there is none."""
        own_robot(p, robot_id)
        mine = select(RobotTask).where(RobotTask.robot_id == robot_id)
        t = s.scalar(mine.where(RobotTask.state == "running").order_by(RobotTask.id)) or s.scalar(
            mine.where(RobotTask.state == "queued").order_by(RobotTask.id).with_for_update(skip_locked=True))
        if t is None:
            from fastapi import Response

            return Response(status_code=204)
        t.state, t.started_at = "running", t.started_at or now()
        s.commit()
        return task_view(t)

    @app.post("/api/robots/{robot_id}/tasks/{task_id}/result")
    def task_result(robot_id: str, task_id: int, body: TaskResultIn, s: DB, p: Robots) -> dict:
        own_robot(p, robot_id)
        t = s.get(RobotTask, task_id)
        if t is None or t.robot_id != robot_id:
            raise bad("task_id", f"robot {robot_id} has no task {task_id}", 404)
        if t.state in ("succeeded", "failed"):  # a re-sent report after a lost answer
            return task_view(t)
        t.state, t.result, t.error, t.finished_at = body.state, body.result, body.error, now()
        s.commit()
        return task_view(t)

    # ------------------------------------------------------------------ site scene memory
    def own_site(s: Session, p: Principal, site: str) -> None:
        if p.role == "robot" and (p.robot_id is None or s.get(Robot, p.robot_id).site != site):
            raise HTTPException(403, detail={"field": "site", "message": "a robot reads and writes only its own site's memory"})

    @app.put("/api/sites/{site}/objects")
    def see_objects(site: Annotated[str, PathParam(pattern=NAME)], body: SiteObjectsIn, s: DB, p: Robots) -> dict:
        """A robot reports where it saw objects; a newer sighting replaces an older one."""
        own_site(s, p, site)
        rows = {o.name: o for o in s.scalars(select(SiteObject).where(
            SiteObject.site == site, SiteObject.name.in_([o.name for o in body.objects])))}
        for o in body.objects:
            seen = o.seen_at or now()
            row = rows.get(o.name)
            if row is None:
                row = rows[o.name] = SiteObject(site=site, name=o.name)
                s.add(row)
            elif _aware(row.seen_at) > _aware(seen):
                continue  # an older report arriving late (a robot that was offline)
            row.data = o.model_dump(exclude={"name", "seen_at"}, exclude_none=True)
            row.robot_id, row.seen_at = p.robot_id, seen
        try:
            s.commit()
        except IntegrityError:  # another robot of the site added the same object meanwhile
            raise bad("objects", "another robot reported these objects at the same moment; send again", 409) from None
        return {"site": site, "objects": len(body.objects)}

    @app.get("/api/sites/{site}/objects")
    def site_objects(site: Annotated[str, PathParam(pattern=NAME)], s: DB, p: Caller) -> dict:
        own_site(s, p, site)
        rows = s.scalars(select(SiteObject).where(SiteObject.site == site).order_by(SiteObject.name))
        return {"site": site, "objects": [{"name": o.name, **o.data, "robot_id": o.robot_id,
                                           "seen_at": _aware(o.seen_at).isoformat(), "age_s": age_s(o.seen_at)}
                                          for o in rows]}

    # ------------------------------------------------------------------ jobs
    @app.post("/api/jobs", status_code=201)
    def add_job(body: JobIn, s: DB, _: Operators) -> dict:
        spec = body.job
        if isinstance(spec, TrainJob):
            found = {d.name: d for d in s.scalars(select(Dataset).where(Dataset.name.in_(spec.datasets)))}
            missing = [n for n in spec.datasets if n not in found]
            if missing:
                raise bad("job.datasets", f"no dataset named {missing}", 404)
            embodiments = sorted({d.embodiment for d in found.values()})
            if len(embodiments) > 1:
                raise bad("job.datasets", f"the datasets mix embodiments {embodiments}; train one at a time")
        elif isinstance(spec, EvalJob):
            k = s.get(Skill, spec.skill_id)
            if k is None:
                raise bad("job.skill_id", f"no skill version {spec.skill_id}", 404)
            if not k.checkpoint_path:
                raise bad("job.skill_id", f"skill {k.id} has no checkpoint on this service to evaluate")
        else:
            ds = s.scalar(select(Dataset).where(Dataset.name == spec.dataset))
            if ds is not None and ds.embodiment != spec.embodiment:
                raise bad("job.dataset", f"dataset {ds.name!r} holds {ds.embodiment!r} episodes")
        job = Job(kind=spec.kind, params=spec.model_dump(exclude={"kind"}))
        s.add(job)
        s.commit()
        return job_view(job)

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: int, s: DB, _: Readers) -> dict:
        job = s.get(Job, job_id)
        if job is None:
            raise bad("job_id", f"no job {job_id}", 404)
        return job_view(job)

    @app.get("/api/jobs")
    def jobs(s: DB, _: Readers) -> list[dict]:
        return [job_view(j) for j in s.scalars(select(Job).order_by(Job.id.desc()).limit(100))]

    from embodia.serve.fleet.dashboard import add_dashboard  # here: it imports this module
    add_dashboard(app, sessions, config)
    return app


def task_view(t: RobotTask) -> dict[str, Any]:
    return {"id": t.id, "robot_id": t.robot_id, "state": t.state, "params": t.params, "result": t.result,
            "error": t.error, "created_at": _aware(t.created_at).isoformat(),
            "started_at": _aware(t.started_at).isoformat() if t.started_at else None,
            "finished_at": _aware(t.finished_at).isoformat() if t.finished_at else None}


def _aware(t: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written as UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def job_view(j: Job) -> dict[str, Any]:
    return {"id": j.id, "kind": j.kind, "state": j.state, "progress": round(j.progress, 4), "params": j.params,
            "log_tail": j.log_tail, "artefacts": j.artefacts, "error": j.error, "attempts": j.attempts,
            "created_at": j.created_at.isoformat(),
            "started_at": j.started_at.isoformat() if j.started_at else None,
            "finished_at": j.finished_at.isoformat() if j.finished_at else None}


def dataset_for(s: Session, name: str, embodiment: str, tier: str) -> Dataset:
    """The dataset `name`, created if new (two first uploads racing both get the one row)."""
    ds = s.scalar(select(Dataset).where(Dataset.name == name))
    if ds is not None:
        return ds
    try:
        with s.begin_nested():
            ds = Dataset(name=name, embodiment=embodiment, tier=tier)
            s.add(ds)
        return ds
    except IntegrityError:
        return s.scalar(select(Dataset).where(Dataset.name == name))


def _promoted(s: Session, embodiment: str) -> Skill | None:
    return s.scalar(select(Skill).where(Skill.embodiment == embodiment, Skill.status == "promoted")
                    .order_by(Skill.promoted_at.desc()))


def _duplicate(s: Session, ds: Dataset, sha: str):
    u = s.scalar(select(Upload).where(Upload.dataset_id == ds.id, Upload.sha256 == sha))
    return JSONResponse({"dataset": ds.name, "sha256": sha, "duplicate": True, "episodes": u.episodes,
                         "frames": u.frames, "successes": u.successes}, status_code=200)
