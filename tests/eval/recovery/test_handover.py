import numpy as np
import pytest

from embodia.body.env import TabletopEnv
from embodia.body.experts import Motion
from embodia.body.scene import CUBE_HALF
from embodia.body.skills import get_skill
from embodia.data.recording import CollectConfig
from embodia.eval.recovery.collect import check_recovery, collect_recovery
from embodia.eval.recovery.handover import (
    GRASP_SETTLE_STEPS,
    STACK_ALIGN_TOL,
    handover_step,
    run_policy_until_handover,
    run_policy_until_step,
    stack_offset,
)
from embodia.eval.rollout import ExpertAgent


class ClosesAtOnce:
    """A 'policy' that shuts the gripper where the hand is: in a pick a miss, far from any
    cube; in a stack, holding on to the cube and never letting go."""

    def reset(self, env, seed):
        pass

    def act(self, obs, env):
        a = np.zeros(env.action_space.shape)
        a[-1] = 1.0
        return a


class Hovers:
    def reset(self, env, seed):
        pass

    def act(self, obs, env):
        return np.zeros(env.action_space.shape)


class ExpertAsPolicy:
    def __init__(self):
        self.expert = ExpertAgent()
        self.resets = 0

    def reset(self, env, seed):
        self.resets += 1
        self.expert.reset(env, seed)

    def act(self, obs, env):
        return self.expert.act(obs, env)


@pytest.fixture
def env():
    e = TabletopEnv(skill="pick", cameras=("front",), image_size=32, max_steps=200)
    yield e
    e.close()


def test_a_missed_grasp_hands_over_after_the_fingers_settle(env):
    obs, _ = env.reset(seed=3)
    start_tcp = env.sim.tcp_pose(env.arm)[0].copy()
    obs, h = run_policy_until_handover(env, ClosesAtOnce(), obs, seed=3)
    assert h.handed_over and h.reason == "missed_grasp" and h.policy_steps == GRASP_SETTLE_STEPS
    assert env.sim.gripper_width(env.arm) < 0.01  # the expert starts from the closed, empty hand
    assert np.allclose(obs["observation.state"][8:11], env.sim.tcp_pose(env.arm)[0], atol=1e-5)
    assert np.linalg.norm(env.sim.tcp_pose(env.arm)[0] - start_tcp) < 0.05


def test_a_policy_that_never_closes_hands_over_at_its_budget(env):
    obs, _ = env.reset(seed=4)
    _, h = run_policy_until_handover(env, Hovers(), obs, seed=4, budget=7)
    assert h.handed_over and h.reason == "budget" and h.policy_steps == 7


def test_a_pick_the_policy_completes_is_not_handed_over(env):
    obs, _ = env.reset(seed=5)
    _, h = run_policy_until_handover(env, ExpertAsPolicy(), obs, seed=5)
    assert not h.handed_over and h.reason == "policy_succeeded" and env.step_index == 1


class StacksBeside:
    """Carries the held cube to 2 cm beside its base, low, and lets go there."""

    def reset(self, env, seed):
        m = Motion(env.sim, env.arm, np.random.default_rng(seed), noise=0.0)
        obj, base = env.plan[0][1]
        off = m.obj(obj) - m.tcp()[0]
        z = m.obj(base)[2] + 2 * CUBE_HALF + 0.012

        def moves():
            yield from m.transport(lambda: m.obj(base)[:2] + np.r_[0.02, 0.0] - off[:2], z - off[2], m.yaw(), 1.0,
                                   tol=0.004)
            while True:
                yield from m.hold(0.0, 1)

        self.moves = moves()

    def act(self, obs, env):
        return next(self.moves)


@pytest.fixture
def stack_env():
    e = TabletopEnv(skill="stack", cameras=(), max_steps=200)
    yield e
    e.close()


def test_a_stack_released_beside_the_base_is_handed_over_with_the_cube_in_hand(stack_env):
    from embodia.body import predicates as P

    env = stack_env
    obs, _ = env.reset(seed=7)
    obj, base = env.plan[0][1]
    obs, h = run_policy_until_handover(env, StacksBeside(), obs, seed=7)
    assert h.handed_over and h.reason == "premature_release"
    assert P.holder(env.sim, obj) == env.arm and stack_offset(env.sim, obj, base) > STACK_ALIGN_TOL
    low = env.sim.tcp_pose(env.arm)[0][2]
    # the expert lines up from there without the climb to its transit height, and stacks
    expert, highest = ExpertAgent(), low
    expert.reset(env, 7)
    while True:
        obs, _, term, trunc, info = env.step(expert.act(obs, env))
        highest = max(highest, env.sim.tcp_pose(env.arm)[0][2])
        if term or trunc:
            break
    assert info["success"] and highest < low + 0.04 < 0.16


