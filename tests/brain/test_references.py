"""Reference across clauses: ellipsis, group pronouns, "the other one", counts."""

import pytest

from embodia.brain.refusal import Refusal


def names(plan):
    return [f"{s.skill}({', '.join(s.args)})" for s in plan.steps]


def test_an_elided_destination_comes_from_the_clause_before(planner, scenes):
    plan = planner.plan("put the red cube in the bowl and then the blue one too", scenes["pick/0"])
    assert names(plan) == ["pick(red_cube)", "place(red_cube, bowl)", "pick(blue_cube)", "place(blue_cube, bowl)"]


@pytest.mark.parametrize("text", ["pick up the red cube and the blue cube and put both in the bowl",
                                  "grab the red and the blue cube and put them in the bowl"])
def test_picking_several_then_putting_them_folds_into_one_put(planner, scenes, text):
    plan = planner.plan(text, scenes["pick/0"])
    assert sorted(names(plan)) == ["pick(blue_cube)", "pick(red_cube)", "place(blue_cube, bowl)",
                                   "place(red_cube, bowl)"]


def test_the_other_one_is_the_one_not_named_yet(planner, scenes):
    g = scenes["pick/0"]
    plan = planner.plan("put the red cube and the blue cube in the bowl, and the green one on the plate, "
                        "then put the other one on top of the green one", g)
    assert names(plan)[-2:] == ["pick(yellow_cube)", "stack(yellow_cube, green_cube)"]
    with pytest.raises(Refusal) as e:  # three cubes are left: ask which
        planner.plan("put the red cube in the bowl, then the other one on the plate", g)
    assert e.value.kind == "ambiguous" and e.value.readings == ["blue cube", "green cube", "yellow cube"]


def test_counts_take_that_many(planner, scenes):
    g = scenes["pick/0"]
    plan = planner.plan("put two of the cubes in the bowl", g)
    assert len({s.args[0] for s in plan.steps if s.skill == "place"}) == 2 and len(plan.steps) == 4
    with pytest.raises(Refusal, match="asked for 5, there are only 4 cubes"):
        planner.plan("put five cubes in the bowl", g)
