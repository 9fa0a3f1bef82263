"""Train a policy from one or more datasets: progress bar, periodic validation loss, a
time budget, fixed seeds, and resume from the last checkpoint (optimizer included)."""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import os
import random
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, RandomSampler, Sampler

from embodia.cerebellum.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_tensors,
    read_json_object,
    save_checkpoint,
    save_tensors,
)
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.ensemble import ENSEMBLE_FILE
from embodia.cerebellum.instruction_retrieval import retrieval_fields
from embodia.cerebellum.language import LanguageEncoder
from embodia.cerebellum.object_state import ObjectState
from embodia.cerebellum.policy import (
    ACTION,
    ENV_STATE,
    STATE,
    VLAPolicy,
    check_part,
    normalizer_modes,
)
from embodia.data.children import die_with_parent
from embodia.data.layout import atomic_write_json
from embodia.data.normalize import Normalizer
from embodia.data.reader import DatasetReader
from embodia.data.stats import StreamingStats
from embodia.data.windows import WindowConfig, WindowDataset

PRECISIONS = ("fp32", "bf16")
# config fields that change only how a trained policy acts: a resumed run takes them from its
# command, not from the checkpoint it continues (they touch no weight)
INFERENCE_FIELDS = ("flow_temperature", "occlusion_hold", "instruction_retrieval")
MEMBER_SEED_STRIDE = 1_000_003  # member k trains with seed + k * stride (no overlap with seed + step)


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    max_steps: int = 100_000
    max_minutes: float = 45.0
    val_fraction: float = 0.05
    val_every: int = 250
    val_batches: int = 8
    ckpt_every: int = 500
    seed: int = 0
    num_workers: int = 0
    threads: int | None = None
    aux_env_state: bool = True  # regress observation.environment_state from the prefix (training only)
    # "all": one joint loss. "action" / "estimator": only that part (see VLAPolicy.compute_loss).
    part: str = "all"
    # train the two parts at once in two processes (the estimator on one core, the action part
    # on the rest) and graft them into one checkpoint: the action part then sees ~5x the
    # samples a joint run of the same wall-clock time gives it
    parallel_parts: bool = False
    # With parallel_parts: train this many action parts, one after another on the action
    # cores (each max_minutes / action_members, its own initialization and batch order), beside
    # the one estimator that keeps the whole budget; `out` is then an ensemble of them sharing
    # that estimator (cerebellum/ensemble.py). Why: two runs that fail on different seeds,
    # averaged, lifted held-out success from 76.7% to 83.0% (docs/results.md). Only where
    # each member gets ~20k+ steps: 8k-step action parts (42 min on 2 CPU cores) fail.
    action_members: int = 1
    # Which member this action part is: it offsets the seed of the initialization and the batch
    # order, never the data split or the statistics (the members share one normalizer).
    member: int = 0
    # The datasets whose camera frames the estimator trains on (None: all of `data`). Why: the
    # estimator is the only part that reads a camera, and decoding every recorded video into
    # the frame cache costs minutes per 100k frames, while a few thousand episodes of images
    # are more than its training budget gets through. Normalization still uses all of `data`.
    estimator_data: list[str] | None = None
    # Sample every skill equally often, whatever its share of the frames. Why: recovery and
    # slip data triple the pick frames, and with uniform sampling the other skills lost
    # 5-7 of 30 validation episodes (docs/results.md).
    balance_skills: bool = False
    # Dataset folder -> how much more often its frames are drawn than its share of the frames
    # alone gives (absent = 1). Why: 5x clean demonstrations diluted the 500 pick recoveries
    # from 14% to 3% of the draws (docs/results.md). Combines with balance_skills.
    data_weights: dict[str, float] | None = None
    # Keep an exponential moving average of the weights (decay per step, e.g. 0.999) and ship
    # it: the checkpoint's model.safetensors holds the average, training/raw.safetensors the
    # optimizer's own weights (what a resume continues from). Why: a flow head's samples
    # follow the last few hundred noisy updates; the average is the usual cure (Diffusion
    # Policy, pi0 train with one). None = no average.
    ema_decay: float | None = None
    # "auto": CUDA when this machine has it, else the CPU; or "cpu", "cuda", "cuda:N"
    device: str = "auto"
    # "bf16": the forward passes run under bfloat16 autocast (weights, optimizer and EMA stay
    # float32). Why: on a CPU with AVX512-BF16 (this machine's) a bf16 matmul is ~2.4x a
    # float32 one; measured per step: the estimator 2x faster, the action part 1.2x (1.5x
    # with `compile`). On a CPU without bf16 instructions it is slower: keep "fp32".
    precision: str = "fp32"
    # torch.compile the action loss (VLAPolicy.compile_action_loss); ~1 min of compilation
    compile: bool = False

    def __post_init__(self) -> None:
        resolve_device(self.device)  # a bad or absent device is refused before any work
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.parallel_parts and self.part != "all":
            raise ValueError("parallel_parts trains both parts itself; leave part='all'")
        if self.action_members < 1 or self.member < 0:
            raise ValueError(f"action_members must be >= 1 and member >= 0, got {self.action_members}, {self.member}")
        if self.action_members > 1 and not self.parallel_parts:
            raise ValueError("action_members > 1 needs parallel_parts (the members share one estimator)")
        norm = {folder_key(d) for d in self.data}
        if self.estimator_data is not None:
            stray = [d for d in self.estimator_data if folder_key(d) not in norm]
            if stray or not self.estimator_data:
                raise ValueError(f"estimator_data must be a non-empty subset of data; not in data: {stray}")
        if self.data_weights:
            stray = [d for d in self.data_weights if folder_key(d) not in norm]
            bad = {d: w for d, w in self.data_weights.items() if not (w > 0 and math.isfinite(w))}
            if stray or bad:
                raise ValueError(f"data_weights: every key must be one of data and every weight a finite number "
                                 f"> 0; not in data: {stray}, bad weights: {bad}")
        for part in ("action", "estimator") if self.parallel_parts else (self.part,):
            check_part(self.policy, part)
        if self.policy.occlusion_hold and self.policy.env_state_input != "estimated":
            raise ValueError(f"occlusion_hold holds the estimator's object positions; it needs env_state_input "
                             f"'estimated', not {self.policy.env_state_input!r}")


