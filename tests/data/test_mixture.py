"""MixtureDataset: weights realized, deterministic per (seed, index), validated, worker-safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from embodia.data.mixture import MixtureDataset
from embodia.data.windows import WindowConfig, WindowDataset


class Tagged(Dataset):
    """Items (tag, i) so a sample says where it came from."""

    def __init__(self, tag: int, n: int) -> None:
        self.tag, self.n = tag, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.tag, i


def test_weights_realized_and_inner_indices_uniform():
    ds = [Tagged(0, 5), Tagged(1, 50), Tagged(2, 500)]
    m = MixtureDataset(ds, [2.0, 3.0, 5.0], num_samples=20_000, seed=3, names=["real", "synthetic", "human"])
    counts = m.source_counts()
    assert sum(counts.values()) == 20_000
    for name, w in zip(["real", "synthetic", "human"], [0.2, 0.3, 0.5], strict=True):
        assert abs(counts[name] / 20_000 - w) < 0.015, (name, counts)
    # the counts describe what __getitem__ returns
    items = [m[i] for i in range(2000)]
    which, inner = m.sources(np.arange(2000))
    assert [t for t, _ in items] == which.tolist() and [j for _, j in items] == inner.tolist()
    # within the small dataset every item is drawn about equally (expected ~800 each)
    _, inner_all = m.sources(np.arange(20_000))
    small = np.bincount(inner_all[m.sources(np.arange(20_000))[0] == 0], minlength=5)
    assert small.min() > 650 and small.max() < 950, small


def test_deterministic_per_seed_and_index():
    ds = [Tagged(0, 7), Tagged(1, 11)]
    a = MixtureDataset(ds, [1, 1], 500, seed=1)
    b = MixtureDataset(ds, [1, 1], 500, seed=1)
    c = MixtureDataset(ds, [1, 1], 500, seed=2)
    seq = [a[i] for i in range(500)]
    assert seq == [b[i] for i in range(500)]
    assert [a[i] for i in reversed(range(500))] == seq[::-1]  # order of access does not matter
    assert seq != [c[i] for i in range(500)]
    assert a[-1] == a[499]


def test_weight_validation():
    ds = [Tagged(0, 3), Tagged(1, 3)]
    with pytest.raises(ValueError, match="2 datasets"):
        MixtureDataset(ds, [1.0], 10, 0)
    with pytest.raises(ValueError, match="weight 1"):
        MixtureDataset(ds, [1.0, 0.0], 10, 0)
    with pytest.raises(ValueError, match="weight 0"):
        MixtureDataset(ds, [-1.0, 1.0], 10, 0)
    with pytest.raises(ValueError, match="weight 1"):
        MixtureDataset(ds, [1.0, float("nan")], 10, 0)
    with pytest.raises(ValueError, match="empty"):
        MixtureDataset([Tagged(0, 3), Tagged(1, 0)], [1, 1], 10, 0)
    with pytest.raises(ValueError, match="num_samples"):
        MixtureDataset(ds, [1, 1], 0, 0)
    with pytest.raises(ValueError, match="at least one"):
        MixtureDataset([], [], 10, 0)
    with pytest.raises(IndexError):
        MixtureDataset(ds, [1, 1], 10, 0)[10]


def test_pyramid_of_window_datasets_tier_counts_and_workers(synthetic_ds, human_ds, real_ds):
    cfg = WindowConfig(horizon=4, cameras=["front"])
    sources = [WindowDataset(real_ds.root, cfg), WindowDataset(synthetic_ds.root, cfg),
               WindowDataset(human_ds.root, cfg)]
    m = MixtureDataset(sources, [0.1, 0.3, 0.6], num_samples=4000, seed=0)
    tiers = m.tier_counts()
    assert set(tiers) == {"real", "synthetic", "human"} and sum(tiers.values()) == 4000
    for tier, w in (("real", 0.1), ("synthetic", 0.3), ("human", 0.6)):
        assert abs(tiers[tier] / 4000 - w) < 0.03, tiers
    # DataLoader workers see exactly the samples the main process would
    small = MixtureDataset(sources, [0.1, 0.3, 0.6], num_samples=48, seed=5)
    batches = list(DataLoader(small, batch_size=12, num_workers=2))
    got_src = torch.cat([b["mixture_source"] for b in batches]).tolist()
    got_frames = torch.cat([b["frame_index"] for b in batches]).tolist()
    want = [small[i] for i in range(48)]
    assert got_src == [w["mixture_source"] for w in want]
    assert got_frames == [w["frame_index"] for w in want]
    tiers_in_batches = [t for b in batches for t in b["tier"]]
    assert tiers_in_batches == [w["tier"] for w in want]
    has_action = torch.cat([b["has_action"] for b in batches])
    assert has_action.tolist() == [w["tier"] != "human" for w in want]
