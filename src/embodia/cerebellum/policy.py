"""`VLAPolicy`: the Policy contract of DESIGN.md over one prefix encoder and one action head.

predict_chunk(batch) -> [B, H, D]; select_action(obs) -> [D] (queue-backed receding horizon,
or temporal ensembling); reset(); compute_loss(batch) -> (loss, logs). Inputs are checked:
a missing camera, a wrong shape, NaN, or another embodiment is a ValueError naming it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from embodia.cerebellum.backbone import effector_dims, make_prefix
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.estimator import ObjectStateEstimator
from embodia.cerebellum.heads.flow import FlowHead
from embodia.cerebellum.instruction_retrieval import InstructionRetrieval
from embodia.cerebellum.language import LanguageEncoder
from embodia.cerebellum.object_state import ObjectState, object_name_phrase
from embodia.cerebellum.occlusion_hold import OcclusionHold
from embodia.data.normalize import Normalizer

STATE, ACTION = "observation.state", "action"
# what one training process optimizes: everything, or one of the two parts that train apart
# (the object estimator is ~85% of a joint step's compute; the action part alone is cheap)
PARTS = ("all", "action", "estimator")
ENV_STATE = "observation.environment_state"


@dataclass
class PolicyInputs:
    """One batch, checked and encoded: what the prefix and the losses read."""

    lang: torch.Tensor  # [B, 384] sentence embedding
    words: tuple[torch.Tensor, torch.Tensor] | None  # word-piece embeddings [B, T, 384], pad mask
    state: torch.Tensor  # [B, S] normalized proprioception
    state_raw: torch.Tensor  # [B, S] as measured (end-effector positions in metres)
    images: list[torch.Tensor]  # per camera [B, 3, H, W]
    env_raw: torch.Tensor | None  # [B, E] privileged object state in metres (training, analysis)
    env: torch.Tensor | None  # its ObjectState features


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


def check_part(cfg: PolicyConfig, part: str) -> None:
    """ValueError unless `cfg` can train `part` on its own (one rule for the policy and the trainer)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if part != "all" and cfg.env_state_input != "estimated":
        raise ValueError(f"part={part!r} needs env_state_input='estimated' (there is no estimator with "
                         f"{cfg.env_state_input!r})")
    if part == "action" and cfg.image_tokens:
        raise ValueError("part='action' trains without cameras, but image_tokens=True puts them in the prefix")


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
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, cfg.env_feature_dim))

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(memory.shape[0], -1, -1)
        return self.out(self.attn(q, memory, memory, need_weights=False)[0][:, 0])


class ChunkExecution:
    """`select_action` over `predict_chunk`: a queue of the chunk's first `n_action_steps`
    actions (receding horizon), or ACT's temporal ensembling. Shared by `VLAPolicy` and
    `PolicyEnsemble`; the host sets `cfg`, `_queue`, `_ensemble` and `_t`."""

    cfg: PolicyConfig
    _queue: deque
    _ensemble: list
    _t: int

    @torch.no_grad()
    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        """One action for one (unbatched) env observation."""
        cfg = self.cfg
        if cfg.temporal_ensemble is None:
            if not self._queue:
                chunk = self.predict_chunk(batch_from_obs(obs, cfg))[0].cpu().numpy()
                self._queue.extend(chunk[: cfg.n_action_steps])
            self._t += 1
            return self._queue.popleft()
        chunk = self.predict_chunk(batch_from_obs(obs, cfg))[0].cpu().numpy()
        self._ensemble.append((self._t, chunk))
        self._ensemble = [(t0, c) for t0, c in self._ensemble if self._t - t0 < cfg.horizon]
        preds = np.stack([c[self._t - t0] for t0, c in self._ensemble])
        w = np.exp(-cfg.temporal_ensemble * np.arange(len(preds)))  # oldest first weighs most (ACT)
        self._t += 1
        return (w[:, None] * preds).sum(0) / w.sum()


