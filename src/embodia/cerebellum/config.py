"""Policy configuration: one dataclass, saved as the checkpoint's config.json."""

from __future__ import annotations

import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields

FORMAT_VERSION = 1
HEADS = ("flow", "tokens")
# where the policy's object-state token comes from: nowhere, the learned estimator (images +
# proprioception), or the simulator's privileged vector (an upper bound for analysis only)
ENV_STATE_INPUTS = ("none", "estimated", "privileged")
# integer fields that must be at least 1 (a checkpoint's config.json is read through the same checks)
POSITIVE_INTS = ("image_size", "state_dim", "horizon", "n_action_steps", "d_model", "n_heads", "backbone_layers",
                 "head_layers", "ff_mult", "estimator_width", "lang_dim", "flow_steps", "token_bins")


@dataclass
class PolicyConfig:
    head: str = "flow"
    embodiment: str = "arm7"
    action_space: str = "ee_delta"
    cameras: list[str] = field(default_factory=lambda: ["front", "wrist"])
    image_size: int = 96
    state_dim: int = 15
    action_dim: int = 7
    horizon: int = 16  # action chunk length H
    n_action_steps: int = 8  # receding horizon: actions executed before re-planning
    temporal_ensemble: float | None = None  # exp. weight k (ACT); None = receding horizon
    d_model: int = 128
    n_heads: int = 4
    backbone_layers: int = 3
    head_layers: int = 2
    ff_mult: int = 2
    dropout: float = 0.0
    # stochastic depth: each residual branch of the prefix and the head is skipped for this
    # share of the training samples (an implicit ensemble; 0 = off; inference never drops)
    drop_path: float = 0.0
    film: bool = True  # language FiLM-conditions the vision encoder
    keypoints: int = 32  # spatial-softmax keypoint tokens per camera (0 = coarse grid only)
    # auxiliary training target: regress observation.environment_state (where every object
    # is) from the prefix, when the data has it; 0 = off. Never an input at run time.
    env_state_dim: int = 0
    env_state_names: list[str] = field(default_factory=list)  # as info.json names them
    aux_weight: float = 1.0
    # object-state conditioning: "estimated" adds an ObjectStateEstimator (images -> where
    # every object is, supervised by observation.environment_state) whose output is one more
    # prefix token; in training that token sees the true vector plus Gaussian noise of
    # `env_state_noise` (normalized units). 0.1 is 1-1.5 cm for cubes, about the estimator's
    # median error, so the action part learns to act on estimates as good as the real ones;
    # 0.02 (tried as a fix for the final-approach centimetre) scored no better on test seeds
    env_state_input: str = "none"
    env_state_noise: float = 0.1
    estimator_keypoints: int = 32
    estimator_width: int = 128
    estimator_weight: float = 1.0
    # [3, 4] pixel projection of the first camera when it is fixed in the world (from the
    # simulator, set by training): the estimator's heatmap targets; empty = none
    camera_projection: list[list[float]] = field(default_factory=list)
    # instruction word pieces (MiniLM per-token embeddings, up to this many) against which
    # each object token's relevance is measured; 0 = measure on the sentence vector
    lang_tokens: int = 0
    image_tokens: bool = True  # camera tokens in the prefix (False: cameras feed the estimator only)
    lang_dim: int = 384  # all-MiniLM-L6-v2
    flow_steps: int = 10
    flow_beta: tuple[float, float] = (1.5, 1.0)
    # the flow's source: N(0, I) when False; with a prior, N(mu(obs), flow_sigma^2 I) where
    # mu is the chunk regressed from the prefix, so the observation is in x_t from the start
    flow_prior: bool = False
    flow_sigma: float = 0.5
    # inference only: the sampling noise is scaled by this (1 = as trained; lower trades
    # diversity for precision, as a sampling temperature)
    flow_temperature: float = 1.0
    # inference only: an object the hand hides from the front camera keeps the position it was
    # last seen at (cerebellum/occlusion_hold.py)
    occlusion_hold: bool = False
    # inference only: answer an unseen phrasing as the nearest training instruction naming the
    # same objects (cerebellum/instruction_retrieval.py); training fills the two lists below
    instruction_retrieval: bool = False
    known_instructions: list[str] = field(default_factory=list)  # the training datasets' tasks
    object_words: dict[str, str] = field(default_factory=dict)  # word -> canonical object word
    token_bins: int = 256
    control_rate_hz: float = 10.0
    # bring your own VLM: a local Hugging Face model folder whose vision tower replaces the
    # from-scratch CNN (film and keypoints then do not apply); None = the CNN
    hf_backbone: str | None = None
    freeze_hf_backbone: bool = True  # False fine-tunes the HF vision tower with everything else

    def __post_init__(self) -> None:
        if isinstance(self.hf_backbone, os.PathLike):
            self.hf_backbone = str(self.hf_backbone)  # a Path would not survive config.json
        _check_field_types(self)
        for name in POSITIVE_INTS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("action_dim", "env_state_dim", "keypoints", "estimator_keypoints", "lang_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.control_rate_hz > 0:
            raise ValueError(f"control_rate_hz must be > 0, got {self.control_rate_hz}")
        for name in ("flow_temperature", "env_state_noise", "aux_weight", "estimator_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.flow_sigma > 0 or len(self.flow_beta) != 2 or not all(b > 0 for b in self.flow_beta):
            raise ValueError(f"flow_sigma and both flow_beta values must be > 0, got {self.flow_sigma}, "
                             f"{list(self.flow_beta)}")
        if self.temporal_ensemble is not None and self.temporal_ensemble < 0:
            raise ValueError(f"temporal_ensemble must be >= 0 or null, got {self.temporal_ensemble}")
        if self.camera_projection and (len(self.camera_projection) != 3
                                       or any(len(row) != 4 for row in self.camera_projection)):
            raise ValueError("camera_projection must be a 3x4 matrix or empty")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; heads: {list(HEADS)}")
        if self.env_state_input not in ENV_STATE_INPUTS:
            raise ValueError(f"unknown env_state_input {self.env_state_input!r}; choose from {list(ENV_STATE_INPUTS)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps must be in 1..horizon ({self.horizon}), got {self.n_action_steps}")
        self.flow_beta = tuple(self.flow_beta)
        if self.env_state_names and len(self.env_state_names) != self.env_state_dim:
            raise ValueError(f"env_state_names has {len(self.env_state_names)} names for env_state_dim {self.env_state_dim}")

    @property
    def env_names(self) -> list[str]:
        return list(self.env_state_names) or [f"env.{i}" for i in range(self.env_state_dim)]

    @property
    def env_feature_dim(self) -> int:
        """Width of the object-state features (ObjectState): values plus presence flags."""
        from embodia.cerebellum.object_state import feature_dim

        return feature_dim(self.env_names) if self.env_state_dim else 0

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        d = dict(d)
        version = d.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"checkpoint config format_version is {version!r}, this build reads {FORMAT_VERSION}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"checkpoint config has unknown fields {unknown}")
        return cls(**d)


def _conforms(value: object, hint: object) -> bool:
    """Whether a (JSON-read) value has the declared type; floats must be finite, and a bool
    is not a number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is tuple:  # (JSON has no tuple: a list is read as one)
        return isinstance(value, (list, tuple)) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_conforms(k, args[0]) and _conforms(v, args[1])
                                               for k, v in value.items())
    raise TypeError(f"no check for type {hint!r}")  # a new field type: teach _conforms about it


def _check_field_types(cfg: PolicyConfig) -> None:
    """Every field has its declared type (config.json can hold anything: null cameras, a NaN
    control rate); the error names the field."""
    hints = typing.get_type_hints(PolicyConfig)
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if not _conforms(value, hints[f.name]):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise ValueError(f"{f.name} must be {_type_name(hints[f.name])}, got {shown}")


def _type_name(hint: object) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")
