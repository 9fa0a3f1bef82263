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
