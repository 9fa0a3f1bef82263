"""Bring your own VLM: the vision tower of a local Hugging Face model as the prefix's eyes.

For users who have pretrained weights on disk (SigLIP, CLIP, or a generative VLM whose
vision tower is a SigLIP/CLIP-style encoder, e.g. LLaVA). Only the tower is kept: its patch
tokens (`last_hidden_state`) are projected to d_model per camera and replace the
from-scratch CNN's tokens; the MiniLM language token, the state token and the small fusion
transformer stay as they are, so the heads, the checkpoints and the Policy API do not change.

Nothing is downloaded (`local_files_only=True`). The tower is frozen by default (no grad, kept
in eval mode even under `policy.train()`): pretrained features plus a trained projection are
what a few thousand CPU demos can afford. `freeze_hf_backbone=False` fine-tunes it instead.
The tower's weights are ordinary submodule parameters, so they are saved in the checkpoint's
model.safetensors and restored over a fresh load of the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embodia.cerebellum.backbone import PrefixEncoder
from embodia.cerebellum.config import PolicyConfig

TOWER_ATTRS = ("vision_model", "vision_tower", "model.vision_tower")


def _vision_config(config: Any) -> Any | None:
    """The tower's config: `vision_config` of a VLM, or the config itself for a vision-only
    model (SiglipVisionModel, CLIPVisionModel)."""
    vc = getattr(config, "vision_config", None)
    if vc is not None:
        return vc
    if hasattr(config, "image_size") and hasattr(config, "patch_size") and hasattr(config, "hidden_size"):
        return config
    return None


def _find_tower(model: nn.Module) -> nn.Module | None:
    for attr in TOWER_ATTRS:
        obj: Any = model
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.Module):
            return obj
    return None


def _normalization(path: Path) -> tuple[list[float], list[float]]:
    """image_mean / image_std from preprocessor_config.json when the folder has one: the
    tower was trained on pixels normalized exactly so. Else 0.5 / 0.5 (SigLIP's)."""
    mean, std = [0.5] * 3, [0.5] * 3
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        try:
            d = json.loads(pre.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"hf_backbone {path}: corrupt preprocessor_config.json: {e}") from None
        m, s = d.get("image_mean", mean), d.get("image_std", std)
        mean = [float(m)] * 3 if isinstance(m, int | float) else [float(v) for v in m]
        std = [float(s)] * 3 if isinstance(s, int | float) else [float(v) for v in s]
    return mean, std


def load_hf_vision(path: str | Path) -> tuple[nn.Module, Any, list[float], list[float]]:
    """(tower, its config, mean, std) from a local HF folder; ValueError naming the path and
    what was found when it is not a usable vision-language (or vision) model."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"hf_backbone {path} does not exist")
    if not path.is_dir() or not (path / "config.json").is_file():
        found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else "a file"
        raise ValueError(f"hf_backbone {path} is not a Hugging Face model folder: no config.json (found {found})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (ValueError, KeyError, OSError) as e:
        raise ValueError(f"hf_backbone {path}: transformers cannot read its config.json: {str(e)[:300]}") from None
    kind = getattr(config, "model_type", "?")
    vc = _vision_config(config)
    if vc is None:
        raise ValueError(f"hf_backbone {path} holds a {kind!r} model ({type(config).__name__}) without a vision "
                         f"tower (no vision_config); use a vision-language model such as SigLIP or CLIP")
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise ValueError(f"hf_backbone {path}: cannot load the {kind!r} model: {str(e)[:300]}") from None
    tower = _find_tower(model)
    if tower is None:
        children = [n for n, _ in model.named_children()]
        raise ValueError(f"hf_backbone {path}: {type(model).__name__} ({kind!r}) has no vision tower among "
                         f"{TOWER_ATTRS}; its submodules are {children}")
    mean, std = _normalization(path)
    return tower, vc, mean, std


class HFVisionTokens(nn.Module):
    """[N, 3, H, W] uint8 or float in [0, 1] -> [N, patches, d_model]: resized and normalized
    as the tower expects, its patch tokens projected to d_model. Same call as VisionEncoder;
    the FiLM condition is ignored (a pretrained tower has no FiLM inputs)."""

    def __init__(self, path: str, d_model: int, frozen: bool = True) -> None:
        super().__init__()
        tower, vc, mean, std = load_hf_vision(path)
        self.tower = tower
        self.image_size = int(vc.image_size)
        self.frozen = frozen
        # persistent: the checkpoint then carries the exact preprocessing it was trained with
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.proj = nn.Sequential(nn.LayerNorm(int(vc.hidden_size)), nn.Linear(int(vc.hidden_size), d_model))
        if frozen:
            self.tower.requires_grad_(False)
            self.tower.eval()

    def train(self, mode: bool = True) -> HFVisionTokens:
        """A frozen tower stays in eval mode (no dropout, fixed norms) whatever the policy does."""
        super().train(mode)
        if self.frozen:
            self.tower.eval()
        return self

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        del cond
        x = self.pixels(images)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.tower(pixel_values=x)
        feats = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return self.proj(feats.float())


class HFPrefixEncoder(PrefixEncoder):
    """PrefixEncoder with the HF tower's tokens in place of the CNN's: forward(lang [B, 384],
    state [B, S], images per camera [B, 3, H, W]) -> memory [B, 2 + cameras * patches, d_model]."""

    def __init__(self, cfg: PolicyConfig) -> None:
        if not cfg.hf_backbone:
            raise ValueError("HFPrefixEncoder needs cfg.hf_backbone (a local Hugging Face model folder)")
        super().__init__(cfg, vision=HFVisionTokens(cfg.hf_backbone, cfg.d_model, cfg.freeze_hf_backbone))
