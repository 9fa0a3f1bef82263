"""The fleet's records as SQLAlchemy 2 tables (one schema for SQLite and PostgreSQL).

Why these tables: an operator asks "which robots are up, on which skill version, and what
data did they send back"; each question is one table, and the schema only changes through
Alembic migrations (`migrations/`), so a database written by an older service upgrades in place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("robot", "operator", "viewer")
TIERS = ("real", "synthetic", "human")
SKILL_STATES = ("candidate", "promoted", "retired")
JOB_KINDS = ("train", "eval", "collect")
JOB_STATES = ("queued", "running", "succeeded", "failed")
TASK_STATES = JOB_STATES  # a robot's task goes through the same states as a job


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Token(Base):
    """A bearer token, stored only as its SHA-256; a robot token is bound to the robot it registers."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    robot_id: Mapped[str | None] = mapped_column(ForeignKey("robots.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=now)


class Robot(Base):
    __tablename__ = "robots"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    embodiment: Mapped[str] = mapped_column(String(64))
    software_version: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64), default="default")
    status: Mapped[str] = mapped_column(String(16), default="registered")
    skill_id: Mapped[int | None] = mapped_column(ForeignKey("skills.id"), default=None)
    registered_at: Mapped[datetime] = mapped_column(default=now)
    last_heartbeat: Mapped[datetime | None] = mapped_column(default=None)


class Skill(Base):
    """One trained skill version: what it runs on, which checkpoint (by hash), how it scored."""

    __tablename__ = "skills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    embodiment: Mapped[str] = mapped_column(String(64))
    head: Mapped[str] = mapped_column(String(32))
    checkpoint_hash: Mapped[str] = mapped_column(String(64))
    checkpoint_path: Mapped[str | None] = mapped_column(String(512), default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    created_at: Mapped[datetime] = mapped_column(default=now)
    promoted_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    embodiment: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(16), default="synthetic")
    created_at: Mapped[datetime] = mapped_column(default=now)


class Upload(Base):
    """One archive of recorded LeRobot-v3 episodes; its content hash makes a re-send a no-op."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("dataset_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    robot_id: Mapped[str | None] = mapped_column(ForeignKey("robots.id"), default=None)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    episodes: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    fps: Mapped[float] = mapped_column(Float)
    path: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=now)


class Job(Base):
    """A train, eval or collect run on Ray; `attempts` counts starts (a service restart resumes)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    artefacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=now)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class RobotTask(Base):
    """Work an operator queued for one robot: record `episodes` of a meta-skill with the skill
    version the robot runs, label them and upload them to `dataset` (the data flywheel)."""

    __tablename__ = "robot_tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    robot_id: Mapped[str] = mapped_column(ForeignKey("robots.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=now)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class SiteObject(Base):
    """A site's shared scene memory: where a robot of that site last saw an object."""

    __tablename__ = "site_objects"
    __table_args__ = (UniqueConstraint("site", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # position, kind, colour, ...
    robot_id: Mapped[str | None] = mapped_column(ForeignKey("robots.id"), default=None)
    seen_at: Mapped[datetime] = mapped_column(default=now)
