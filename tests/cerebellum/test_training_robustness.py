"""Training survives crashes and bad input: children die with their parent, checkpoint files
are written atomically, a damaged optimizer state resumes from the weights, and a failing
estimator process stops the run within seconds."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embodia.cerebellum import checkpoint as ckpt_mod
from embodia.cerebellum import training as training_mod
from embodia.cerebellum.training import TrainingPartFailed, train
from tests.cerebellum.test_training import _cfg

ROOT = Path(__file__).resolve().parents[2]


def _spawned_children(pid: int) -> list[int]:
    """The multiprocessing-spawned children of `pid` (not its resource tracker)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for k in kids:
        try:
            if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes():
                out.append(int(k))
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status  # a zombie has died, its parent has not reaped it yet


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_estimator_child_dies_with_a_killed_parent(tiny_ds, tmp_path):
    out = tmp_path / "ck"
    script = (
        "import sys; from tests.cerebellum.test_training import _cfg; from embodia.cerebellum.training import train\n"
        "class D: root = sys.argv[1]\n"
        "train(_cfg(D, sys.argv[2], parallel_parts=True, max_steps=10**9, max_minutes=3, val_every=10**9, "
        "ckpt_every=10**9))\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tiny_ds.root), str(out)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        # the estimator's own training folder exists once it is past its start (and armed)
        while not (out / "training/parts/estimator/training").exists() or not children:
            assert parent.poll() is None and time.monotonic() < deadline, "the parent never started its child"
            children = _spawned_children(parent.pid)
            time.sleep(0.2)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children), f"orphaned estimator process(es) {children}"
    finally:
        parent.kill()
        for c in children:
            if _alive(c):
                os.kill(c, signal.SIGKILL)


def test_every_checkpoint_file_is_written_through_the_atomic_writer(tiny_ds, tmp_path, monkeypatch):
    written = []
    real = ckpt_mod.atomic_write_bytes

    def spy(path, data):
        written.append(Path(path).relative_to(tmp_path / "ck").as_posix())
        real(path, data)

    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", spy)
    train(_cfg(tiny_ds, tmp_path / "ck", part="action", max_steps=2, ema_decay=0.9))
    for name in ("model.safetensors", "config.json", "stats.json", "training/optimizer.safetensors",
                 "training/raw.safetensors"):
        assert name in written, (name, written)
    assert not list((tmp_path / "ck").rglob(".*.tmp-*"))  # no temp file left behind


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name the file being synced")
def test_a_crash_while_writing_the_optimizer_keeps_the_old_file(tiny_ds, tmp_path, monkeypatch):
    out = tmp_path / "ck"
    train(_cfg(tiny_ds, out, part="action", max_steps=2))
    before = (out / "training/optimizer.safetensors").read_bytes()
    real_fsync = os.fsync

    def crash_on_optimizer(fd):  # the process dies after writing the bytes, before they are in place
        if "optimizer.safetensors" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", crash_on_optimizer)
    with pytest.raises(OSError, match="disk full"):
        train(_cfg(tiny_ds, out, part="action", max_steps=4))
    assert (out / "training/optimizer.safetensors").read_bytes() == before
    monkeypatch.undo()
    assert train(_cfg(tiny_ds, out, part="action", max_steps=6))["steps"] == 6


def test_a_damaged_optimizer_state_resumes_from_the_weights_with_a_warning(tiny_ds, hash_language, tmp_path):
    out = tmp_path / "ck"
    train(_cfg(tiny_ds, out, part="action", max_steps=2))
    opt = out / "training/optimizer.safetensors"
    opt.write_bytes(opt.read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match="optimizer state not restored"):
        summary = train(_cfg(tiny_ds, out, part="action", max_steps=4))
    assert summary["resumed"] and summary["steps"] == 4
    # and the resumed run wrote a good optimizer state again
    assert ckpt_mod.load_tensors(opt)


def test_a_failing_estimator_process_stops_the_run_within_seconds_naming_the_file(tiny_ds, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_ds.root, data)
    video = sorted(data.rglob("*.mp4"))[0]
    video.write_bytes(b"not an mp4 at all" * 10)
    t0 = time.perf_counter()
    class Copy:
        root = data

    with pytest.raises(TrainingPartFailed) as info:
        # the action part reads no video: without the watch it would train its full 2 minutes
        train(_cfg(Copy, tmp_path / "ck", parallel_parts=True, max_steps=10**9, max_minutes=2,
                   val_every=10**9, ckpt_every=10**9))
    assert time.perf_counter() - t0 < 60
    assert video.name in str(info.value), str(info.value)


def test_the_child_reports_its_error_and_exits(tmp_path, monkeypatch):
    """In-process check of the child's side: its error goes through the pipe as one line."""
    sent = []

    class Conn:
        def send(self, msg):
            sent.append(msg)

    def boom(cfg):
        raise ValueError("datasets/x/videos/front/chunk-000/file-000.mp4: cannot decode")

    monkeypatch.setattr(training_mod, "train", boom)
    monkeypatch.setattr(training_mod, "die_with_parent", lambda pid: None)  # not on the test runner itself
    with pytest.raises(SystemExit):
        training_mod._train_part(None, os.getpid(), Conn())
    assert sent == ["datasets/x/videos/front/chunk-000/file-000.mp4: cannot decode"]
