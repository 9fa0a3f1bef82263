"""Training the two parts of an object-centric policy apart (and at once, in two processes)."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from embodia.cerebellum.checkpoint import load_checkpoint
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.training import TrainConfig, build_datasets, train
from embodia.cli import app
from tests.cerebellum.test_estimator import OBJ
from tests.cerebellum.test_policy import SMALL, _policy


def _cfg(tiny_ds, out, **kw) -> TrainConfig:
    return TrainConfig(data=[str(tiny_ds.root)], out=str(out), policy=PolicyConfig(**(SMALL | OBJ)),
                       **({"batch_size": 8, "warmup_steps": 2, "max_steps": 6, "val_every": 3, "val_fraction": 0.34,
                           "max_minutes": 5, "threads": 1} | kw))


@pytest.mark.parametrize("part", ["action", "estimator"])
def test_each_part_reads_what_it_needs_and_moves_only_its_parameters(tiny_ds, hash_language, part):
    cfg = _cfg(tiny_ds, "unused", part=part)
    train_ds, _, _, _ = build_datasets(cfg)
    has_images = any(k.startswith("observation.images.") for k in train_ds[0])
    assert has_images == (part == "estimator")  # the action part decodes no video at all
    policy = _policy(tiny_ds, hash_language, **OBJ)
    est = {id(p) for p in policy.estimator.parameters()}
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    opt = torch.optim.SGD(policy.trainable(part), lr=0.1)
    loss, logs = policy.compute_loss(torch.utils.data.default_collate([train_ds[i] for i in range(8)]), part)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert ("heatmap_ce" in logs) == (part == "estimator") and ("flow_mse" in logs) == (part == "action")
    for n, p in policy.named_parameters():
        mine = (id(p) in est) == (part == "estimator")
        if not mine:
            assert torch.equal(p, before[n]), f"{part} moved {n}"
    assert any(not torch.equal(p, before[n]) for n, p in policy.named_parameters())


def test_parts_are_refused_where_they_cannot_apply(tiny_ds):
    with pytest.raises(ValueError, match="part must be one of"):
        _cfg(tiny_ds, "unused", part="vision")
    with pytest.raises(ValueError, match="image_tokens"):
        TrainConfig(data=[str(tiny_ds.root)], out="unused", part="action",
                    policy=PolicyConfig(**(SMALL | OBJ | {"image_tokens": True})))
    with pytest.raises(ValueError, match="estimated"):
        TrainConfig(data=[str(tiny_ds.root)], out="unused", parallel_parts=True,
                    policy=PolicyConfig(**(SMALL | {"env_state_input": "none"})))


def test_parallel_parts_graft_the_estimator_into_the_action_part(tiny_ds, hash_language, tmp_path):
    out = tmp_path / "ck"
    summary = train(_cfg(tiny_ds, out, parallel_parts=True))
    assert summary["steps"] == {"action": 6, "estimator": 6}
    merged = load_checkpoint(out, language=hash_language)
    action = load_checkpoint(out / "training/parts/action", language=hash_language)
    estimator = load_checkpoint(out / "training/parts/estimator", language=hash_language)
    est_names = {n for n, _ in merged.estimator.named_parameters(prefix="estimator")}
    assert est_names
    for name, p in merged.named_parameters():
        source = estimator if name in est_names else action
        assert torch.equal(p, dict(source.named_parameters())[name]), name
    # the two processes really trained different parameters: each left the other's untouched
    differs = [n for n, p in action.named_parameters() if not torch.equal(p, dict(estimator.named_parameters())[n])]
    assert any(n in est_names for n in differs) and any(n not in est_names for n in differs)


def test_cli_trains_the_parts_in_parallel_by_default_and_jointly_on_request(tiny_ds, tmp_path):
    common = ["train", "--preset", "object-centric", "--data", str(tiny_ds.root), "--max-steps", "3", "--threads", "1", "--d-model", "32",
              "--horizon", "8", "--json"]
    r = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "par")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"):])["steps"] == {"action": 3, "estimator": 3}
    r = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "joint"), "--joint"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"):])["steps"] == 3
    assert not (tmp_path / "joint/training/parts").exists()


def test_cli_regularization_options_reach_the_checkpoint(tiny_ds, tmp_path):
    out = tmp_path / "reg"
    r = CliRunner().invoke(app, ["train", "--preset", "object-centric", "--data", str(tiny_ds.root), "--max-steps", "2", "--threads", "1",
                                 "--d-model", "32", "--horizon", "8", "--joint", "--out", str(out), "--json",
                                 "--drop-path", "0.2", "--dropout", "0.05", "--weight-decay", "0.01"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["drop_path"], cfg["dropout"], cfg["extra"]["train"]["weight_decay"]) == (0.2, 0.05, 0.01)
    r = CliRunner().invoke(app, ["train", "--preset", "object-centric", "--data", str(tiny_ds.root), "--out", str(tmp_path / "bad"),
                                 "--drop-path", "1.5"])
    assert r.exit_code != 0 and "drop-path" in r.output and not (tmp_path / "bad").exists()


def test_cli_writes_the_shipped_inference_settings_into_config_json(tiny_ds, tmp_path):
    """The shipped checkpoints' flow_temperature 0, occlusion_hold and instruction_retrieval
    come from `embodia train` flags (they were once set by hand), through the parallel parts'
    graft; a bad value is refused before anything is written."""
    common = ["train", "--preset", "object-centric", "--data", str(tiny_ds.root), "--threads", "1", "--d-model", "32", "--horizon", "8", "--json"]
    shipped = ["--flow-temperature", "0", "--occlusion-hold", "--instruction-retrieval"]
    out = tmp_path / "shipped"
    r = CliRunner().invoke(app, [*common, "--max-steps", "2", "--out", str(out), *shipped])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["flow_temperature"], cfg["occlusion_hold"], cfg["instruction_retrieval"]) == (0.0, True, True)
    assert cfg["known_instructions"]
    for bad, named in ((["--flow-temperature", "-1"], "flow-temperature"),
                       (["--flow-temperature", "nan"], "flow-temperature"),
                       (["--occlusion-hold", "--env-state-input", "none"], "occlusion_hold")):
        r = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "bad"), *bad])
        assert r.exit_code == 2 and named in r.output, (bad, r.output)
        assert not (tmp_path / "bad").exists()


def test_a_resume_takes_the_inference_settings_from_its_command(tiny_ds, hash_language, tmp_path):
    out = tmp_path / "ck"
    train(_cfg(tiny_ds, out, part="action", max_steps=2))
    assert load_checkpoint(out, language=hash_language).cfg.flow_temperature == 1.0
    cfg = _cfg(tiny_ds, out, part="action", max_steps=3)
    cfg.policy.flow_temperature, cfg.policy.occlusion_hold = 0.0, True
    train(cfg)
    resumed = load_checkpoint(out, language=hash_language).cfg
    assert (resumed.flow_temperature, resumed.occlusion_hold) == (0.0, True)


def test_the_estimator_can_train_on_a_subset_of_the_data(tiny_ds, tmp_path):
    """`estimator_data`: the estimator decodes only those datasets' cameras; the action part
    and the normalization still use every dataset, so both parts share one set of statistics."""
    from tests.data.conftest import make_dataset

    other = make_dataset(tmp_path / "more", n=4, size=32, env_state=True)
    data = [str(tiny_ds.root), str(other.root)]
    est = TrainConfig(data=data, out="unused", policy=PolicyConfig(**(SMALL | OBJ)), val_fraction=0.34,
                      part="estimator", estimator_data=[str(tiny_ds.root)])
    act = TrainConfig(data=data, out="unused", policy=PolicyConfig(**(SMALL | OBJ)), val_fraction=0.34,
                      part="action", estimator_data=[str(tiny_ds.root)])
    full = TrainConfig(data=data, out="unused", policy=PolicyConfig(**(SMALL | OBJ)), val_fraction=0.34,
                       part="estimator")
    est_ds, _, est_stats, _ = build_datasets(est)
    act_ds, _, act_stats, _ = build_datasets(act)
    full_ds, _, _, _ = build_datasets(full)
    assert len(est_ds.datasets) == 1 and len(act_ds.datasets) == 2 and len(full_ds.datasets) == 2
    assert len(est_ds) < len(full_ds)
    assert json.dumps(est_stats, default=str) == json.dumps(act_stats, default=str)
    with pytest.raises(ValueError, match="subset of data"):
        TrainConfig(data=[str(tiny_ds.root)], out="unused", policy=PolicyConfig(**(SMALL | OBJ)),
                    estimator_data=[str(other.root)])


def test_a_dataset_without_cameras_feeds_the_action_part_only(tiny_ds, tmp_path):
    """`collect --cameras none` data: the action part learns from it, the estimator (which
    decodes images) and joint training refuse it by name unless it stays out of their data."""
    from tests.data.conftest import make_dataset

    so = make_dataset(tmp_path / "state_only", n=3, cameras=(), env_state=True)
    data = [str(tiny_ds.root), str(so.root)]
    kw = {"data": data, "out": "unused", "policy": PolicyConfig(**(SMALL | OBJ)), "val_fraction": 0.34}
    act_ds, _, _, _ = build_datasets(TrainConfig(part="action", **kw))
    assert len(act_ds.datasets) == 2 and len(act_ds.datasets[1]) > 0
    est_ds, _, _, _ = build_datasets(TrainConfig(part="estimator", estimator_data=[str(tiny_ds.root)], **kw))
    assert len(est_ds.datasets) == 1
    for cfg, who in ((TrainConfig(part="estimator", **kw), "estimator"), (TrainConfig(part="all", **kw), "joint")):
        with pytest.raises(ValueError, match=f"state_only has no camera.*the {who} part reads them"):
            build_datasets(cfg)


def test_balance_skills_gives_every_skill_the_same_share_of_the_draws(tiny_ds, tmp_path):
    from embodia.cerebellum.training import skill_balanced_weights
    from tests.data.conftest import make_dataset

    other = make_dataset(tmp_path / "drawer", n=1, skill="open_drawer", size=32, env_state=True)
    cfg = TrainConfig(data=[str(tiny_ds.root), str(other.root)], out="unused",
                      policy=PolicyConfig(**(SMALL | OBJ)), val_fraction=0.0, part="action")
    ds, _, _, _ = build_datasets(cfg)
    skills = [s for d in ds.datasets for s in d.skills_of()]
    assert skills.count("pick") > 2 * skills.count("open_drawer") > 0  # unequal frames ...
    w = skill_balanced_weights(ds)
    share = {s: float(sum(wi for wi, si in zip(w, skills, strict=True) if si == s)) for s in set(skills)}
    assert share["pick"] == pytest.approx(share["open_drawer"])  # ... equal draws


def test_data_weights_scale_one_datasets_share_of_the_draws(tiny_ds, tmp_path):
    from embodia.cerebellum.training import sampling_weights
    from embodia.cli import parse_data_weights
    from tests.data.conftest import make_dataset

    other = make_dataset(tmp_path / "drawer", n=1, skill="open_drawer", size=32, env_state=True)
    data = [str(tiny_ds.root), str(other.root)]
    base = dict(out="unused", policy=PolicyConfig(**(SMALL | OBJ)), val_fraction=0.0, part="action")
    cfg = TrainConfig(data=data, data_weights=parse_data_weights(f"{other.root}=3"), **base)
    ds, _, _, _ = build_datasets(cfg)
    w = sampling_weights(ds, cfg)
    n0, n1 = (len(d) for d in ds.datasets)
    assert w is not None and float(w[n0:].sum()) == pytest.approx(3 * n1) and float(w[:n0].sum()) == n0
    both = sampling_weights(ds, replace(cfg, balance_skills=True))  # balanced, then scaled
    assert float(both[n0:].sum()) == pytest.approx(3 * float(both[:n0].sum()))
    assert sampling_weights(ds, replace(cfg, data_weights=None)) is None  # uniform: the plain sampler
    for bad in ({str(tmp_path / "elsewhere"): 2.0}, {str(other.root): 0.0}, {str(other.root): float("nan")}):
        with pytest.raises(ValueError, match="data_weights"):
            TrainConfig(data=data, data_weights=bad, **base)
    with pytest.raises(ValueError, match="not DIR=WEIGHT"):
        parse_data_weights(f"{other.root}:3")


def test_weighted_draws_follow_the_weights_without_drawing_everything_at_once():
    import itertools

    from embodia.cerebellum.training import WeightedDraws

    draws = list(itertools.islice(WeightedDraws(torch.tensor([1.0, 3.0]), torch.Generator().manual_seed(0), 64),
                                  20000))
    assert len(draws) == 20000 and 0.72 < sum(draws) / 20000 < 0.78


def test_weight_average_follows_its_decay_and_swaps_back():
    from embodia.cerebellum.training import WeightAverage

    m = torch.nn.Linear(2, 2)
    start = {k: v.clone() for k, v in m.state_dict().items()}
    avg = WeightAverage(m, decay=0.9)
    with torch.no_grad():
        m.weight.add_(1.0)
    avg.update(m, step=1000)  # warm-up over: the decay itself
    assert torch.allclose(avg.avg["weight"], start["weight"] + 0.1)
    trained = m.weight.detach().clone()
    avg.swap(m)
    assert torch.allclose(m.weight, start["weight"] + 0.1)
    avg.swap(m)
    assert torch.equal(m.weight, trained)


def test_ema_ships_the_average_and_resumes_from_the_raw_weights(tiny_ds, hash_language, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "ck"
    train(_cfg(tiny_ds, out, part="action", ema_decay=0.9, max_steps=4))
    shipped = load_checkpoint(out, language=hash_language).state_dict()
    raw = load_file(str(out / "training/raw.safetensors"))
    assert set(raw) == set(shipped)
    assert any(not torch.equal(raw[k], shipped[k]) for k in raw if raw[k].is_floating_point())
    with pytest.raises(ValueError, match="same --ema"):
        train(_cfg(tiny_ds, out, part="action", max_steps=6))
    summary = train(_cfg(tiny_ds, out, part="action", ema_decay=0.9, max_steps=6))
    assert summary["resumed"] and summary["steps"] == 6
    with pytest.raises(ValueError, match="ema_decay"):
        _cfg(tiny_ds, out, ema_decay=1.0)


def test_the_device_is_resolved_or_refused_before_any_work(tiny_ds, monkeypatch):
    from embodia.cerebellum.training import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="has 0 CUDA device"):
        _cfg(tiny_ds, "unused", device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        _cfg(tiny_ds, "unused", device="tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("part", ["all", "action"])
def test_training_runs_on_cuda_and_the_checkpoint_acts_the_same_on_the_cpu(tiny_ds, hash_language, tmp_path,
                                                                          monkeypatch, part):
    from embodia.cerebellum import training

    monkeypatch.setattr(training, "LanguageEncoder", lambda: hash_language)
    out = tmp_path / "ck"
    cfg = _cfg(tiny_ds, out, part=part, device="cuda", max_steps=60, val_every=10, lr=1e-3, ema_decay=0.9)
    summary = train(cfg)
    assert summary["device"].startswith("cuda") and summary["steps"] == 60
    vals = [json.loads(line)["val_loss"] for line in (out / "training/log.jsonl").read_text().splitlines()]
    assert vals[-1] < vals[0], vals
    # resume on the GPU: optimizer moments go back to the parameters' device
    assert train(replace(cfg, max_steps=70))["resumed"]
    cpu = load_checkpoint(out, language=hash_language)
    gpu = load_checkpoint(out, language=hash_language).to("cuda")
    assert next(gpu.parameters()).is_cuda and gpu.object_state.mean.is_cuda
    train_ds, _, _, _ = build_datasets(replace(cfg, part="all"))  # with camera frames: the estimator acts
    batch = torch.utils.data.default_collate([train_ds[i] for i in range(4)])
    a_cpu = cpu.predict_chunk(batch)
    a_gpu = gpu.predict_chunk(batch)
    assert torch.allclose(a_cpu, a_gpu.cpu(), atol=1e-3), (a_cpu - a_gpu.cpu()).abs().max()


def test_action_members_share_one_estimator_and_load_as_an_ensemble(tiny_ds, hash_language, tmp_path):
    from embodia.cerebellum.ensemble import PolicyEnsemble

    out = tmp_path / "ck"
    summary = train(_cfg(tiny_ds, out, parallel_parts=True, action_members=2))
    assert summary["steps"] == {"action": [6, 6], "estimator": 6}
    assert json.loads((out / "ensemble.json").read_text()) == {"members": ["member_0", "member_1"]}
    ens = load_checkpoint(out, language=hash_language)
    assert isinstance(ens, PolicyEnsemble) and len(ens.members) == 2
    estimator = load_checkpoint(out / "training/parts/estimator", language=hash_language)
    est = estimator.estimator.state_dict()
    a, b = ens.members
    for m in (a, b):  # both carry the one estimator
        assert all(torch.equal(v, est[k]) for k, v in m.estimator.state_dict().items())
    # ... and different action parts: another initialization and batch order, same statistics
    est_names = {f"estimator.{k}" for k in est}
    differs = [n for n, p in a.state_dict().items() if n not in est_names and not torch.equal(p, b.state_dict()[n])]
    assert differs
    assert a.normalizer.to_dict() == b.normalizer.to_dict()
    # each member had half the budget
    assert json.loads((out / "member_1/config.json").read_text())["extra"]["train"]["action_members"] == 2
    for k in (0, 1):
        cfg = json.loads((out / f"training/parts/action_{k}/config.json").read_text())["extra"]["train"]
        assert cfg["max_minutes"] == 2.5 and cfg["member"] == k


def test_action_members_need_parallel_parts(tiny_ds):
    with pytest.raises(ValueError, match="action_members > 1 needs parallel_parts"):
        _cfg(tiny_ds, "unused", action_members=2)
    with pytest.raises(ValueError, match="action_members must be >= 1"):
        _cfg(tiny_ds, "unused", parallel_parts=True, action_members=0)


def _action_batch(tiny_ds, n: int = 8) -> dict:
    train_ds, _, _, _ = build_datasets(_cfg(tiny_ds, "unused", part="action"))
    return torch.utils.data.default_collate([train_ds[i] for i in range(n)])


def test_precision_is_refused_unless_known(tiny_ds):
    with pytest.raises(ValueError, match="precision must be one of"):
        _cfg(tiny_ds, "unused", precision="fp16")


def test_bf16_changes_the_arithmetic_but_not_the_weights(tiny_ds, hash_language, tmp_path):
    from embodia.cerebellum.training import precision_context

    policy = _policy(tiny_ds, hash_language, **OBJ)
    batch = _action_batch(tiny_ds)
    torch.manual_seed(0)
    full, _ = policy.compute_loss(batch, "action")
    torch.manual_seed(0)  # the same draws
    with precision_context("bf16", torch.device("cpu")):
        half, logs = policy.compute_loss(batch, "action")
    assert half.dtype == torch.float32 and "flow_mse" in logs
    assert not torch.equal(full, half)  # autocast did take effect ...
    assert torch.allclose(full, half, rtol=0.05)  # ... and bf16 is close to float32
    out = tmp_path / "ck"
    summary = train(_cfg(tiny_ds, out, precision="bf16", parallel_parts=True))
    assert summary["steps"] == {"action": 6, "estimator": 6}
    shipped = load_checkpoint(out, language=hash_language)
    assert all(p.dtype == torch.float32 for p in shipped.parameters())  # trained in bf16, stored in float32
    assert json.loads((out / "config.json").read_text())["extra"]["train"]["precision"] == "bf16"


@pytest.mark.slow  # ~1 min of torch.compile
def test_the_compiled_action_loss_gives_the_eager_loss_and_gradients(tiny_ds, hash_language, tmp_path):
    policy = _policy(tiny_ds, hash_language, **OBJ)
    batch = _action_batch(tiny_ds)

    def loss_and_grads():
        torch.manual_seed(0)
        policy.zero_grad()
        loss, _ = policy.compute_loss(batch, "action")
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}

    eager, eager_grads = loss_and_grads()
    policy.compile_action_loss()
    compiled, compiled_grads = loss_and_grads()
    assert torch.allclose(eager, compiled, rtol=1e-4)
    assert set(eager_grads) == set(compiled_grads)
    for n, g in eager_grads.items():
        assert torch.allclose(g, compiled_grads[n], rtol=1e-3, atol=1e-5), n
    summary = train(_cfg(tiny_ds, tmp_path / "ck", part="action", compile=True))
    assert summary["steps"] == 6 and summary["final_val_loss"] is not None


@pytest.mark.parametrize("name", ["arm7_flow_d192_chain", "arm7_flow_d160_chain"])
def test_the_reproduce_commands_pass_the_shipped_inference_settings(name):
    """The README's `embodia train` uses only real flags, among them the three that make its
    config.json's inference settings (shipped: flow_temperature 0, occlusion_hold, retrieval)."""
    root = Path(__file__).resolve().parents[2] / "checkpoints" / name
    if not root.exists():
        pytest.skip(f"{root} is not in this tree")
    command = re.search(r"embodia train (.*?)(?:\n(?!  )|$)", (root / "README.md").read_text().replace("\\\n", ""),
                        re.S).group(1)
    flags = set(re.findall(r"(?<!\S)(--[a-z0-9-]+)", command))
    known = {o for p in typer.main.get_command(app).commands["train"].params for o in (*p.opts, *p.secondary_opts)}
    assert flags <= known, flags - known
    assert {"--flow-temperature", "--occlusion-hold", "--instruction-retrieval"} <= flags
    assert re.search(r"--preset object-centric(?:\s|$)", command)  # the general core is the default now
    assert re.search(r"--flow-temperature 0(?:\s|$)", command)
    shipped = json.loads((root / "config.json").read_text())
    assert (shipped["flow_temperature"], shipped["occlusion_hold"], shipped["instruction_retrieval"]) == (0.0, True, True)
