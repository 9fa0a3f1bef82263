"""`collect --suite metaworld`: Meta-World's experts into a v3 dataset LeRobot reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld")

from embodia.body.suites import get_suite  # noqa: E402
from embodia.data.metadata import DatasetMeta  # noqa: E402
from embodia.data.reader import DatasetReader  # noqa: E402
from embodia.data.suite_recording import SuiteCollectConfig, collect_suite  # noqa: E402
from tests.data.test_lerobot_interop import MAX_MEAN_ABS_DIFF, mean_abs_diff, run_lerobot  # noqa: E402

TASK = "reach-v3"  # the shortest expert episodes (~50 steps)


def replay(seed: int, cameras: tuple[str, ...] = ("corner2",)) -> dict[str, np.ndarray]:
    """The episode (TASK, seed) again, in this process: what the dataset must hold."""
    suite = get_suite("metaworld")
    env = suite.make_env(TASK, cameras=cameras)
    expert = suite.make_expert(TASK, env)
    obs, _ = env.reset(seed=seed)
    states, actions, frames = [], [], []
    while True:
        a = expert.select_action(obs)
        states.append(obs["observation.state"])
        frames += [obs[f"observation.images.{c}"] for c in cameras]
        obs, _, term, trunc, info = env.step(a)
        actions.append(info["action"])
        if term or trunc:
            break
    env.close()
    return {"observation.state": np.stack(states), "action": np.stack(actions),
            "images": np.stack(frames) if frames else None}


@pytest.fixture(scope="module")
def one_episode(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mw") / "reach"
    rep = collect_suite(SuiteCollectConfig(out=root, task=TASK, episodes=1, seed_start=3, batch=1))
    assert rep.recorded == 1 and rep.seeds == [3]
    return root


def test_one_episode_is_what_seed_3_replays(one_episode):
    meta = DatasetMeta.load(one_episode)
    assert meta.info["robot_type"] == "sawyer" and meta.info["fps"] == 80
    assert meta.info["features"]["observation.images.corner2"]["shape"] == [84, 84, 3]
    assert meta.info["features"]["observation.state"]["shape"] == [4]
    assert meta.info["features"]["observation.environment_state"]["shape"] == [35]
    assert meta.info["features"]["action"]["names"] == ["main.dx", "main.dy", "main.dz", "main.gripper"]
    assert meta.column("seed") == [3] and meta.column("skill") == [TASK] and meta.column("success") == [True]
    ep = DatasetReader(one_episode).episode(0)
    want = replay(3, cameras=())
    assert ep["task"] == "Reach a goal position"
    np.testing.assert_array_equal(ep["observation.state"], want["observation.state"])
    np.testing.assert_array_equal(ep["action"], want["action"])


def test_lerobot_reads_the_suite_dataset(one_episode, tmp_path):
    out = tmp_path / "lerobot_view.npz"
    run_lerobot("read_dataset.py", one_episode, out)
    lr = np.load(out)
    want = replay(3)
    n = len(want["action"])
    assert int(lr["num_frames"]) == n and int(lr["num_episodes"]) == 1 and int(lr["fps"]) == 80
    np.testing.assert_array_equal(lr["observation.state"], want["observation.state"])  # bit-exact
    np.testing.assert_array_equal(lr["action"], want["action"])
    assert list(lr["episode_task"]) == ["Reach a goal position"]
    ids = lr["frame_ids"]
    frames = lr["observation.images.corner2"]
    assert frames.shape == (len(ids), 84, 84, 3)
    assert mean_abs_diff(frames, want["images"][ids]) < MAX_MEAN_ABS_DIFF


def test_rerun_resumes_and_adds_only_what_is_missing(tmp_path):
    root = tmp_path / "ds"
    cfg = dict(out=root, task="reach-v3,push-v3", seed_start=0, cameras=(), batch=2)
    first = collect_suite(SuiteCollectConfig(episodes=1, **cfg))
    assert first.recorded == 2
    again = collect_suite(SuiteCollectConfig(episodes=2, **cfg))
    assert again.already_present == 2 and again.recorded == 2
    meta = DatasetMeta.load(root)
    assert sorted(zip(meta.column("skill"), meta.column("seed"), strict=True)) == [
        ("push-v3", 0), ("push-v3", 1), ("reach-v3", 0), ("reach-v3", 1)]
    assert sorted(meta.tasks) == ["Push the puck to a goal", "Reach a goal position"]
    assert not [k for k in meta.features if k.startswith("observation.images.")]


def test_bad_config_is_named_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown Meta-World task 'juggle'"):
        SuiteCollectConfig(out=tmp_path / "x", task="juggle")
    with pytest.raises(ValueError, match="unknown suite 'libero'"):
        SuiteCollectConfig(out=tmp_path / "x", suite="libero")
    with pytest.raises(ValueError, match=r"cameras: unknown camera\(s\) \['front'\]"):
        SuiteCollectConfig(out=tmp_path / "x", task="push", cameras=("front",))
    assert not (tmp_path / "x").exists()
