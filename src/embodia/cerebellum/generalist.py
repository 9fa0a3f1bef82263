"""`GeneralistPolicy`: the general core. Any LeRobot dataset's cameras, state and actions in,
action chunks out, through one of the registered heads (`heads/__init__.py`).

```
each camera (any H×W) ──► shared encoder (ResNet-18/GroupNorm/spatial softmax, or a patch
                          transformer), FiLM-conditioned on the instruction ──► tokens + camera embedding
instruction ──► frozen all-MiniLM-L6-v2 ──► sentence token (and the encoder's FiLM input)
observation.state (normalized) ──► state token
[sentence, state, camera tokens…] ──► transformer ──► prefix ──► head (flow | l1 | act | diffusion | tokens)
```

Nothing here reads simulator internals: the inputs are what `meta/info.json` lists
(`features.PolicyFeatures`). `observation.environment_state`, when a dataset has it and
`env_state_aux` > 0, is regressed from the pooled prefix as an auxiliary training loss only.

The Policy contract: `predict_chunk(batch) -> [B, H, D]`, `select_action(obs) -> [D]`
(receding horizon over a queue, or ACT's temporal ensembling; the same for every head),
`reset()`, `compute_loss(batch) -> (loss, logs)`. Inputs are checked: a missing camera, a
wrong shape or dtype, NaN → ValueError naming the key.
"""

from __future__ import annotations

import math
import typing
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from embodia.cerebellum.encoders import EncoderSpec, build_encoder
from embodia.cerebellum.encoders.augment import random_shift, shift_pixels
from embodia.cerebellum.features import ACTION, ENV_STATE, STATE, PolicyFeatures
from embodia.cerebellum.heads import HeadSpec, build_head, check_head_name
from embodia.cerebellum.language import LanguageEncoder
from embodia.data.normalize import Normalizer

ARCHITECTURE = "general"
FORMAT_VERSION = 1


