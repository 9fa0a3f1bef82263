import json
import subprocess
import sys
from pathlib import Path

import pytest

from embodia.brain.llm import LLMError, LLMPlanner, parse_reply
from embodia.brain.plan import Plan
from embodia.brain.refusal import Refusal

SERVER = Path(__file__).with_name("chat_server.py")
# place before pick: the validator must reject it and say why
INVALID = json.dumps({"steps": [{"skill": "place", "args": ["red_cube", "bowl"]}]})
VALID = "```json\n" + json.dumps({"steps": [{"skill": "pick", "args": ["red_cube"]},
                                            {"skill": "place", "args": ["red_cube", "bowl"]}]}) + "\n```"


@pytest.fixture
def chat_server(tmp_path):
    procs = []

    def start(replies: list[str], *flags: str) -> tuple[str, Path]:
        rp, log = tmp_path / f"replies{len(procs)}.json", tmp_path / f"log{len(procs)}.jsonl"
        rp.write_text(json.dumps(replies))
        p = subprocess.Popen([sys.executable, str(SERVER), str(rp), str(log), *flags],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        port = int(p.stdout.readline())
        return f"http://127.0.0.1:{port}/v1", log

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_llm_planner_retries_with_the_validation_error(chat_server, scenes, planner, monkeypatch):
    url, log = chat_server([INVALID, VALID])
    monkeypatch.setenv("EMBODIA_LLM_API_KEY", "secret-key")
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder)
    plan = llm.plan("put the red cube in the bowl", scenes["pick/0"])
    assert plan.planner == "llm" and plan.skills == [("pick", ("red_cube",)), ("place", ("red_cube", "bowl"))]
    assert plan.instructions == ["pick up the red cube", "put the red cube in the bowl"]
    assert any("attempt 1 rejected" in r and "held(red_cube" in r for r in plan.reasoning)
    sent = requests(log)
    assert len(sent) == 2 and sent[0]["model"] == "tiny" and sent[0]["_auth"] == "Bearer secret-key"
    assert "red_cube" in sent[0]["messages"][1]["content"]  # the scene graph is in the prompt
    assert "pick(obj)" in sent[0]["messages"][0]["content"]  # and the skill library
    retry = sent[1]["messages"]
    assert retry[-2]["role"] == "assistant" and retry[-2]["content"] == INVALID
    assert "invalid" in retry[-1]["content"] and "held(red_cube" in retry[-1]["content"]


def test_llm_planner_gives_up_after_bounded_attempts(chat_server, scenes, planner):
    url, log = chat_server([INVALID])
    llm = LLMPlanner(base_url=url, model="tiny", max_attempts=2, grounder=planner.parser.grounder)
    with pytest.raises(Refusal) as e:
        llm.plan("put the red cube in the bowl", scenes["pick/0"])
    assert e.value.kind == "planner" and "2 attempts" in e.value.reason
    assert len(requests(log)) == 2


def test_llm_plan_must_reach_the_goal(chat_server, scenes, planner):
    wrong = json.dumps({"steps": [{"skill": "pick", "args": ["red_cube"]},
                                  {"skill": "place", "args": ["red_cube", "plate"]}]})
    url, log = chat_server([wrong, VALID])
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder)
    plan = llm.plan("put the red cube in the bowl", scenes["pick/0"])
    assert plan.skills[-1] == ("place", ("red_cube", "bowl"))
    assert "in(red_cube, bowl)" in requests(log)[1]["messages"][-1]["content"]


def test_llm_never_sees_ambiguous_objects(chat_server, scenes, planner):
    url, log = chat_server([VALID])
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder)
    with pytest.raises(Refusal) as e:
        llm.plan("put the cube in the bowl", scenes["pick/0"])
    assert e.value.kind == "ambiguous"
    assert not log.exists()


def test_llm_refusal_and_unreachable_endpoint(chat_server, scenes, planner):
    url, _ = chat_server([json.dumps({"refuse": "no such thing here"})])
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder)
    with pytest.raises(Refusal, match="no such thing here"):
        llm.plan("put the red cube in the bowl", scenes["pick/0"])
    dead = LLMPlanner(base_url="http://127.0.0.1:9/v1", model="tiny", timeout_s=2.0,
                      grounder=planner.parser.grounder)
    with pytest.raises(LLMError, match="127.0.0.1:9"):
        dead.plan("put the red cube in the bowl", scenes["pick/0"])


def test_parse_reply_errors():
    assert parse_reply('{"refuse": "x"}') == "x"
    with pytest.raises(ValueError, match="no JSON"):
        parse_reply("sure, here is the plan")
    with pytest.raises(ValueError, match='"steps" list'):
        parse_reply('{"plan": []}')
    with pytest.raises(ValueError, match="list of object names"):
        parse_reply('{"steps": [{"skill": "pick", "args": "red_cube"}]}')


