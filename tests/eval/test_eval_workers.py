"""`embodia eval --workers N`: episodes on Ray actors give the in-process results seed for seed,
the same report and videos, and leave no Ray process behind."""

from __future__ import annotations

import json
import os
import sys
import time

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from embodia.body.embodiments import get_embodiment
from embodia.cli import app
from embodia.eval.parallel import evaluate_parallel
from embodia.eval.rollout import ExpertAgent, TabletopSpec, evaluate
from tests.data.test_children import ray_session_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

runner = CliRunner()
RUNS = [("skill", "pick"), ("skill", "push")]


def _frames(path: str) -> list[np.ndarray]:
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture
def no_ray_left():
    yield
    deadline = time.monotonic() + 20
    while (left := ray_session_processes(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes outlived the evaluation: {left}"


def test_workers_give_the_in_process_episodes_seed_for_seed(tmp_path, no_ray_left):
    spec = TabletopSpec("arm7", get_embodiment("arm7").arm(None).name)
    alone = [evaluate(lambda k=k, n=n: spec.make(k, n), ExpertAgent(), n, 3, 4, tmp_path / "one")
             for k, n in RUNS]
    advanced = []
    spread = evaluate_parallel(spec, "expert", RUNS, 3, 4, workers=2, video_dir=tmp_path / "two",
                               progress=advanced.append)
    assert sorted(advanced) == [0, 0, 0, 1, 1, 1]  # one tick per finished episode, per run
    assert [r.name for r in spread] == ["pick", "push"]
    for a, b in zip(alone, spread, strict=True):
        assert [e.seed for e in b.episodes] == [4, 5, 6]
        for ea, eb in zip(a.episodes, b.episodes, strict=True):
            assert (eb.success, eb.length, eb.plan, eb.instructions, eb.steps_done) == \
                   (ea.success, ea.length, ea.plan, ea.instructions, ea.steps_done)
            assert eb.video == str(tmp_path / "two" / f"{b.name}_seed{eb.seed}.mp4")
            # the same episode's video (compared by pixels: an encoder's bytes may differ)
            fa, fb = _frames(ea.video), _frames(eb.video)
            assert len(fa) == len(fb) == ea.length + 1
            assert max(np.abs(x.astype(int) - y).mean() for x, y in zip(fa, fb, strict=True)) < 2.0
        assert a.summary() == b.summary()


def test_cli_workers_report_is_the_in_process_report(no_ray_left):
    args = ["eval", "--policy", "expert", "--skill", "pick", "--episodes", "4", "--seed-start", "2", "--json"]
    reports = []
    for workers in ("1", "2"):
        r = runner.invoke(app, [*args, "--workers", workers])
        assert r.exit_code == 0, r.output
        reports.append(json.loads(r.stdout[r.stdout.index("{"):]))
    assert reports[0] == reports[1]
    assert reports[0]["results"]["pick"]["episodes"] == 4


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_workers_below_one_is_refused_before_any_work(bad):
    r = runner.invoke(app, ["eval", "--episodes", "1", "--workers", bad])
    assert r.exit_code == 2 and "--workers" in r.output and "Traceback" not in r.output, r.output


def test_suite_workers_give_the_in_process_report(no_ray_left):
    pytest.importorskip("metaworld")
    from embodia.eval.parallel import evaluate_suite_parallel
    from embodia.eval.suite_rollout import SuiteEvalConfig, evaluate_suite, suite_policy_for

    cfg = SuiteEvalConfig(task="reach-v3,push-v3", episodes=2, cameras=())
    ticks = []
    alone = evaluate_suite(cfg, suite_policy_for(cfg.suite, "expert"), "expert")
    spread = evaluate_suite_parallel(cfg, "expert", workers=2, progress=ticks.append)
    assert sorted(ticks) == ["push-v3", "push-v3", "reach-v3", "reach-v3"]
    alone.pop("seconds"), spread.pop("seconds")
    assert spread == alone