@dataclass
class GeneralistConfig:
    """Saved as config.json (with `architecture: "general"`); everything a checkpoint needs to
    rebuild the policy."""

    features: PolicyFeatures
    head: str = "flow"
    head_options: dict[str, Any] = field(default_factory=dict)  # HeadSpec.options (what `fit` learned too)
    head_layers: int = 2
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    d_model: int = 128
    n_heads: int = 4
    backbone_layers: int = 2
    ff_mult: int = 2
    dropout: float = 0.0
    horizon: int = 16
    n_action_steps: int = 8
    temporal_ensemble: float | None = None  # ACT's exponential weight k; None = receding horizon
    film: bool = True
    lang_dim: int = 384
    shift_fraction: float = 4 / 84  # random-shift pad, as a fraction of the image's larger side
    env_state_aux: float = 0.0  # weight of the auxiliary environment-state regression (0 = off)
    action_space: str = "action"  # the dataset's name for its action space (info.json's embodia block)

    def __post_init__(self) -> None:
        check_head_name(self.head)
        for name in ("head_layers", "d_model", "n_heads", "backbone_layers", "ff_mult", "horizon",
                     "n_action_steps", "lang_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps must be in 1..horizon ({self.horizon}), got {self.n_action_steps}")
        for name in ("dropout", "shift_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        if not (math.isfinite(self.env_state_aux) and self.env_state_aux >= 0):
            raise ValueError(f"env_state_aux must be >= 0, got {self.env_state_aux}")
        if self.temporal_ensemble is not None and not (math.isfinite(self.temporal_ensemble)
                                                       and self.temporal_ensemble >= 0):
            raise ValueError(f"temporal_ensemble must be >= 0 or null, got {self.temporal_ensemble}")
        # the encoder's width follows the policy's and its FiLM input the sentence embedding
        self.encoder.d_model = self.d_model
        self.encoder.n_heads = self.n_heads
        self.encoder.cond_dim = self.lang_dim if self.film else 0

    # what serving, evaluation and the runtime read off any policy's config
    @property
    def embodiment(self) -> str:
        return self.features.robot_type

    @property
    def cameras(self) -> list[str]:
        return self.features.camera_names

    @property
    def image_size(self) -> int:
        """The cameras' common square size (the object-centric contract); 0 when they differ."""
        sizes = {(c.height, c.width) for c in self.features.cameras}
        if len(sizes) == 1:
            (h, w), = sizes
            return h if h == w else 0
        return 0

    @property
    def state_dim(self) -> int:
        return self.features.state_dim

    @property
    def action_dim(self) -> int:
        return self.features.action_dim

    @property
    def control_rate_hz(self) -> float:
        return self.features.fps

    def head_spec(self) -> HeadSpec:
        return HeadSpec(self.d_model, self.n_heads, self.head_layers, self.action_dim, self.horizon,
                        self.head_options)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"architecture": ARCHITECTURE, "format_version": FORMAT_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneralistConfig:
        d = dict(d)
        arch, version = d.pop("architecture", None), d.pop("format_version", None)
        if arch != ARCHITECTURE:
            raise ValueError(f"architecture is {arch!r}, not {ARCHITECTURE!r}")
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version is {version!r}, this build reads {FORMAT_VERSION}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown fields {unknown}")
        if "features" not in d:
            raise ValueError("missing field 'features'")
        hints = typing.get_type_hints(cls)
        for k in ("head", "head_layers", "d_model", "n_heads", "backbone_layers", "ff_mult", "horizon",
                  "n_action_steps", "film", "lang_dim", "action_space"):
            if k in d and not _is(d[k], hints[k]):
                raise ValueError(f"{k} must be {hints[k].__name__}, got {d[k]!r}"[:200])
        if not isinstance(d.get("head_options", {}), dict):
            raise ValueError("head_options must be an object")
        d["features"] = PolicyFeatures.from_dict(d["features"])
        try:
            d["encoder"] = EncoderSpec(**d.get("encoder", {}))
        except TypeError as e:
            raise ValueError(f"encoder: {e}") from None
        return cls(**d)


def _is(value: object, hint: type) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def normalizer_modes(cfg: GeneralistConfig) -> dict[str, str]:
    """State: z-score. Actions: q01..q99 -> [-1, 1] (the token heads bin that interval, the
    flow and diffusion heads start from unit noise). Environment state: z-score (aux only)."""
    modes = {STATE: "mean_std", ACTION: "quantile"}
    if cfg.env_state_aux and cfg.features.env_state_dim:
        modes[ENV_STATE] = "mean_std"
    return modes


def _mlp(d_in: int, d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d))


