import gymnasium as gym
import numpy as np
import pytest

from embodia.body import ENV_ID
from embodia.body.skills import SKILLS


def test_observation_contract_and_rendering(make_env):
    env = make_env(skill="pick", cameras=None, image_size=(64, 80))
    obs, info = env.reset(seed=3)
    assert obs["observation.images.front"].shape == (64, 80, 3)
    assert obs["observation.images.wrist"].dtype == np.uint8
    assert obs["observation.images.front"].std() > 5  # a real picture, not a blank frame
    assert obs["observation.state"].dtype == np.float32
    assert obs["observation.state"].shape == (env.embodiment.state_dim,)
    assert obs["embodiment"] == "arm7"
    assert isinstance(obs["task"], str) and obs["task"]
    assert env.observation_space.contains(obs)
    assert env.render().shape == (256, 256, 3)
    assert info["skill"] == "pick"


def test_gymnasium_registration():
    env = gym.make(ENV_ID, skill="open_drawer", cameras=())
    try:
        obs, info = env.reset(seed=0)
        obs, r, term, trunc, info = env.step(env.action_space.sample() * 0)
        assert "observation.state" in obs and info["skill"] == "open_drawer"
    finally:
        env.close()


def test_same_seed_same_episode(make_env):
    runs = []
    for _ in range(2):
        env = make_env(skill="push", cameras=("front",))
        obs, info = env.reset(seed=11)
        rng = np.random.default_rng(0)
        for _ in range(5):
            obs, *_ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
        runs.append((info["args"], obs["task"], obs["observation.state"], obs["observation.images.front"]))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    np.testing.assert_array_equal(runs[0][3], runs[1][3])


def test_different_seeds_differ(make_env):
    env = make_env(skill="pick")
    a = env.reset(seed=1)[0]["observation.state"]
    b = env.reset(seed=2)[0]["observation.state"]
    assert not np.allclose(a, b)


@pytest.mark.parametrize("bad", [np.zeros(6), np.full(7, np.nan), np.array([0, 0, np.inf, 0, 0, 0, 0])])
def test_bad_action_raises_and_changes_nothing(make_env, bad):
    env = make_env(skill="pick")
    env.reset(seed=0)
    before = env.sim.snapshot()
    with pytest.raises(ValueError):
        env.step(bad)
    after = env.sim.snapshot()
    np.testing.assert_array_equal(before.qpos, after.qpos)
    np.testing.assert_array_equal(before.ctrl, after.ctrl)
    assert before.time == after.time


def test_actions_outside_limits_are_clipped(make_env):
    env = make_env(skill="pick", action_space="joint_pos")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.full(env.action_space.shape, 100.0))
    assert np.all(info["action"] <= env.action_space.high)
    m = env.sim.model
    assert np.all(env.sim.data.ctrl <= m.actuator_ctrlrange[:, 1] + 1e-9)
    env2 = make_env(skill="pick")
    env2.reset(seed=0)
    p0 = env2.sim.tcp_pose("main")[0]
    env2.step(np.array([1.0, 0, 0, 0, 0, 0, 0]))
    env2.sim.settle(0.5)
    moved = np.linalg.norm(env2.sim.tcp_pose("main")[0] - p0)
    assert moved <= env2.embodiment.max_ee_translation + 0.01


def test_unknown_names_are_reported():
    from embodia.body.env import TabletopEnv

    with pytest.raises(ValueError, match="unknown skill 'juggle'"):
        TabletopEnv(skill="juggle", cameras=())
    with pytest.raises(ValueError, match="unknown embodiment"):
        TabletopEnv(embodiment="r2d2", cameras=())
    with pytest.raises(ValueError, match="unknown camera"):
        TabletopEnv(cameras=("belly",))
    with pytest.raises(ValueError, match="unknown task"):
        TabletopEnv(task="make_tea", cameras=())


