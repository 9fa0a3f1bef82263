import pytest

from embodia.brain import effects as E
from embodia.brain.plan import Plan
from embodia.brain.state import Literal, State, lit


def test_literal_round_trip_and_errors():
    for text in ("in(red_cube, bowl)", "not held(red_cube, main)", "open(drawer)"):
        assert str(Literal.parse(text)) == text
    with pytest.raises(ValueError, match="cannot read literal"):
        Literal.parse("in red_cube bowl")


def test_state_reads_stacks_and_derived_facts(scenes):
    s = State.from_scene_graph(scenes["pick/1"])  # red on green
    assert s.support["red_cube"] == "green_cube"
    assert s.holds(lit("clear", "red_cube")) and not s.holds(lit("clear", "green_cube"))
    assert s.holds(lit("hand_empty", "main")) and s.holds(lit("closed", "drawer"))
    assert s.holds(lit("on", "green_cube", "table"))


def test_effects_apply_and_explain(scenes):
    s = State.from_scene_graph(scenes["pick/1"])
    with pytest.raises(E.StepError, match=r"needs clear\(green_cube\).*red cube is on the green cube"):
        E.apply(s, "pick", ("green_cube",), "main")
    s2 = E.apply(s, "pick", ("red_cube",), "main")
    assert s2.holds(lit("held", "red_cube", "main")) and s2.holds(lit("clear", "green_cube"))
    assert s.support["red_cube"] == "green_cube"  # the original is untouched
    with pytest.raises(E.StepError, match="drawer is closed"):
        E.apply(s2, "place", ("red_cube", "drawer"), "main")
    with pytest.raises(E.StepError, match="works on cubes"):
        E.check_args(s, "pick", ("bowl",))
    s3 = E.apply(s2, "place", ("red_cube", "plate"), "main")
    assert s3.holds(lit("on", "red_cube", "plate")) and not s3.holds(lit("free", "plate"))
    assert all(s3.holds(e) for e in E.effects(s2, "place", ("red_cube", "plate"), "main"))


def test_state_round_trips_through_a_scene_graph(scenes):
    s = State.from_scene_graph(scenes["pick/13"])
    again = State.from_scene_graph(s.to_scene_graph())
    assert again.facts() == s.facts()


def test_plan_json_round_trip_and_validation(planner, scenes):
    plan = planner.plan("put the green cube in the bowl", scenes["pick/1"])
    again = Plan.from_json(plan.to_json())
    assert again.to_dict() == plan.to_dict()
    bad = plan.to_dict()
    bad["steps"][0]["skill"] = "juggle"
    with pytest.raises(ValueError, match="unknown skill 'juggle'"):
        Plan.from_dict(bad)
    with pytest.raises(ValueError, match="not valid JSON"):
        Plan.from_json("{nope")