def test_a_stack_the_policy_holds_on_to_or_completes_is_handled_by_its_rule(stack_env):
    obs, _ = stack_env.reset(seed=8)
    _, h = run_policy_until_handover(stack_env, ClosesAtOnce(), obs, seed=8, budget=5)
    assert h.handed_over and h.reason == "budget" and h.policy_steps == 5
    obs, _ = stack_env.reset(seed=9)
    _, h = run_policy_until_handover(stack_env, ExpertAsPolicy(), obs, seed=9)
    assert not h.handed_over and h.reason == "policy_succeeded" and stack_env.step_index == 1


def test_recover_from_refuses_what_it_cannot_do(tmp_path):
    ckpt = "checkpoints/arm7_flow_d192_chain"
    with pytest.raises(ValueError, match="not a checkpoint"):
        check_recovery(CollectConfig(out=tmp_path / "a", skill="pick"), str(tmp_path))
    with pytest.raises(ValueError, match="built for"):
        check_recovery(CollectConfig(out=tmp_path / "b", skill="place"), ckpt)
    with pytest.raises(ValueError, match="drop perturb/slip"):
        check_recovery(CollectConfig(out=tmp_path / "c", skill="pick", slip=0.5), ckpt)
    with pytest.raises(ValueError, match=r"cameras=\(\) \(none\)"):
        check_recovery(CollectConfig(out=tmp_path / "d", cameras=()), ckpt)
    check_recovery(CollectConfig(out=tmp_path / "e", task="drawer_store"), ckpt)
    assert not (tmp_path / "a").exists()


def test_the_expert_takes_over_at_the_first_place_or_stack_after_the_first_step():
    assert handover_step([("pick", ("a",)), ("place", ("a", "bowl"))]) == 1
    assert handover_step([("open_drawer", ()), ("pick", ("a",)), ("place", ("a", "drawer")),
                          ("close_drawer", ())]) == 2
    assert handover_step([("pick", ("a",)), ("stack", ("a", "b")), ("push", ("c",))]) == 1
    with pytest.raises(ValueError, match="needs a place or stack step"):
        handover_step([("place", ("a", "bowl")), ("push", ("b",))])


@pytest.fixture
def task_env():
    """A factory of small task envs, all closed after the test."""
    made = []

    def make(task):
        made.append(TabletopEnv(task=task, cameras=("front",), image_size=32))
        return made[-1]

    yield make
    for e in made:
        e.close()


def test_the_policy_runs_the_steps_before_the_handover_and_is_reset_between_them(task_env):
    env = task_env("drawer_store")
    obs, _ = env.reset(seed=11)
    policy = ExpertAsPolicy()
    obs, h = run_policy_until_step(env, policy, obs, seed=11, step=2)
    assert h.handed_over and h.reason == "reached_step" and env.step_index == 2
    assert policy.resets == 2  # at the start, and when the pick began
    cube = env.plan[2][1][0]
    assert env.sim.object_pose(cube)[0][2] > 0.03  # the policy's grasp: the cube is lifted
    assert obs["task"] == env.instructions[2]  # the expert starts under the place's words


def test_a_policy_that_fails_an_earlier_step_is_not_handed_over(task_env):
    env = task_env("put_in_bowl")
    obs, _ = env.reset(seed=12)
    _, h = run_policy_until_step(env, Hovers(), obs, seed=12, step=1)
    assert not h.handed_over and h.reason == "budget"
    assert h.policy_steps == get_skill("pick").max_steps and env.step_index == 0


def _collect_from_policy(out, **kw):
    """Two episodes recorded after the shipped checkpoint acted; (report, reader)."""
    from embodia.data.reader import DatasetReader

    report = collect_recovery(CollectConfig(out=out, episodes=2, batch=2, **kw), "checkpoints/arm7_flow_d192_chain")
    assert report.recorded == 2
    return report, DatasetReader(out)


@pytest.mark.slow
def test_collect_records_only_the_experts_recovery_from_the_policys_state(tmp_path):
    report, r = _collect_from_policy(tmp_path, skill="pick", seed_start=80000)
    env = TabletopEnv(skill="pick", cameras=())
    try:
        for i, seed in enumerate(report.seeds):
            env.reset(seed=seed)
            first = r.columns["observation.state"][r.ep_start[i]]
            # the episode starts where the policy left the hand, not at the reset pose
            assert np.linalg.norm(first[8:11] - env.sim.tcp_pose(env.arm)[0]) > 0.02
    finally:
        env.close()


@pytest.mark.slow
def test_a_task_handover_records_only_the_experts_place_from_the_policys_grasp(tmp_path):
    import pandas as pd

    _, r = _collect_from_policy(tmp_path, task="put_in_bowl", seed_start=90000)
    assert len(r.ep_start) == 2  # one episode per seed: the place, not the policy's pick
    tasks = pd.read_parquet(tmp_path / "meta" / "tasks.parquet").index
    assert all("bowl" in t for t in tasks)
    for i in range(2):
        first = r.columns["observation.state"][r.ep_start[i]]
        # the hand the policy's pick just lifted, below put_in_hand's 0.13-0.26 m; fingers on a cube
        assert first[10] < 0.13 and 0.02 < first[7] < 0.06
