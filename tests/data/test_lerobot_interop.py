"""Interop with LeRobot's own dataset code, both ways.

LeRobot (lerobot 0.6.1, Python >= 3.12, with torchvision) cannot share a venv with our torch
wheel, so it lives in a side venv (`make lerobot-venv`; `$LEROBOT_VENV` overrides where, as the
Makefile's variable does) and is driven through the standalone scripts in scripts/lerobot/
(subprocesses, arrays exchanged as .npz):
  * a dataset embodia wrote loads in LeRobot's `LeRobotDataset` with the same frames,
    episodes, states, actions and tasks, and images close to what was recorded;
  * a dataset LeRobot's own writer produced (AV1 videos, its default) reads in embodia.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from embodia.data.reader import DatasetReader

REPO = Path(__file__).resolve().parents[2]
LEROBOT_VENV = Path(os.environ.get("LEROBOT_VENV") or REPO / ".venv-lerobot")
LEROBOT_PY = (LEROBOT_VENV if LEROBOT_VENV.is_absolute() else REPO / LEROBOT_VENV) / "bin" / "python"
SCRIPTS = REPO / "scripts" / "lerobot"
# Lossy video, uint8 levels: H.264 crf 18 (ours) and AV1 crf 30 (LeRobot's) on 64x64 renders.
MAX_MEAN_ABS_DIFF = 6.0


def run_lerobot(script: str, *args: str | Path) -> None:
    if not LEROBOT_PY.exists():
        pytest.fail(f"LeRobot's side venv is missing ({LEROBOT_PY}); create it with `make lerobot-venv`")
    cmd = [str(LEROBOT_PY), str(SCRIPTS / script), *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"  # local datasets only: never touch the Hub
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}")


@pytest.fixture(scope="module")
def recorded(synthetic_ds) -> dict:
    """The shared tiny embodia dataset (conftest: 3 pick episodes, front + wrist, 64x64) and,
    concatenated over episodes, exactly the arrays that went into it."""
    rec = synthetic_ds
    info = json.loads((rec.root / "meta" / "info.json").read_text())
    return {
        "root": rec.root,
        "fps": int(info["fps"]),
        "robot_type": info["robot_type"],
        "observation.state": np.concatenate(rec.states),
        "action": np.concatenate(rec.actions),
        "episode_length": np.asarray(rec.lengths, dtype=np.int64),
        "episode_task": list(rec.tasks),
        "images": {k: np.concatenate(v) for k, v in rec.images.items()},
    }


def read_with_embodia(root: Path) -> dict:
    """Everything embodia's reader sees: counts and, per episode, arrays and task."""
    r = DatasetReader(root)
    return {"num_frames": r.num_frames, "num_episodes": r.num_episodes,
            "episodes": [r.episode(i) for i in range(r.num_episodes)]}


def concat(episodes: list[dict], key: str) -> np.ndarray:
    return np.concatenate([np.asarray(ep[key]) for ep in episodes])


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_lerobot_reads_embodia_dataset(recorded, tmp_path):
    out = tmp_path / "lerobot_view.npz"
    run_lerobot("read_dataset.py", recorded["root"], out)
    lr = np.load(out)
    n = int(recorded["episode_length"].sum())

    assert int(lr["num_frames"]) == n
    n_eps = len(recorded["episode_length"])
    assert n_eps >= 2 and len(recorded["images"]) >= 2  # several episodes, several cameras
    assert int(lr["num_episodes"]) == n_eps
    assert int(lr["fps"]) == recorded["fps"]
    np.testing.assert_array_equal(lr["episode_length"], recorded["episode_length"])
    np.testing.assert_array_equal(lr["episode_from"], np.cumsum(recorded["episode_length"]) - recorded["episode_length"])
    assert list(lr["episode_task"]) == recorded["episode_task"]
    for key in ("observation.state", "action"):
        assert lr[key].dtype == np.float32
        np.testing.assert_array_equal(lr[key], recorded[key])  # bit-exact
    ep_of_frame = np.repeat(np.arange(n_eps), recorded["episode_length"])
    np.testing.assert_array_equal(lr["episode_index"], ep_of_frame)
    np.testing.assert_array_equal(lr["frame_index"], np.concatenate([np.arange(k) for k in recorded["episode_length"]]))

    # frames fetched through LeRobotDataset.__getitem__ (video decoded at their timestamps)
    ids = lr["frame_ids"]
    assert len(ids) >= 6
    np.testing.assert_array_equal(lr["item.observation.state"], recorded["observation.state"][ids])
    np.testing.assert_array_equal(lr["item.action"], recorded["action"][ids])
    assert list(lr["item.task"]) == [recorded["episode_task"][e] for e in ep_of_frame[ids]]
    ours = read_with_embodia(recorded["root"])
    assert ours["num_frames"] == n
    for cam, frames in recorded["images"].items():
        theirs = lr[cam]
        assert theirs.dtype == np.uint8 and theirs.shape == (len(ids), *frames.shape[1:])
        assert mean_abs_diff(theirs, frames[ids]) < MAX_MEAN_ABS_DIFF, cam
        # the same file decoded by both readers: essentially the same pixels
        assert mean_abs_diff(theirs, concat(ours["episodes"], cam)[ids]) < 2.0, cam


def test_embodia_reads_lerobot_written_dataset(recorded, tmp_path):
    inp = tmp_path / "arrays.npz"
    np.savez(inp, fps=recorded["fps"], robot_type=recorded["robot_type"],
             episode_length=recorded["episode_length"], episode_task=np.asarray(recorded["episode_task"]),
             **{"observation.state": recorded["observation.state"], "action": recorded["action"]},
             **recorded["images"])
    root = tmp_path / "lerobot_ds"
    run_lerobot("write_dataset.py", inp, root)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert {info["features"][k]["info"]["video.codec"] for k in recorded["images"]} == {"av1"}  # LeRobot's default

    ours = read_with_embodia(root)
    eps = ours["episodes"]
    assert ours["num_frames"] == int(recorded["episode_length"].sum())
    assert ours["num_episodes"] == len(recorded["episode_length"])
    assert [len(ep["action"]) for ep in eps] == list(recorded["episode_length"])
    assert [ep["task"] for ep in eps] == recorded["episode_task"]
    for key in ("observation.state", "action"):
        got = concat(eps, key)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, recorded[key])
    for cam, frames in recorded["images"].items():
        got = concat(eps, cam)
        assert got.dtype == np.uint8 and got.shape == frames.shape, cam
        assert mean_abs_diff(got, frames) < MAX_MEAN_ABS_DIFF, cam
    # the same arrays give the same normalization statistics on both sides
    theirs = json.loads((root / "meta" / "stats.json").read_text())
    ours_stats = json.loads((recorded["root"] / "meta" / "stats.json").read_text())
    for key in ("observation.state", "action"):
        for name in ("min", "max", "mean", "std", "count"):
            np.testing.assert_allclose(ours_stats[key][name], theirs[key][name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{key}/{name}")


def test_side_venv_is_lerobot():
    """The side venv is what the Makefile pins (a stale or foreign venv would prove nothing)."""
    if not LEROBOT_PY.exists():
        pytest.fail(f"LeRobot's side venv is missing ({LEROBOT_PY}); create it with `make lerobot-venv`")
    code = ("import importlib.metadata as m; print(*(m.version(p).split('+')[0] for p in "
            "('lerobot', 'torch', 'torchvision', 'metaworld', 'mujoco')))")
    r = subprocess.run([str(LEROBOT_PY), "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0.6.1", "2.11.0", "0.26.0", "3.1.1", "3.3.0"]
