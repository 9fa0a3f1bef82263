"""A private PostgreSQL server (initdb + postgres as a child process) for tests, benchmarks and
a single-machine fleet, on a Unix socket in its own folder, dying with its parent.

Why not a system service: CI and a fresh machine have the binaries (apt's `postgresql`,
installed by scripts/install_system_deps.sh) but no running cluster, and tests must not touch
one that may exist. PostgreSQL refuses to run as root, so under root the server runs as the
`postgres` user that the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from embodia.data.children import set_parent_death_signal

PORT = 5432  # only names the socket file: the server listens on no TCP address


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed (apt-get install postgresql; "
                                "scripts/install_system_deps.sh does it)")
    return found


class LocalPostgres:
    """`with LocalPostgres(folder) as pg: pg.url("fleet")` — a server for as long as the block runs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.data = self.root / "data"
        self.proc: subprocess.Popen | None = None
        self._as = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}&port={PORT}"

    def _run(self, *cmd: str) -> None:
        r = subprocess.run(cmd, capture_output=True, text=True, **self._as)
        if r.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {(r.stderr or r.stdout).strip()[-500:]}")

    def start(self, timeout_s: float = 30.0) -> LocalPostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-sync")
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [_bin("postgres"), "-D", str(self.data), "-k", str(self.root), "-p", str(PORT), "-c",
             "listen_addresses=", "-c", "fsync=on", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=set_parent_death_signal, **self._as)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            r = subprocess.run([_bin("pg_isready"), "-h", str(self.root), "-p", str(PORT)], capture_output=True)
            if r.returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "server.log").read_text(errors="replace")[-800:]
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start: {tail}")
            time.sleep(0.1)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=str(self.root), port=PORT, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: ends sessions, then checkpoints
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
