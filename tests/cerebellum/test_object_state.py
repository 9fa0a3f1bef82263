import numpy as np
import torch

from embodia.cerebellum.object_state import (
    PARKED_BELOW,
    ObjectState,
    ObjectTokens,
    feature_dim,
    object_groups,
)

NAMES = ["red_cube.x", "red_cube.y", "red_cube.z", "red_cube.sin4yaw", "red_cube.cos4yaw",
         "bowl.x", "bowl.y", "bowl.z", "drawer.handle.x", "drawer.handle.y", "drawer.handle.z",
         "drawer.opening", "zone.x", "zone.y"]


def _rows(n=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, len(NAMES)))
    rows[:, 0:2] = rng.uniform(0.3, 0.7, (n, 2))
    rows[:, 2] = 0.02
    rows[:, 3:5] = rng.uniform(-1, 1, (n, 2))
    rows[: n // 2, 0:3] = (3.0, 3.0, -0.73)  # half the scenes park the red cube under the table
    rows[:, 5:8] = (0.5, 0.0, 1e-4)  # a bowl that never moves
    rows[:, 8:11] = (0.55, 0.3, 0.055)
    rows[:, 11] = rng.uniform(0, 0.2, n)
    rows[:, 12:14] = rng.uniform(0.2, 0.4, (n, 2))
    return rows


def test_groups_and_width():
    groups = {g: (dims, z) for g, dims, z in object_groups(NAMES)}
    assert list(groups) == ["red_cube", "bowl", "drawer.handle", "drawer", "zone"]
    assert groups["drawer.handle"] == ([8, 9, 10], 10) and groups["zone"][1] is None
    assert feature_dim(NAMES) == len(NAMES) + 3  # red cube, bowl and handle have a height


def test_parked_objects_do_not_swamp_the_statistics():
    rows = _rows()
    stats = ObjectState.fit(NAMES, rows)
    # statistics of present red cubes only: centimetres, not the metres to the parking spot
    assert 0.4 < stats["mean"][0] < 0.6 and stats["std"][0] < 0.2
    assert stats["std"][7] >= 0.01  # a constant dimension gets a floor, never a blow-up
    obj = ObjectState.from_stats(NAMES, stats)
    feats = obj.features(torch.tensor(rows, dtype=torch.float32))
    assert feats.shape == (200, feature_dim(NAMES))
    parked, present = feats[0], feats[-1]
    assert torch.all(parked[0:5] == 0) and parked[len(NAMES)] == 0  # absent: zeros, flag 0
    assert present[len(NAMES)] == 1 and torch.all(feats.abs() < 10)
    moved = rows[-1].copy()
    moved[0] += 0.01  # one centimetre shows up as a clear change
    delta = obj.features(torch.tensor(moved[None], dtype=torch.float32))[0, 0] - present[0]
    assert 0.05 < float(delta) < 1.0
    assert PARKED_BELOW < 0


def test_object_tokens_carry_their_names():
    proj = torch.nn.Linear(384, 16)
    tokens = ObjectTokens(NAMES, 16)
    assert tokens.objects == ["red_cube", "bowl", "drawer.handle", "drawer", "zone"]
    feats = torch.zeros(2, feature_dim(NAMES))
    with torch.no_grad():
        tokens.name_emb.normal_()
        out = tokens(feats, proj, tokens.relevance(torch.randn(2, 384), None), torch.zeros(2, 5, 0))
    assert out.shape == (2, 5, 16)
    # with all-zero values, each token is its own linear bias plus its projected name
    assert not torch.allclose(out[0, 0], out[0, 1])
    assert "name_emb" in tokens.state_dict()


def test_positions_and_presence_per_object():
    rows = _rows()
    obj = ObjectState.from_stats(NAMES, ObjectState.fit(NAMES, rows))
    feats = obj.features(torch.tensor(rows[-2:], dtype=torch.float32))
    pos = obj.positions(feats)  # objects: red_cube, bowl, drawer.handle, drawer, zone
    assert pos.shape == (2, 5, 3)
    torch.testing.assert_close(pos[:, 0], torch.tensor(rows[-2:, 0:3], dtype=torch.float32), atol=1e-5, rtol=0)
    torch.testing.assert_close(pos[:, 4, :2], torch.tensor(rows[-2:, 12:14], dtype=torch.float32), atol=1e-5, rtol=0)
    assert torch.all(pos[:, 3] == 0) and torch.all(pos[:, 4, 2] == 0)  # no x/y/z: zeros
    parked = obj.features(torch.tensor(rows[:1], dtype=torch.float32))
    assert obj.group_presence(parked).tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]
