"""WindowDataset: shapes, action padding at episode ends, observation history at starts,
action-free data, subsets, and batching through DataLoader worker processes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from embodia.data.reader import DatasetReader
from embodia.data.windows import WindowConfig, WindowDataset

FRONT = "observation.images.front"
WRIST = "observation.images.wrist"


@pytest.fixture(scope="module")
def reader(synthetic_ds) -> DatasetReader:
    return DatasetReader(synthetic_ds.root)


def test_shapes_and_types(reader, synthetic_ds):
    ds = WindowDataset(reader, WindowConfig(horizon=16, n_obs_steps=2))
    assert len(ds) == sum(synthetic_ds.lengths)
    item = ds[5]
    assert item["observation.state"].shape == (2, 15) and item["observation.state"].dtype == torch.float32
    assert item["observation_is_pad"].shape == (2,) and item["observation_is_pad"].dtype == torch.bool
    for key in (FRONT, WRIST):
        assert item[key].shape == (2, 3, 64, 64) and item[key].dtype == torch.uint8
    assert item["action"].shape == (16, 7) and item["action"].dtype == torch.float32
    assert item["action_is_pad"].shape == (16,) and item["action_is_pad"].dtype == torch.bool
    assert item["task"] == synthetic_ds.tasks[0]
    assert (item["embodiment"], item["tier"], item["has_action"]) == ("arm7", "synthetic", True)
    assert (item["episode_index"], item["frame_index"]) == (0, 5)
    # images are the reader's frames, HWC -> CHW
    hwc = reader.frames_at_rows(FRONT, [4, 5])
    assert torch.equal(item[FRONT], torch.from_numpy(hwc).permute(0, 3, 1, 2))


def test_action_chunks_pad_exactly_past_the_episode_end(reader, synthetic_ds):
    H = 16
    ds = WindowDataset(reader, WindowConfig(horizon=H))
    i = 0
    for ep, acts in enumerate(synthetic_ds.actions):
        length = len(acts)
        for t in range(length):
            item = ds[i]
            i += 1
            assert (item["episode_index"], item["frame_index"]) == (ep, t)
            k = np.arange(H)
            expect_pad = t + k >= length
            np.testing.assert_array_equal(item["action_is_pad"].numpy(), expect_pad)
            want = acts[np.minimum(t + k, length - 1)]  # the last action repeated
            np.testing.assert_array_equal(item["action"].numpy(), want)
    assert i == len(ds)


def test_observation_history_clamped_at_episode_start(reader, synthetic_ds):
    ds = WindowDataset(reader, WindowConfig(horizon=4, n_obs_steps=3))
    first_of_ep1 = synthetic_ds.lengths[0]
    s1 = synthetic_ds.states[1]
    item = ds[first_of_ep1]  # frame 0 of episode 1: nothing of episode 0 may leak in
    np.testing.assert_array_equal(item["observation_is_pad"].numpy(), [True, True, False])
    np.testing.assert_array_equal(item["observation.state"].numpy(), s1[[0, 0, 0]])
    assert torch.equal(item[FRONT][0], item[FRONT][2])
    item = ds[first_of_ep1 + 1]
    np.testing.assert_array_equal(item["observation_is_pad"].numpy(), [True, False, False])
    np.testing.assert_array_equal(item["observation.state"].numpy(), s1[[0, 0, 1]])
    item = ds[first_of_ep1 + 7]
    np.testing.assert_array_equal(item["observation_is_pad"].numpy(), [False, False, False])
    np.testing.assert_array_equal(item["observation.state"].numpy(), s1[[5, 6, 7]])
    assert not torch.equal(item[FRONT][0], item[FRONT][2])  # the arm moved between them


def test_float_images_and_camera_subset(reader):
    u8 = WindowDataset(reader, WindowConfig(cameras=["front"]))
    fl = WindowDataset(reader, WindowConfig(cameras=[FRONT], image_format="float"))
    a, b = u8[10], fl[10]
    assert WRIST not in a and WRIST not in b
    assert b[FRONT].dtype == torch.float32 and b[FRONT].min() >= 0.0 and b[FRONT].max() <= 1.0
    torch.testing.assert_close(b[FRONT], a[FRONT].float() / 255.0)
    with pytest.raises(ValueError, match="top"):
        WindowDataset(reader, WindowConfig(cameras=["top"]))


def test_config_validation():
    with pytest.raises(ValueError, match="horizon"):
        WindowConfig(horizon=0)
    with pytest.raises(ValueError, match="n_obs_steps"):
        WindowConfig(n_obs_steps=0)
    with pytest.raises(ValueError, match="image_format"):
        WindowConfig(image_format="float16")  # type: ignore[arg-type]


def test_episode_subset(reader, synthetic_ds):
    val = WindowDataset(reader, episodes=[2, 0])
    assert len(val) == synthetic_ds.lengths[2] + synthetic_ds.lengths[0]
    assert {val[i]["episode_index"] for i in range(len(val))} == {0, 2}
    assert val[0]["episode_index"] == 2 and val[0]["frame_index"] == 0
    with pytest.raises(KeyError, match="episode 9"):
        WindowDataset(reader, episodes=[9])
    with pytest.raises(IndexError):
        val[len(val)]


def test_action_free_dataset(human_ds):
    ds = WindowDataset(human_ds.root, WindowConfig(horizon=8))
    item = ds[3]
    assert item["has_action"] is False and item["tier"] == "human"
    assert item["action"].shape == (8, 7)  # the embodiment's ee_delta width, so it batches with acted data
    assert torch.count_nonzero(item["action"]) == 0
    assert bool(item["action_is_pad"].all())
    np.testing.assert_array_equal(item["observation.state"].numpy(), human_ds.states[0][[3]])
    assert WindowDataset(human_ds.root, WindowConfig(horizon=8, action_dim=3))[0]["action"].shape == (8, 3)


def test_dataloader_workers_and_default_collate(synthetic_ds, human_ds):
    cfg = WindowConfig(horizon=8, n_obs_steps=2, cameras=["front"])
    acted = WindowDataset(synthetic_ds.root, cfg)
    free = WindowDataset(human_ds.root, cfg)
    both = ConcatDataset([acted, free])
    loader = DataLoader(both, batch_size=16, shuffle=False, num_workers=2)
    seen_frames, has_action, tiers = [], [], []
    for batch in loader:
        n = len(batch["task"])
        assert isinstance(batch["task"], list) and isinstance(batch["task"][0], str)
        assert batch[FRONT].shape == (n, 2, 3, 64, 64) and batch[FRONT].dtype == torch.uint8
        assert batch["action"].shape == (n, 8, 7)
        assert batch["action_is_pad"].dtype == torch.bool
        seen_frames.append(batch["frame_index"])
        has_action.append(batch["has_action"])
        tiers += batch["tier"]
    frames = torch.cat(seen_frames)
    assert len(frames) == len(both)
    expect = np.concatenate([np.arange(n) for n in synthetic_ds.lengths + human_ds.lengths])
    np.testing.assert_array_equal(frames.numpy(), expect)
    flags = torch.cat(has_action)
    assert flags[: len(acted)].all() and not flags[len(acted):].any()
    assert tiers.count("human") == len(free) and tiers.count("synthetic") == len(acted)
    # what workers produced equals what the main process computes
    direct = acted[len(acted) - 1]
    last_acted = next(b for i, b in enumerate(DataLoader(acted, batch_size=len(acted), num_workers=2)) if i == 0)
    assert torch.equal(last_acted[FRONT][-1], direct[FRONT])
    assert torch.equal(last_acted["action"][-1], direct["action"])


def test_pickles_without_frame_data(reader):
    """Spawned workers get the dataset pickled: memmaps must not travel (they reopen lazily)."""
    ds = WindowDataset(reader, WindowConfig(horizon=4))
    before = ds[30]  # maps the cache files in this process
    blob = pickle.dumps(ds)
    cache_bytes = reader.num_frames * 64 * 64 * 3 * len(reader.video_keys)
    assert len(blob) < cache_bytes / 4
    after = pickle.loads(blob)[30]
    for key in (FRONT, WRIST, "action", "observation.state"):
        assert torch.equal(after[key], before[key]), key
