import json

from typer.testing import CliRunner

from embodia.cli import app
from embodia.data.metadata import DatasetMeta
from embodia.data.recording import CollectConfig, collect

runner = CliRunner()


def test_collect_resumes_and_skips_recorded_seeds(tmp_path):
    cfg = CollectConfig(out=tmp_path, skill="pick", episodes=2, cameras=("front",), image_size=32, batch=2)
    first = collect(cfg)
    assert first.recorded == 2
    meta = DatasetMeta.load(tmp_path)
    assert meta.column("seed") == [0, 1] and all(meta.column("success"))
    cfg.episodes = 3
    second = collect(cfg)
    assert second.already_present == 2 and second.recorded == 1
    meta = DatasetMeta.load(tmp_path)
    assert meta.column("seed") == [0, 1, 2]
    assert set(meta.column("embodiment")) == {"arm7"} and set(meta.column("tier")) == {"synthetic"}
    assert all(t and t[0] for t in meta.column("tasks"))


def test_collect_cli_parallel_and_data_tools(tmp_path):
    out = tmp_path / "ds"
    r = runner.invoke(app, ["collect", "--out", str(out), "--skill", "open_drawer", "--episodes", "3",
                            "--workers", "2", "--cameras", "front", "--image-size", "32", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"):])["recorded"] == 3
    r = runner.invoke(app, ["data", "info", str(out), "--json"])
    info = json.loads(r.stdout)
    assert info["episodes"] == 3 and info["skills"] == {"open_drawer": 3}
    r = runner.invoke(app, ["data", "validate", str(out)])
    assert r.exit_code == 0, r.output
    png = tmp_path / "ep.png"
    r = runner.invoke(app, ["data", "viz", str(out), "--episode", "1", "--out", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(app, ["data", "viz", str(out), "--episode", "9", "--out", str(png)])
    assert r.exit_code == 2 and "out of range" in r.output


def test_collect_refuses_unknown_skill(tmp_path):
    r = runner.invoke(app, ["collect", "--out", str(tmp_path), "--skill", "juggle"])
    assert r.exit_code == 2 and "unknown skill" in r.output
