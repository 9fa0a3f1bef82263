import pytest

from embodia.brain.refusal import Refusal
from embodia.brain.state import State


@pytest.fixture(scope="module")
def grounder(planner):
    return planner.parser.grounder  # shares the loaded MiniLM


def ground(grounder, text, state):
    return grounder.resolve(grounder.parse(text), state)


def test_colour_and_class_synonyms(grounder, scenes):
    s = State.from_scene_graph(scenes["pick/0"])
    assert ground(grounder, "the crimson block", s) == ["red_cube"]
    assert ground(grounder, "the container", s) == ["bowl"]
    assert ground(grounder, "the purple bowl", s) == ["bowl"]
    assert ground(grounder, "the dish", s) == ["plate"]
    assert ground(grounder, "every cube", s) == ["blue_cube", "green_cube", "red_cube", "yellow_cube"]


def test_relations_pick_out_one_object(grounder, scenes):
    s = State.from_scene_graph(scenes["pick/1"])  # red on green
    assert ground(grounder, "the cube on the green cube", s) == ["red_cube"]
    assert ground(grounder, "the cube under the red cube", s) == ["green_cube"]


def test_minilm_maps_unknown_nouns_only_when_sure(grounder, scenes):
    s = State.from_scene_graph(scenes["pick/21"])
    assert ground(grounder, "the red cuboid", s) == ["red_cube"]
    assert ground(grounder, "the salad bowl", s) == ["bowl"]
    assert any("MiniLM" in n for n in grounder.parse("the salad bowl").notes)
    with pytest.raises(Refusal) as e:
        ground(grounder, "the fridge", s)
    assert e.value.kind == "unknown" and "fridge" in str(e.value)


def test_refusals_say_what_failed_and_what_is_there(grounder, scenes):
    s = State.from_scene_graph(scenes["pick/0"])
    with pytest.raises(Refusal) as e:
        ground(grounder, "the cube", s)
    assert e.value.kind == "ambiguous" and "the red cube" in e.value.reason
    with pytest.raises(Refusal) as e:
        ground(grounder, "the purple cube", s)
    assert e.value.kind == "unknown" and e.value.phrase == "the purple cube"
    assert "purple bowl" in e.value.present and "red cube" in e.value.present
    with pytest.raises(Refusal, match="two colours"):
        grounder.parse("the red blue cube")


def test_selectors_use_positions(grounder, scenes):
    s = State.from_scene_graph(scenes["pick/0"])
    cubes = s.cubes
    left = max(cubes, key=lambda c: s.objects[c].position[1])
    assert ground(grounder, "the leftmost cube", s) == [left]
    near = min(cubes, key=lambda c: sum(x * x for x in s.objects[c].position[:2]))
    assert ground(grounder, "the nearest block", s) == [near]


def test_exceptions_take_objects_out_of_a_group(grounder, scenes):
    s = State.from_scene_graph(scenes["pick/0"])
    assert ground(grounder, "every cube except the red one", s) == ["blue_cube", "green_cube", "yellow_cube"]
    assert ground(grounder, "all the cubes but the blue and the green one", s) == ["red_cube", "yellow_cube"]
    with pytest.raises(Refusal, match="there is no purple cube"):
        ground(grounder, "every cube except the purple one", s)  # an exception that names nothing
    with pytest.raises(Refusal, match="nothing is left"):
        ground(grounder, "every cube except the red, the blue, the green and the yellow one", s)
    with pytest.raises(Refusal) as e:
        ground(grounder, "the cube other than the red one", s)  # three are left: say which
    assert e.value.kind == "ambiguous"


def test_every_cube_except_one_plans_the_rest(planner, scenes):
    plan = planner.plan("put every cube except the red one in the bowl", scenes["pick/0"])
    moved = {s.args[0] for s in plan.steps if s.skill == "place"}
    assert moved == {"blue_cube", "green_cube", "yellow_cube"} and len(plan.steps) == 6


def test_ordinals_count_from_a_side(grounder, scenes):
    s = State.from_scene_graph(scenes["pick/0"])
    from_left = sorted((n for n in s.cubes), key=lambda n: -s.objects[n].position[1])
    assert ground(grounder, "the second cube from the left", s) == [from_left[1]]
    assert ground(grounder, "the third one from the left", s) == [from_left[2]]  # "one": a cube
    assert ground(grounder, "the first cube from the right", s) == [from_left[-1]]
    with pytest.raises(Refusal, match="there are only 4 cubes"):
        ground(grounder, "the fifth cube from the left", s)


def test_near_picks_the_closest_to_another_object(grounder, scenes):
    import numpy as np

    s = State.from_scene_graph(scenes["pick/0"])
    for ref in ("bowl", "plate", "drawer"):
        at = np.asarray(s.objects[ref].position[:2])
        nearest = min(s.cubes, key=lambda n: float(np.linalg.norm(np.asarray(s.objects[n].position[:2]) - at)))
        for how in ("next to", "closest to", "nearest", "beside"):
            assert ground(grounder, f"the cube {how} the {ref}", s) == [nearest], (how, ref)
    with pytest.raises(Refusal) as e:
        ground(grounder, "the cube next to the cube", s)  # next to which one?
    assert e.value.kind == "ambiguous"


def test_next_to_is_not_a_sequencing_word(planner, scenes):
    plan = planner.plan("pick up the cube next to the bowl", scenes["pick/0"])
    assert [s.skill for s in plan.steps] == ["pick"]
