"""The optional Hugging Face vision-language backbone, on a tiny random SigLIP saved locally
(nothing is downloaded)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from embodia.cerebellum.backbone import PrefixEncoder, make_prefix
from embodia.cerebellum.checkpoint import load_checkpoint, save_checkpoint
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.hf_backbone import HFPrefixEncoder
from embodia.cerebellum.policy import VLAPolicy, batch_from_obs, normalizer_modes
from embodia.cerebellum.training import (
    TrainConfig,
    _load_optimizer,
    _save_optimizer,
    build_datasets,
)
from embodia.data.normalize import Normalizer
from tests.cerebellum.test_policy import SMALL, _obs

transformers = pytest.importorskip("transformers")

PATCHES = (32 // 8) ** 2  # tiny SigLIP: image_size 32, patch 8


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.SiglipConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8))
    path = tmp_path_factory.mktemp("hf") / "tiny-siglip"
    transformers.SiglipModel(cfg).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return path


def _hf_policy(tiny_ds, lang, path, **kw):
    cfg = PolicyConfig(**(SMALL | {"hf_backbone": str(path)} | kw))
    tc = TrainConfig(data=[str(tiny_ds.root)], out="unused", policy=cfg, val_fraction=0)
    train_ds, _, stats, _ = build_datasets(tc)
    return VLAPolicy(cfg, Normalizer(stats, normalizer_modes(cfg)), lang), train_ds


def _batch(train_ds):
    return torch.utils.data.default_collate([train_ds[i] for i in range(0, len(train_ds), 3)])


def _tower(policy):
    return policy.prefix.vision.tower


def test_default_config_keeps_the_cnn_and_old_configs_load():
    old = PolicyConfig().to_dict()
    del old["hf_backbone"], old["freeze_hf_backbone"]  # a config.json written before these fields
    cfg = PolicyConfig.from_dict(old)
    assert cfg.hf_backbone is None and cfg.freeze_hf_backbone
    assert type(make_prefix(PolicyConfig(**SMALL))) is PrefixEncoder


def test_predict_chunk_and_memory_shape(tiny_ds, hash_language, tiny_siglip):
    policy, _ = _hf_policy(tiny_ds, hash_language, tiny_siglip, image_size=48)  # resized to 32 inside
    assert isinstance(policy.prefix, HFPrefixEncoder)
    assert policy.memory(batch_from_obs(_obs_sized(tiny_ds, 48), policy.cfg)).shape == (1, 2 + 2 * PATCHES, SMALL["d_model"])
    chunk = policy.eval().predict_chunk(batch_from_obs(_obs_sized(tiny_ds, 48), policy.cfg))
    assert chunk.shape == (1, 4, 7) and torch.isfinite(chunk).all()


def test_training_reduces_loss_frozen_tower_stays_put(tiny_ds, hash_language, tiny_siglip):
    torch.manual_seed(0)
    policy, train_ds = _hf_policy(tiny_ds, hash_language, tiny_siglip)
    batch = _batch(train_ds)
    tower_before = {k: v.clone() for k, v in _tower(policy).state_dict().items()}
    proj_before = policy.prefix.vision.proj[1].weight.clone()
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)

    def fixed_loss() -> float:
        torch.manual_seed(1)  # the same flow times and noise before and after
        with torch.no_grad():
            return float(policy.compute_loss(batch)[1]["flow_mse"])

    first = fixed_loss()
    policy.train()
    for _ in range(30):
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not _tower(policy).training  # frozen: eval mode even under policy.train()
    assert all(not p.requires_grad for p in _tower(policy).parameters())
    for k, v in _tower(policy).state_dict().items():
        torch.testing.assert_close(v, tower_before[k], rtol=0, atol=0)
    assert not torch.equal(policy.prefix.vision.proj[1].weight, proj_before)
    last = fixed_loss()
    assert last < 0.7 * first, (first, last)
    # optimizer state resumes onto the right parameters although the tower has none
    _save_optimizer(opt, tiny_siglip.parent)
    again = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    _load_optimizer(again, tiny_siglip.parent)
    for p in policy.parameters():
        assert (p in again.state) == p.requires_grad
        if p.requires_grad:
            torch.testing.assert_close(again.state[p]["exp_avg"], opt.state[p]["exp_avg"])


def test_fine_tuning_is_a_flag_away(tiny_ds, hash_language, tiny_siglip):
    policy, train_ds = _hf_policy(tiny_ds, hash_language, tiny_siglip, freeze_hf_backbone=False)
    w = _tower(policy).embeddings.patch_embedding.weight
    before = w.clone()
    policy.train()
    assert _tower(policy).training and w.requires_grad
    loss, _ = policy.compute_loss(_batch(train_ds))
    loss.backward()
    torch.optim.SGD(policy.parameters(), lr=1e-2).step()
    assert not torch.equal(w, before)


def test_checkpoint_round_trip_gives_identical_actions(tiny_ds, hash_language, tiny_siglip, tmp_path):
    policy, train_ds = _hf_policy(tiny_ds, hash_language, tiny_siglip)
    with torch.no_grad():  # the checkpoint must carry trained weights, not the folder's
        for p in policy.prefix.vision.proj.parameters():
            p.add_(0.1)
    policy.eval()
    batch = batch_from_obs(_obs(tiny_ds), policy.cfg)
    policy._generator.manual_seed(3)
    a = policy.predict_chunk(batch)
    path = save_checkpoint(policy, tmp_path / "ck")
    assert json.loads((path / "config.json").read_text())["hf_backbone"] == str(tiny_siglip)
    keys = load_file(str(path / "model.safetensors")).keys()
    assert any(k.startswith("prefix.vision.tower.") for k in keys)
    loaded = load_checkpoint(path, language=hash_language)
    loaded._generator.manual_seed(3)
    b = loaded.predict_chunk(batch)
    assert a.shape == (1, 4, 7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_paths_get_clear_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=f"hf_backbone {missing} does not exist"):
        make_prefix(PolicyConfig(**SMALL, hf_backbone=str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no config.json \(found \['weights.bin'\]\)"):
        make_prefix(PolicyConfig(**SMALL, hf_backbone=str(empty)))
    text_only = tmp_path / "bert"
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64).save_pretrained(text_only)
    with pytest.raises(ValueError, match=f"hf_backbone {text_only} holds a 'bert' model .*without a vision tower"):
        make_prefix(PolicyConfig(**SMALL, hf_backbone=str(text_only)))


def _obs_sized(tiny_ds, size):
    """The tiny dataset's observation upsampled to size x size (a camera bigger than the tower's input)."""
    obs = _obs(tiny_ds)
    for k in ("observation.images.front", "observation.images.wrist"):
        img = torch.from_numpy(obs[k]).permute(2, 0, 1)[None].float()
        big = torch.nn.functional.interpolate(img, size=(size, size), mode="nearest")
        obs[k] = big[0].permute(1, 2, 0).to(torch.uint8).numpy()
    return obs
