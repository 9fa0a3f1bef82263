"""`embodia run` from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from embodia.cli import app

runner = CliRunner()


def test_run_json_with_the_experts(tmp_path):
    r = runner.invoke(app, ["run", "put the red cube in the bowl", "--seed", "4", "--policy", "expert",
                            "--json", "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout[r.stdout.index("{"):])
    assert d["success"] and [s["skill"] for s in d["steps"]] == ["pick", "place"]
    assert d["report"] and (tmp_path / "r.html").exists()


def test_run_fails_clearly():
    r = runner.invoke(app, ["run", "put the red cube in the bowl", "--policy", "no/such/checkpoint"])
    assert r.exit_code == 2 and "missing" in r.output
    r = runner.invoke(app, ["run", "put the red cube in the bowl", "--policy", "expert", "--blend", "mean"])
    assert r.exit_code == 2 and "unknown blend" in r.output
    r = runner.invoke(app, ["run", "juggle the plate", "--seed", "4", "--policy", "expert"])
    assert r.exit_code == 1 and "refused" in r.output


def test_fallback_to_the_experts_says_so():
    r = runner.invoke(app, ["run", "pick up the red cube", "--seed", "4", "--policy", "no/such/checkpoint",
                            "--fallback-expert", "--json"])
    assert r.exit_code == 0, r.output
    assert "running the scripted experts instead" in r.output
    d = json.loads(r.stdout[r.stdout.index("{"):])
    assert d["policy"] == "expert" and d["notices"]
