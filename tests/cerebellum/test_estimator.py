import pytest
import torch

from embodia.cerebellum.checkpoint import load_checkpoint, save_checkpoint
from embodia.cerebellum.policy import batch_from_obs
from embodia.cerebellum.training import TrainConfig, build_datasets
from embodia.data.reader import DatasetReader
from tests.cerebellum.test_policy import _obs, _policy

OBJ = dict(env_state_input="estimated", image_tokens=False, lang_tokens=8, estimator_keypoints=8,
           estimator_width=16)


def _batch(policy, tiny_ds, step=2):
    tc = TrainConfig(data=[str(tiny_ds.root)], out="unused", policy=policy.cfg, val_fraction=0)
    train_ds, _, _, _ = build_datasets(tc)
    return torch.utils.data.default_collate([train_ds[i] for i in range(0, len(train_ds), step)])


def test_estimator_learns_where_objects_are_and_runs_without_the_privileged_vector(tiny_ds, hash_language):
    torch.manual_seed(0)
    policy = _policy(tiny_ds, hash_language, **OBJ)
    cfg = policy.cfg
    assert policy.estimator is not None and policy.env_probe is None
    assert len(cfg.camera_projection) == 3 and len(cfg.camera_projection[0]) == 4  # the fixed front camera
    assert cfg.env_state_names and cfg.env_feature_dim > cfg.env_state_dim  # presence flags
    batch = _batch(policy, tiny_ds)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(50):
        loss, logs = policy.compute_loss(batch)
        first = first or (logs["heatmap_ce"], logs["env_state_mse"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["heatmap_ce"] < 0.85 * first[0] and logs["env_state_mse"] < 0.5 * first[1], (first, logs)
    obs = _obs(tiny_ds)
    assert "observation.environment_state" not in obs  # run time: cameras, state, words only
    policy.eval()
    chunk = policy.predict_chunk(batch_from_obs(obs, cfg))
    assert chunk.shape == (1, 4, 7) and torch.isfinite(chunk).all()


def test_object_policy_checkpoint_round_trip(tiny_ds, hash_language, tmp_path):
    policy = _policy(tiny_ds, hash_language, **OBJ).eval()
    names = policy.prefix.objects.name_emb.clone()
    assert names.abs().sum() > 0  # the objects' names came from the language encoder
    batch = batch_from_obs(_obs(tiny_ds), policy.cfg)
    policy._generator.manual_seed(1)
    a = policy.predict_chunk(batch)
    save_checkpoint(policy, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck", language=hash_language)
    torch.testing.assert_close(loaded.prefix.objects.name_emb, names)
    loaded._generator.manual_seed(1)
    torch.testing.assert_close(loaded.predict_chunk(batch), a, rtol=0, atol=0)


def test_privileged_policy_says_what_it_needs(tiny_ds, hash_language):
    policy = _policy(tiny_ds, hash_language, env_state_input="privileged", image_tokens=False).eval()
    with pytest.raises(ValueError, match="observation.environment_state"):
        policy.predict_chunk(batch_from_obs(_obs(tiny_ds), policy.cfg))
    recorded = DatasetReader(tiny_ds.root).columns["observation.environment_state"][0]
    obs = _obs(tiny_ds) | {"observation.environment_state": recorded}
    assert policy.predict_chunk(batch_from_obs(obs, policy.cfg)).shape == (1, 4, 7)
    obs = _obs(tiny_ds) | {"observation.environment_state": recorded[:-1]}
    with pytest.raises(ValueError, match="environment_state must have"):
        policy.predict_chunk(batch_from_obs(obs, policy.cfg))


def test_unknown_object_input_is_rejected():
    from embodia.cerebellum.config import PolicyConfig

    with pytest.raises(ValueError, match="env_state_input"):
        PolicyConfig(env_state_input="telepathy")


def test_flow_prior_regresses_the_chunk_and_starts_integration_there(tiny_ds, hash_language):
    torch.manual_seed(0)
    policy = _policy(tiny_ds, hash_language, **OBJ, flow_prior=True)
    batch = _batch(policy, tiny_ds)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, logs = policy.compute_loss(batch)
        first = first or logs["prior_mse"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["prior_mse"] < 0.5 * first, (first, logs["prior_mse"])
    policy.eval()
    head = policy.head
    with torch.no_grad():
        mem = head.memory_kv(policy.memory(batch))
        mu = head.prior(mem)
        noise = torch.randn_like(mu)
        torch.testing.assert_close(head.source(mem, noise), mu + policy.cfg.flow_sigma * noise)
    assert any(k.endswith("prior_query") for k, _ in policy.named_parameters())


def test_flow_temperature_zero_makes_sampling_deterministic(tiny_ds, hash_language):
    policy = _policy(tiny_ds, hash_language, **OBJ, flow_prior=True).eval()
    batch = batch_from_obs(_obs(tiny_ds), policy.cfg)
    policy._generator.manual_seed(1)
    a = policy.predict_chunk(batch)
    policy._generator.manual_seed(2)
    assert not torch.allclose(a, policy.predict_chunk(batch))  # temperature 1: noise matters
    policy.cfg.flow_temperature = 0.0
    policy._generator.manual_seed(1)
    b = policy.predict_chunk(batch)
    policy._generator.manual_seed(2)
    torch.testing.assert_close(b, policy.predict_chunk(batch), rtol=0, atol=0)
