"""Durability and validation of the two-stage writer."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from embodia.body import get_embodiment
from embodia.data.metadata import DatasetMeta
from embodia.data.validate import validate_dataset
from embodia.data.writer import STAGING, DatasetWriter, EpisodeBuffer

SIZE = (32, 32)


def _episode(rng, n=6, task="pick up the red cube", emb="arm7"):
    spec = get_embodiment(emb)
    ep = EpisodeBuffer(task=task, skill="pick", seed=int(rng.integers(1e6)))
    for _ in range(n):
        obs = {"observation.state": rng.normal(size=spec.state_dim).astype(np.float32),
               "observation.images.front": rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)}
        ep.add(obs, rng.normal(size=7).astype(np.float32) * 0.01)
    return ep


def _writer(root, emb="arm7", cams=("front",), action_space="ee_delta"):
    return DatasetWriter(root, get_embodiment(emb), list(cams), SIZE, action_space=action_space)


def test_roundtrip_counts_and_values(tmp_path):
    rng = np.random.default_rng(0)
    w = _writer(tmp_path)
    eps = [_episode(rng, n) for n in (5, 7, 3)]
    for i, ep in enumerate(eps):
        w.stage(ep, f"k{i}")
    assert w.consolidate() == 3
    meta = DatasetMeta.load(tmp_path)
    assert meta.num_episodes == 3 and meta.info["total_frames"] == 15
    table = pq.read_table(tmp_path / "data/chunk-000/file-000.parquet")
    states = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(states[5:12], np.stack(eps[1].states))
    assert table.column("index").to_pylist() == list(range(15))
    stats = json.loads((tmp_path / "meta/stats.json").read_text())
    assert stats["action"]["count"] == [15] and len(stats["action"]["q01"]) == 7
    assert validate_dataset(tmp_path).ok


def test_second_consolidation_adds_new_files(tmp_path):
    rng = np.random.default_rng(1)
    w = _writer(tmp_path)
    w.stage(_episode(rng), "a")
    w.consolidate()
    first = (tmp_path / "data/chunk-000/file-000.parquet").read_bytes()
    w.stage(_episode(rng), "b")
    w.consolidate()
    assert (tmp_path / "data/chunk-000/file-000.parquet").read_bytes() == first  # never rewritten
    assert (tmp_path / "data/chunk-000/file-001.parquet").exists()
    meta = DatasetMeta.load(tmp_path)
    assert meta.column("episode_index") == [0, 1]
    assert meta.column("dataset_from_index") == [0, 6]


def test_staged_episodes_survive_a_crash_and_are_recovered(tmp_path):
    rng = np.random.default_rng(2)
    w = _writer(tmp_path)
    w.stage(_episode(rng), "done-1")
    w.stage(_episode(rng), "done-2")
    # an episode that was being written when the process died
    (tmp_path / STAGING / ".tmp-inflight-123").mkdir()
    del w
    w2 = _writer(tmp_path)  # reopening cleans the half-written one
    assert [p.name for p in w2.staged()] == ["done-1", "done-2"]
    assert not (tmp_path / STAGING / ".tmp-inflight-123").exists()
    assert w2.consolidate() == 2
    assert DatasetMeta.load(tmp_path).num_episodes == 2


def test_crash_before_commit_point_rolls_back(tmp_path):
    rng = np.random.default_rng(3)
    w = _writer(tmp_path)
    w.stage(_episode(rng), "a")
    w.consolidate()
    w.stage(_episode(rng), "b")
    w.consolidate()
    # simulate a crash after data/video were written but before the episodes file (commit)
    shutil.move(tmp_path / "meta/episodes/chunk-000/file-001.parquet", tmp_path / "lost.parquet")
    w.stage(_episode(rng), "b")  # its staged copy is still there: it was never committed
    w3 = _writer(tmp_path)
    assert not (tmp_path / "data/chunk-000/file-001.parquet").exists()  # orphan removed
    assert DatasetMeta.load(tmp_path).num_episodes == 1
    assert json.loads((tmp_path / "meta/info.json").read_text())["total_episodes"] == 1
    assert validate_dataset(tmp_path).ok
    assert w3.consolidate() == 1  # the episode is committed on the next consolidation
    assert DatasetMeta.load(tmp_path).column("embodia_key") == ["a", "b"]


def test_refuses_other_embodiment_and_feature_mismatch(tmp_path):
    rng = np.random.default_rng(4)
    w = _writer(tmp_path)
    w.stage(_episode(rng), "a")
    w.consolidate()
    before = sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match="holds embodiment 'arm7'"):
        _writer(tmp_path, emb="humanoid_upper")
    with pytest.raises(ValueError, match="feature mismatch"):
        _writer(tmp_path, cams=("front", "wrist"))
    assert sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()) == before


@pytest.mark.parametrize("mutate, message", [
    (lambda ep: ep.actions.__setitem__(1, np.full(7, np.nan, np.float32)), "NaN"),
    (lambda ep: ep.states.__setitem__(0, np.zeros(3, np.float32)), r"observation.state must have shape \(15,\)"),
    (lambda ep: setattr(ep, "tier", "imaginary"), "unknown tier"),
    (lambda ep: ep.images["observation.images.front"].pop(), "frames for"),
])
def test_bad_episodes_are_refused_and_nothing_is_written(tmp_path, mutate, message):
    w = _writer(tmp_path)
    ep = _episode(np.random.default_rng(5))
    mutate(ep)
    with pytest.raises(ValueError, match=message):
        w.stage(ep, "bad")
    assert w.staged() == []


def test_action_free_tier(tmp_path):
    w = _writer(tmp_path, action_space=None)
    ep = _episode(np.random.default_rng(6))
    ep.actions.clear()
    ep.tier = "human"
    w.stage(ep, "video-only")
    w.consolidate()
    meta = DatasetMeta.load(tmp_path)
    assert not meta.has_actions and meta.summary()["tiers"] == {"human": 1}


def test_validate_names_corrupt_and_missing_files(tmp_path):
    rng = np.random.default_rng(7)
    w = _writer(tmp_path)
    w.stage(_episode(rng), "a")
    w.consolidate()
    video = tmp_path / "videos/observation.images.front/chunk-000/file-000.mp4"
    video.write_bytes(b"not a video at all")
    rep = validate_dataset(tmp_path)
    assert not rep.ok and any("file-000.mp4" in p for p in rep.problems)
    (tmp_path / "data/chunk-000/file-000.parquet").unlink()
    rep = validate_dataset(tmp_path)
    assert any("missing dataset file" in p and "file-000.parquet" in p for p in rep.problems)


def test_reopening_deletes_only_what_the_writer_wrote(tmp_path):
    """A finished dataset reopened (a resumed collect) keeps a user's files under data/ and
    videos/, and never walks into a folder linked out of the dataset root."""
    rng = np.random.default_rng(8)
    root, elsewhere = tmp_path / "ds", tmp_path / "elsewhere"
    w = _writer(root)
    w.stage(_episode(rng), "a")
    w.consolidate()
    notes = root / "data" / "notes.txt"
    notes.write_text("mine")
    mine = root / "videos" / "observation.images.front" / "chunk-000" / "clip.mp4"
    mine.write_bytes(b"user clip")
    # the user moves videos/ to another disk and links it back
    shutil.move(root / "videos", elsewhere)
    (root / "videos").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "unrelated.bin").write_bytes(b"x")
    stray = elsewhere / "observation.images.front" / "chunk-000" / "file-001.mp4"
    stray.write_bytes(b"another dataset's file")
    _writer(root)  # reopen: recover() runs
    assert notes.read_text() == "mine"
    assert (elsewhere / "unrelated.bin").exists() and (elsewhere / "observation.images.front/chunk-000/clip.mp4").exists()
    assert stray.read_bytes() == b"another dataset's file"  # not deleted through the link ...
    w2 = _writer(root)
    w2.stage(_episode(rng), "b")
    with pytest.raises(FileExistsError, match="file-001.mp4"):
        w2.consolidate()  # ... nor overwritten
    assert stray.read_bytes() == b"another dataset's file"
    assert DatasetMeta.load(root).num_episodes == 1
