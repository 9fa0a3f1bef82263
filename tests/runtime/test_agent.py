"""EmbodiedAgent end to end on the lockstep clock: plan, execute, monitor, retry, report."""

from __future__ import annotations

import re

import numpy as np
import pytest

from embodia.brain.planner import make_planner
from embodia.runtime.agent import EmbodiedAgent, make_body, run_instruction
from embodia.runtime.policies import ExpertChunkPolicy

INSTRUCTION = "open the drawer and put the red cube inside"


def test_three_step_instruction_with_video_and_report(tmp_path):
    rep = run_instruction(INSTRUCTION, 4, make_planner("symbolic", "arm7"), ExpertChunkPolicy("arm7", 10.0),
                          video=tmp_path / "run.mp4", report=tmp_path / "report.html")
    d = rep.to_dict()
    assert d["success"] and d["message"] == "all goals hold"
    assert [s["skill"] for s in d["plan"]["steps"]] == ["open_drawer", "pick", "place"]
    assert [(s["skill"], s["reason"], s["next"]) for s in d["steps"]] == [
        ("open_drawer", "success", "next"), ("pick", "success", "next"), ("place", "success", "next")]
    assert "in(red_cube, drawer)" in d["scene_after"]
    assert set(d["timing"]) == {"reasoning", "perception", "control", "hal"}
    assert rep.trajectory["q"].shape[1] == 7 and len(rep.trajectory["t"]) > 100
    html = (tmp_path / "report.html").read_text()
    assert len(re.findall(r"data:image/png;base64,", html)) == 2  # joint + timing plots
    assert "data:video/mp4;base64," in html and "open_drawer()" in html
    assert (tmp_path / "run.mp4").stat().st_size > 1000


def test_refusal_is_reported_and_nothing_moves():
    body = make_body("arm7", 4)
    q0 = body.read_joints().q["main"].copy()
    rep, frames = EmbodiedAgent(make_planner("symbolic", "arm7"), ExpertChunkPolicy("arm7", 10.0),
                                body).run("put the purple cube in the bowl", 4)
    body.env.close()
    assert not rep.success and rep.refusal["kind"] == "unknown" and not rep.steps and not frames
    np.testing.assert_array_equal(body.read_joints().q["main"], q0)


class FlakyExpert(ExpertChunkPolicy):
    """Does nothing on its first step (a stalled policy), then behaves."""

    def __init__(self) -> None:
        super().__init__("arm7", 10.0)
        self.steps = 0

    def start_step(self, cmd, body) -> None:
        self.steps += 1
        super().start_step(cmd, body)

    def infer(self, obs, prefix=None, frozen=0):
        a = super().infer(obs)
        return np.zeros_like(a) if self.steps == 1 else a


def test_the_runtime_is_told_which_attempt_a_step_is(monkeypatch):
    from embodia.runtime.lockstep import LockstepRuntime

    attempts = []
    run_step = LockstepRuntime.run_step

    def spy(self, skill, args, instruction, arm, timeout_s, attempt=1):
        attempts.append((skill, attempt))
        return run_step(self, skill, args, instruction, arm, timeout_s, attempt)

    monkeypatch.setattr(LockstepRuntime, "run_step", spy)
    body = make_body("arm7", 4)
    rep, _ = EmbodiedAgent(make_planner("symbolic", "arm7"), FlakyExpert(), body).run(
        "put the red cube in the bowl", 4)
    body.env.close()
    assert rep.success and attempts == [("pick", 1), ("pick", 2), ("place", 1)]


