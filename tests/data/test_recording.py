import json

import numpy as np
import pytest
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


def _tracking_gap(root) -> float:
    """Mean |measured end-effector displacement - recorded translation action| per frame."""
    from embodia.data.reader import DatasetReader

    r = DatasetReader(root)
    names = r.meta.features["observation.state"]["names"]
    ee = [names.index(f"{names[0].split('.')[0]}.ee_{a}") for a in "xyz"]
    state, action = r.columns["observation.state"], r.columns["action"]
    gaps = []
    for start, n in zip(r.ep_start, r.ep_length, strict=True):
        moved = np.diff(state[start:start + n, ee], axis=0)
        gaps.append(np.abs(moved - action[start:start + n - 1, :3]).mean())
    return float(np.mean(gaps))


def test_perturbed_collection_records_the_experts_action_not_the_noisy_one(tmp_path):
    """DART: the executed moves carry noise the labels do not, so the recorded actions
    explain the observed motion much worse than in a clean recording of the same seeds."""
    kw = dict(skill="pick", episodes=2, cameras=("front",), image_size=32, batch=2, seed_start=3,
              keep_failures=True)  # noisy episodes fail more often: keep all, compare like with like
    collect(CollectConfig(out=tmp_path / "clean", **kw))
    collect(CollectConfig(out=tmp_path / "dart", perturb=0.05, **kw))
    clean, dart = _tracking_gap(tmp_path / "clean"), _tracking_gap(tmp_path / "dart")
    assert dart > 2 * clean, (clean, dart)
    with pytest.raises(ValueError, match="perturb"):
        CollectConfig(out=tmp_path / "x", perturb=0.2)


def test_task_collection_stores_each_step_as_an_episode_of_its_skill(tmp_path):
    """A chained task: one episode per step, named by its skill, with that step's instruction;
    consecutive steps continue from each other, and resuming counts seeds, not steps."""
    from embodia.data.reader import DatasetReader

    cfg = CollectConfig(out=tmp_path, task="put_in_bowl", episodes=2, cameras=("front",), image_size=32, batch=2)
    first = collect(cfg)
    assert first.recorded == 2
    meta = DatasetMeta.load(tmp_path)
    assert meta.column("skill") == ["pick", "place", "pick", "place"]
    assert meta.column("seed") == [0, 0, 1, 1] and all(meta.column("success"))
    tasks = [t[0] for t in meta.column("tasks")]
    assert all(tasks) and tasks[0] != tasks[1]
    # the place episode starts where the pick episode ended (the cube in the hand)
    r = DatasetReader(tmp_path)
    state = r.columns["observation.state"]
    end_of_pick, start_of_place = r.ep_start[0] + r.ep_length[0] - 1, r.ep_start[1]
    assert np.abs(state[start_of_place] - state[end_of_pick]).max() < 0.1
    cfg.episodes = 3
    second = collect(cfg)
    assert second.already_present == 2 and second.recorded == 1
    assert DatasetMeta.load(tmp_path).column("seed")[-2:] == [2, 2]


def test_collect_refuses_unknown_task(tmp_path):
    r = runner.invoke(app, ["collect", "--out", str(tmp_path), "--task", "juggle"])
    assert r.exit_code == 2 and "unknown task" in r.output
    assert not (tmp_path / "meta").exists()


def test_slip_collection_records_the_experts_re_grasp(tmp_path):
    from embodia.data.reader import DatasetReader

    collect(CollectConfig(out=tmp_path, skill="pick", episodes=6, cameras=("front",), image_size=32, batch=3,
                          slip=1.0))
    r = DatasetReader(tmp_path)
    grip = r.columns["action"][:, -1]
    closes = ["".join("C" if g >= 0.5 else "o" for g in grip[s:s + n]).count("oC")
              for s, n in zip(r.ep_start, r.ep_length, strict=True)]
    assert max(closes) == 2 and min(closes) >= 1, closes  # some slipped, every one was kept as a success
    assert all(DatasetMeta.load(tmp_path).column("success"))
    with pytest.raises(ValueError, match="slip"):
        CollectConfig(out=tmp_path / "x", slip=1.5)


def test_collect_without_cameras_records_state_and_actions_only(tmp_path):
    from embodia.data.reader import DatasetReader

    out = tmp_path / "so"
    r = runner.invoke(app, ["collect", "--out", str(out), "--skill", "push", "--episodes", "2",
                            "--cameras", "none", "--json"])
    assert r.exit_code == 0, r.output
    reader = DatasetReader(out)
    assert reader.video_keys == [] and reader.has_actions
    assert not any(k.startswith("observation.images.") for k in reader.meta.features)
    assert len(reader.columns["action"]) == len(reader.columns["observation.environment_state"]) > 2
    assert not (out / "videos").exists()
    assert runner.invoke(app, ["data", "validate", str(out)]).exit_code == 0
    r = runner.invoke(app, ["collect", "--out", str(tmp_path / "x"), "--cameras", ","])
    assert r.exit_code == 2 and "--cameras is empty" in r.output


def _stage_leftover(cfg, seed):
    """A finished episode staged by a worker that outlived its parent (`kill -9`)."""
    from embodia.body.env import TabletopEnv
    from embodia.body.experts import ChainedExpert
    from embodia.data.recording import episode_key
    from embodia.data.writer import STAGING, EpisodeBuffer, stage_episode

    env = TabletopEnv(skill=cfg.skill, cameras=cfg.cameras)
    try:
        obs, info = env.reset(seed=seed)
        agent = ChainedExpert()
        agent.reset(env, seed)
        ep = EpisodeBuffer(task=info["instruction"], skill=cfg.skill, seed=seed)
        for _ in range(3):
            a = agent.act(obs, env)
            ep.add(obs, a)
            obs, *_ = env.step(a)
        features = DatasetMeta.load(cfg.out).features
        stage_episode(cfg.out / STAGING, features, ep, episode_key(cfg.skill, env.arm, seed))
    finally:
        env.close()


def test_a_resume_ends_with_the_episode_count_it_was_asked_for(tmp_path):
    """Leftovers staged by orphaned workers are packed only up to the count asked for."""
    cfg = CollectConfig(out=tmp_path, skill="push", episodes=2, cameras=(), batch=2)
    assert collect(cfg).recorded == 2
    for seed in (7, 8, 9):
        _stage_leftover(cfg, seed)
    report = collect(cfg)  # the same command again: nothing missing, nothing extra
    assert report.recorded == 0 and DatasetMeta.load(tmp_path).num_episodes == 2
    for seed in (7, 8, 9):
        _stage_leftover(cfg, seed)
    cfg.episodes = 3
    collect(cfg)
    meta = DatasetMeta.load(tmp_path)
    assert meta.num_episodes == 3 and meta.column("seed") == [0, 1, 7]
    assert not list((tmp_path / ".staging").iterdir())


def test_collect_workers_die_with_the_parent(tmp_path, monkeypatch):
    """The pool's workers are started with the parent-death initializer."""
    import embodia.data.recording as rec
    from embodia.data.children import die_with_parent

    seen = {}

    class Pool(rec.ProcessPoolExecutor):
        def __init__(self, *a, **kw):
            seen.update(kw)
            super().__init__(*a, **kw)

    monkeypatch.setattr(rec, "ProcessPoolExecutor", Pool)
    collect(CollectConfig(out=tmp_path, skill="push", episodes=1, cameras=(), batch=1))
    assert seen["initializer"] is die_with_parent and seen["initargs"] == (__import__("os").getpid(),)
