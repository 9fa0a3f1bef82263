"""Train the general core (`GeneralistPolicy`) on any LeRobot-v3 datasets.

Why a loop of its own beside `training.py`: the object-centric preset's loop is built around
its two parts (estimator and action part, trained apart), its object-state tables and its
simulator camera matrix; the general core has none of these. The pieces both need (AdamW with
warm-up + cosine, the weight average, optimizer state on disk, the device and precision
choice, the episode split) are imported from `training.py`, not copied.

Everything that can be wrong with the inputs is refused before any work, by name: a head that
does not exist, a dataset without state or actions, datasets that disagree, NaN in a state or
action column, and features or a head that disagree with the checkpoint being resumed.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, RandomSampler

from embodia.cerebellum.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_tensors,
    save_checkpoint,
    save_tensors,
)
from embodia.cerebellum.encoders import EncoderSpec
from embodia.cerebellum.features import ACTION, ENV_STATE, STATE, PolicyFeatures
from embodia.cerebellum.generalist import GeneralistConfig, GeneralistPolicy, normalizer_modes
from embodia.cerebellum.heads import check_head_name
from embodia.cerebellum.language import LanguageEncoder
from embodia.cerebellum.training import (
    PRECISIONS,
    WeightAverage,
    _load_optimizer,
    _save_optimizer,
    _split,
    precision_context,
    resolve_device,
)
from embodia.data.layout import atomic_write_json
from embodia.data.normalize import Normalizer
from embodia.data.reader import DatasetReader
from embodia.data.stats import StreamingStats
from embodia.data.windows import WindowConfig, WindowDataset

FIT_CHUNKS = 20_000  # action chunks a head's `fit` sees at most (FAST's BPE: plenty)


@dataclass
class GeneralTrainConfig:
    data: list[str]
    out: str
    head: str = "flow"
    head_options: dict[str, Any] = field(default_factory=dict)
    cameras: list[str] | None = None  # None: every camera the datasets have
    encoder: str = "resnet"
    encoder_width: int = 16
    keypoints: int = 16
    d_model: int = 128
    n_heads: int = 4
    backbone_layers: int = 2
    head_layers: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    temporal_ensemble: float | None = None
    env_state_aux: float = 0.1  # used only where every dataset records the same environment state
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    max_steps: int = 100_000
    max_minutes: float = 45.0
    val_fraction: float = 0.05
    val_every: int = 250
    val_batches: int = 4
    ckpt_every: int = 500
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    ema_decay: float | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_head_name(self.head)
        resolve_device(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if not self.data:
            raise ValueError("data: give at least one dataset folder")

    def policy_config(self, features: PolicyFeatures, action_space: str) -> GeneralistConfig:
        return GeneralistConfig(
            features=features, head=self.head, head_options=dict(self.head_options), head_layers=self.head_layers,
            encoder=EncoderSpec(kind=self.encoder, width=self.encoder_width, keypoints=self.keypoints),
            d_model=self.d_model, n_heads=self.n_heads, backbone_layers=self.backbone_layers,
            horizon=self.horizon, n_action_steps=self.n_action_steps, temporal_ensemble=self.temporal_ensemble,
            env_state_aux=self.env_state_aux if features.env_state_dim else 0.0, action_space=action_space)


def dataset_features(cfg: GeneralTrainConfig) -> PolicyFeatures:
    """The datasets' shared features (cameras narrowed to `cfg.cameras`), checked."""
    feats = PolicyFeatures.from_datasets(cfg.data)
    return feats.select_cameras(cfg.cameras) if cfg.cameras is not None else feats


def check_finite(readers: list[DatasetReader]) -> None:
    """NaN or inf in a state, action or environment-state column, named with its dataset and
    frame: one bad frame would turn the statistics and then every weight into NaN."""
    for r in readers:
        for key in (STATE, ACTION, ENV_STATE):
            if key not in r.columns:
                continue
            col = np.asarray(r.columns[key], dtype=np.float64)
            bad = ~np.isfinite(col).all(axis=tuple(range(1, col.ndim)))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{r.root}: {key} has NaN or inf in {int(bad.sum())} frame(s), the first at "
                                 f"episode {int(r.columns['episode_index'][i])} frame {int(r.columns['frame_index'][i])}")