def test_a_retried_step_first_lifts_the_hand_clear():
    """Attempt 2 of a step: the learned policy's first chunk is a straight lift to the
    clearance height with the gripper open (pick), and the hand really rises; attempt 1
    runs the network from where the hand is."""
    from embodia.runtime.lockstep import LockstepRuntime
    from embodia.runtime.policies import LearnedChunkPolicy, retreat_chunk
    from tests.runtime.conftest import tiny_policy

    policy = LearnedChunkPolicy(tiny_policy(), retreat_clearance=0.4)
    chunks = []
    infer = policy.infer

    def spy(obs, prefix=None, frozen=0):
        chunks.append(infer(obs, prefix, frozen))
        return chunks[-1]

    policy.infer = spy
    body = make_body("arm7", 4, cameras=("front", "wrist"), image_size=32)
    cube = body.env.plan[0][1]
    rt = LockstepRuntime(body, policy)
    rt.start(4)
    rt.run_step("pick", cube, "pick up the red cube", "main", 0.3)
    assert np.abs(chunks[0][:, 2]).max() > 0 and chunks[0][:, 0].any()  # the network's own moves
    chunks.clear()
    z0 = body.sim.tcp_pose("main")[0][2]
    rt.run_step("pick", cube, "pick up the red cube", "main", 0.3, attempt=2)
    z1 = body.sim.tcp_pose("main")[0][2]
    body.env.close()
    first = chunks[0]
    assert not first[:, [0, 1, 3, 4, 5]].any() and (first[:, 6] == 0.0).all()
    assert first[:, 2].sum() == pytest.approx(min(0.4 - z0, 0.04 * len(first)), abs=0.01)
    assert first[:, 2].max() <= 0.04 + 1e-6
    assert z1 - z0 > 0.06  # three 4 cm slots ran (interpolation lags a little)
    # place and stack keep the object: the gripper stays closed
    state = np.zeros(len(body.embodiment.state_names), np.float32)
    assert (retreat_chunk("arm7", "main", "place", state, 8, 0.15)[:, 6] == 1.0).all()


def test_the_monitor_retries_a_failed_step_and_the_episode_is_saved():
    body = make_body("arm7", 4)
    rep, _ = EmbodiedAgent(make_planner("symbolic", "arm7"), FlakyExpert(), body).run(
        "put the red cube in the bowl", 4)
    body.env.close()
    d = rep.to_dict()
    assert d["success"] and d["retries"] == 1
    assert [(s["skill"], s["reason"], s["next"]) for s in d["steps"]] == [
        ("pick", "timeout", "retry"), ("pick", "success", "next"), ("place", "success", "next")]
    assert "expected held(red_cube, main)" in d["steps"][0]["why"]


def test_a_learned_policy_drives_the_agent():
    """A tiny random flow policy (no sentence model): the run completes and is reported as a
    failure with the monitor's reason, chunks flowing at the policy's pace."""
    from embodia.runtime.policies import LearnedChunkPolicy
    from tests.runtime.conftest import tiny_policy

    policy = LearnedChunkPolicy(tiny_policy())
    body = make_body("arm7", 4, cameras=("front", "wrist"), image_size=32)
    rep, _ = EmbodiedAgent(make_planner("symbolic", "arm7"), policy, body, max_retries=0,
                           max_replans=0).run("pick up the red cube", 4)
    body.env.close()
    d = rep.to_dict()
    assert not d["success"] and d["policy"] == "flow-vla"
    (step,) = d["steps"]
    assert step["reason"] == "timeout" and step["next"] == "give_up"
    assert step["chunks"] == 80 // 3 + 1  # 8 s at 10 Hz, a chunk every 3 actions (receding horizon)


@pytest.mark.slow
def test_embodia_run_with_a_checkpoint(tmp_path):
    """The whole CLI path with a saved (random) checkpoint, sentence model included."""
    import json

    from typer.testing import CliRunner

    from embodia.cerebellum.checkpoint import save_checkpoint
    from embodia.cli import app
    from tests.runtime.conftest import tiny_policy

    save_checkpoint(tiny_policy(), tmp_path / "ck")
    r = CliRunner().invoke(app, ["run", "pick up the red cube", "--seed", "4", "--policy", str(tmp_path / "ck"),
                                 "--json", "--video", str(tmp_path / "v.mp4")])
    assert r.exit_code == 1, r.output  # a random policy fails; the run itself completes
    d = json.loads(r.stdout[r.stdout.index("{"):])
    assert d["policy"] == "flow-vla" and d["steps"] and (tmp_path / "v.mp4").stat().st_size > 1000


def test_two_armed_humanoid():
    """Two arms through one control layer: the plan's arm acts, the other holds."""
    rep = run_instruction("put the red cube in the bowl", 4, make_planner("symbolic", "humanoid_upper"),
                          ExpertChunkPolicy("humanoid_upper", 10.0), embodiment="humanoid_upper")
    d = rep.to_dict()
    assert d["success"] and {s["arm"] for s in d["plan"]["steps"]} == {"left"}
    assert rep.trajectory["q"].shape[1] == 14
