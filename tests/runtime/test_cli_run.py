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


def test_the_default_agent_checkpoint_ships_and_loads():
    """`embodia run` without --policy (and `make demo`) must find a loadable checkpoint in the repo."""
    from pathlib import Path

    from embodia.cerebellum.checkpoint import load_checkpoint
    from embodia.cerebellum.ensemble import PolicyEnsemble
    from embodia.runtime import DEFAULT_AGENT_CHECKPOINT

    root = Path(__file__).resolve().parents[2]
    policy = load_checkpoint(root / DEFAULT_AGENT_CHECKPOINT, embodiment="arm7")
    assert isinstance(policy, PolicyEnsemble) and len(policy.members) == 2
    makefile = (root / "Makefile").read_text()
    assert f"DEMO_POLICY ?= {DEFAULT_AGENT_CHECKPOINT}\n" in makefile
