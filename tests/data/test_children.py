"""Workers die with their parent, even when the parent is killed with SIGKILL."""

import os
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
