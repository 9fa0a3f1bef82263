"""The inference fast path (TorchScript traces) gives the eager numbers, follows weight
updates, and never leaks into training or pickling."""

import copy
import pickle

import torch

from embodia.cerebellum.policy import batch_from_obs
from tests.cerebellum.test_estimator import OBJ, _batch
from tests.cerebellum.test_policy import _obs, _policy


def _eager_chunk(policy, batch, seed):
    """predict_chunk with autograd on (so no trace is used)."""
    policy._generator.manual_seed(seed)
    with torch.enable_grad():
        memory = policy.memory(batch)
        chunk = policy.head.sample.__wrapped__(policy.head, memory, generator=policy._generator).detach()
    with torch.no_grad():
        return policy.normalizer.unnormalize("action", chunk)


def test_traced_inference_matches_eager_and_follows_new_weights(tiny_ds, hash_language):
    policy = _policy(tiny_ds, hash_language, flow_prior=True, **OBJ).eval()
    batch = batch_from_obs(_obs(tiny_ds), policy.cfg)
    policy._generator.manual_seed(5)
    fast = policy.predict_chunk(batch)
    assert policy.head._fast_velocity._traces and policy.estimator._fast._traces  # the traces ran
    assert policy.prefix._fast._traces
    torch.testing.assert_close(fast, _eager_chunk(policy, batch, 5), rtol=1e-5, atol=1e-5)
    # new weights loaded in place: the cached traces see them
    state = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in policy.state_dict().items()}
    policy.load_state_dict(state)
    policy._generator.manual_seed(5)
    moved = policy.predict_chunk(batch)
    assert not torch.allclose(moved, fast)
    torch.testing.assert_close(moved, _eager_chunk(policy, batch, 5), rtol=1e-5, atol=1e-5)


def test_training_never_uses_a_trace_and_copies_start_empty(tiny_ds, hash_language):
    policy = _policy(tiny_ds, hash_language, flow_prior=True, **OBJ)
    policy.eval()
    policy.predict_chunk(batch_from_obs(_obs(tiny_ds), policy.cfg))
    for clone in (copy.deepcopy(policy), pickle.loads(pickle.dumps(policy))):
        assert not clone.head._fast_velocity._traces and not clone.estimator._fast._traces
    policy.train()
    loss, _ = policy.compute_loss(_batch(policy, tiny_ds))
    loss.backward()  # gradients flow: the eager path ran
    assert all(p.grad is not None for p in policy.head.parameters() if p.requires_grad)
