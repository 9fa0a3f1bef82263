"""`VLAPolicy`: the Policy contract of DESIGN.md over one prefix encoder and one action head.

predict_chunk(batch) -> [B, H, D]; select_action(obs) -> [D] (queue-backed receding horizon,
or temporal ensembling); reset(); compute_loss(batch) -> (loss, logs). Inputs are checked:
a missing camera, a wrong shape, NaN, or another embodiment is a ValueError naming it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from torch import nn

from embodia.cerebellum.backbone import make_prefix
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.heads.flow import FlowHead
from embodia.cerebellum.language import LanguageEncoder
from embodia.data.normalize import Normalizer

STATE, ACTION = "observation.state", "action"
ENV_STATE = "observation.environment_state"


def make_head(cfg: PolicyConfig) -> nn.Module:
    if cfg.head == "flow":
        return FlowHead(cfg)
    from embodia.cerebellum.heads.tokens import TokenHead

    return TokenHead(cfg)


def normalizer_modes(cfg: PolicyConfig) -> dict[str, str]:
    modes = {STATE: "mean_std", ACTION: "quantile"}
    if cfg.env_state_dim:
        modes[ENV_STATE] = "mean_std"
    return modes


class EnvStateProbe(nn.Module):
    """Training-time auxiliary head: one learned query reads the prefix and regresses where
    every object is. It gives the from-scratch vision encoder a dense localization signal
    that the action loss alone supplies slowly; the policy never reads its output."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.query = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(d, cfg.n_heads, batch_first=True)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, cfg.env_state_dim))

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(memory.shape[0], -1, -1)
        return self.out(self.attn(q, memory, memory, need_weights=False)[0][:, 0])


class VLAPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig, normalizer: Normalizer, language: LanguageEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = normalizer
        self.prefix = make_prefix(cfg)
        self.head = make_head(cfg)
        self.env_probe = EnvStateProbe(cfg) if cfg.env_state_dim else None
        self._language = language
        self._queue: deque[np.ndarray] = deque()
        self._ensemble: list[tuple[int, np.ndarray]] = []
        self._t = 0
        self._generator = torch.Generator().manual_seed(0)

    # ----------------------------------------------------------------- inputs
    @property
    def language(self) -> LanguageEncoder:
        if self._language is None:
            self._language = LanguageEncoder()
        return self._language

    def image_keys(self) -> list[str]:
        return [f"observation.images.{c}" for c in self.cfg.cameras]

    def _check(self, batch: dict[str, Any]) -> None:
        cfg = self.cfg
        for key in [STATE, *self.image_keys(), "task"]:
            if key not in batch:
                raise ValueError(f"observation is missing {key!r}")
        emb = batch.get("embodiment")
        names = [emb] if isinstance(emb, str) else list(emb or [])
        wrong = [e for e in names if e and e != cfg.embodiment]
        if wrong:
            raise ValueError(f"observation is from embodiment {wrong[0]!r}; this policy drives {cfg.embodiment!r}")
        s = batch[STATE]
        if s.shape[-1] != cfg.state_dim:
            raise ValueError(f"{STATE} must have {cfg.state_dim} values, got shape {tuple(s.shape)}")
        if not torch.isfinite(torch.as_tensor(s)).all():
            raise ValueError(f"{STATE} contains NaN or inf")
        for k in self.image_keys():
            img = batch[k]
            if tuple(img.shape[-3:]) != (3, cfg.image_size, cfg.image_size):
                raise ValueError(f"{k} must be [..., 3, {cfg.image_size}, {cfg.image_size}], got {tuple(img.shape)}")

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        self._check(batch)
        tasks = batch["task"]
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        lang = self.language.encode(tasks)
        state = torch.as_tensor(batch[STATE]).float()
        if state.ndim == 3:  # [B, n_obs, S]: the policy uses the latest observation
            state = state[:, -1]
        state = self.normalizer.normalize(STATE, state)
        images = []
        for k in self.image_keys():
            img = torch.as_tensor(batch[k])
            if img.ndim == 5:
                img = img[:, -1]
            images.append(img)
        return lang, state, images

    # ------------------------------------------------------------- contract
    def compute_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        lang, state, images = self._inputs(batch)
        memory = self.prefix(lang, state, images)
        actions = self.normalizer.normalize(ACTION, torch.as_tensor(batch[ACTION]).float())
        pad = torch.as_tensor(batch["action_is_pad"]).bool()
        loss, logs = self.head.loss(memory, actions, pad)
        if self.env_probe is not None and ENV_STATE in batch:
            target = torch.as_tensor(batch[ENV_STATE]).float()
            target = self.normalizer.normalize(ENV_STATE, target[:, -1] if target.ndim == 3 else target)
            aux = ((self.env_probe(memory) - target) ** 2).mean()
            logs["env_state_mse"] = float(aux.detach())
            loss = loss + self.cfg.aux_weight * aux
        return loss, logs

    def predict_chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        lang, state, images = self._inputs(batch)
        with torch.inference_mode():  # less per-op overhead than no_grad on CPU
            memory = self.prefix(lang, state, images)
            chunk = self.head.sample(memory, generator=self._generator)
            chunk = self.normalizer.unnormalize(ACTION, chunk)
        return chunk.clone()  # an ordinary tensor again, usable anywhere

    def reset(self) -> None:
        self._queue.clear()
        self._ensemble.clear()
        self._t = 0

    @torch.no_grad()
    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        """One action for one (unbatched) env observation."""
        cfg = self.cfg
        if cfg.temporal_ensemble is None:
            if not self._queue:
                chunk = self.predict_chunk(batch_from_obs(obs, cfg))[0].numpy()
                self._queue.extend(chunk[: cfg.n_action_steps])
            self._t += 1
            return self._queue.popleft()
        chunk = self.predict_chunk(batch_from_obs(obs, cfg))[0].numpy()
        self._ensemble.append((self._t, chunk))
        self._ensemble = [(t0, c) for t0, c in self._ensemble if self._t - t0 < cfg.horizon]
        preds = np.stack([c[self._t - t0] for t0, c in self._ensemble])
        w = np.exp(-cfg.temporal_ensemble * np.arange(len(preds)))  # oldest first weighs most (ACT)
        self._t += 1
        return (w[:, None] * preds).sum(0) / w.sum()


def batch_from_obs(obs: dict[str, Any], cfg: PolicyConfig) -> dict[str, Any]:
    """An env observation (HWC uint8 images, [S] state) -> a batch of one."""
    batch: dict[str, Any] = {"task": [obs.get("task", "")], "embodiment": [obs.get("embodiment", "")]}
    if STATE not in obs:
        raise ValueError(f"observation is missing {STATE!r}")
    state = np.asarray(obs[STATE], dtype=np.float32)
    if state.shape != (cfg.state_dim,):
        raise ValueError(f"{STATE} must have shape ({cfg.state_dim},), got {state.shape}")
    batch[STATE] = torch.from_numpy(state)[None]
    for cam in cfg.cameras:
        k = f"observation.images.{cam}"
        if k not in obs:
            raise ValueError(f"observation is missing {k!r}")
        img = np.asarray(obs[k])
        if img.shape != (cfg.image_size, cfg.image_size, 3) or img.dtype != np.uint8:
            raise ValueError(f"{k} must be uint8 ({cfg.image_size}, {cfg.image_size}, 3), got {img.dtype} {img.shape}")
        batch[k] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    return batch