def test_unknown_object_or_colour_is_reported(make_env):
    env = make_env(skill="pick")
    with pytest.raises(ValueError, match="unknown cube colour"):
        env.reset(seed=0, options={"args": ("purple_cube",)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown object 'teapot'"):
        env.reset(options={"continue": True, "skill": "pick", "args": ("teapot",)})


def test_requested_args_are_honoured(make_env):
    env = make_env(skill="place")
    _, info = env.reset(seed=5, options={"args": ("yellow_cube", "plate")})
    assert info["args"] == ("yellow_cube", "plate")
    assert "yellow" in info["instruction"] and ("plate" in info["instruction"] or "dish" in info["instruction"])


def test_heldout_paraphrases_differ_from_training_ones(make_env):
    for name, spec in SKILLS.items():
        assert not set(spec.templates) & set(spec.heldout), name
    env = make_env(skill="open_drawer", instruction_split="heldout")
    _, info = env.reset(seed=0)
    assert info["instruction"] in [t for t in SKILLS["open_drawer"].heldout]


def test_step_before_reset_is_an_error(make_env):
    env = make_env(skill="pick")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(7))


def test_environment_state_names_every_object_and_follows_it():
    from embodia.body.env import TabletopEnv

    env = TabletopEnv(skill="pick", cameras=())
    try:
        obs, _ = env.reset(seed=2)
        names = env.sim.environment_state_names()
        es = obs["observation.environment_state"]
        assert es.shape == (len(names),) and env.observation_space.contains(obs)
        cube = env.plan[0][1][0]
        i = names.index(f"{cube}.x")
        np.testing.assert_allclose(es[i:i + 3], env.sim.object_pose(cube)[0], atol=1e-6)
        env.sim.set_object_pose(cube, [0.45, 0.0, 0.3])
        obs, *_ = env.step(np.zeros(env.action_space.shape))
        assert obs["observation.environment_state"][i + 2] < 0.3  # it fell: the vector follows physics
        assert abs(obs["observation.environment_state"][i] - 0.45) < 0.05
    finally:
        env.close()


def test_camera_projection_lands_on_each_cube():
    """The fixed front camera's matrix maps every cube's centre onto a pixel of its colour."""
    from embodia.body.env import TabletopEnv

    env = TabletopEnv(skill="pick", cameras=("front",), image_size=96)
    try:
        obs, _ = env.reset(seed=3)
        sim = env.sim
        assert sim.camera_is_fixed("front") and not sim.camera_is_fixed("wrist")
        P = sim.camera_projection("front", 96, 96)
        img = obs["observation.images.front"]
        channel = {"red": 0, "green": 1, "blue": 2}
        seen = 0
        for colour, c in channel.items():
            pos, _ = sim.object_pose(f"{colour}_cube")
            if pos[2] < -0.1:
                continue  # parked under the table in this scene
            u, v, w = P @ np.r_[pos, 1.0]
            px = img[int(v / w), int(u / w)].astype(int)
            assert px[c] == px.max() and px[c] - np.sort(px)[1] > 60, (colour, px)
            seen += 1
        assert seen >= 1
    finally:
        env.close()


def test_gymnasium_make_works_after_a_plain_import_embodia():
    """The README's `gymnasium.make("embodia/Tabletop-v0")` after `import embodia` alone (a fresh
    interpreter: this test session has imported embodia.body already)."""
    import subprocess
    import sys

    code = ("import gymnasium, embodia\n"
            "env = gymnasium.make('embodia/Tabletop-v0', embodiment='arm7', skill='pick', cameras=())\n"
            "obs, _ = env.reset(seed=0)\n"
            "assert obs['observation.state'].shape == (env.unwrapped.embodiment.state_dim,)\n"
            "env.close()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_seed_starts_the_same_whatever_ran_before():
    """reset(seed) is history-free: an env that ran other episodes gives a fresh env's start
    and the same first steps (so seeds split over eval workers score as in one process)."""
    import numpy as np

    from embodia.body.env import TabletopEnv

    used, fresh = TabletopEnv(skill="place", cameras=()), TabletopEnv(skill="place", cameras=())
    used.reset(seed=5)
    for _ in range(30):
        used.step(used.action_space.sample())
    a, _ = used.reset(seed=3)
    b, _ = fresh.reset(seed=3)
    assert np.array_equal(a["observation.state"], b["observation.state"])
    assert np.array_equal(used.sim.data.qpos, fresh.sim.data.qpos)
    act = np.zeros(used.action_space.shape)
    for _ in range(20):
        a, *_ = used.step(act)
        b, *_ = fresh.step(act)
    assert np.array_equal(a["observation.state"], b["observation.state"])
