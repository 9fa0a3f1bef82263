"""The corpus written apart from the parser, and the scoring it is judged by."""

import pytest

from embodia.brain.refusal import Refusal
from embodia.brain.state import State
from embodia.brain.testset import (
    CORPUS,
    Case,
    build_scenes,
    evaluate_case,
    fingerprint,
    load_testset,
    minimal_steps,
    split_of,
)


@pytest.fixture(scope="module")
def corpus():
    return load_testset(CORPUS)


@pytest.fixture(scope="module")
def corpus_scenes(corpus):
    fingerprints, _ = corpus
    return build_scenes(sorted(fingerprints))


def test_corpus_size_split_and_scenes(corpus, corpus_scenes):
    fingerprints, cases = corpus
    assert len(cases) >= 300 and len(fingerprints) >= 30
    for key, graph in corpus_scenes.items():
        assert fingerprint(State.from_scene_graph(graph)) == fingerprints[key], key
    halves = {h: {c.scene for c in cases if split_of(c) == h} for h in ("dev", "test")}
    assert not halves["dev"] & halves["test"] and min(len(s) for s in halves.values()) >= 15
    assert {c.expect for c in cases} == {"plan", "refuse", "clarify"}


def test_every_feasible_case_is_reachable(corpus, corpus_scenes, planner):
    """A label the domain cannot reach would be scored as the planner's failure: none may exist."""
    _, cases = corpus
    for c in cases:
        if c.expect == "plan":
            state = State.from_scene_graph(corpus_scenes[c.scene])
            assert any(minimal_steps(state, seq, planner.domain) is not None
                       for seq in c.goal_sequences), (c.scene, c.instruction)


class Fixed:
    """A planner with one answer, to show the scoring can fail."""

    name = "fixed"

    def __init__(self, answer):
        self.answer = answer

    def plan(self, instruction, scene):
        if isinstance(self.answer, Refusal):
            raise self.answer
        return self.answer(instruction, scene)


def test_scoring_fails_wrong_answers(scenes, planner):
    g = scenes["pick/0"]
    put = Case(0, "put the red cube in the bowl", "plan", "verbs", sequence=[["in(red_cube, bowl)"]])
    assert evaluate_case(planner, put, g, domain=planner.domain).ok
    wrong = Fixed(lambda i, s: planner.plan("put the red cube on the plate", s))
    assert not evaluate_case(wrong, put, g, domain=planner.domain).ok
    longer = Fixed(lambda i, s: planner.plan("open the drawer, then put the red cube in the bowl", s))
    r = evaluate_case(longer, put, g, domain=planner.domain)
    assert not r.ok and "minimal is 2" in r.reason
    either = Case(0, "put a cube on the plate", "plan", "quantifiers",
                  alternatives=[[["on(blue_cube, plate)"]], [["on(red_cube, plate)"]]])
    assert evaluate_case(wrong, either, g, domain=planner.domain).ok
    ask = Case(0, "put the cube in the bowl", "clarify", "clarify", readings=["red cube", "blue cube"])
    two = Refusal("ambiguous", "the cube", "which?", readings=["blue cube", "red cube"])
    four = Refusal("ambiguous", "the cube", "which?", readings=["blue cube", "green cube", "red cube"])
    assert evaluate_case(Fixed(two), ask, g).ok
    assert not evaluate_case(Fixed(four), ask, g).ok
    assert not evaluate_case(Fixed(Refusal("unknown", "the cube", "no")), ask, g).ok
    gone = Case(0, "put the purple cube in the bowl", "refuse", "impossible", names=["purple"])
    assert evaluate_case(Fixed(Refusal("unknown", "the purple cube", "there is no purple cube")), gone, g).ok
    assert not evaluate_case(Fixed(Refusal("unknown", "the bowl", "no bowl")), gone, g).ok
    assert not evaluate_case(Fixed(two), gone, g).ok  # asking is not refusing
    assert not evaluate_case(planner, gone.__class__(0, "put the red cube in the bowl", "refuse",
                                                     "impossible", names=["red"]), g).ok


def test_case_fields_are_checked():
    with pytest.raises(ValueError, match="expect"):
        Case(0, "x", "maybe", "verbs")
    with pytest.raises(ValueError, match="readings"):
        Case(0, "x", "clarify", "clarify")
    with pytest.raises(ValueError, match="sequence, alternatives or tower"):
        Case(0, "x", "plan", "verbs")