def folder_key(path: str | Path) -> str:
    """One dataset folder however it is spelled (relative, absolute, with ..)."""
    return str(Path(path).resolve())


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available else cpu; anything else must exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return dev


@contextmanager
def precision_context(precision: str, device: torch.device):
    """Where the forward passes run: float32, or bfloat16 autocast. On a CPU, bf16 also
    selects the plain (math) attention kernel: the fused CPU kernel's bf16 backward is ~6x
    slower than its float32 one at this model's 11-16 token sequences."""
    if precision == "fp32":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernels = sdpa_kernel([SDPBackend.MATH]) if device.type == "cpu" else nullcontext()
    with torch.autocast(device.type, dtype=torch.bfloat16), kernels:
        yield


def fixed_camera_projection(pc: PolicyConfig) -> list[list[float]]:
    """The first camera's pixel projection when it is fixed in the world, else [] (the
    estimator then learns from the object-state regression alone)."""
    from embodia.body.sim import Simulation

    sim = Simulation(pc.embodiment)
    cam = pc.cameras[0]
    if not sim.camera_is_fixed(cam):
        return []
    return sim.camera_projection(cam, pc.image_size, pc.image_size).tolist()


def _split(n: int, frac: float, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * frac))) if n > 1 and frac > 0 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def build_datasets(cfg: TrainConfig) -> tuple[ConcatDataset, ConcatDataset | None, dict, list[DatasetReader]]:
    readers = [DatasetReader(d) for d in cfg.data]
    pc = cfg.policy
    # which datasets this part decodes images from: the action part none, the estimator its
    # own (estimator_data), the joint loss all. A dataset recorded without cameras (collect
    # --cameras none) can so feed the action part, which reads state and actions only.
    own = None if cfg.estimator_data is None else {folder_key(d) for d in cfg.estimator_data}

    def estimator_reads(r: DatasetReader) -> bool:
        return own is None or folder_key(r.root) in own

    def reader_of_images(r: DatasetReader) -> str | None:
        if cfg.part == "action":
            return None
        if cfg.part == "estimator" or cfg.parallel_parts:
            return "estimator" if estimator_reads(r) else None
        return "joint"

    for r in readers:
        if r.embodiment != pc.embodiment:
            raise ValueError(f"{r.root} is {r.embodiment!r} data; the policy is for {pc.embodiment!r}")
        if not r.has_actions:
            raise ValueError(f"{r.root} has no actions: behaviour cloning needs acted data")
        if r.state_dim != pc.state_dim or r.action_dim != pc.action_dim:
            raise ValueError(f"{r.root}: state/action dims {r.state_dim}/{r.action_dim} != policy {pc.state_dim}/{pc.action_dim}")
        keys = {k.removeprefix("observation.images.") for k in r.video_keys}
        missing = [c for c in pc.cameras if c not in keys]
        if missing and (reader := reader_of_images(r)):
            fix = "list only camera datasets in --estimator-data" if reader == "estimator" else \
                "train the parts apart (--parallel-parts) with only camera datasets in --estimator-data"
            raise ValueError(f"{r.root} has no camera(s) {missing}; it has {sorted(keys)} (the {reader} "
                             f"part reads them; a dataset without cameras can only feed the action part: {fix})")
    # the auxiliary where-is-everything target, when every dataset records the same one
    dims = {r.columns[ENV_STATE].shape[1] if ENV_STATE in r.columns else 0 for r in readers}
    if pc.env_state_input != "none":
        lacking = [str(r.root) for r in readers if ENV_STATE not in r.columns]
        if lacking or len(dims) != 1:
            raise ValueError(f"env_state_input={pc.env_state_input!r} needs {ENV_STATE} of one width in every "
                             f"dataset; {lacking or 'widths ' + str(sorted(dims))} do not have it")
        pc.env_state_dim = dims.pop()
    else:
        pc.env_state_dim = dims.pop() if cfg.aux_env_state and len(dims) == 1 else 0
    stats = {}
    if pc.env_state_dim:
        names = readers[0].meta.features[ENV_STATE].get("names") or []
        pc.env_state_names = list(names) if len(names) == pc.env_state_dim else []
        stats[ENV_STATE] = ObjectState.fit(pc.env_names, np.concatenate([r.columns[ENV_STATE] for r in readers]))
        if pc.env_state_input == "estimated" and not pc.camera_projection:
            pc.camera_projection = fixed_camera_projection(pc)
    pc.known_instructions, pc.object_words = retrieval_fields([r.tasks for r in readers], pc.env_state_names)
    if pc.instruction_retrieval and not pc.known_instructions:
        raise ValueError("instruction_retrieval needs the datasets' instructions, and these datasets record none")
    for key in (STATE, ACTION):
        s = StreamingStats(readers[0].columns[key].shape[1], seed=cfg.seed)
        for r in readers:
            s.update(r.columns[key])
        stats[key] = s.to_dict()
    # the action part reads the true object state (noised), never a camera: decode none
    wc = WindowConfig(horizon=pc.horizon, cameras=[] if cfg.part == "action" else list(pc.cameras))
    train, val = [], []
    for i, r in enumerate(readers):
        if cfg.part == "estimator" and not estimator_reads(r):
            continue
        eps = list(r.episode_indices)
        tr, va = _split(len(eps), cfg.val_fraction, cfg.seed + i)
        train.append(WindowDataset(r, wc, episodes=[eps[j] for j in tr]))
        if va:
            val.append(WindowDataset(r, wc, episodes=[eps[j] for j in va]))
    return ConcatDataset(train), (ConcatDataset(val) if val else None), stats, readers


