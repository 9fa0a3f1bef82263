import json

import numpy as np
import pytest
import torch

from embodia.cerebellum.checkpoint import load_checkpoint, save_checkpoint
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.heads.flow import FlowHead
from embodia.cerebellum.policy import VLAPolicy, batch_from_obs, normalizer_modes
from embodia.cerebellum.training import TrainConfig, build_datasets, train
from embodia.data.normalize import Normalizer

SMALL = dict(image_size=32, d_model=32, n_heads=4, backbone_layers=1, head_layers=1, horizon=4,
             n_action_steps=2, flow_steps=4)


def _policy(tiny_ds, lang, **kw):
    cfg = PolicyConfig(**(SMALL | kw))
    tc = TrainConfig(data=[str(tiny_ds.root)], out="unused", policy=cfg)
    _, _, stats, _ = build_datasets(tc)
    return VLAPolicy(cfg, Normalizer(stats, normalizer_modes(cfg)), lang)


def _obs(tiny_ds, t=0):
    return {"observation.state": tiny_ds.states[0][t],
            "observation.images.front": tiny_ds.images["observation.images.front"][0][t],
            "observation.images.wrist": tiny_ds.images["observation.images.wrist"][0][t],
            "task": tiny_ds.tasks[0], "embodiment": "arm7"}


