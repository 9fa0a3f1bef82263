import json

import pytest
import torch

from embodia.cerebellum.checkpoint import load_checkpoint, save_checkpoint
from embodia.cerebellum.ensemble import PolicyEnsemble
from embodia.cerebellum.policy import batch_from_obs
from tests.cerebellum.test_policy import _obs, _policy


def _members(tiny_ds, lang, n=2, **kw):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(_policy(tiny_ds, lang, flow_temperature=0.0, **kw).eval())
    return out


def test_ensemble_averages_its_members_chunks(tiny_ds, hash_language):
    members = _members(tiny_ds, hash_language)
    batch = batch_from_obs(_obs(tiny_ds), members[0].cfg)
    alone = [m.predict_chunk(batch) for m in members]
    assert not torch.allclose(alone[0], alone[1])  # two different networks
    ens = PolicyEnsemble(members)
    torch.testing.assert_close(ens.predict_chunk(batch), (alone[0] + alone[1]) / 2)
    # select_action runs the averaged chunk as a queue, and reset starts over
    first = ens.select_action(_obs(tiny_ds))
    torch.testing.assert_close(torch.as_tensor(first), ((alone[0] + alone[1]) / 2)[0, 0])
    assert len(ens._queue) == ens.cfg.n_action_steps - 1
    ens.reset()
    assert not ens._queue


def test_members_must_agree_on_what_a_chunk_means(tiny_ds, hash_language):
    a = _members(tiny_ds, hash_language, n=1)[0]
    b = _members(tiny_ds, hash_language, n=1, horizon=6)[0]
    with pytest.raises(ValueError, match="horizon"):
        PolicyEnsemble([a, b])
    with pytest.raises(ValueError, match="at least 2"):
        PolicyEnsemble([a])


def test_ensemble_checkpoint_loads_its_members(tiny_ds, hash_language, tmp_path):
    members = _members(tiny_ds, hash_language)
    for i, m in enumerate(members):
        save_checkpoint(m, tmp_path / f"m{i}")
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens/ensemble.json").write_text(json.dumps({"members": ["../m0", "../m1"]}))
    loaded = load_checkpoint(tmp_path / "ens", language=hash_language)
    assert isinstance(loaded, PolicyEnsemble) and len(loaded.configs()) == 2
    batch = batch_from_obs(_obs(tiny_ds), members[0].cfg)
    torch.testing.assert_close(loaded.predict_chunk(batch), PolicyEnsemble(members).predict_chunk(batch))
    (tmp_path / "ens/ensemble.json").write_text(json.dumps({"members": ["../m0", "../missing"]}))
    with pytest.raises(FileNotFoundError, match="missing"):
        load_checkpoint(tmp_path / "ens", language=hash_language)
    (tmp_path / "ens/ensemble.json").write_text("{not json")
    with pytest.raises(ValueError, match="ensemble.json"):
        load_checkpoint(tmp_path / "ens", language=hash_language)
    (tmp_path / "ens/ensemble.json").write_text(json.dumps({"members": "../m0"}))
    with pytest.raises(ValueError, match="list of checkpoint paths"):
        load_checkpoint(tmp_path / "ens", language=hash_language)