class GeneralistPolicy(nn.Module):
    """See the module docstring."""

    def __init__(self, cfg: GeneralistConfig, normalizer: Normalizer, language: LanguageEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = normalizer
        for key in (STATE, ACTION):
            if key not in normalizer:
                raise ValueError(f"the normalizer has no statistics for {key!r}")
        d = cfg.d_model
        self.encoder = build_encoder(cfg.encoder) if cfg.features.cameras else None
        self.camera_embed = nn.Parameter(torch.randn(max(1, len(cfg.features.cameras)), d) * 0.02)
        self.lang = _mlp(cfg.lang_dim, d)
        self.state = _mlp(cfg.state_dim, d)
        self.type_embed = nn.Parameter(torch.randn(3, d) * 0.02)  # sentence, state, camera
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.backbone = nn.TransformerEncoder(layer, cfg.backbone_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = build_head(cfg.head, cfg.head_spec())
        self.env_aux = None
        if cfg.env_state_aux and cfg.features.env_state_dim and ENV_STATE in normalizer:
            self.env_aux = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.features.env_state_dim))
        self._language = language
        self._queue: deque[np.ndarray] = deque()
        self._ensemble: list[tuple[int, np.ndarray]] = []
        self._t = 0
        self._generator = torch.Generator().manual_seed(0)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def language(self) -> LanguageEncoder:
        if self._language is None:
            self._language = LanguageEncoder()
        return self._language

    def configs(self) -> list[GeneralistConfig]:
        """[its config]: where an inference override goes."""
        return [self.cfg]

    def fit_head(self, action_chunks: np.ndarray) -> None:
        """Let the head learn what it needs from the normalized training chunks [N, H, D]
        (FAST's vocabulary), and keep it in the config that the checkpoint saves."""
        self.head.fit(action_chunks)
        self.cfg.head_options = dict(self.head.spec.options)

    # ----------------------------------------------------------------- inputs
    def check_batch(self, batch: dict[str, Any]) -> None:
        """ValueError naming the key for anything a batch lacks or gets wrong."""
        f = self.cfg.features
        for key in (STATE, "task", *(c.key for c in f.cameras)):
            if key not in batch:
                raise ValueError(f"observation is missing {key!r}; this policy reads {STATE!r}, 'task' and "
                                 f"cameras {f.camera_names}")
        s = torch.as_tensor(batch[STATE])
        if s.ndim not in (2, 3) or s.shape[-1] != f.state_dim:
            raise ValueError(f"{STATE} must be [B, {f.state_dim}] (or [B, n_obs, {f.state_dim}]), got {tuple(s.shape)}")
        if not torch.isfinite(s.float()).all():
            raise ValueError(f"{STATE} contains NaN or inf")
        for cam in f.cameras:
            img = batch[cam.key]
            if not isinstance(img, torch.Tensor):
                raise ValueError(f"{cam.key} must be a tensor, got {type(img).__name__}")
            if img.dtype != torch.uint8:
                raise ValueError(f"{cam.key} must be uint8, got {img.dtype}")
            if img.ndim not in (4, 5) or tuple(img.shape[-3:]) != (3, cam.height, cam.width):
                raise ValueError(f"{cam.key} must be [B, 3, {cam.height}, {cam.width}], got {tuple(img.shape)}")

    def _tasks(self, batch: dict[str, Any], n: int) -> list[str]:
        tasks = batch["task"]
        tasks = [tasks] * n if isinstance(tasks, str) else list(tasks)
        if len(tasks) != n or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"'task' must be {n} strings, got {tasks!r}"[:200])
        return tasks

    def prefix(self, batch: dict[str, Any]) -> torch.Tensor:
        """The backbone's output [B, T, d] for a checked batch (every head attends to it)."""
        self.check_batch(batch)
        dev = self.device
        state = torch.as_tensor(batch[STATE], device=dev).float()
        state = state[:, -1] if state.ndim == 3 else state  # the latest observation
        b = state.shape[0]
        lang = self.language.encode(self._tasks(batch, b)).to(dev)
        toks = [self.lang(lang)[:, None] + self.type_embed[0],
                self.state(self.normalizer.normalize(STATE, state))[:, None] + self.type_embed[1]]
        cams = self.cfg.features.cameras
        if cams:
            # cameras of one size go through the shared encoder in one call
            groups: dict[tuple[int, int], list[int]] = {}
            for i, c in enumerate(cams):
                groups.setdefault((c.height, c.width), []).append(i)
            out: list[torch.Tensor | None] = [None] * len(cams)
            for (h, w), idx in groups.items():
                imgs = []
                for i in idx:
                    img = torch.as_tensor(batch[cams[i].key], device=dev)
                    img = img[:, -1] if img.ndim == 5 else img
                    imgs.append(img.float() / 127.5 - 1.0)
                x = torch.cat(imgs)
                if self.training and self.cfg.shift_fraction:
                    x = random_shift(x, shift_pixels(h, w, self.cfg.shift_fraction))
                cond = lang.repeat(len(idx), 1) if self.cfg.film else None
                for i, t in zip(idx, self.encoder(x, cond).chunk(len(idx)), strict=True):
                    out[i] = t + self.camera_embed[i] + self.type_embed[2]
            toks += out
        return self.norm(self.backbone(torch.cat(toks, dim=1)))

    # ------------------------------------------------------------- contract
    def compute_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The head's loss on the normalized action chunk (padded steps masked), plus the
        auxiliary environment-state regression when configured and present."""
        if ACTION not in batch:
            raise ValueError(f"a training batch needs {ACTION!r}")
        prefix = self.prefix(batch)
        dev = prefix.device
        raw = torch.as_tensor(batch[ACTION], device=dev).float()
        h, dim = self.cfg.horizon, self.cfg.action_dim
        if raw.ndim != 3 or tuple(raw.shape[1:]) != (h, dim):
            raise ValueError(f"{ACTION} must be [B, {h}, {dim}], got {tuple(raw.shape)}")
        if not torch.isfinite(raw).all():
            raise ValueError(f"{ACTION} contains NaN or inf")
        actions = self.normalizer.normalize(ACTION, raw)
        pad = batch.get("action_is_pad")
        pad = torch.as_tensor(pad, device=dev).bool() if pad is not None else None
        loss, logs = self.head.compute_loss(prefix, None, actions, pad)
        logs = {k: float(v) for k, v in logs.items()}
        if self.env_aux is not None and ENV_STATE in batch:
            env = torch.as_tensor(batch[ENV_STATE], device=dev).float()
            env = env[:, -1] if env.ndim == 3 else env
            aux = ((self.env_aux(prefix.mean(1)) - self.normalizer.normalize(ENV_STATE, env)) ** 2).mean()
            logs["env_state_mse"] = float(aux.detach())
            loss = loss + self.cfg.env_state_aux * aux
        return loss, logs

    def predict_chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        """[B, H, D] actions in the dataset's units."""
        with torch.inference_mode():
            prefix = self.prefix(batch)
            chunk = self.head.sample(prefix, None, generator=self._generator)
            chunk = self.normalizer.unnormalize(ACTION, chunk.float())
        return chunk.clone()

    @torch.no_grad()
    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        """One action for one unbatched observation (HWC uint8 images, [S] state, task)."""
        cfg = self.cfg
        if cfg.temporal_ensemble is None:
            if not self._queue:
                chunk = self.predict_chunk(batch_from_obs(obs, cfg.features))[0].cpu().numpy()
                self._queue.extend(chunk[: cfg.n_action_steps])
            self._t += 1
            return self._queue.popleft()
        chunk = self.predict_chunk(batch_from_obs(obs, cfg.features))[0].cpu().numpy()
        self._ensemble.append((self._t, chunk))
        self._ensemble = [(t0, c) for t0, c in self._ensemble if self._t - t0 < cfg.horizon]
        preds = np.stack([c[self._t - t0] for t0, c in self._ensemble])
        w = np.exp(-cfg.temporal_ensemble * np.arange(len(preds)))  # the oldest weighs most (ACT)
        self._t += 1
        return (w[:, None] * preds).sum(0) / w.sum()

    def reset(self) -> None:
        self._queue.clear()
        self._ensemble.clear()
        self._t = 0


def batch_from_obs(obs: dict[str, Any], features: PolicyFeatures) -> dict[str, Any]:
    """An unbatched observation (HWC uint8 images, [S] state) -> a batch of one, checked."""
    if STATE not in obs:
        raise ValueError(f"observation is missing {STATE!r}")
    state = np.asarray(obs[STATE], dtype=np.float32)
    if state.shape != (features.state_dim,):
        raise ValueError(f"{STATE} must have shape ({features.state_dim},), got {state.shape}")
    batch: dict[str, Any] = {STATE: torch.from_numpy(state)[None], "task": [str(obs.get("task", ""))]}
    for cam in features.cameras:
        if cam.key not in obs:
            raise ValueError(f"observation is missing {cam.key!r}; this policy reads cameras {features.camera_names}")
        img = np.asarray(obs[cam.key])
        if img.shape != cam.shape or img.dtype != np.uint8:
            raise ValueError(f"{cam.key} must be uint8 {cam.shape}, got {img.dtype} {img.shape}")
        batch[cam.key] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    return batch
