"""Normalizer: z-score and quantile maps from stats.json, exact round trips, numpy and torch,
JSON persistence, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodia.data.normalize import Normalizer
from embodia.data.reader import DatasetReader

STATS = {
    "observation.state": {"mean": [1.0, -2.0, 0.5], "std": [2.0, 0.5, 0.0],
                          "q01": [-3.0, -3.0, 0.5], "q99": [5.0, -1.0, 0.5], "min": [-4, -4, 0.5], "max": [6, 0, 0.5]},
    "action": {"mean": [0.0, 0.0], "std": [1.0, 1.0], "q01": [-0.04, 0.0], "q99": [0.04, 1.0]},
    "observation.images.front": {"mean": [[[0.5]], [[0.4]], [[0.3]]], "std": [[[0.25]], [[0.2]], [[0.1]]]},
}


def test_mean_std_values_and_round_trip():
    n = Normalizer(STATS, {"observation.state": "mean_std"})
    x = np.array([[3.0, -1.5, 0.5], [1.0, -2.0, 0.7]], dtype=np.float32)
    y = n.normalize("observation.state", x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0, :2], [1.0, 1.0])
    np.testing.assert_allclose(y[1, :2], [0.0, 0.0])
    assert y[0, 2] == 0.0 and np.isfinite(y).all()  # std 0 is clamped by eps, not divided by
    np.testing.assert_allclose(n.unnormalize("observation.state", y), x, rtol=1e-6)


def test_quantile_maps_q01_q99_to_minus_one_one_and_clips():
    n = Normalizer(STATS, {"action": "quantile"})
    q = np.array([[-0.04, 0.0], [0.04, 1.0], [0.0, 0.5], [0.02, 0.75]])
    np.testing.assert_allclose(n.normalize("action", q), [[-1, -1], [1, 1], [0, 0], [0.5, 0.5]], atol=1e-12)
    rng = np.random.default_rng(0)
    x = rng.normal(scale=[0.05, 1.0], size=(1000, 2))
    y = n.normalize("action", x)
    assert y.min() == -1.0 and y.max() == 1.0  # outliers clipped exactly to the bounds
    inside = (x > [-0.04, 0.0]).all(1) & (x < [0.04, 1.0]).all(1)
    assert inside.sum() > 100
    np.testing.assert_allclose(n.unnormalize("action", y[inside]), x[inside], atol=1e-12)


def test_quantile_on_recorded_dataset_stats(synthetic_ds):
    r = DatasetReader(synthetic_ds.root)
    stats = r.meta.stats
    n = Normalizer(stats, {"action": "quantile", "observation.state": "mean_std"})
    a = n.normalize("action", r.columns["action"])
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert np.median(np.abs(a)) < 0.9  # most values are interior, not piled up at the clip
    s = n.normalize("observation.state", r.columns["observation.state"])
    varying = np.asarray(stats["observation.state"]["std"]) > 1e-6
    np.testing.assert_allclose(s.mean(0)[varying], 0.0, atol=1e-4)
    np.testing.assert_allclose(s.std(0)[varying], 1.0, atol=1e-3)


def test_torch_any_leading_dims_dtype_and_identity():
    n = Normalizer(STATS, {"action": "mean_std", "observation.images.front": "mean_std",
                           "observation.state": "identity"})
    x = torch.randn(4, 16, 2, dtype=torch.float64)
    y = n.normalize("action", x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64 and y.shape == x.shape
    torch.testing.assert_close(n.unnormalize("action", y), x)
    img = torch.full((2, 1, 3, 8, 8), 0.5)
    out = n.normalize("observation.images.front", img)  # per-channel [3, 1, 1] stats broadcast
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor([0.0, 0.5, 2.0]))
    s = torch.arange(3.0)
    assert n.normalize("observation.state", s) is s
    ints = n.normalize("action", torch.tensor([[1, 2]]))
    assert ints.dtype == torch.float32 and torch.equal(ints, torch.tensor([[1.0, 2.0]]))


def test_dict_round_trip_through_json():
    n = Normalizer(STATS, {"action": "quantile", "observation.state": "mean_std",
                           "observation.images.front": "mean_std", "task": "identity"}, eps=1e-6)
    d = json.loads(json.dumps(n.to_dict()))
    m = Normalizer.from_dict(d)
    assert m.eps == 1e-6 and m.keys == n.keys and m.mode("action") == "quantile"
    x = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_array_equal(m.normalize("observation.state", x), n.normalize("observation.state", x))
    np.testing.assert_array_equal(m.unnormalize("action", x[:, :2]), n.unnormalize("action", x[:, :2]))


def test_clear_errors():
    with pytest.raises(KeyError, match="observation.effort"):
        Normalizer(STATS, {"observation.effort": "mean_std"})
    with pytest.raises(KeyError, match="q01"):
        Normalizer({"a": {"mean": [0.0], "std": [1.0]}}, {"a": "quantile"})
    with pytest.raises(ValueError, match="minmax"):
        Normalizer(STATS, {"action": "minmax"})
    n = Normalizer(STATS, {"action": "mean_std"})
    with pytest.raises(KeyError, match="observation.state"):
        n.normalize("observation.state", np.zeros(3))
    with pytest.raises(ValueError, match="stats shape"):
        n.normalize("action", np.zeros((4, 3)))
    with pytest.raises(ValueError, match="q99 < q01"):
        Normalizer({"a": {"q01": [1.0], "q99": [0.0]}}, {"a": "quantile"})