class VLAPolicy(nn.Module, ChunkExecution):
    def __init__(self, cfg: PolicyConfig, normalizer: Normalizer, language: LanguageEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = normalizer
        self.prefix = make_prefix(cfg)
        self.head = make_head(cfg)
        # a learned object-state estimator feeds the prefix, or (older configs) a probe only
        # shapes the encoder during training
        self.object_state = (ObjectState.from_stats(cfg.env_names, normalizer.features[ENV_STATE].stats)
                             if cfg.env_state_dim else None)
        self.estimator = (ObjectStateEstimator(cfg, self.object_state)
                          if cfg.env_state_input == "estimated" else None)
        self.env_probe = EnvStateProbe(cfg) if cfg.env_state_dim and cfg.env_state_input == "none" else None
        self._effectors = effector_dims(cfg.embodiment) if cfg.env_state_input != "none" else []
        self._hold = OcclusionHold(self.object_state, self._effectors) if self.estimator is not None else None
        tokens = getattr(self.prefix, "objects", None)
        if tokens is not None and language is not None:  # (a loaded checkpoint brings its own)
            names = [object_name_phrase(o) for o in tokens.objects]
            tokens.name_emb.copy_(language.encode(names))
        self._language = language
        self._retrieval: InstructionRetrieval | None = None
        self._queue: deque[np.ndarray] = deque()
        self._ensemble: list[tuple[int, np.ndarray]] = []
        self._t = 0
        self._generator = torch.Generator().manual_seed(0)
        self._compiled_action_loss = None  # set by compile_action_loss (training only)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 (nn.Module's own signature)
        """`.to(device)` / `.cuda()` also move the object-state tables, which are not buffers."""
        super()._apply(fn, recurse)
        if self.object_state is not None:
            self.object_state.to(self.device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def configs(self) -> list[PolicyConfig]:
        """[its config]: where an inference override goes (an ensemble has one per member)."""
        return [self.cfg]

    # ----------------------------------------------------------------- inputs
    @property
    def language(self) -> LanguageEncoder:
        if self._language is None:
            self._language = LanguageEncoder()
        return self._language

    def image_keys(self) -> list[str]:
        return [f"observation.images.{c}" for c in self.cfg.cameras]

    def _check(self, batch: dict[str, Any], with_images: bool = True) -> None:
        cfg = self.cfg
        needed = [STATE, *(self.image_keys() if with_images else []), "task"]
        needed += [ENV_STATE] if cfg.env_state_input == "privileged" else []
        for key in needed:
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
        if ENV_STATE in batch and cfg.env_state_dim:
            e = torch.as_tensor(batch[ENV_STATE])
            if e.shape[-1] != cfg.env_state_dim:
                raise ValueError(f"{ENV_STATE} must have {cfg.env_state_dim} values, got shape {tuple(e.shape)}")
            if not torch.isfinite(e).all():
                raise ValueError(f"{ENV_STATE} contains NaN or inf")
        for k in self.image_keys() if with_images else []:
            img = batch[k]
            if tuple(img.shape[-3:]) != (3, cfg.image_size, cfg.image_size):
                raise ValueError(f"{k} must be [..., 3, {cfg.image_size}, {cfg.image_size}], got {tuple(img.shape)}")

    def _inputs(self, batch: dict[str, Any], with_images: bool = True) -> PolicyInputs:
        """`with_images=False`: a state-only batch (the action part's training reads no cameras)."""
        self._check(batch, with_images)
        tasks = batch["task"]
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        cfg = self.cfg
        if cfg.instruction_retrieval and not self.training:
            if self._retrieval is None:
                self._retrieval = InstructionRetrieval(cfg.known_instructions, cfg.object_words, self.language)
            tasks = [self._retrieval(t) for t in tasks]
        dev = self.device
        state = torch.as_tensor(batch[STATE], device=dev).float()
        if state.ndim == 3:  # [B, n_obs, S]: the policy uses the latest observation
            state = state[:, -1]
        images = []
        for k in self.image_keys() if with_images else []:
            img = torch.as_tensor(batch[k], device=dev)
            if img.ndim == 5:
                img = img[:, -1]
            images.append(img)
        raw = None
        if ENV_STATE in batch and self.object_state is not None:
            raw = torch.as_tensor(batch[ENV_STATE], device=dev).float()
            raw = raw[:, -1] if raw.ndim == 3 else raw
        words = None
        if cfg.lang_tokens:
            vecs, pad = self.language.encode_tokens(tasks, cfg.lang_tokens)
            words = (vecs.to(dev), pad.to(dev))
        return PolicyInputs(
            lang=self.language.encode(tasks).to(dev), words=words,
            state=self.normalizer.normalize(STATE, state), state_raw=state, images=images, env_raw=raw,
            env=self.object_state.features(raw) if raw is not None else None)

    def object_input(self, x: PolicyInputs, noise: torch.Tensor | None = None) -> torch.Tensor | None:
        """What the prefix's object tokens read. Training: the true features plus noise (the
        action head learns to act from an imperfect estimate while the estimator learns
        separately; `noise` is that standard-normal draw, made here when None). Inference:
        the estimator's output, or the privileged vector."""
        mode = self.cfg.env_state_input
        if mode == "none":
            return None
        if x.env is not None and (self.training or not x.images):
            # (also the action part's validation: its state-only batches have no camera to estimate from)
            return x.env + self.cfg.env_state_noise * (noise if noise is not None else torch.randn_like(x.env))
        if mode == "privileged":
            if x.env is None:
                raise ValueError(f"a privileged policy needs {ENV_STATE!r} in every observation")
            return x.env
        est = self.estimator(x.images, x.state)
        if self._hold is not None and self.cfg.occlusion_hold:
            est = self._hold(est, x.state_raw)
        return est

    def _prefix(self, x: PolicyInputs, env_noise: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.object_input(x, env_noise)
        offsets = None
        if feats is not None:
            pos = self.object_state.positions(feats)  # [B, O, 3] metres
            ee = [x.state_raw[:, dims] for dims in self._effectors]
            offsets = torch.cat([(pos - e[:, None]) * 10.0 for e in ee], dim=-1) if ee else pos[..., :0]
            offsets = offsets * self.object_state.group_presence(feats)[..., None]
        return self.prefix(x.lang, x.state, x.images, feats, x.words, offsets)

    def memory(self, batch: dict[str, Any]) -> torch.Tensor:
        """The prefix for a batch: what every head attends to."""
        return self._prefix(self._inputs(batch))

    # ------------------------------------------------------------- contract
    def compute_loss(self, batch: dict[str, Any], part: str = "all") -> tuple[torch.Tensor, dict]:
        """`part`: "all" (everything, one batch), "action" (prefix + head on a state-only batch:
        the object tokens read the noised true state, so no camera is decoded) or
        "estimator" (the cameras -> object-state regression alone)."""
        check_part(self.cfg, part)
        x = self._inputs(batch, with_images=part != "action")
        loss, logs = torch.zeros((), device=x.state.device), {}
        if part != "estimator":
            actions = self.normalizer.normalize(ACTION, torch.as_tensor(batch[ACTION], device=x.state.device).float())
            pad = torch.as_tensor(batch["action_is_pad"], device=x.state.device).bool()
            draws = self.head.draws(actions)
            if x.env is not None:
                draws["env"] = torch.randn_like(x.env)
            loss, logs = (self._compiled_action_loss or self.action_loss)(x, actions, pad, draws)
        if part != "action" and x.env is not None and self.estimator is not None:
            pred, logits = self.estimator(x.images, x.state, return_logits=True)
            est = ((pred - x.env) ** 2).mean()
            heat = self.estimator.heatmap_loss(logits, x.env_raw)
            logs["env_state_mse"] = est.detach()
            logs["heatmap_ce"] = heat.detach()
            loss = loss + self.cfg.estimator_weight * (est + heat)
        return loss, {k: float(v) for k, v in logs.items()}

    def action_loss(self, x: PolicyInputs, actions: torch.Tensor, pad: torch.Tensor,
                    draws: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prefix and the head's loss: a pure tensor function of the checked inputs and
        the random draws (no Python-side state), so `compile_action_loss` can trace it whole."""
        memory = self._prefix(x, draws.get("env"))
        loss, logs = self.head.loss(memory, actions, pad, draws)
        if x.env is not None and self.env_probe is not None:
            aux = ((self.env_probe(memory) - x.env) ** 2).mean()
            logs["env_state_mse"] = aux.detach()
            loss = loss + self.cfg.aux_weight * aux
        return loss, logs

    def compile_action_loss(self) -> None:
        """Train through a `torch.compile`d `action_loss` (inductor fuses the many small ops of
        this model's per-step graph; shapes are fixed by the batch size). Costs ~1 min of
        compilation at the first step, and again at the first validation batch."""
        self._compiled_action_loss = torch.compile(self.action_loss, dynamic=False)

    def trainable(self, part: str = "all") -> list[nn.Parameter]:
        """The parameters `compute_loss(part=...)` trains (the estimator's or all but them)."""
        if part == "all":
            return list(self.parameters())
        own = {id(p) for p in self.estimator.parameters()} if self.estimator is not None else set()
        return [p for p in self.parameters() if (id(p) in own) == (part == "estimator")]

    def predict_chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        with torch.inference_mode():  # less per-op overhead than no_grad on CPU
            memory = self.memory(batch)
            chunk = self.head.sample(memory, generator=self._generator)
            chunk = self.normalizer.unnormalize(ACTION, chunk)
        return chunk.clone()  # an ordinary tensor again, usable anywhere

    def reset(self) -> None:
        """Start a new episode: forget queued actions and what the hand was hiding."""
        if self._hold is not None:
            self._hold.reset()
        self._queue.clear()
        self._ensemble.clear()
        self._t = 0


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
    if ENV_STATE in obs:  # privileged: read only by a privileged policy (and checked)
        batch[ENV_STATE] = torch.from_numpy(np.asarray(obs[ENV_STATE], dtype=np.float32))[None]
    return batch
