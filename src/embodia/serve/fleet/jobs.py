"""Train, eval and collect jobs: the `embodia` CLI run as Ray tasks, watched by one thread.

Why the CLI in a Ray task: the job does exactly what a person would run by hand (same flags,
same checkpoints, same JSON), Ray places it on a local instance or a cluster
(`--ray-address`), and the child process dies with the worker. One job runs at a time (a
small machine has the cores for one training). Results land in the database: a train job
registers a candidate skill version (checkpoint hash and path), an eval job writes its success
rate with the seeds it used, a collect job adds a synthetic dataset.

Restarts: a job the service was running when it stopped (crash, `kill -9`) is queued again
and resumes (training continues from its checkpoint folder; eval and collect are seeded and
start over) up to `MAX_ATTEMPTS` starts, after that it is marked failed with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embodia.data.children import init_ray
from embodia.serve.fleet import episodes as E
from embodia.serve.fleet.models import Dataset, Job, Skill, Upload, now

log = logging.getLogger("embodia.serve.fleet.jobs")
MAX_ATTEMPTS = 3
TAIL_CHARS = 4000


def embodia_cli() -> list[str]:
    return [sys.executable, "-m", "embodia.cli"]


def run_command(argv: list[str], log_path: str, env: dict[str, str]) -> tuple[int, str]:
    """Run `argv` (the job's CLI call), stderr to `log_path`; returns (exit code, stdout)."""
    from embodia.data.children import popen_kwargs

    with open(log_path, "ab") as err:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env={**os.environ, **env},
                             **popen_kwargs())
        out, _ = p.communicate()
    return p.returncode, out.decode(errors="replace")


