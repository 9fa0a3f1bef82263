"""The diffusion head: DDPM training, DDIM sampling, U-Net or transformer denoiser."""

from __future__ import annotations

import pytest
import torch

from embodia.cerebellum.heads import build_head
from embodia.cerebellum.heads.diffusion import DiffusionHead, squared_cosine_betas
from tests.cerebellum.heads.head_checks import batch, overfit, reloaded, sample, seeded_loss, spec

SMALL_UNET = {"unet_dims": [16, 32], "step_embed_dim": 16}
DENOISERS = [pytest.param({"denoiser": "unet", **SMALL_UNET}, id="unet"),
             pytest.param({"denoiser": "transformer"}, id="transformer")]


def test_diffusion_is_registered_with_unet_default() -> None:
    head = build_head("diffusion", spec())
    assert isinstance(head, DiffusionHead) and head.denoiser == "unet"


def test_schedule_and_ddim_steps() -> None:
    betas = squared_cosine_betas(100)
    assert betas.shape == (100,) and float(betas.max()) <= 0.999 and bool((betas > 0).all())
    head = build_head("diffusion", spec(**SMALL_UNET))
    abar = head.alphas_cumprod
    assert bool((abar[1:] < abar[:-1]).all()) and abar[-1] < 1e-3 < 0.99 < abar[0]
    assert head.ddim_steps() == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]


@pytest.mark.parametrize(("options", "factor"), [({"denoiser": "unet", "step_embed_dim": 32}, 0.8),
                                                  ({"denoiser": "transformer"}, 0.6)], ids=["unet", "transformer"])
def test_diffusion_overfits_one_batch(options: dict, factor: float) -> None:
    """The epsilon MSE over fixed (step, noise) draws falls (measured over seeds 0-3: the
    CPU-default U-Net to ~0.6x in 50 steps, the transformer to ~0.35x)."""
    torch.manual_seed(0)
    head = build_head("diffusion", spec(**options))
    data = batch()
    before = seeded_loss(head, data)
    overfit(head, data, steps=50, lr=1e-3)
    after = seeded_loss(head, data)
    assert after < factor * before, (before, after)


@pytest.mark.parametrize("options", DENOISERS)
def test_diffusion_sample_reproducible_and_clipped(options: dict) -> None:
    head = build_head("diffusion", spec(**options)).eval()
    data = batch()
    a, b = sample(head, data, seed=0), sample(head, data, seed=0)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(head, data, seed=1))
    assert float(a.abs().max()) <= 1.0 + 1e-5  # the last DDIM step returns the clipped x0


def test_horizon_not_a_multiple_of_the_unet_stride() -> None:
    head = build_head("diffusion", spec(unet_dims=[16, 32, 32], step_embed_dim=16)).eval()
    data = batch()  # horizon 8 padded to a multiple of 4: fine; 7 must work too
    head7 = build_head("diffusion", head.spec.__class__(**{**head.spec.to_dict(), "horizon": 7})).eval()
    out = head7.sample(data["prefix"], data["prefix_pad"])
    assert out.shape == (4, 7, 3) and torch.isfinite(out).all()
    loss, _ = head7.compute_loss(data["prefix"], data["prefix_pad"], data["actions"][:, :7], data["action_pad"][:, :7])
    assert torch.isfinite(loss)


@pytest.mark.parametrize("options", DENOISERS)
def test_diffusion_safetensors_round_trip(options: dict, tmp_path) -> None:
    torch.manual_seed(0)
    head = build_head("diffusion", spec(**options))
    data = batch()
    overfit(head, data, steps=3)
    assert torch.equal(sample(head, data, seed=5), sample(reloaded(head, "diffusion", tmp_path), data, seed=5))


def test_bad_options_fail_at_build() -> None:
    with pytest.raises(ValueError, match="denoiser"):
        build_head("diffusion", spec(denoiser="mlp"))
    with pytest.raises(ValueError, match="inference_steps"):
        build_head("diffusion", spec(inference_steps=0))
