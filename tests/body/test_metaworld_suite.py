"""Meta-World behind the env contract: shapes, seeding, names, the sawyer embodiment."""

import numpy as np
import pytest

pytest.importorskip("metaworld")

from embodia.body.embodiments import get_embodiment, get_robot  # noqa: E402
from embodia.body.suites import get_suite, list_suites  # noqa: E402
from embodia.body.suites.metaworld import (  # noqa: E402
    CAMERA_POS,
    DESCRIPTIONS,
    MT10,
    env_state_names,
    resolve_tasks,
    task_names,
)


@pytest.fixture
def suite():
    return get_suite("metaworld")


@pytest.fixture
def make(suite):
    envs = []

    def _make(task="push-v3", **kw):
        env = suite.make_env(task, **kw)
        envs.append(env)
        return env

    yield _make
    for e in envs:
        e.close()


def test_sawyer_embodiment_layout():
    spec = get_embodiment("sawyer")
    assert spec.state_names == ("main.ee_x", "main.ee_y", "main.ee_z", "main.gripper_opening")
    layout = spec.action_layout("ee_delta")
    assert layout.dim == 4 and layout.gripper_dims == (3,)
    assert np.all(layout.low == -1) and np.all(layout.high == 1)
    assert spec.control_rate_hz == 80.0
    assert spec.to_dict()["action_spaces"].keys() == {"ee_delta"}
    with pytest.raises(ValueError, match="unknown action space 'joint_pos' for 'sawyer'"):
        spec.action_layout("joint_pos")
    with pytest.raises(ValueError, match="Meta-World's own scenes"):
        get_robot("sawyer")


def test_registry_and_task_names():
    assert "metaworld" in list_suites()
    with pytest.raises(ValueError, match="unknown suite 'libero'"):
        get_suite("libero")
    from metaworld.env_dict import MT10_V3

    assert resolve_tasks("mt10") == list(MT10) == list(MT10_V3)
    assert resolve_tasks("push") == ["push-v3"]
    assert resolve_tasks("reach-v3,push-v3") == ["reach-v3", "push-v3"]
    assert set(DESCRIPTIONS) == set(task_names())
    assert len(env_state_names()) == 35


def test_unknown_task_is_named_with_the_valid_ones(suite):
    with pytest.raises(ValueError, match=r"unknown Meta-World task 'juggle'; valid: 'mt10' or one of \[.*'push-v3'"):
        suite.make_env("juggle")


def test_obs_and_action_shapes(make):
    env = make("push-v3")
    obs, info = env.reset(seed=0)
    assert obs["observation.images.corner2"].shape == (84, 84, 3)
    assert obs["observation.images.corner2"].dtype == np.uint8
    assert obs["observation.state"].shape == (4,) and obs["observation.state"].dtype == np.float32
    assert obs["observation.environment_state"].shape == (35,)
    assert obs["task"] == "Push the puck to a goal" and obs["embodiment"] == "sawyer"
    assert np.allclose(obs["observation.state"], env.raw_obs[:4])
    assert env.observation_space["observation.state"].shape == (4,)
    assert env.action_space.shape == (4,)
    assert np.allclose(env._env.model.cam_pos[env._env.model.camera("corner2").id], CAMERA_POS)
    obs, _, term, trunc, info = env.step(np.zeros(4))
    assert not term and not trunc and info["elapsed_steps"] == 1
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    bad = np.zeros(4)
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"main\.gripper"):
        env.step(bad)


def test_no_cameras_renders_nothing(make):
    env = make("reach-v3", cameras=())
    obs, _ = env.reset(seed=1)
    assert not [k for k in obs if k.startswith("observation.images.")]
    assert env.render().shape == (84, 84, 3)  # on demand (videos)


def test_same_seed_same_variation_and_first_obs(make):
    a, b = make("pick-place-v3"), make("pick-place-v3")
    oa, _ = a.reset(seed=7)
    va = a.task_variation
    b.reset(seed=8)  # a different history before the same seed
    ob, _ = b.reset(seed=7)
    assert np.array_equal(va, b.task_variation)
    for k in ("observation.state", "observation.environment_state", "observation.images.corner2"):
        assert np.array_equal(oa[k], ob[k]), k
    oc, _ = a.reset(seed=8)
    assert not np.allclose(va, a.task_variation)
    assert not np.allclose(oa["observation.environment_state"], oc["observation.environment_state"])


def test_global_numpy_rng_does_not_move_the_episode(make):
    env = make("push-v3", cameras=())
    np.random.seed(1)
    env.reset(seed=3)
    v1 = env.task_variation
    np.random.seed(2)
    env.reset(seed=3)
    assert np.array_equal(v1, env.task_variation)


def test_scripted_expert_reaches_from_the_obs_alone(suite, make):
    env = make("reach-v3", cameras=())
    expert = suite.make_expert("reach-v3")  # no env: rebuilds the 39-D obs from the obs dict
    obs, _ = env.reset(seed=0)
    expert.reset()
    for _ in range(500):
        obs, _, term, trunc, info = env.step(expert.select_action(obs))
        if term or trunc:
            break
    assert term and info["success"]
