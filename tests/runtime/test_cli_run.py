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


def test_fallback_to_the_experts_says_so(tmp_path):
    """A run on the experts standing in for a checkpoint must not look like a run of it:
    exit 3 (not 0), and the verdict line, the JSON and the HTML report all name the fallback."""
    r = runner.invoke(app, ["run", "pick up the red cube", "--seed", "4", "--policy", "no/such/checkpoint",
                            "--fallback-expert", "--json", "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 3, r.output
    assert "running the scripted experts instead" in r.output
    d = json.loads(r.stdout[r.stdout.index("{"):])
    assert d["policy"] == "expert" and d["notices"] and d["success"]
    assert d["fallback_from"] == "no/such/checkpoint"
    assert d["verdict"] == "SUCCESS (scripted expert fallback, not no/such/checkpoint)"
    assert "SUCCESS (scripted expert fallback, not no/such/checkpoint)" in (tmp_path / "r.html").read_text()
    r = runner.invoke(app, ["run", "pick up the red cube", "--seed", "4", "--policy", "no/such/checkpoint",
                            "--fallback-expert"])
    assert r.exit_code == 3 and "SUCCESS (scripted expert fallback, not no/such/checkpoint):" in r.stdout


def test_the_makefile_demo_accepts_the_fallback_exit_code():
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    demo = makefile[makefile.index("\ndemo:"):].split("\n\n")[0]
    assert "--fallback-expert" in demo and "-eq 3" in demo and "-eq 1" in demo


def test_the_default_checkpoint_is_found_from_any_folder(tmp_path, monkeypatch):
    """Without --policy, `embodia run` loads the shipped checkpoint by its place in the project,
    not by the current folder; a --policy the person gives stays relative to the current folder."""
    from embodia.runtime import DEFAULT_AGENT_CHECKPOINT, agent
    from embodia.runtime.policies import ExpertChunkPolicy

    asked = []

    def fake(policy, embodiment="arm7", **kw):  # records the path; the experts stand in (fast)
        asked.append(policy)
        return ExpertChunkPolicy(embodiment, 10.0), []

    monkeypatch.setattr(agent, "make_cerebellum", fake)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["run", "pick up the red cube", "--seed", "4", "--json"])
    assert r.exit_code != 2, r.output
    from pathlib import Path

    assert Path(asked[0]).is_absolute() and Path(asked[0]).is_dir()
    assert Path(asked[0]).as_posix().endswith(DEFAULT_AGENT_CHECKPOINT)
    runner.invoke(app, ["run", "pick up the red cube", "--seed", "4", "--policy", "mine", "--json"])
    assert asked[1] == "mine"


def test_a_missing_default_checkpoint_is_one_clear_error(tmp_path, monkeypatch):
    import embodia.runtime as runtime

    monkeypatch.setattr(runtime, "project_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["run", "pick up the red cube", "--seed", "4"])
    assert r.exit_code == 2 and "--policy" in r.output and str(tmp_path) in r.output, r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["run", "pick up the red cube", "--seed", "4", "--fallback-expert"])
    assert r.exit_code == 3 and "scripted expert fallback, not checkpoints/" in r.stdout, r.output


def test_run_shows_progress_per_step_on_stderr():
    """A learned step takes many seconds: each step says when it starts and how it ended, on
    stderr, so --json stays clean."""
    r = runner.invoke(app, ["run", "put the red cube in the bowl", "--seed", "4", "--policy", "expert", "--json"])
    assert r.exit_code == 0, r.output
    assert "step 1/2 pick(red_cube): running..." in r.stderr
    assert "step 2/2 place(red_cube, bowl): success after" in r.stderr
    json.loads(r.stdout)  # nothing but the JSON on stdout


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


def test_run_ask_clarifies_an_ambiguous_phrase_then_runs():
    r = runner.invoke(app, ["run", "put the cube in the bowl", "--seed", "4", "--policy", "expert",
                            "--ask", "--json"], input="1\n")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{\n"):])
    cube = out["steps"][0]["args"][0]
    assert [s["skill"] for s in out["steps"]] == ["pick", "place"] and cube.endswith("_cube")
    r = runner.invoke(app, ["run", "put the cube in the bowl", "--seed", "4", "--policy", "expert"])
    assert r.exit_code == 1 and "refused" in r.output  # without --ask: the refusal
