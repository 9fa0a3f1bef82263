"""The prefix: language, proprioception and camera tokens fused by a small transformer.

Computed once per action chunk; every head attends to it (the flow head reuses it across all
its denoising steps)."""

from __future__ import annotations

import torch
from torch import nn

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.vision import VisionEncoder


def transformer_encoder(cfg: PolicyConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.ff_mult * cfg.d_model,
                                       cfg.dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class PrefixEncoder(nn.Module):
    """`vision` maps (images [N, 3, H, W], FiLM cond [N, 384] or None) -> tokens [N, T, d];
    None builds the from-scratch CNN. Passing another one (the HF tower) keeps every other
    token, the fusion transformer and the output contract identical."""

    def __init__(self, cfg: PolicyConfig, vision: nn.Module | None = None) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.lang = nn.Sequential(nn.Linear(cfg.lang_dim, d), nn.GELU(), nn.Linear(d, d))
        self.state = nn.Sequential(nn.Linear(cfg.state_dim, d), nn.GELU(), nn.Linear(d, d))
        self.vision = vision if vision is not None else VisionEncoder(
            d, cfg.image_size, cfg.lang_dim if cfg.film else None, cfg.keypoints)
        self.camera_embed = nn.Parameter(torch.zeros(len(cfg.cameras), 1, d))
        self.type_embed = nn.Parameter(torch.zeros(3, d))
        nn.init.normal_(self.camera_embed, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)
        self.encoder = transformer_encoder(cfg, cfg.backbone_layers)
        self.norm = nn.LayerNorm(d)

    def forward(self, lang: torch.Tensor, state: torch.Tensor, images: list[torch.Tensor]) -> torch.Tensor:
        """lang [B, 384], state [B, S] (normalized), images: per camera [B, 3, H, W]."""
        toks = [self.lang(lang)[:, None] + self.type_embed[0], self.state(state)[:, None] + self.type_embed[1]]
        # every camera goes through the one shared encoder in a single call (half the op
        # dispatches of a per-camera loop, the same numbers: norms are per sample)
        n = len(images)
        cond = lang.repeat(n, 1) if self.cfg.film else None
        vis = self.vision(torch.cat([img.to(images[0].dtype) for img in images]), cond).chunk(n)
        for i, v in enumerate(vis):
            toks.append(v + self.camera_embed[i] + self.type_embed[2])
        return self.norm(self.encoder(torch.cat(toks, dim=1)))


def make_prefix(cfg: PolicyConfig) -> nn.Module:
    """The CNN prefix, or the Hugging Face one when `cfg.hf_backbone` names a local folder
    (imported lazily: transformers costs seconds to import and most runs never need it)."""
    if cfg.hf_backbone:
        from embodia.cerebellum.hf_backbone import HFPrefixEncoder

        return HFPrefixEncoder(cfg)
    return PrefixEncoder(cfg)
