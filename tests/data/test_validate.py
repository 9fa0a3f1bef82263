"""`validate_dataset` names each problem: changed values, NaN/inf, index gaps, a bad schema."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embodia.data.validate import validate_dataset
from tests.data.test_writer import _episode, _writer

DATA = "data/chunk-000/file-000.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture
def ds(tmp_path):
    """Two committed episodes (5 and 4 frames) in one file; valid."""
    rng = np.random.default_rng(11)
    w = _writer(tmp_path)
    w.stage(_episode(rng, 5), "a")
    w.stage(_episode(rng, 4), "b")
    w.consolidate()
    rep = validate_dataset(tmp_path)
    assert rep.ok, rep.problems
    return tmp_path


def _edit_column(path, name, fn):
    """Rewrite one column of a parquet file through `fn(numpy array) -> numpy array`."""
    t = pq.read_table(path)
    col = t.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        width = col.type.list_size
        arr = fn(col.flatten().to_numpy().reshape(len(col), width).copy())
        new = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1).astype(np.float32)), width)
    else:
        new = pa.array(fn(col.to_numpy().copy()))
    pq.write_table(t.set_column(t.column_names.index(name), name, new), path)


def _problems(root):
    rep = validate_dataset(root)
    assert not rep.ok
    return "\n".join(rep.problems)


def test_a_value_changed_on_disk_is_found(ds):
    def bump(a):
        a[2, 0] += 0.5
        return a

    _edit_column(ds / DATA, "observation.state", bump)
    p = _problems(ds)
    assert "episode 0: stats/observation.state/mean disagrees" in p and "changed on disk" in p


def test_nan_and_inf_are_found(ds):
    def poison(a):
        a[1, 3], a[6, 0] = np.nan, np.inf
        return a

    _edit_column(ds / DATA, "action", poison)
    assert "action has 2 rows with NaN or inf (first at row 1)" in _problems(ds)


def test_gaps_in_frame_and_episode_indices_are_found(ds):
    def gap(a):
        a[3:5] += 1  # episode 0: frames 0, 1, 2, 4, 5
        return a

    _edit_column(ds / DATA, "frame_index", gap)
    assert "episode 0: frame_index is not 0..4" in _problems(ds)
    _edit_column(ds / DATA, "frame_index", lambda a: np.concatenate([np.arange(5), np.arange(4)]))
    assert validate_dataset(ds).ok
    _edit_column(ds / EPISODES, "episode_index", lambda a: np.array([0, 2]))
    assert "episode_index is not 0..1 (missing [1]" in _problems(ds)


def test_a_gap_in_the_dataset_index_is_found(ds):
    _edit_column(ds / EPISODES, "dataset_from_index", lambda a: np.array([0, 6]))
    assert "episode 1 spans frames 6..9 (length 4); expected 5..9" in _problems(ds)


@pytest.mark.parametrize("edit, message", [
    (lambda i: i | {"fps": 0}, "fps must be a positive integer, got 0"),
    (lambda i: i | {"fps": "ten"}, "fps must be a positive integer, got 'ten'"),
    (lambda i: i | {"features": ["observation.state"]}, "features must be a non-empty object"),
    (lambda i: i | {"features": i["features"] | {"action": {"dtype": "float32", "shape": "7"}}},
     "features.action.shape must be a list of positive integers"),
    (lambda i: {k: v for k, v in i.items() if k != "data_path"}, "data_path must name"),
    (lambda i: [i], "not a JSON object"),
])
def test_a_malformed_info_json_is_named_not_a_crash(ds, edit, message):
    path = ds / "meta/info.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    p = _problems(ds)
    assert message in p and "info.json" in p
