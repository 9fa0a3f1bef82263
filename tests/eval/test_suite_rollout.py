"""The suite harness: any policy, seeds S+i, the report's fields, seed overlap refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("metaworld")

from typer.testing import CliRunner  # noqa: E402

from embodia.body.embodiments import get_embodiment  # noqa: E402
from embodia.body.suites import get_suite  # noqa: E402
from embodia.cli import app  # noqa: E402
from embodia.data.writer import DatasetWriter, EpisodeBuffer  # noqa: E402
from embodia.eval.rollout import POLICY_SEED_OFFSET  # noqa: E402
from embodia.eval.suite_rollout import (  # noqa: E402
    EVAL_SEED_START,
    SuiteEvalConfig,
    check_seed_overlap,
    evaluate_suite,
)

runner = CliRunner()


class Jitter:
    """A stochastic stand-in for a learned policy: seeded per episode through seed_episode."""

    def __init__(self) -> None:
        self.seeds: list[int] = []
        self.resets = 0
        self.rng = np.random.default_rng(0)

    def seed_episode(self, seed: int) -> None:
        self.seeds.append(seed)
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.resets += 1

    def select_action(self, obs):
        assert obs["observation.state"].shape == (4,) and obs["task"] == "Reach a goal position"
        return self.rng.uniform(-1, 1, 4)


def expert_for(task, env):
    return get_suite("metaworld").make_expert(task, env)


def test_expert_report_fields():
    cfg = SuiteEvalConfig(task="reach-v3", episodes=2, seed_start=EVAL_SEED_START, cameras=())
    r = evaluate_suite(cfg, expert_for, "expert")
    t = r["tasks"]["reach-v3"]
    assert {"episodes", "successes", "success_rate", "wilson95", "failed_seeds", "expert_ceiling",
            "mean_episode_length"} <= set(t)
    assert t["episodes"] == 2 and t["successes"] == 2 and t["success_rate"] == 1.0
    assert t["wilson95"][0] < 1.0 == t["wilson95"][1]
    assert r["seeds"] == [100000, 100001] and r["mean_success_rate"] == 1.0
    assert r["pooled"] == {"episodes": 2, "successes": 2, "wilson95": t["wilson95"]}
    assert t["expert_ceiling"]["success_rate"] == 1.0 == r["expert_ceiling"]["mean_success_rate"]
    assert "--seed-start 100000" in r["expert_ceiling"]["measured"]["command"]
    json.dumps(r)


def test_any_policy_plugs_in_and_reproduces_from_the_seeds():
    cfg = SuiteEvalConfig(task="reach", episodes=2, seed_start=5, cameras=(), max_steps=15)
    runs = []
    for _ in range(2):
        pol = Jitter()
        runs.append(evaluate_suite(cfg, lambda task, env, pol=pol: pol, "jitter"))
        assert pol.seeds == [5 + POLICY_SEED_OFFSET, 6 + POLICY_SEED_OFFSET] and pol.resets == 2
    t = runs[0]["tasks"]["reach-v3"]
    assert t["successes"] == 0 and t["mean_episode_length"] == 15 and t["failed_seeds"] == [5, 6]
    assert runs[0]["tasks"] == runs[1]["tasks"]


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="unknown Meta-World task 'juggle'; valid: 'mt10'"):
        SuiteEvalConfig(task="juggle")
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        SuiteEvalConfig(task="reach", episodes=0)


@pytest.fixture
def demo_ds(tmp_path):
    """A dataset recording seeds 0 and 7 (written directly: no simulator needed)."""
    spec = get_embodiment("sawyer")
    w = DatasetWriter(tmp_path / "demos", spec, [], (84, 84))
    for seed in (0, 7):
        ep = EpisodeBuffer(task="Reach a goal position", skill="reach-v3", seed=seed)
        for _ in range(3):
            ep.add({"observation.state": np.zeros(4, np.float32)}, np.zeros(4, np.float32))
        w.stage(ep, f"reach-v3-main-{seed:08d}")
    w.consolidate()
    return tmp_path / "demos"


def test_overlapping_seed_ranges_are_refused(demo_ds):
    with pytest.raises(ValueError, match=r"seed_start: evaluation seeds 5\.\.9 overlap the seeds 0\.\.7"):
        check_seed_overlap([demo_ds], 5, 5)
    check_seed_overlap([demo_ds], 8, 50)
    check_seed_overlap([demo_ds], EVAL_SEED_START, 50)


def test_cli_eval_suite_json_and_refusals(demo_ds):
    r = runner.invoke(app, ["eval", "--policy", "expert", "--suite", "metaworld", "--task", "reach",
                            "--episodes", "1", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["seeds"] == [EVAL_SEED_START, EVAL_SEED_START] and rep["tasks"]["reach-v3"]["successes"] == 1
    r = runner.invoke(app, ["eval", "--suite", "metaworld", "--task", "reach", "--episodes", "3",
                            "--seed-start", "6", "--dataset", str(demo_ds), "--json"])
    assert r.exit_code == 2 and "overlap the seeds 0..7" in r.output
    r = runner.invoke(app, ["eval", "--suite", "metaworld", "--task", "juggle", "--episodes", "1"])
    assert r.exit_code == 2 and "unknown Meta-World task 'juggle'" in r.output
    r = runner.invoke(app, ["eval", "--suite", "robosuite", "--episodes", "1"])
    assert r.exit_code == 2 and "unknown suite 'robosuite'" in r.output


def test_cli_collect_suite(tmp_path):
    out = tmp_path / "ds"
    r = runner.invoke(app, ["collect", "--suite", "metaworld", "--task", "reach", "--episodes", "1",
                            "--cameras", "none", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["recorded"] == 1
    r = runner.invoke(app, ["collect", "--suite", "metaworld", "--task", "juggle", "--out", str(out)])
    assert r.exit_code == 2 and "unknown Meta-World task 'juggle'" in r.output
    r = runner.invoke(app, ["collect", "--suite", "metaworld", "--task", "reach", "--perturb", "0.01",
                            "--out", str(out)])
    assert r.exit_code == 2 and "--perturb" in r.output


def test_a_lerobot_spec_is_a_lerobot_checkpoint_and_travels_to_actors_absolute(tmp_path, monkeypatch):
    """`lerobot:PATH` goes to LeRobot's pipe (a clear error naming the path when nothing is
    there), not to our checkpoint loader; Ray actors get the prefix kept and the path absolute."""
    from embodia.eval.lerobot_policy import LeRobotPolicyError
    from embodia.eval.parallel import _for_actors
    from embodia.eval.suite_rollout import suite_policy_for

    missing = tmp_path / "no_run"
    with pytest.raises(LeRobotPolicyError, match="no LeRobot checkpoint at .*no_run"):
        suite_policy_for("metaworld", f"lerobot:{missing}")
    monkeypatch.chdir(tmp_path)
    assert _for_actors("lerobot:run/x") == f"lerobot:{tmp_path / 'run' / 'x'}"
    assert _for_actors("ckpt") == str(tmp_path / "ckpt")
    assert _for_actors("expert") == "expert"


def test_cli_eval_refuses_a_missing_lerobot_checkpoint_before_any_work(tmp_path):
    r = runner.invoke(app, ["eval", "--suite", "metaworld", "--task", "reach-v3", "--episodes", "1",
                            "--policy", f"lerobot:{tmp_path / 'no_run'}"])
    assert r.exit_code == 2 and "--policy" in r.output and "no LeRobot checkpoint" in r.output, r.output
    assert "Traceback" not in r.output