UNREADABLE = "zorble the red cube into the bowl"  # no verb the grammar knows or reads by meaning


def test_unverifiable_llm_plan_is_refused_by_default(chat_server, scenes, planner):
    url, log = chat_server([VALID])
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder)
    with pytest.raises(Refusal) as e:
        llm.plan(UNREADABLE, scenes["pick/0"])
    assert e.value.kind == "unsupported" and "could not be checked" in e.value.reason
    assert "--confirm-unverified" in e.value.reason
    assert not log.exists()  # the model is not even asked
    unverified = Plan(UNREADABLE, [], [], [], "llm")  # what an opted-in planner hands the monitor
    with pytest.raises(Refusal, match="confirmation"):
        llm.replan(unverified, scenes["pick/0"])


def test_unverifiable_llm_plan_is_accepted_only_when_confirmed(chat_server, scenes, planner):
    url, log = chat_server([VALID])
    asked: list[Plan] = []

    def decline(p: Plan) -> bool:
        asked.append(p)
        return False

    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder, confirm=decline)
    with pytest.raises(Refusal, match="not confirmed"):
        llm.plan(UNREADABLE, scenes["pick/0"])
    assert asked[0].skills == [("pick", ("red_cube",)), ("place", ("red_cube", "bowl"))]
    llm.confirm = lambda p: True
    plan = llm.plan(UNREADABLE, scenes["pick/0"])
    assert plan.goals == [] and "confirmed by the person" in plan.reasoning[-1]
    assert any(r.startswith("goals not checked") for r in plan.reasoning)
    assert llm.replan(plan, scenes["pick/0"]).skills == plan.skills
    flag = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder, accept_unverified=True)
    assert "accept_unverified" in flag.plan(UNREADABLE, scenes["pick/0"]).reasoning[-1]
    # a readable instruction never asks
    llm.confirm = decline
    asked.clear()
    assert llm.plan("put the red cube in the bowl", scenes["pick/0"]).goals and not asked


def test_cli_plan_asks_before_accepting_an_unverifiable_llm_plan(chat_server):
    from typer.testing import CliRunner

    from embodia.cli import app

    url, _ = chat_server([VALID])
    base = ["plan", UNREADABLE, "--planner", "llm", "--base-url", url, "--model", "tiny", "--json"]
    runner = CliRunner()
    r = runner.invoke(app, base)
    assert r.exit_code == 1 and json.loads(r.stdout)["refusal"]["kind"] == "unsupported"
    r = runner.invoke(app, [*base, "--confirm-unverified"], input="n\n")
    assert r.exit_code == 1 and "not confirmed" in _json_after_echo(r.stdout)["refusal"]["reason"]
    r = runner.invoke(app, [*base, "--confirm-unverified"], input="y\n")
    assert r.exit_code == 0, r.output
    assert _json_after_echo(r.stdout)["plan"]["steps"][0]["skill"] == "pick"
    assert "unverified plan" in r.stderr and "pick(red_cube)" in r.stderr


def _json_after_echo(stdout: str) -> dict:
    """CliRunner echoes the typed answer to stdout (a terminal shows it instead)."""
    return json.loads(stdout[stdout.index("{"):])


def test_an_instruction_past_the_length_cap_never_reaches_the_model(chat_server, scenes, planner):
    url, log = chat_server([VALID])
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder, accept_unverified=True)
    with pytest.raises(Refusal, match="at most 2000 are read"):
        llm.plan("shuffle the cubes about " * 500, scenes["pick/0"])
    assert not log.exists() or requests(log) == []


def test_the_reply_is_constrained_by_a_json_schema_where_the_server_supports_it(chat_server, scenes, planner):
    url, log = chat_server([VALID])
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder)
    llm.plan("put the red cube in the bowl", scenes["pick/0"])
    fmt = requests(log)[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert "pick" in fmt["json_schema"]["schema"]["properties"]["steps"]["items"]["properties"]["skill"]["enum"]
    assert "Examples:" in requests(log)[0]["messages"][0]["content"]  # few-shot


def test_a_server_without_schema_support_gets_plain_json_mode(chat_server, scenes, planner):
    url, log = chat_server([VALID], "--no-json-schema")
    llm = LLMPlanner(base_url=url, model="tiny", grounder=planner.parser.grounder)
    plan = llm.plan("put the red cube in the bowl", scenes["pick/0"])
    assert [s.skill for s in plan.steps] == ["pick", "place"]
    assert [r["response_format"]["type"] for r in requests(log)] == ["json_schema", "json_object"]
    llm.plan("put the red cube in the bowl", scenes["pick/0"])  # remembered: no second 400
    assert requests(log)[-1]["response_format"]["type"] == "json_object" and len(requests(log)) == 3
    with pytest.raises(ValueError, match="response_format must be one of"):
        LLMPlanner(base_url=url, model="tiny", response_format="xml")
