"""The act head: ACT's conditional-VAE chunk decoder."""

from __future__ import annotations

import torch

from embodia.cerebellum.heads import build_head
from embodia.cerebellum.heads.act import ACTHead
from tests.cerebellum.heads.head_checks import batch, decreased, overfit, reloaded, sample, spec


def test_act_is_registered() -> None:
    assert isinstance(build_head("act", spec()), ACTHead)


def test_act_overfits_one_batch() -> None:
    torch.manual_seed(0)
    head = build_head("act", spec(dropout=0.0))
    data = batch()
    losses = overfit(head, data)
    assert decreased(losses, 0.2), losses[:5] + losses[-5:]
    # and the z = 0 chunk is close to the batch's chunks on its real steps
    err = (sample(head, data) - data["actions"]).abs()[~data["action_pad"]]
    assert err.mean() < 0.2


def test_act_sample_is_deterministic_z0() -> None:
    head = build_head("act", spec()).eval()
    data = batch()
    assert torch.equal(sample(head, data, seed=0), sample(head, data, seed=1))


def test_act_loss_ignores_padded_steps_and_padded_prefix_tokens() -> None:
    head = build_head("act", spec(dropout=0.0))
    data = batch()
    torch.manual_seed(3)
    loss, _ = head.compute_loss(data["prefix"], data["prefix_pad"], data["actions"], data["action_pad"])
    changed = dict(data)
    changed["actions"] = data["actions"].masked_fill(data["action_pad"][..., None], 5.0)
    changed["prefix"] = data["prefix"].masked_fill(data["prefix_pad"][..., None], -7.0)
    torch.manual_seed(3)
    again, _ = head.compute_loss(changed["prefix"], changed["prefix_pad"], changed["actions"], changed["action_pad"])
    assert torch.allclose(loss, again, atol=1e-5)


def test_act_kl_weight_and_fully_padded_prefix() -> None:
    head = build_head("act", spec(kl_weight=0.0, dropout=0.0))
    data = batch()
    pad = torch.ones_like(data["prefix_pad"])  # a row with no real token must not give NaN
    loss, logs = head.compute_loss(data["prefix"], pad, data["actions"], None)
    assert torch.isfinite(loss) and abs(float(loss.detach()) - logs["l1"]) < 1e-5
    assert torch.isfinite(head.eval().sample(data["prefix"], pad)).all()


def test_act_safetensors_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    head = build_head("act", spec())
    data = batch()
    overfit(head, data, steps=3)
    assert torch.equal(sample(head, data), sample(reloaded(head, "act", tmp_path), data))