class WeightedDraws(Sampler[int]):
    """Endless draws with replacement, in proportion to `weights`, made a block at a time
    (torch's WeightedRandomSampler draws all of its samples at once: 8 GB for 10**9)."""

    def __init__(self, weights: torch.Tensor, generator: torch.Generator, block: int = 4096) -> None:
        self.weights, self.generator, self.block = weights, generator, block

    def __iter__(self):
        while True:
            yield from torch.multinomial(self.weights, self.block, True, generator=self.generator).tolist()

    def __len__(self) -> int:
        return 10**9


def skill_balanced_weights(ds: ConcatDataset) -> torch.Tensor:
    """A sampling weight per sample such that every skill gets the same share of the draws."""
    skills = np.concatenate([d.skills_of() for d in ds.datasets])
    _, inverse, counts = np.unique(skills, return_inverse=True, return_counts=True)
    return torch.as_tensor(1.0 / counts[inverse], dtype=torch.double)


def dataset_weights(ds: ConcatDataset, weights: dict[str, float]) -> torch.Tensor:
    """A sampling weight per sample: its dataset's entry in `weights` (by folder), else 1."""
    by_root = {folder_key(d): float(w) for d, w in weights.items()}
    return torch.cat([torch.full((len(d),), by_root.get(folder_key(d.reader.root), 1.0), dtype=torch.double)
                      for d in ds.datasets])


