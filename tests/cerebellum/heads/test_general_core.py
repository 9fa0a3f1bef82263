"""The general core end to end: features from info.json, every registered head trained for a
few steps on an embodiment nobody registered (so100), checkpoints that round-trip, and bad
input refused by name before any work."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import embodia.cerebellum.generalist as generalist_mod
from embodia.cerebellum.checkpoint import load_checkpoint
from embodia.cerebellum.features import PolicyFeatures
from embodia.cerebellum.general_training import GeneralTrainConfig, train_general
from embodia.cerebellum.generalist import GeneralistPolicy
from embodia.cerebellum.heads import HEADS
from embodia.cli import app
from tests.cerebellum.conftest import HashLanguage
from tests.cerebellum.heads.conftest import SO100_JOINTS, write_so100

TINY = {"d_model": 32, "n_heads": 2, "backbone_layers": 1, "head_layers": 1, "horizon": 8, "n_action_steps": 4,
        "encoder_width": 8, "keypoints": 8, "batch_size": 8, "max_steps": 3, "warmup_steps": 1, "val_every": 3,
        "threads": 1, "device": "cpu"}


def available(head: str) -> None:
    """Skip a registered head whose module does not import yet (another engineer writes it)."""
    module = HEADS[head].partition(":")[0]
    try:
        importlib.import_module(module)
    except ImportError as e:
        pytest.skip(f"head {head!r} ({module}) does not import yet: {e}")


def train_tiny(data: list[Path], out: Path, head: str, **kw) -> dict:
    return train_general(GeneralTrainConfig(data=[str(d) for d in data], out=str(out), head=head, **(TINY | kw)),
                         language=HashLanguage())


def so100_obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"observation.state": rng.normal(size=6).astype(np.float32), "task": "pick up the cube",
            "observation.images.top": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)}


def test_features_come_from_info_json(so100_ds):
    f = PolicyFeatures.from_dataset(so100_ds)
    assert f.robot_type == "so100" and f.fps == 30.0
    assert [(c.name, c.height, c.width, c.dtype) for c in f.cameras] == [("top", 64, 64, "video")]
    assert f.state_names == list(SO100_JOINTS) and f.action_names == list(SO100_JOINTS)
    assert f.env_state_dim == 0
    assert PolicyFeatures.from_dict(json.loads(json.dumps(f.to_dict()))) == f


def test_features_name_what_is_missing_or_disagrees(so100_ds):
    info = json.loads((so100_ds / "meta/info.json").read_text())
    no_action = copy.deepcopy(info)
    del no_action["features"]["action"]
    with pytest.raises(ValueError, match="features lack 'action'"):
        PolicyFeatures.from_info(no_action)
    no_state = copy.deepcopy(info)
    del no_state["features"]["observation.state"]
    with pytest.raises(ValueError, match="features lack 'observation.state'"):
        PolicyFeatures.from_info(no_state)
    a = PolicyFeatures.from_info(info, "a")
    small = copy.deepcopy(info)
    small["features"]["observation.images.top"]["shape"] = [32, 32, 3]
    with pytest.raises(ValueError, match=r"camera 'observation.images.top' shape .* differs"):
        a.check_matches(PolicyFeatures.from_info(small, "b"), "a", "b")
    wide = copy.deepcopy(info)
    wide["features"]["action"]["shape"] = [7]
    wide["features"]["action"]["names"] = None
    with pytest.raises(ValueError, match="action width differs"):
        a.check_matches(PolicyFeatures.from_info(wide, "b"), "a", "b")
    # LeRobot's channels-first shape and nested names read too
    cf = copy.deepcopy(info)
    cf["features"]["observation.images.top"] |= {"shape": [3, 48, 64], "names": ["channels", "height", "width"]}
    cf["features"]["action"]["names"] = {"motors": list(SO100_JOINTS)}
    f = PolicyFeatures.from_info(cf)
    assert (f.cameras[0].height, f.cameras[0].width) == (48, 64) and f.action_names == list(SO100_JOINTS)


@pytest.mark.parametrize("head", list(HEADS))
def test_every_head_trains_on_an_unknown_embodiment_and_round_trips(head, so100_ds, tmp_path):
    available(head)
    summary = train_tiny([so100_ds], tmp_path / head, head)
    assert summary["steps"] == 3 and np.isfinite(summary["final_val_loss"])
    cfg = json.loads((tmp_path / head / "config.json").read_text())
    assert cfg["architecture"] == "general" and cfg["features"]["robot_type"] == "so100"
    a = load_checkpoint(tmp_path / head, language=HashLanguage())
    b = load_checkpoint(tmp_path / head, language=HashLanguage())
    assert isinstance(a, GeneralistPolicy)
    batch = generalist_mod.batch_from_obs(so100_obs(), a.cfg.features)
    chunk = a.predict_chunk(batch)
    assert chunk.shape == (1, 8, 6) and torch.isfinite(chunk).all()
    torch.testing.assert_close(chunk, b.predict_chunk(batch))  # the checkpoint is the whole policy
    actions = [a.select_action(so100_obs(i)) for i in range(5)]  # a new chunk after 4
    assert all(x.shape == (6,) for x in actions)
    a.cfg.temporal_ensemble = 0.1
    a.reset()
    assert a.select_action(so100_obs()).shape == (6,)


def test_inputs_are_checked_by_name(so100_ds, tmp_path):
    train_tiny([so100_ds], tmp_path / "l1", "l1", max_steps=1)
    p = load_checkpoint(tmp_path / "l1", language=HashLanguage())
    obs = so100_obs()
    with pytest.raises(ValueError, match="missing 'observation.images.top'"):
        p.select_action({k: v for k, v in obs.items() if k != "observation.images.top"})
    with pytest.raises(ValueError, match="observation.images.top must be uint8"):
        p.select_action(obs | {"observation.images.top": obs["observation.images.top"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"observation.images.top must be uint8 \(64, 64, 3\)"):
        p.select_action(obs | {"observation.images.top": np.zeros((32, 32, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"observation.state must have shape \(6,\)"):
        p.select_action(obs | {"observation.state": np.zeros(7, np.float32)})
    batch = generalist_mod.batch_from_obs(obs, p.cfg.features)
    batch["observation.state"][0, 2] = float("nan")
    with pytest.raises(ValueError, match="observation.state contains NaN"):
        p.predict_chunk(batch)


def test_bad_input_is_refused_before_any_work(so100_ds, tmp_path):
    with pytest.raises(ValueError, match="unknown head 'bogus'.*flow, tokens, act, diffusion, l1"):
        GeneralTrainConfig(data=[str(so100_ds)], out=str(tmp_path / "x"), head="bogus")
    # NaN in an action column (our writer refuses to write one; corrupt the packed file)
    bad = write_so100(tmp_path / "nan_ds", episodes=2, length=12)
    f = next((bad / "data").glob("chunk-*/file-*.parquet"))
    t = pq.read_table(f)
    acts = np.stack(t.column("action").to_numpy(zero_copy_only=False))
    acts[5, 2] = np.nan
    i = t.schema.get_field_index("action")
    pq.write_table(t.set_column(i, t.schema.field(i), pa.array(list(acts), type=t.schema.field(i).type)), f)
    with pytest.raises(ValueError, match=r"action has NaN or inf in 1 frame\(s\), the first at episode 0 frame 5"):
        train_tiny([bad], tmp_path / "nan_out", "l1")
    assert not (tmp_path / "nan_out").exists()
    # resuming with data whose features disagree with the checkpoint
    train_tiny([so100_ds], tmp_path / "ck", "l1", max_steps=1)
    before = (tmp_path / "ck/model.safetensors").read_bytes()
    small = write_so100(tmp_path / "small_ds", episodes=2, length=12, size=32)
    with pytest.raises(ValueError, match=r"camera 'observation.images.top' shape \(H, W, 3\) differs"):
        train_tiny([small], tmp_path / "ck", "l1", max_steps=2)
    with pytest.raises(ValueError, match=r"camera 'observation.images.top' shape"):
        train_tiny([so100_ds, small], tmp_path / "mixed", "l1")
    with pytest.raises(ValueError, match="head: .* holds a 'l1' policy, not 'flow'"):
        train_tiny([so100_ds], tmp_path / "ck", "flow", max_steps=2)
    assert (tmp_path / "ck/model.safetensors").read_bytes() == before  # nothing written is damaged


def test_environment_state_is_only_an_auxiliary_target(tiny_ds, tmp_path):
    """An arm7 dataset with observation.environment_state: the aux loss trains from it, and the
    policy never needs it to act."""
    train_tiny([tiny_ds.root], tmp_path / "aux", "l1", max_steps=2, horizon=4, n_action_steps=2)
    p = load_checkpoint(tmp_path / "aux", language=HashLanguage())
    assert p.cfg.env_state_aux > 0 and p.env_aux is not None
    assert p.cfg.cameras == ["front", "wrist"] and p.cfg.image_size == 32
    p.train()
    from torch.utils.data import DataLoader

    from embodia.data.windows import WindowConfig, WindowDataset

    batch = next(iter(DataLoader(WindowDataset(tiny_ds.root, WindowConfig(horizon=4)), batch_size=4)))
    _, logs = p.compute_loss(batch)
    assert "env_state_mse" in logs
    p.eval()
    del batch["observation.environment_state"]
    assert p.predict_chunk(batch).shape == (4, 4, 7)


def test_cli_trains_the_general_core_by_default_and_the_preset_on_request(so100_ds, tmp_path, monkeypatch):
    monkeypatch.setattr("embodia.cerebellum.general_training.LanguageEncoder", HashLanguage)
    common = ["train", "--data", str(so100_ds), "--max-steps", "2", "--threads", "1", "--d-model", "32",
              "--horizon", "8", "--n-action-steps", "4", "--encoder-width", "8", "--batch-size", "4", "--json"]
    r = CliRunner().invoke(app, [*common, "--head", "l1", "--out", str(tmp_path / "g"), "--head-option", "dropout=0.1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"):])["architecture"] == "general"
    assert json.loads((tmp_path / "g/config.json").read_text())["head_options"] == {"dropout": 0.1}
    r = CliRunner().invoke(app, [*common, "--head", "bogus", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "unknown head 'bogus'" in r.output and not (tmp_path / "b").exists()
    r = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "p"), "--preset", "nope"])
    assert r.exit_code == 2 and "unknown preset 'nope'" in r.output
    r = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "p"), "--joint"])
    assert r.exit_code == 2 and "--parallel-parts/--joint belong to --preset object-centric" in r.output
    # the object-centric preset still refuses a robot outside the registry, by name
    r = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "p"), "--preset", "object-centric"])
    assert r.exit_code == 2 and "so100" in r.output


def test_embodia_eval_drives_the_tabletop_with_a_general_checkpoint(tiny_ds, so100_ds, tmp_path, monkeypatch):
    """Trained on arm7 tabletop data, the general core's features match the env's observation."""
    monkeypatch.setattr(generalist_mod, "LanguageEncoder", HashLanguage)
    train_tiny([tiny_ds.root], tmp_path / "arm7", "l1", max_steps=1)
    r = CliRunner().invoke(app, ["eval", "--policy", str(tmp_path / "arm7"), "--skill", "pick", "--episodes", "1",
                                 "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout[r.stdout.index("{"):])
    assert report["results"]["pick"]["episodes"] == 1 and report["inference"]["n_action_steps"] == 4
    r = CliRunner().invoke(app, ["eval", "--policy", str(tmp_path / "arm7"), "--skill", "pick", "--episodes", "1",
                                 "--occlusion-hold"])
    assert r.exit_code == 2 and "--occlusion-hold belong to the object-centric preset" in r.output
    train_tiny([so100_ds], tmp_path / "so100", "l1", max_steps=1)
    r = CliRunner().invoke(app, ["eval", "--policy", str(tmp_path / "so100"), "--skill", "pick", "--episodes", "1"])
    assert r.exit_code == 2 and "drives 'so100', not 'arm7'" in r.output
