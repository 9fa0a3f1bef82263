"""Action tokenizer and the autoregressive token head: round trips, clipping, causality,
KV-cache == teacher forcing, padding invariance, overfitting a tiny batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embodia.cerebellum.checkpoint import load_checkpoint, save_checkpoint
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.heads.tokens import TokenHead
from embodia.cerebellum.policy import VLAPolicy, make_head
from embodia.cerebellum.tokenizer import detokenize, tokenize
from embodia.data.normalize import Normalizer

H, D, T = 4, 3, 5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add sync overhead (and collapse when cores are busy)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_cfg(**kw) -> PolicyConfig:
    base = dict(head="tokens", d_model=64, n_heads=4, head_layers=2, horizon=H, action_dim=D,
                n_action_steps=H)
    return PolicyConfig(**(base | kw))


def make(seed: int = 0, **kw) -> TokenHead:
    torch.manual_seed(seed)
    return TokenHead(small_cfg(**kw)).eval()


# ------------------------------------------------------------------ tokenizer
@settings(max_examples=200, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 64), elements=st.floats(-1.0, 1.0)),
       bins=st.sampled_from([1, 2, 7, 256, 1000]))
def test_round_trip_within_half_a_bin(x, bins):
    tok = tokenize(torch.from_numpy(x), bins)
    assert tok.dtype == torch.long and tok.shape == x.shape
    assert int(tok.min()) >= 0 and int(tok.max()) < bins
    back = detokenize(tok, bins, dtype=torch.float64).numpy()
    assert np.all(np.abs(back - x) <= 1.0 / bins + 1e-9)


@settings(max_examples=100, deadline=None)
@given(x=arrays(np.float32, st.integers(1, 64), elements=st.floats(-1.0, 1.0, width=32)))
def test_round_trip_float32_and_monotone(x):
    bins = 256
    tok = tokenize(torch.from_numpy(x), bins)
    back = detokenize(tok, bins)
    assert back.dtype == torch.float32
    assert np.all(np.abs(back.numpy() - x) <= 1.0 / bins + 1e-6)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(tok.numpy()[order]) >= 0)


def test_out_of_range_clips_to_end_bins():
    x = torch.tensor([-7.0, -1.0001, float("-inf"), -1.0, 1.0, 1.0001, 3.5, float("inf")])
    tok = tokenize(x, 256)
    assert tok.tolist() == [0, 0, 0, 0, 255, 255, 255, 255]
    c = detokenize(tok, 256)
    assert torch.allclose(c[:4], torch.tensor(-1 + 1 / 256)) and torch.allclose(c[4:], torch.tensor(1 - 1 / 256))


def test_bin_centres_are_fixed_points():
    tok = torch.arange(256)
    assert torch.equal(tokenize(detokenize(tok, 256), 256), tok)


# ----------------------------------------------------------------------- head
def test_make_head_builds_token_head():
    torch.manual_seed(0)
    assert isinstance(make_head(small_cfg()), TokenHead)


def test_sample_shape_range_and_bin_centres():
    head = make()
    torch.manual_seed(1)
    memory = torch.randn(3, T, 64)
    chunk = head.sample(memory, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (3, H, D) and chunk.dtype == torch.float32
    assert chunk.abs().max() <= 1.0
    assert torch.equal(detokenize(tokenize(chunk, 256), 256), chunk)  # exactly bin centres
    assert torch.equal(head.sample(memory), chunk)  # greedy: deterministic


def test_kv_cache_decoding_matches_teacher_forcing():
    head = make()
    torch.manual_seed(2)
    memory = torch.randn(2, T, 64)
    tokens = head.sample_tokens(memory)
    with torch.no_grad():
        logits = head(memory, tokens)
    assert torch.equal(logits.argmax(-1), tokens)


def test_logits_are_causal():
    head = make()
    torch.manual_seed(3)
    memory = torch.randn(1, T, 64)
    tokens = torch.randint(0, 256, (1, H * D))
    j = 5
    changed = tokens.clone()
    changed[0, j] = (changed[0, j] + 17) % 256
    with torch.no_grad():
        a, b = head(memory, tokens), head(memory, changed)
    assert torch.allclose(a[:, : j + 1], b[:, : j + 1], atol=1e-6)  # logits i see tokens < i only
    assert not torch.allclose(a[:, j + 1:], b[:, j + 1:])


@pytest.mark.parametrize("pattern", ["suffix", "scattered"])
def test_padded_steps_do_not_affect_loss(pattern):
    head = make()
    torch.manual_seed(4)
    memory = torch.randn(2, T, 64)
    actions = torch.rand(2, H, D) * 2 - 1
    pad = torch.zeros(2, H, dtype=torch.bool)
    if pattern == "suffix":
        pad[0, 2:] = True
        pad[1, 3:] = True
    else:
        pad[0, 1] = True
        pad[1, 0] = pad[1, 2] = True
    other = actions.clone()
    other[pad] = torch.rand(int(pad.sum()), D) * 2 - 1
    other[0, 1 if pattern == "scattered" else 2, 0] = float("nan")  # even NaN at padded steps
    with torch.no_grad():
        la, logs = head.loss(memory, actions, pad)
        lb, _ = head.loss(memory, other, pad)
        other[~pad] = -actions[~pad]  # changing a kept step does change the loss
        lc, _ = head.loss(memory, other, pad)
    assert torch.isfinite(la) and torch.equal(la, lb)
    assert not torch.allclose(la, lc)
    assert set(logs) == {"token_ce", "token_acc"}


def test_fully_padded_batch_has_zero_loss():
    head = make()
    loss, _ = head.loss(torch.randn(2, T, 64), torch.zeros(2, H, D), torch.ones(2, H, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()  # still a valid graph


def test_overfits_a_tiny_batch():
    head = make(seed=5).train()
    torch.manual_seed(6)
    memory = torch.randn(2, T, 64)
    actions = torch.rand(2, H, D) * 2 - 1
    pad = torch.zeros(2, H, dtype=torch.bool)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, _ = head.loss(memory, actions, pad)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.1 * first
    head.eval()
    got = tokenize(head.sample(memory), 256)
    want = tokenize(actions, 256)
    close = (got - want).abs() <= 2
    assert close.float().mean() >= 0.9, f"{int(close.sum())}/{close.numel()} within 2 bins"


class _StubLanguage:
    def encode(self, tasks):
        return torch.ones(len(tasks), 384)


def test_policy_with_token_head_trains_predicts_and_round_trips(tmp_path):
    cfg = small_cfg(image_size=32, backbone_layers=1)
    stats = {"observation.state": {"mean": [0.0] * 15, "std": [1.0] * 15},
             "action": {"q01": [-2.0] * D, "q99": [2.0] * D}}
    norm = Normalizer(stats, {"observation.state": "mean_std", "action": "quantile"})
    torch.manual_seed(7)
    policy = VLAPolicy(cfg, norm, _StubLanguage())
    img = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    batch = {"task": ["a", "b"], "observation.state": torch.randn(2, 15),
             "observation.images.front": img, "observation.images.wrist": img,
             "action": torch.randn(2, H, D) * 3, "action_is_pad": torch.zeros(2, H, dtype=torch.bool)}
    loss, logs = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and "token_ce" in logs
    policy.eval()
    chunk = policy.predict_chunk(batch)
    assert chunk.shape == (2, H, D) and chunk.abs().max() <= 2.0  # unnormalized from [-1, 1]
    loaded = load_checkpoint(save_checkpoint(policy, tmp_path / "ck"), language=_StubLanguage())
    assert isinstance(loaded.head, TokenHead)
    assert torch.equal(loaded.predict_chunk(batch), chunk)