def sampling_weights(ds: ConcatDataset, cfg: TrainConfig) -> torch.Tensor | None:
    """The per-sample draw weights `balance_skills` and `data_weights` ask for (None: uniform)."""
    w = skill_balanced_weights(ds) if cfg.balance_skills else None
    if cfg.data_weights:
        dw = dataset_weights(ds, cfg.data_weights)
        w = dw if w is None else w * dw
    return w


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """State keyed by the parameter's index in the param groups (what _load_optimizer reads),
    not by its rank in opt.state: frozen parameters (a frozen HF tower) never get state."""
    tensors, meta = {}, {}
    index = {id(p): i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    for p, st in opt.state.items():
        i = index[id(p)]
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{i}.{k}"] = v.detach().contiguous().cpu()
            else:
                meta[f"{i}.{k}"] = v
    save_tensors(tensors, path / "optimizer.safetensors")
    atomic_write_json(path / "optimizer.json", meta)


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """Restore the optimizer's state; a damaged or mismatched one (the files are written
    atomically, but a disk can still lose them) leaves the optimizer fresh with a warning:
    the weights resume, only the moments start again."""
    try:
        _read_optimizer(opt, path)
    except (CheckpointError, FileNotFoundError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError) as e:
        opt.state.clear()
        warnings.warn(f"{path}: optimizer state not restored ({str(e)[:200]}); resuming from the weights "
                      f"with a fresh optimizer", RuntimeWarning, stacklevel=2)


def _read_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors = load_tensors(path / "optimizer.safetensors")
    meta = read_json_object(path / "optimizer.json")
    params = [p for g in opt.param_groups for p in g["params"]]
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        p = params[int(i)]
        if k != "step" and v.shape != p.shape:
            raise ValueError(f"{key} has shape {tuple(v.shape)}, its parameter {tuple(p.shape)}")
        # moments live with their parameter; AdamW keeps its step count on the CPU unless it
        # is fused (then the step is on the parameter's device too)
        opt.state[p][k] = v if k == "step" and not opt.defaults.get("fused") else v.to(p.device)
    for key, v in meta.items():
        i, k = key.split(".", 1)
        opt.state[params[int(i)]][k] = v


class WeightAverage:
    """Exponential moving average of a module's floating-point state (parameters and
    buffers). The decay warms up as min(decay, (1 + step) / (10 + step)), so early averages
    do not drag the random initialization along."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.avg = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        current = module.state_dict()
        keys = list(self.avg)
        torch._foreach_lerp_([self.avg[k] for k in keys], [current[k].detach() for k in keys], 1.0 - d)

    @torch.no_grad()
    def swap(self, module: torch.nn.Module) -> None:
        """Exchange the module's weights with the average (call twice to swap back)."""
        current = module.state_dict()
        for k, a in self.avg.items():
            tmp = current[k].detach().clone()
            current[k].copy_(a)
            a.copy_(tmp)

    @contextmanager
    def applied(self, module: torch.nn.Module):
        """The module holds the average inside the block, its own weights again after it."""
        self.swap(module)
        try:
            yield
        finally:
            self.swap(module)


def train(cfg: TrainConfig, progress: Callable[[dict], None] | None = None) -> dict:
    """Train until max_steps or max_minutes; returns a summary. Resumes from `cfg.out`."""
    if cfg.parallel_parts:
        return train_parts_in_parallel(cfg, progress)
    seed = cfg.seed + MEMBER_SEED_STRIDE * cfg.member  # weights and batch order; not the data split
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    out = Path(cfg.out)
    train_ds, val_ds, stats, readers = build_datasets(cfg)
    language = LanguageEncoder()
    state_dir = out / "training"
    resumed = (out / "model.safetensors").exists() and (state_dir / "state.json").exists()
    if resumed:
        policy = load_checkpoint(out, language=language)
        if policy.cfg.head != cfg.policy.head:
            raise ValueError(f"{out} holds a {policy.cfg.head!r} policy, not {cfg.policy.head!r}")
        for name in INFERENCE_FIELDS:
            setattr(policy.cfg, name, getattr(cfg.policy, name))
        policy.train()
        st = json.loads((state_dir / "state.json").read_text())
    else:
        policy = VLAPolicy(cfg.policy, Normalizer(stats, normalizer_modes(cfg.policy)), language)
        st = {"step": 0, "samples": 0, "seconds": 0.0, "best_val": None}
    device = resolve_device(cfg.device)
    policy.to(device)
    if cfg.compile and cfg.part != "estimator":
        policy.compile_action_loss()
    params = policy.trainable(cfg.part)
    # fused on the CPU: one kernel instead of ~8 per tensor (measured there; CUDA keeps the
    # foreach default its tests ran with)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cpu")
    if resumed:
        _load_optimizer(opt, state_dir)
    ema = None
    if cfg.ema_decay is not None:
        ema = WeightAverage(policy, cfg.ema_decay)  # resumed: the saved average
        if resumed:
            if not (state_dir / "raw.safetensors").exists():
                raise ValueError(f"{out} was trained without ema_decay; resume it without --ema")
            policy.load_state_dict(load_tensors(state_dir / "raw.safetensors"), strict=True)
    elif resumed and (state_dir / "raw.safetensors").exists():
        raise ValueError(f"{out} was trained with an average of its weights; resume it with the same --ema")

    t_start = time.perf_counter() - st["seconds"]
    budget = cfg.max_minutes * 60

    def lr_at(step: int) -> float:
        """Warm-up, then cosine to 10% over whichever budget (steps or minutes) binds first."""
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        elapsed = time.perf_counter() - t_start
        frac = min(1.0, max(step / max(1, cfg.max_steps), elapsed / max(budget, 1e-9)))
        return cfg.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    gen = torch.Generator().manual_seed(seed + st["step"])
    weights = sampling_weights(train_ds, cfg)
    sampler = (WeightedDraws(weights, gen) if weights is not None
               else RandomSampler(train_ds, replacement=True, num_samples=10**9, generator=gen))
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, drop_last=True, num_workers=cfg.num_workers,
                        sampler=sampler, persistent_workers=cfg.num_workers > 0)
    val_batches = []
    if val_ds is not None:
        vgen = torch.Generator().manual_seed(cfg.seed + 12345)
        vloader = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=True, generator=vgen)
        for i, b in enumerate(vloader):
            if i >= cfg.val_batches:
                break
            val_batches.append(b)
    log_path = state_dir / "log.jsonl"
    state_dir.mkdir(parents=True, exist_ok=True)

    def shipped():
        """The weights the checkpoint ships: the average with ema_decay, else the model's own."""
        return ema.applied(policy) if ema is not None else nullcontext()

    def validate() -> float | None:
        """Validation loss of the weights the checkpoint ships (the average, with ema_decay)."""
        if not val_batches:
            return None
        policy.eval()
        torch.manual_seed(cfg.seed)  # the same noise / times every validation
        with shipped(), torch.no_grad(), precision_context(cfg.precision, device):
            losses = [float(policy.compute_loss(b, cfg.part)[0]) for b in val_batches]
        policy.train()
        return float(np.mean(losses))

    def checkpoint(val: float | None) -> None:
        extra = {"train": {k: v for k, v in asdict(cfg).items() if k != "policy"},
                 "step": st["step"], "val_loss": val, "datasets": [str(r.root) for r in readers]}
        if ema is not None:
            save_tensors(policy.state_dict(), state_dir / "raw.safetensors")
        with shipped():
            save_checkpoint(policy, out, extra=extra)
        _save_optimizer(opt, state_dir)
        atomic_write_json(state_dir / "state.json", st)

    policy.train()
    last_log = {}
    for batch in loader:
        if st["step"] >= cfg.max_steps or time.perf_counter() - t_start >= budget:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(st["step"])
        with precision_context(cfg.precision, device):
            loss, logs = policy.compute_loss(batch, cfg.part)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            ema.update(policy, st["step"])
        st["step"] += 1
        st["samples"] += cfg.batch_size
        st["seconds"] = time.perf_counter() - t_start
        last_log = {"step": st["step"], "loss": loss.item(), "lr": lr_at(st["step"]),
                    "samples_per_s": st["samples"] / max(st["seconds"], 1e-9), **logs}
        if st["step"] % cfg.val_every == 0:
            last_log["val_loss"] = validate()
            if last_log["val_loss"] is not None and (st["best_val"] is None or last_log["val_loss"] < st["best_val"]):
                st["best_val"] = last_log["val_loss"]
            with open(log_path, "a") as f:
                f.write(json.dumps(last_log) + "\n")
        if st["step"] % cfg.ckpt_every == 0:
            checkpoint(last_log.get("val_loss"))
        if progress:
            progress(last_log)
    final_val = validate()
    checkpoint(final_val)
    return {"steps": st["step"], "seconds": round(st["seconds"], 1), "final_val_loss": final_val,
            "best_val_loss": st["best_val"], "samples_per_s": round(st["samples"] / max(st["seconds"], 1e-9), 1),
            "resumed": resumed, "out": str(out), "device": str(device)}


