"""Workers die with their parent, even when the parent is killed with SIGKILL."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process semantics")

POOL_PARENT = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from embodia.data.children import die_with_parent

    def work(path):
        open(path, "w").write(str(os.getpid()))
        time.sleep(60)

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))
        pool.submit(work, sys.argv[1])
        time.sleep(60)
""")

POPEN_PARENT = textwrap.dedent("""
    import subprocess, sys, time
    from embodia.data.children import popen_kwargs
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], **popen_kwargs())
    open(sys.argv[1], "w").write(str(p.pid))
    time.sleep(60)
""")

# Ray's agents and workers are children of the raylet, not of the parent: when the parent dies
# they are reparented, and only the watcher that init_ray starts still knows they are Ray's
RAY_PARENT = textwrap.dedent("""
    import os, sys, time
    import ray
    from embodia.data.children import init_ray

    class Pid:
        def pid(self):
            return os.getpid()

    init_ray(None, 1)
    actor = ray.remote(num_cpus=1)(Pid).remote()
    open(sys.argv[1], "w").write(str(ray.get(actor.pid.remote())))
    time.sleep(120)
""")


def ray_session_processes(driver: int) -> list[str]:
    """Live processes of the local Ray instance that process `driver` started (its session's
    name ends in that pid: on the servers' command lines, in the files the others hold open),
    and the watcher init_ray started for it; the driver itself is left out."""
    from embodia.data.children import RAY_REAPER

    session = re.compile(rb"session_[0-9_-]+_%d\b" % driver)
    found = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        if int(d) == driver:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
            fds = os.listdir(f"/proc/{d}/fd")
        except OSError:
            continue
        if fields[0] == "Z":
            continue
        links = []
        for fd in fds:
            with contextlib.suppress(OSError):  # closed since listed
                links.append(os.readlink(f"/proc/{d}/fd/{fd}").encode())
        ours = session.search(cmd) or any(session.search(link) for link in links)
        watcher = int(fields[1]) == driver and RAY_REAPER.encode() in cmd
        if ours or watcher:
            found.append(f"{d} {cmd[:60]!r}")
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return True  # no /proc: kill(0) said it exists


def _orphan_after_kill9(tmp_path, script: str) -> bool:
    pidfile = tmp_path / "child.pid"
    src = tmp_path / "parent.py"
    src.write_text(script)
    parent = subprocess.Popen([sys.executable, str(src), str(pidfile)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()):
            assert time.monotonic() < deadline, "the child never started"
            assert parent.poll() is None, "the parent exited early"
            time.sleep(0.1)
        child = int(pidfile.read_text())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphan = _alive(child)
        if orphan:
            os.kill(child, signal.SIGKILL)
        return orphan
    finally:
        if parent.poll() is None:
            parent.kill()


def test_pool_workers_die_with_a_killed_parent(tmp_path):
    assert not _orphan_after_kill9(tmp_path, POOL_PARENT)


def test_popen_children_die_with_a_killed_parent(tmp_path):
    assert not _orphan_after_kill9(tmp_path, POPEN_PARENT)


def test_ray_servers_agents_and_workers_die_with_a_killed_parent(tmp_path):
    pytest.importorskip("ray")
    pidfile, src = tmp_path / "worker.pid", tmp_path / "parent.py"
    src.write_text(RAY_PARENT)
    parent = subprocess.Popen([sys.executable, str(src), str(pidfile)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()):
            assert time.monotonic() < deadline and parent.poll() is None, "the actor never started"
            time.sleep(0.1)
        assert ray_session_processes(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while (left := ray_session_processes(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for p in left:  # no orphans after the test, whatever it found
            with contextlib.suppress(OSError):
                os.kill(int(p.split()[0]), signal.SIGKILL)
        assert not left, f"outlived their killed parent: {left}"
    finally:
        if parent.poll() is None:
            parent.kill()
