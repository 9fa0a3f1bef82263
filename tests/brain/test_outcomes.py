import pytest

from embodia.brain.outcomes import outcome_command
from embodia.brain.refusal import Refusal


def names(plan):
    return [f"{s.skill}({', '.join(s.args)})" for s in plan.steps]


@pytest.mark.parametrize("chunk, command", [
    ("i want the red cube in the bowl", "put the red cube in the bowl"),
    ("i'd like the blue cube on the plate", "put the blue cube on the plate"),
    ("the red cube should be in the bowl", "put the red cube in the bowl"),
    ("the green cube needs to end up inside the drawer", "put the green cube inside the drawer"),
    ("the bowl should end up with the green cube", "put the green cube in the bowl"),
    ("the plate should have the red cube", "put the red cube on the plate"),
    ("make sure the drawer is open", "open the drawer"),
    ("the drawer should be shut", "close the drawer"),
    ("red cube in the bowl", "put red cube in the bowl"),
])
def test_an_outcome_reads_as_the_command_that_reaches_it(chunk, command):
    assert outcome_command(chunk, known_verb=False, first=True) == command


def test_what_is_not_an_outcome_is_left_alone():
    assert outcome_command("juggle the green cube in the bowl", known_verb=False, first=True) is None
    assert outcome_command("juggle the red cube", known_verb=False, first=True) is None
    assert outcome_command("the blue cube in the bowl", known_verb=False, first=False) is None  # continues a command
    assert outcome_command("put the red cube in the bowl", known_verb=True, first=True) is None
    assert outcome_command("leave the drawer closed", known_verb=True, first=True) == "close the drawer"


def test_outcomes_plan_from_the_current_scene(planner, scenes):
    g = scenes["pick/0"]
    assert names(planner.plan("I want the red cube in the bowl", g)) == ["pick(red_cube)", "place(red_cube, bowl)"]
    assert names(planner.plan("the bowl should end up with the green cube", g)) == [
        "pick(green_cube)", "place(green_cube, bowl)"]
    assert names(planner.plan("make sure the drawer is open", g)) == ["open_drawer()"]
    assert planner.plan("leave the drawer closed", g).steps == []  # already true: nothing to do
    both = names(planner.plan("put the red and the blue cube in the bowl", g))  # the planner orders them
    assert sorted(both) == ["pick(blue_cube)", "pick(red_cube)", "place(blue_cube, bowl)", "place(red_cube, bowl)"]


def test_do_the_same_repeats_the_last_part_with_another_object(planner, scenes):
    g = scenes["pick/0"]
    plan = planner.plan("first grab the blue cube and set it in the bowl; once that's done do the "
                        "same with the green one", g)
    assert names(plan) == ["pick(blue_cube)", "place(blue_cube, bowl)", "pick(green_cube)",
                           "place(green_cube, bowl)"]
    plan = planner.plan("pick up the red cube and put it in the bowl, then do the same with the blue one", g)
    assert names(plan)[2:] == ["pick(blue_cube)", "place(blue_cube, bowl)"]


def test_an_unknown_verb_is_still_refused_as_one(planner, scenes):
    with pytest.raises(Refusal) as e:
        planner.plan("juggle the green cube in the bowl", scenes["pick/0"])
    assert e.value.kind == "unsupported" and "cannot juggle" in e.value.reason  # read by meaning: not a skill
    with pytest.raises(Refusal):
        planner.plan("do the same with the green one", scenes["pick/0"])  # nothing to repeat


def test_the_issue_wordings_plan(planner, scenes):
    g = scenes["pick/0"]
    assert names(planner.plan("pull the drawer open, stash the yellow cube inside and then shut it", g)) == [
        "open_drawer()", "pick(yellow_cube)", "place(yellow_cube, drawer)", "close_drawer()"]
    assert names(planner.plan("pop the green cube in the bowl", g)) == ["pick(green_cube)", "place(green_cube, bowl)"]


def test_a_tower_described_level_by_level_is_one_stacking_chain(planner, scenes):
    from embodia.brain.outcomes import tower_command

    assert tower_command("make a little tower: green block at the bottom, blue block on top of it") == (
        "stack blue block on green block")
    assert tower_command("put the red cube in the bowl") is None
    g = scenes["pick/0"]
    plan = planner.plan("build a tower with the red cube at the bottom, the yellow one in the middle "
                        "and the blue cube on top", g)
    assert names(plan) == ["pick(yellow_cube)", "stack(yellow_cube, red_cube)", "pick(blue_cube)",
                           "stack(blue_cube, yellow_cube)"]
