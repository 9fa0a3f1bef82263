import numpy as np
import pytest

from embodia.body import skills as S
from embodia.body.embodiments import get_embodiment
from embodia.brain.feasibility import Feasibility, IKReach, RadiusReach
from embodia.brain.refusal import Refusal
from embodia.brain.state import State
from embodia.brain.symbolic import SymbolicPlanner
from embodia.brain.testset import evaluate_case, fingerprint, summarize


def names(plan):
    return [f"{s.skill}({', '.join(s.args)})" for s in plan.steps]


def test_test_set_scenes_are_the_ones_the_file_pins(testset, scenes):
    fingerprints, cases = testset
    assert len(cases) >= 60
    for key, graph in scenes.items():
        assert fingerprint(State.from_scene_graph(graph)) == fingerprints[key], key


def test_test_set_targets(testset, scenes, planner):
    _, cases = testset
    s = summarize([evaluate_case(planner, c, scenes[c.scene]) for c in cases])
    assert s["valid_plan_rate"] >= 0.95, s["failures"]
    assert s["clear_refusal_rate"] == 1.0, s["failures"]
    cats = {c.category for c in cases}
    assert {"single", "multi", "paraphrase", "impossible", "ambiguous", "unknown"} <= cats
    assert max(c.steps or 0 for c in cases) >= 6


def test_issue_examples_are_minimal(planner, scenes):
    g = scenes["pick/0"]
    assert len(planner.plan("put every cube in the bowl", g).steps) == 8
    assert names(planner.plan("stack red on green on blue", g)) == [
        "pick(green_cube)", "stack(green_cube, blue_cube)", "pick(red_cube)", "stack(red_cube, green_cube)"]
    p = planner.plan("open the drawer and put the yellow cube inside, then close it", g)
    assert names(p) == ["open_drawer()", "pick(yellow_cube)", "place(yellow_cube, drawer)", "close_drawer()"]
    assert [s.segment for s in p.steps] == [0, 0, 0, 1]
    assert len(planner.plan("clear the table", g).steps) == 8


def test_steps_speak_the_body_language(planner, scenes, make_env):
    p = planner.plan("put the red cube in the bowl, then open the drawer", scenes["pick/0"])
    colours = {n: n.removesuffix("_cube") for n in ("red_cube",)}
    assert p.steps[0].instruction == S.instruction("pick", ("red_cube",), colours, {"red_cube": "cube"})
    assert p.instructions == ["pick up the red cube", "put the red cube in the bowl", "open the drawer"]
    for s in p.steps:
        assert s.instruction in {t.format(obj="red cube", target="bowl", prep="in")
                                 for t in S.get_skill(s.skill).templates}
    env = make_env(skill="pick")
    env.reset(seed=0)
    for skill, args in p.skills:  # the runtime can hand these to TabletopEnv as they are
        S.check_args(env.sim, skill, args)
    assert p.steps[0].preconditions == ["hand_empty(main)", "clear(red_cube)", "not held(red_cube)"]
    assert p.steps[1].effects == ["in(red_cube, bowl)", "not held(red_cube, main)"]


def test_unreachable_objects_are_refused(scenes):
    g = scenes["pick/0"]
    far = State.from_scene_graph(g)
    o = far.objects["bowl"]
    far.objects["bowl"] = type(o)(o.name, o.cls, o.colour, o.size, (1.1, 0.0, 0.0))
    ik = SymbolicPlanner("arm7")
    with pytest.raises(Refusal) as e:
        ik.plan("put the red cube in the bowl", far)
    assert e.value.kind == "infeasible" and "bowl at (1.10" in e.value.reason
    assert "out of reach of the main arm" in e.value.reason
    plan = ik.plan("put the red cube in the plate", g)
    assert any("in reach" in line for line in plan.reasoning)
    state = State.from_scene_graph(g)
    red = np.asarray(state.objects["red_cube"].position)
    d = float(np.linalg.norm(red))
    short = Feasibility(get_embodiment("arm7"), RadiusReach({"main": (0.0, 0.0, 0.0)}, d - 0.01))
    with pytest.raises(Refusal, match="the red cube at .* out of reach of the main arm"):
        short.check(state, [("pick", ("red_cube",))], [0])
    enough = Feasibility(get_embodiment("arm7"), RadiusReach({"main": (0.0, 0.0, 0.0)}, 2.0))
    steps, after, notes = enough.check(state, [("pick", ("red_cube",))], [0])
    assert steps[0].arm == "main" and after.support["red_cube"] == "hand" and "in reach" in notes[0]


def test_ik_reach_uses_the_embodiment():
    reach = IKReach("humanoid_upper")
    assert reach.reach("left", (0.4, 0.3, 0.06)).ok  # the drawer handle side
    assert not reach.reach("left", (0.9, 0.0, 0.05)).ok
    arm7 = IKReach("arm7")
    assert arm7.reach("main", (0.45, -0.1, 0.02)).ok
    assert not arm7.reach("main", (0.1, 0.1, 0.05)).ok  # too close to its own base


def test_humanoid_plans_name_an_arm(scenes):
    p = SymbolicPlanner("humanoid_upper").plan("put the red cube on the plate", scenes["pick/0"])
    arms = {s.arm for s in p.steps}
    assert len(arms) == 1 and arms <= {"left", "right"}


def test_unsolvable_goals_say_why(planner, scenes):
    with pytest.raises(Refusal) as e:
        planner.plan("push the blue cube to the square", scenes["pick/2"])
    assert e.value.kind == "impossible" and "in the orange bowl" in e.value.reason
    with pytest.raises(Refusal, match="one cube at a time"):
        planner.plan("pick up the red cube and the blue cube", scenes["pick/0"])


def test_pddl_export(planner, scenes):
    from embodia.brain.state import Literal

    state = State.from_scene_graph(scenes["pick/0"])
    domain, problem = planner.domain.pddl(state, [Literal.parse("in(red_cube, bowl)")])
    assert "(:action place_bowl" in domain and "(:action unstack" in domain
    assert "red_cube" in problem and "in_bowl" in problem


def test_humanoid_right_arm_cannot_reach_the_closed_drawer():
    reach = IKReach("humanoid_upper")
    assert not reach.reach("right", (0.55, 0.30, 0.055)).ok
    assert reach.reach("left", (0.55, 0.30, 0.055)).ok


def test_an_instruction_past_the_length_cap_is_refused_unread(planner, scenes, monkeypatch):
    """10 kB of valid clauses would plan (2 steps); past the cap it is refused before parsing."""
    from embodia.brain.instruction import MAX_INSTRUCTION_CHARS, InstructionParser

    text = ("put the red cube in the bowl and " * 400)[:10240]
    assert len(text) > MAX_INSTRUCTION_CHARS
    called = []
    monkeypatch.setattr("embodia.brain.instruction.parse_clauses", lambda t: called.append(t))
    with pytest.raises(Refusal, match="10240 characters long; at most 2000") as e:
        planner.plan(text, scenes["pick/0"])
    assert e.value.kind == "unsupported" and not called
    with pytest.raises(ValueError, match="max_chars must be positive"):
        InstructionParser(planner.parser.grounder, max_chars=0)
