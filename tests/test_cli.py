import json

import av
from typer.testing import CliRunner

from embodia.cli import app

runner = CliRunner()


def test_eval_expert_json_and_video(tmp_path):
    r = runner.invoke(app, ["eval", "--policy", "expert", "--embodiment", "arm7", "--skill", "pick",
                            "--episodes", "2", "--seed-start", "5", "--json", "--video", str(tmp_path)])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout[r.stdout.index("{"):])
    res = report["results"]["pick"]
    assert res["episodes"] == 2 and 0 <= res["success_rate"] <= 1
    assert len(res["wilson95"]) == 2 and res["mean_episode_length"] > 0
    videos = sorted(tmp_path.glob("*.mp4"))
    assert [v.name for v in videos] == ["pick_seed5.mp4", "pick_seed6.mp4"]
    with av.open(str(videos[0])) as c:
        frames = list(c.decode(video=0))
    assert len(frames) > 5 and frames[0].width == 256


def test_eval_rejects_unknown_skill():
    r = runner.invoke(app, ["eval", "--skill", "juggle", "--episodes", "1"])
    assert r.exit_code == 2 and "unknown skill 'juggle'" in r.output


def test_embodiments_json():
    r = runner.invoke(app, ["embodiments", "--json"])
    assert r.exit_code == 0
    names = [e["name"] for e in json.loads(r.stdout)]
    assert names == ["arm7", "humanoid_upper", "sawyer"]


def test_demo_writes_video(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["success"] and summary["steps_completed"] == 4
    assert (tmp_path / "drawer_store_seed7.mp4").stat().st_size > 1000


def _one_line_error(r, field: str) -> None:
    """Exit 2 and the message names the field, with no traceback."""
    assert r.exit_code == 2, r.output
    assert field in r.output and "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception


def test_eval_rejects_an_unknown_instruction_split():
    r = runner.invoke(app, ["eval", "--instructions", "foo", "--episodes", "1"])
    _one_line_error(r, "--instructions")
    assert len(r.output.strip().splitlines()) == 1


def test_eval_rejects_skill_and_task_together():
    r = runner.invoke(app, ["eval", "--skill", "pick", "--task", "drawer_store", "--episodes", "1"])
    _one_line_error(r, "--task")


def test_eval_rejects_bad_numbers_and_names():
    for args, field in ((["--episodes", "-1"], "--episodes"), (["--seed-start", "-1"], "--seed-start"),
                        (["--n-action-steps", "0"], "--n-action-steps"),
                        (["--embodiment", "foo"], "embodiment"), (["--arm", "foo"], "arm")):
        _one_line_error(runner.invoke(app, ["eval", "--episodes", "1", *args]), field)


def test_plan_scene_and_demo_reject_a_negative_seed():
    for cmd in (["plan", "pick up the red cube"], ["scene"], ["demo"]):
        _one_line_error(runner.invoke(app, [*cmd, "--seed", "-1"]), "--seed")


def test_scene_and_plan_reject_unknown_names():
    _one_line_error(runner.invoke(app, ["scene", "--skill", "juggle"]), "unknown skill")
    _one_line_error(runner.invoke(app, ["scene", "--embodiment", "foo"]), "unknown embodiment")
    _one_line_error(runner.invoke(app, ["plan", "pick up the red cube", "--skill", "juggle"]), "unknown skill")
    _one_line_error(runner.invoke(app, ["demo", "--task", "juggle"]), "unknown task")


def test_version():
    import embodia

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"embodia {embodia.__version__}"


def test_the_sentence_encoder_loads_without_a_progress_bar(capfd):
    from transformers.utils import logging as hf_logging

    from embodia.cerebellum.language import LanguageEncoder

    LanguageEncoder()
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the caller's setting is back


def test_an_unwritable_output_folder_is_refused_before_the_run(tmp_path):
    """Caught up front (one line, exit 2), not as a traceback after the episodes ran."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for args, field in ((["eval", "--episodes", "1", "--video", str(blocker / "v")], "--video"),
                        (["demo", "--out", str(blocker / "d")], "--out"),
                        (["run", "pick up the red cube", "--policy", "expert", "--video", str(blocker / "r.mp4")],
                         "--video"),
                        (["run", "pick up the red cube", "--policy", "expert", "--report", str(blocker / "r.html")],
                         "--report")):
        _one_line_error(runner.invoke(app, args), field)