class TrainingPartFailed(RuntimeError):
    """The estimator's process failed; the message is its error (e.g. which video would not decode)."""


def _train_part(cfg: TrainConfig, parent_pid: int, errors) -> None:
    """The estimator's process (spawned: a fresh interpreter with its own torch threads). It
    dies with its parent (no orphan racing a resumed run) and hands its error, one line, to
    the parent through `errors` (a Connection)."""
    die_with_parent(parent_pid)
    try:
        train(cfg)
    except Exception as e:
        known = isinstance(e, (ValueError, FileNotFoundError, KeyError, CheckpointError))
        if not known:
            traceback.print_exc()
        errors.send(str(e) if known else f"{type(e).__name__}: {e}")
        sys.exit(1)


def _check_part(child, errors, out: str) -> None:
    """Raise TrainingPartFailed as soon as the estimator's process has failed."""
    code = child.exitcode
    if code is None or code == 0:
        return
    why = errors.recv() if errors.poll() else (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
    raise TrainingPartFailed(f"the estimator's training process failed: {why} (rerun to resume it from {out})")


def train_parts_in_parallel(cfg: TrainConfig, progress: Callable[[dict], None] | None = None) -> dict:
    """The estimator trains in a child process on one core while this process trains the action
    part on the others, both under the same budget; the estimator's weights are then grafted
    into the action part's checkpoint, written to `cfg.out`. With `action_members` K > 1 this
    process trains K action parts one after another in K equal slices of the budget, and
    `cfg.out` becomes an ensemble folder: `member_k/` (action part k plus the estimator) and
    `ensemble.json`. Each part keeps its own resumable folder under `out/training/parts/`."""
    out = Path(cfg.out)
    parts = out / "training" / "parts"
    threads = cfg.threads or os.cpu_count() or 2
    k_members = cfg.action_members
    est_cfg = replace(copy.deepcopy(cfg), part="estimator", out=str(parts / "estimator"), threads=1,
                      parallel_parts=False, action_members=1)
    act_cfgs = [replace(copy.deepcopy(cfg), part="action", threads=max(1, threads - 1), parallel_parts=False,
                        action_members=1, member=k, max_minutes=cfg.max_minutes / k_members,
                        out=str(parts / ("action" if k_members == 1 else f"action_{k}")))
                for k in range(k_members)]
    ctx = multiprocessing.get_context("spawn")
    errors, child_end = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_train_part, args=(est_cfg, os.getpid(), child_end), name="estimator")
    child.start()
    child_end.close()

    def watched(log: dict) -> None:
        """Every action step: stop within a step of the estimator failing (a corrupt video at
        its start), not at the end of the budget."""
        _check_part(child, errors, est_cfg.out)
        if progress:
            progress(log)

    try:
        acts = [train(c, watched) for c in act_cfgs]
        child.join()
    except BaseException:
        child.terminate()  # nobody will graft its weights: do not let it run out the budget
        child.join()
        raise
    _check_part(child, errors, est_cfg.out)
    estimator = load_checkpoint(est_cfg.out)
    est_state = json.loads((Path(est_cfg.out) / "training" / "state.json").read_text())
    est_val = json.loads((Path(est_cfg.out) / "config.json").read_text()).get("extra", {}).get("val_loss")
    act_states = [json.loads((Path(c.out) / "training" / "state.json").read_text()) for c in act_cfgs]
    for i, (act_cfg, act, act_state) in enumerate(zip(act_cfgs, acts, act_states, strict=True)):
        policy = load_checkpoint(act_cfg.out)
        if policy.normalizer.to_dict() != estimator.normalizer.to_dict():
            raise RuntimeError("the two parts were trained with different statistics (different data?)")
        policy.estimator.load_state_dict(estimator.estimator.state_dict())
        extra = {"train": {k: v for k, v in asdict(cfg).items() if k != "policy"},
                 "step": {"action": act_state["step"], "estimator": est_state["step"]},
                 "val_loss": {"action": act["final_val_loss"], "estimator": est_val},
                 "datasets": list(cfg.data)}
        save_checkpoint(policy, out if k_members == 1 else out / f"member_{i}", extra=extra)
    if k_members > 1:  # written last: a crash before it leaves no half-made ensemble
        atomic_write_json(out / ENSEMBLE_FILE, {"members": [f"member_{k}" for k in range(k_members)]})
    one = k_members == 1
    return {"steps": {"action": act_states[0]["step"] if one else [a["step"] for a in act_states],
                      "estimator": est_state["step"]},
            "seconds": round(max(sum(a["seconds"] for a in act_states), est_state["seconds"]), 1),
            "final_val_loss": {"action": acts[0]["final_val_loss"] if one else [a["final_val_loss"] for a in acts],
                               "estimator": est_val},
            "samples_per_s": {
                "action": round(sum(a["samples"] for a in act_states) / max(sum(a["seconds"] for a in act_states),
                                                                            1e-9), 1),
                "estimator": round(est_state["samples"] / max(est_state["seconds"], 1e-9), 1)},
            "resumed": acts[0]["resumed"], "out": str(out), "device": acts[0]["device"]}