def tree_hash(root: Path) -> str:
    """A content hash of a folder (relative paths and bytes), to store a collected dataset once."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0" + bytes.fromhex(E.file_sha256(p)))
    return h.hexdigest()


class JobRunner:
    """Runs queued jobs one at a time on Ray; `start()` first re-queues what a stop interrupted."""

    def __init__(self, sessions: sessionmaker[Session], data_dir: Path, ray_address: str | None = None,
                 poll_s: float = 0.5, threads: int = 1) -> None:
        self.sessions, self.data_dir, self.ray_address = sessions, Path(data_dir), ray_address
        self.poll_s, self.threads = poll_s, threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ray_ready = False

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        with self.sessions() as s:
            for job in s.scalars(select(Job).where(Job.state == "running")):
                if job.attempts >= MAX_ATTEMPTS:
                    job.state, job.finished_at = "failed", now()
                    job.error = f"the service stopped during this job {job.attempts} times; giving up"
                else:
                    job.state = "queued"
                    note = "\n[the service stopped during this job; resuming]\n"
                    log_file = self.data_dir / "jobs" / str(job.id) / "log.txt"
                    if log_file.parent.is_dir():
                        with log_file.open("a") as f:
                            f.write(note)
                    job.log_tail += note
            s.commit()

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="embodia-fleet-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._ray_ready:  # the local instance (or the cluster connection) this runner started
            import ray

            ray.shutdown()
            self._ray_ready = False

    def _ray(self):
        import ray

        if not self._ray_ready:  # a local instance's servers die with a killed service
            init_ray(self.ray_address, max(1, os.cpu_count() or 1))
            self._ray_ready = True
        return ray

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.sessions() as s:
                job = s.scalar(select(Job).where(Job.state == "queued").order_by(Job.id))
                job_id = job.id if job else None
            if job_id is None:
                self._stop.wait(self.poll_s)
                continue
            try:
                self.run(job_id)
            except Exception as e:  # a bug or a lost Ray cluster: the job says so, the loop goes on
                log.exception("job %s", job_id)
                self._finish(job_id, "failed", error=f"{type(e).__name__}: {e}")

    def run(self, job_id: int) -> None:
        workdir = self.data_dir / "jobs" / str(job_id)
        workdir.mkdir(parents=True, exist_ok=True)
        logfile = workdir / "log.txt"
        with self.sessions() as s:
            job = s.get(Job, job_id)
            argv = self.command(s, job, workdir)
            job.state, job.attempts, job.started_at, job.error = "running", job.attempts + 1, now(), None
            s.commit()
            kind, params = job.kind, dict(job.params)
        ray = self._ray()
        task = ray.remote(num_cpus=self.threads, max_retries=0)(run_command)
        ref = task.remote(argv, str(logfile), {"OMP_NUM_THREADS": str(self.threads),
                                               "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
        while True:
            done, _ = ray.wait([ref], timeout=self.poll_s)
            self._report(job_id, kind, params, workdir, logfile)
            if done:
                break
            if self._stop.is_set():
                ray.cancel(ref, force=True)
                return  # left `running`: the next start re-queues it
        rc, out = ray.get(ref)
        if rc != 0:
            self._finish(job_id, "failed", error=f"exit code {rc}: {_tail(logfile, 600).strip()}")
            return
        with self.sessions() as s:
            artefacts = self.collect_results(s, s.get(Job, job_id), workdir, out)
            s.commit()
        self._finish(job_id, "succeeded", artefacts=artefacts)

    # ------------------------------------------------------------------ per kind
    def command(self, s: Session, job: Job, workdir: Path) -> list[str]:
        p = job.params
        if job.kind == "train":
            paths = [u.path for name in p["datasets"] for u in s.scalars(
                select(Upload).join(Dataset).where(Dataset.name == name).order_by(Upload.id))]
            return embodia_cli() + ["train", "--data", ",".join(paths), "--out", str(workdir / "checkpoint"),
                                    "--head", p["head"], "--max-steps", str(p["max_steps"]),
                                    "--max-minutes", str(p["max_minutes"]), "--batch-size", str(p["batch_size"]),
                                    "--threads", str(self.threads), "--seed", str(p.get("seed", 0)), "--json"]
        if job.kind == "eval":
            skill = s.get(Skill, p["skill_id"])
            return embodia_cli() + ["eval", "--policy", skill.checkpoint_path, "--embodiment", skill.embodiment,
                                    "--skill", p["skill"], "--episodes", str(p["episodes"]),
                                    "--seed-start", str(p["seed_start"]), "--json"]
        out = workdir / "dataset"
        return embodia_cli() + ["collect", "--embodiment", p["embodiment"], "--skill", p["skill"],
                                "--episodes", str(p["episodes"]), "--seed-start", str(p["seed_start"]),
                                "--out", str(out), "--tier", "synthetic", "--json"] + (
                                    ["--cameras", p["cameras"]] if p.get("cameras") else [])

    def collect_results(self, s: Session, job: Job, workdir: Path, stdout: str) -> dict[str, Any]:
        p = job.params
        if job.kind == "train":
            ckpt = workdir / "checkpoint"
            ds = s.scalar(select(Dataset).where(Dataset.name == p["datasets"][0]))
            k = Skill(name=p["name"], embodiment=ds.embodiment, head=p["head"],
                      checkpoint_hash=E.file_sha256(ckpt / "model.safetensors"), checkpoint_path=str(ckpt),
                      metrics={"trained_on": p["datasets"], "job": job.id})
            s.add(k)
            s.flush()
            return {"skill_id": k.id, "checkpoint": str(ckpt), "summary": _json(stdout)}
        if job.kind == "eval":
            report = json.loads(stdout)
            r = report["results"][p["skill"]]
            k = s.get(Skill, p["skill_id"])
            k.metrics = {**k.metrics, "success_rate": r["success_rate"], "episodes": r["episodes"],
                         "wilson95": r["wilson95"], "eval_skill": p["skill"], "seed_start": p["seed_start"],
                         "eval_job": job.id}
            return {"skill_id": k.id, "result": r}
        root = workdir / "dataset"
        summary = E.check(root)
        sha = tree_hash(root)
        from embodia.serve.fleet.app import dataset_for

        ds = dataset_for(s, p["dataset"], p["embodiment"], "synthetic")
        dest = E.store(root, self.data_dir / "datasets" / ds.name / sha)
        if s.scalar(select(Upload).where(Upload.dataset_id == ds.id, Upload.sha256 == sha)) is None:
            s.add(Upload(dataset_id=ds.id, sha256=sha, size_bytes=sum(f.stat().st_size for f in dest.rglob("*")
                                                                     if f.is_file()),
                         episodes=summary.episodes, frames=summary.frames, successes=summary.successes,
                         fps=summary.fps, path=str(dest)))
        return {"dataset": ds.name, "episodes": summary.episodes}

    # ------------------------------------------------------------------ bookkeeping
    def _report(self, job_id: int, kind: str, params: dict, workdir: Path, logfile: Path) -> None:
        progress = None
        if kind == "train":
            lines = [ln for f in workdir.glob("checkpoint/**/log.jsonl") for ln in f.read_text().splitlines()]
            if lines:
                progress = min(1.0, json.loads(lines[-1])["step"] / max(1, params["max_steps"]))
        with self.sessions() as s:
            job = s.get(Job, job_id)
            job.log_tail = _tail(logfile, TAIL_CHARS)
            if progress is not None:
                job.progress = max(job.progress, progress)
            s.commit()

    def _finish(self, job_id: int, state: str, error: str | None = None,
                artefacts: dict[str, Any] | None = None) -> None:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            job.state, job.finished_at, job.error = state, now(), error
            if artefacts is not None:
                job.artefacts, job.progress = artefacts, 1.0
            s.commit()


def _tail(path: Path, n: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - n))
        return f.read().decode(errors="replace")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None



