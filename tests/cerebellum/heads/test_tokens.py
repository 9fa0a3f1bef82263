"""The tokens head: autoregressive action tokens, bins or FAST."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodia.cerebellum.heads import HeadSpec, build_head
from embodia.cerebellum.heads.action_tokens import ActionTokensHead
from tests.cerebellum.heads.head_checks import (
    D,
    H,
    batch,
    decreased,
    overfit,
    reloaded,
    sample,
    spec,
)

TOKENIZERS = [pytest.param({"tokenizer": "bins"}, id="bins"),
              pytest.param({"tokenizer": "fast", "fast_vocab": 256}, id="fast")]


def training_chunks(n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, H)[None, :, None]
    return np.clip(0.8 * np.sin(4 * t + 3 * rng.uniform(size=(n, 1, D))), -1, 1)


def fitted_head(options: dict) -> ActionTokensHead:
    head = build_head("tokens", spec(**options))
    head.fit(training_chunks())
    return head


def test_tokens_is_registered_with_bins_default() -> None:
    head = build_head("tokens", spec())
    assert isinstance(head, ActionTokensHead) and head.kind == "bins" and head.length == H * D


@pytest.mark.parametrize("options", TOKENIZERS)
def test_tokens_overfit_one_batch(options: dict) -> None:
    torch.manual_seed(0)
    head = fitted_head(options)
    data = batch()
    losses = overfit(head, data, steps=50, lr=3e-3)
    assert decreased(losses, 0.3), losses[:5] + losses[-5:]
    # greedy decoding then reproduces the chunks on their real steps
    err = (sample(head, data) - data["actions"]).abs()[~data["action_pad"]]
    assert err.mean() < 0.1


def test_fast_uses_fewer_tokens_than_bins() -> None:
    head = fitted_head({"tokenizer": "fast", "fast_vocab": 256})
    data = batch()
    _, keep = head.encode(data["actions"], data["action_pad"])
    assert keep.sum(1).max() < H * D  # tokens + EOS per chunk against H * D bins


def test_bins_loss_ignores_padded_steps() -> None:
    head = build_head("tokens", spec())
    data = batch()
    loss, _ = head.compute_loss(data["prefix"], data["prefix_pad"], data["actions"], data["action_pad"])
    moved = data["actions"].masked_fill(data["action_pad"][..., None], 0.9)
    again, _ = head.compute_loss(data["prefix"], data["prefix_pad"], moved, data["action_pad"])
    assert torch.allclose(loss, again)


def test_fast_garbage_generation_decodes() -> None:
    head = fitted_head({"tokenizer": "fast", "fast_vocab": 256})
    rng = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, head.n_out, (5, head.length), generator=rng)
    tokens[0] = head.eos  # empty
    tokens[1, 3] = head.eos  # short
    out = head.decode(tokens, torch.float32)
    assert out.shape == (5, H, D) and torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(H, D))


@pytest.mark.parametrize("options", TOKENIZERS)
def test_tokens_safetensors_round_trip(options: dict, tmp_path) -> None:
    torch.manual_seed(0)
    head = fitted_head(options)
    data = batch()
    overfit(head, data, steps=3)
    again = reloaded(head, "tokens", tmp_path)
    if head.kind == "fast":
        assert again.fast.to_dict() == head.fast.to_dict() and len(again.fast.merges) > 0
    assert torch.equal(sample(head, data), sample(again, data))


def test_bad_tokenizer_fails_at_build() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        build_head("tokens", spec(tokenizer="words"))


def test_fast_state_travels_in_the_spec_and_in_the_buffers(tmp_path) -> None:
    head = fitted_head({"tokenizer": "fast", "fast_vocab": 256})
    spec_json = json.loads(json.dumps(head.spec.to_dict()))  # config.json's head_spec
    assert spec_json["options"]["fast_state"] == head.fast.to_dict()
    from_spec = build_head("tokens", HeadSpec.from_dict(spec_json))
    assert from_spec.fast.to_dict() == head.fast.to_dict()
    # without it in the spec, the state_dict's buffers bring the same tokenizer
    del spec_json["options"]["fast_state"]
    bare = build_head("tokens", HeadSpec.from_dict(spec_json))
    assert len(bare.fast.merges) == 0
    bare.load_state_dict(head.state_dict())
    assert bare.fast.to_dict() == head.fast.to_dict()
