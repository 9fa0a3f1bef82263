"""Open a fleet database by SQLAlchemy URL and bring its schema to the newest migration.

Why migrations run at start: `embodia fleet serve --db URL` on a database an older service
wrote must upgrade it, never recreate it; a fresh SQLite file or an empty PostgreSQL database
goes through the same path.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
DEFAULT_URL = "sqlite:///fleet.db"


def make_engine(url: str = DEFAULT_URL) -> Engine:
    """An engine for `url`; SQLite gets WAL and foreign keys so concurrent readers never block
    a writer and a dangling reference is an error, as on PostgreSQL."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        engine = create_engine(url, pool_recycle=1800, pool_size=8, max_overflow=16)
    except Exception as e:  # an unparsable URL or a missing driver: say which
        raise ValueError(f"--db {url!r}: {e}") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a crash of the process
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()
    return engine


def upgrade(engine: Engine) -> str:
    """Run every pending migration; returns the revision the database is now at."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() or ""


def open_database(url: str = DEFAULT_URL) -> sessionmaker[Session]:
    engine = make_engine(url)
    upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)