def fit_stats(readers: list[DatasetReader], with_env: bool, seed: int) -> dict[str, dict]:
    keys = [STATE, ACTION] + ([ENV_STATE] if with_env else [])
    stats = {}
    for key in keys:
        s = StreamingStats(readers[0].columns[key].shape[1], seed=seed)
        for r in readers:
            s.update(r.columns[key])
        stats[key] = s.to_dict()
    return stats


def action_chunks(readers: list[DatasetReader], horizon: int, normalizer: Normalizer, limit: int,
                  seed: int) -> np.ndarray:
    """Normalized chunks [N, H, D] starting at random frames, the last action held past an
    episode's end (what a head's `fit` learns its vocabulary from)."""
    rng = np.random.default_rng(seed)
    out = []
    per = max(1, limit // len(readers))
    for r in readers:
        acts = r.columns[ACTION].astype(np.float32)
        rows = rng.choice(len(acts), size=min(per, len(acts)), replace=False)
        end = r.row_end[rows][:, None]
        idx = np.minimum(rows[:, None] + np.arange(horizon)[None], end - 1)
        out.append(acts[idx])
    return normalizer.normalize(ACTION, np.concatenate(out)).astype(np.float32)


def action_space_of(readers: list[DatasetReader]) -> str:
    return str((readers[0].meta.info.get("embodia") or {}).get("action_space") or "action")


def train_general(cfg: GeneralTrainConfig, progress: Callable[[dict], None] | None = None,
                  language: LanguageEncoder | None = None) -> dict:
    """Train until max_steps or max_minutes; returns a summary. Resumes from `cfg.out`."""
    features = dataset_features(cfg)
    readers = [DatasetReader(d) for d in cfg.data]
    check_finite(readers)
    out = Path(cfg.out)
    state_dir = out / "training"
    resumed = (out / "model.safetensors").exists() and (state_dir / "state.json").exists()
    language = language or LanguageEncoder()
    if resumed:
        policy = load_checkpoint(out, language=language)
        if not isinstance(policy, GeneralistPolicy):
            raise ValueError(f"{out} holds an object-centric checkpoint; resume it with --preset object-centric")
        if policy.cfg.head != cfg.head:
            raise ValueError(f"head: {out} holds a {policy.cfg.head!r} policy, not {cfg.head!r}")
        policy.cfg.features.check_matches(features, f"checkpoint {out}", "the datasets", robot_type=True)
        st = json.loads((state_dir / "state.json").read_text())
    else:
        pc = cfg.policy_config(features, action_space_of(readers))
        stats = fit_stats(readers, bool(pc.env_state_aux), cfg.seed)
        normalizer = Normalizer(stats, normalizer_modes(pc))
        st = {"step": 0, "samples": 0, "seconds": 0.0, "best_val": None}

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    if not resumed:
        policy = GeneralistPolicy(pc, normalizer, language)  # weights drawn from the seed
        policy.fit_head(action_chunks(readers, policy.cfg.horizon, policy.normalizer, FIT_CHUNKS, cfg.seed))
    pc = policy.cfg
    wc = WindowConfig(horizon=pc.horizon, cameras=list(pc.cameras))
    train_parts, val_parts = [], []
    for i, r in enumerate(readers):
        eps = list(r.episode_indices)
        tr, va = _split(len(eps), cfg.val_fraction, cfg.seed + i)
        train_parts.append(WindowDataset(r, wc, episodes=[eps[j] for j in tr]))
        if va:
            val_parts.append(WindowDataset(r, wc, episodes=[eps[j] for j in va]))
    train_ds = ConcatDataset(train_parts)

    device = resolve_device(cfg.device)
    policy.to(device)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cpu")
    if resumed:
        _load_optimizer(opt, state_dir)
    ema = None
    if cfg.ema_decay is not None:
        ema = WeightAverage(policy, cfg.ema_decay)
        if resumed:
            if not (state_dir / "raw.safetensors").exists():
                raise ValueError(f"{out} was trained without ema_decay; resume it without --ema")
            policy.load_state_dict(load_tensors(state_dir / "raw.safetensors"), strict=True)
    elif resumed and (state_dir / "raw.safetensors").exists():
        raise ValueError(f"{out} was trained with an average of its weights; resume it with the same --ema")

    t_start = time.perf_counter() - st["seconds"]
    budget = cfg.max_minutes * 60

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        frac = min(1.0, max(step / max(1, cfg.max_steps), (time.perf_counter() - t_start) / max(budget, 1e-9)))
        return cfg.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    gen = torch.Generator().manual_seed(cfg.seed + st["step"])
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, drop_last=len(train_ds) >= cfg.batch_size,
                        sampler=RandomSampler(train_ds, replacement=True, num_samples=10**9, generator=gen))
    val_batches = []
    if val_parts:
        vloader = DataLoader(ConcatDataset(val_parts), batch_size=cfg.batch_size, shuffle=True,
                             generator=torch.Generator().manual_seed(cfg.seed + 12345))
        for i, b in enumerate(vloader):
            if i >= cfg.val_batches:
                break
            val_batches.append(b)
    state_dir.mkdir(parents=True, exist_ok=True)

    def shipped():
        return ema.applied(policy) if ema is not None else nullcontext()

    def validate() -> float | None:
        if not val_batches:
            return None
        policy.eval()
        torch.manual_seed(cfg.seed)
        with shipped(), torch.no_grad(), precision_context(cfg.precision, device):
            losses = [float(policy.compute_loss(b)[0]) for b in val_batches]
        policy.train()
        return float(np.mean(losses))

    def checkpoint(val: float | None) -> None:
        extra = {"train": asdict(cfg), "step": st["step"], "val_loss": val,
                 "datasets": [str(r.root) for r in readers]}
        if ema is not None:
            save_tensors(policy.state_dict(), state_dir / "raw.safetensors")
        with shipped():
            save_checkpoint(policy, out, extra=extra)
        _save_optimizer(opt, state_dir)
        atomic_write_json(state_dir / "state.json", st)

    policy.train()
    last: dict[str, Any] = {}
    for batch in loader:
        if st["step"] >= cfg.max_steps or time.perf_counter() - t_start >= budget:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(st["step"])
        with precision_context(cfg.precision, device):
            loss, logs = policy.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            ema.update(policy, st["step"])
        st["step"] += 1
        st["samples"] += len(batch["task"])
        st["seconds"] = time.perf_counter() - t_start
        last = {"step": st["step"], "loss": float(loss.detach()), "lr": lr_at(st["step"]),
                "samples_per_s": st["samples"] / max(st["seconds"], 1e-9), **logs}
        if not math.isfinite(last["loss"]):
            raise FloatingPointError(f"loss became {last['loss']} at step {st['step']} (logs {logs})")
        if st["step"] % cfg.val_every == 0:
            last["val_loss"] = validate()
            if last["val_loss"] is not None and (st["best_val"] is None or last["val_loss"] < st["best_val"]):
                st["best_val"] = last["val_loss"]
            with open(state_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(last) + "\n")
        if st["step"] % cfg.ckpt_every == 0:
            checkpoint(last.get("val_loss"))
        if progress:
            progress(last)
    final_val = validate()
    checkpoint(final_val)
    n_params = sum(p.numel() for p in policy.parameters())
    return {"architecture": "general", "head": pc.head, "steps": st["step"], "seconds": round(st["seconds"], 1),
            "final_val_loss": final_val, "best_val_loss": st["best_val"],
            "samples_per_s": round(st["samples"] / max(st["seconds"], 1e-9), 1), "parameters": n_params,
            "resumed": resumed, "out": str(out), "device": str(device)}


__all__ = ["CheckpointError", "GeneralTrainConfig", "train_general"]
