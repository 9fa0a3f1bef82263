"""RTC continuation: the new chunk starts with the committed actions, bends toward the rest
of the old plan, and without a prefix is exactly the policy's own sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodia.cerebellum.policy import batch_from_obs
from embodia.runtime.rtc import continue_chunk, inpaint_weights, rtc_predict_chunk
from tests.runtime.conftest import tiny_policy


def _batch(policy, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.normal(size=15).astype(np.float32), "task": "pick up the red cube",
           "embodiment": "arm7"}
    for cam in policy.cfg.cameras:
        obs[f"observation.images.{cam}"] = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return batch_from_obs(obs, policy.cfg)


def test_weights():
    assert inpaint_weights(6, 4, 2).tolist() == pytest.approx([1, 1, 2 / 3, 1 / 3, 0, 0])
    assert inpaint_weights(4, 0, 0).tolist() == [0, 0, 0, 0]
    assert inpaint_weights(6, 4, 2, soft=False).tolist() == [1, 1, 0, 0, 0, 0]  # the runtime's default
    with pytest.raises(ValueError):
        inpaint_weights(4, 2, 3)


def test_without_prefix_it_is_the_policy_sampler():
    policy = tiny_policy()
    batch = _batch(policy)
    policy._generator.manual_seed(5)
    ref = policy.predict_chunk(batch)
    with torch.inference_mode():
        memory = policy.memory(batch)
    empty = torch.zeros(1, 0, policy.cfg.action_dim)
    x = continue_chunk(policy.head, memory, empty, 0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(policy.normalizer.unnormalize("action", x), ref, rtol=0, atol=1e-6)


def test_committed_actions_are_kept_and_the_overlap_follows_the_old_plan():
    policy = tiny_policy()
    batch = _batch(policy, 1)
    old = policy.predict_chunk(batch)[0].numpy()
    h, frozen = policy.cfg.horizon, 2
    prefix = old[1:]  # the old chunk from one slot later: what the stream will run next
    gaps_rtc, gaps_free = [], []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        new = rtc_predict_chunk(policy, batch, prefix, frozen, g)[0].numpy()
        assert new.shape == (h, 7)
        np.testing.assert_array_equal(new[:frozen], prefix[:frozen])
        policy._generator.manual_seed(seed)
        free = policy.predict_chunk(batch)[0].numpy()
        gaps_rtc.append(np.abs(new[frozen] - prefix[frozen]).mean())
        gaps_free.append(np.abs(free[frozen] - prefix[frozen]).mean())
    # the first free action is pulled toward the old plan (a smaller jump at the boundary)
    assert np.mean(gaps_rtc) < np.mean(gaps_free)


def test_rtc_needs_the_flow_head():
    policy = tiny_policy(head="tokens")
    with pytest.raises(ValueError, match="flow head"):
        rtc_predict_chunk(policy, _batch(policy), np.zeros((2, 7), np.float32), 1)


def test_hard_only_continuation_keeps_the_committed_actions_and_plans_the_rest_afresh():
    """soft=False: the committed actions exactly; the rest is not pulled toward the old
    chunk, so it stays nearer the policy's fresh plan than the soft continuation does."""
    policy = tiny_policy()
    policy.cfg.flow_temperature = 0.0
    batch = _batch(policy)
    fresh = policy.predict_chunk(batch)[0].numpy()
    prefix = np.full((6, 7), 0.03, np.float32)
    hard = rtc_predict_chunk(policy, batch, prefix, 2, torch.Generator().manual_seed(0), soft=False)[0].numpy()
    soft = rtc_predict_chunk(policy, batch, prefix, 2, torch.Generator().manual_seed(0), soft=True)[0].numpy()
    np.testing.assert_allclose(hard[:2], prefix[:2])
    assert np.abs(hard[2:] - fresh[2:]).max() < np.abs(soft[2:] - fresh[2:]).max()
