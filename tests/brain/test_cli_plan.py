import json

from typer.testing import CliRunner

from embodia.cli import app

runner = CliRunner()


def test_plan_json():
    r = runner.invoke(app, ["plan", "open the drawer and put the yellow cube inside, then close it",
                            "--seed", "0", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert "yellow cube" in out["scene"]["summary"]
    assert [s["skill"] for s in out["plan"]["steps"]] == ["open_drawer", "pick", "place", "close_drawer"]
    assert out["plan"]["steps"][2]["instruction"] == "put the yellow cube into the drawer"


def test_plan_refusal_exit_code_and_text():
    r = runner.invoke(app, ["plan", "put the red cube in the fridge", "--seed", "0"])
    assert r.exit_code == 1 and "refused" in r.output and "fridge" in r.output


def test_plan_llm_needs_endpoint():
    r = runner.invoke(app, ["plan", "pick up the red cube", "--planner", "llm"])
    assert r.exit_code == 2 and "--base-url" in r.output


def test_an_ambiguous_phrase_lists_its_readings_and_ask_chooses_one():
    r = runner.invoke(app, ["plan", "put the cube in the bowl", "--seed", "0", "--json"])
    assert r.exit_code == 1
    ref = json.loads(r.stdout[r.stdout.index("{"):])["refusal"]
    assert ref["kind"] == "ambiguous" and ref["phrase"] == "the cube"
    assert ref["readings"] == ["blue cube", "green cube", "red cube", "yellow cube"]
    r = runner.invoke(app, ["plan", "put the cube in the bowl", "--seed", "0", "--json", "--ask"],
                      input="9\n2\n")  # out of range, asked again
    assert r.exit_code == 0, r.output
    steps = json.loads(r.stdout[r.stdout.index('{\n'):])["plan"]["steps"]
    assert [(s["skill"], s["args"]) for s in steps] == [("pick", ["green_cube"]), ("place", ["green_cube", "bowl"])]
    r = runner.invoke(app, ["plan", "put the cube in the bowl", "--seed", "0", "--ask"], input="")
    assert r.exit_code == 1 and "refused" in r.output  # no answer: the refusal stands


def test_a_clarified_instruction_names_the_reading():
    import pytest

    from embodia.brain.refusal import Refusal

    r = Refusal("ambiguous", "the cube", "it could be ...", readings=["blue cube", "red cube"])
    assert r.needs_clarification
    assert r.clarified("Put the cube  in the bowl", "red cube") == "put the red cube in the bowl"
    with pytest.raises(ValueError, match="not one of the readings"):
        r.clarified("put the cube in the bowl", "green cube")
    assert not Refusal("unknown", "the fridge", "no fridge").needs_clarification