def test_training_loss_decreases_and_resumes(tiny_ds, tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(data=[str(tiny_ds.root)], out=str(tmp_path / "ck"), policy=PolicyConfig(**SMALL),
                      batch_size=16, lr=2e-3, warmup_steps=5, max_steps=80, val_every=20, val_fraction=0.34,
                      max_minutes=5)
    summary = train(cfg)
    log = [json.loads(line) for line in (tmp_path / "ck/training/log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 80 and not summary["resumed"]
    first, last = log[0]["loss"], np.mean([r["loss"] for r in log[-2:]])
    assert last < 0.7 * first, (first, last)
    cfg.max_steps = 90
    again = train(cfg)
    assert again["resumed"] and again["steps"] == 90


def test_checkpoint_round_trip_gives_identical_actions(tiny_ds, hash_language, tmp_path):
    policy = _policy(tiny_ds, hash_language).eval()
    batch = batch_from_obs(_obs(tiny_ds), policy.cfg)
    policy._generator.manual_seed(3)
    a = policy.predict_chunk(batch)
    save_checkpoint(policy, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck", language=hash_language)
    loaded._generator.manual_seed(3)
    b = loaded.predict_chunk(batch)
    assert a.shape == (1, 4, 7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_validation(tiny_ds, hash_language, tmp_path):
    path = save_checkpoint(_policy(tiny_ds, hash_language), tmp_path / "ck")
    with pytest.raises(ValueError, match="drives 'arm7', not 'humanoid_upper'"):
        load_checkpoint(path, language=hash_language, embodiment="humanoid_upper")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_checkpoint(path, language=hash_language)
    cfg = json.loads((path / "config.json").read_text())
    cfg["format_version"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version"):
        load_checkpoint(path, language=hash_language)
    (path / "stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="stats.json"):
        load_checkpoint(path, language=hash_language)


def test_bad_observations_are_named(tiny_ds, hash_language):
    policy = _policy(tiny_ds, hash_language).eval()
    obs = _obs(tiny_ds)
    with pytest.raises(ValueError, match="observation.state must have shape"):
        policy.select_action(obs | {"observation.state": np.zeros(3, np.float32)})
    nan_state = obs["observation.state"].copy()
    nan_state[2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        policy.select_action(obs | {"observation.state": nan_state})
    with pytest.raises(ValueError, match="missing 'observation.images.wrist'"):
        policy.select_action({k: v for k, v in obs.items() if k != "observation.images.wrist"})
    with pytest.raises(ValueError, match="embodiment 'humanoid_upper'"):
        policy.select_action(obs | {"embodiment": "humanoid_upper"})
    with pytest.raises(ValueError, match="uint8"):
        policy.select_action(obs | {"observation.images.front": np.zeros((32, 32, 3), np.float32)})


def test_select_action_runs_the_chunk_as_a_queue(tiny_ds, hash_language, monkeypatch):
    policy = _policy(tiny_ds, hash_language).eval()
    calls = []
    orig = policy.predict_chunk

    def counting(batch):
        calls.append(1)
        return orig(batch)

    monkeypatch.setattr(policy, "predict_chunk", counting)
    actions = [policy.select_action(_obs(tiny_ds, t)) for t in range(5)]
    assert all(a.shape == (7,) for a in actions)
    assert len(calls) == 3  # n_action_steps=2: re-plan at t = 0, 2, 4
    policy.reset()
    policy.select_action(_obs(tiny_ds))
    assert len(calls) == 4


def test_temporal_ensembling_predicts_every_step(tiny_ds, hash_language):
    policy = _policy(tiny_ds, hash_language, temporal_ensemble=0.1).eval()
    out = [policy.select_action(_obs(tiny_ds, t)) for t in range(3)]
    assert len(policy._ensemble) == 3 and all(np.all(np.isfinite(a)) for a in out)


def test_flow_time_schedule_is_beta_1p5_1():
    head = FlowHead(PolicyConfig(**SMALL))
    t = head.beta.sample((20000,))
    assert abs(float(t.mean()) - 0.6) < 0.01  # Beta(1.5, 1) has mean 1.5 / 2.5


def test_config_rejects_bad_fields():
    with pytest.raises(ValueError, match="unknown head"):
        PolicyConfig(head="diffusion-magic")
    with pytest.raises(ValueError, match="unknown fields"):
        PolicyConfig.from_dict(PolicyConfig().to_dict() | {"wings": 2})
    with pytest.raises(ValueError, match="dropout"):
        PolicyConfig(dropout=1.0)


def test_dropout_is_random_in_training_and_off_at_inference(tiny_ds, hash_language):
    """Dropout regularizes the prefix and the head while training; `select_action` must not
    see it (a checkpoint loads in eval mode), or the same observation would give two chunks."""
    policy = _policy(tiny_ds, hash_language, dropout=0.5, flow_temperature=0.0)
    batch = batch_from_obs(_obs(tiny_ds), policy.cfg)
    policy.train()
    assert not torch.equal(policy.memory(batch), policy.memory(batch))
    policy.eval()
    assert torch.equal(policy.predict_chunk(batch), policy.predict_chunk(batch))


def test_environment_state_is_a_training_target_never_an_input(tiny_ds, hash_language):
    torch.manual_seed(0)
    policy = _policy(tiny_ds, hash_language)
    assert policy.cfg.env_state_dim == tiny_ds_env_dim(tiny_ds) and policy.env_probe is not None
    tc = TrainConfig(data=[str(tiny_ds.root)], out="unused", policy=policy.cfg, val_fraction=0)
    train_ds, _, _, _ = build_datasets(tc)
    batch = torch.utils.data.default_collate([train_ds[i] for i in range(0, len(train_ds), 3)])
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, logs = policy.compute_loss(batch)
        first = first if first is not None else logs["env_state_mse"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["env_state_mse"] < 0.5 * first, (first, logs["env_state_mse"])
    obs = _obs(tiny_ds)  # no environment state in a run-time observation
    assert "observation.environment_state" not in obs
    assert policy.eval().predict_chunk(batch_from_obs(obs, policy.cfg)).shape == (1, 4, 7)


def test_no_auxiliary_probe_without_environment_state(tiny_ds, hash_language):
    cfg = PolicyConfig(**SMALL)
    tc = TrainConfig(data=[str(tiny_ds.root)], out="unused", policy=cfg, aux_env_state=False)
    build_datasets(tc)
    assert cfg.env_state_dim == 0 and VLAPolicy(cfg, Normalizer(
        {k: v for k, v in build_datasets(tc)[2].items()}, normalizer_modes(cfg)), hash_language).env_probe is None


def tiny_ds_env_dim(tiny_ds) -> int:
    info = json.loads((tiny_ds.root / "meta/info.json").read_text())
    return info["features"]["observation.environment_state"]["shape"][0]
