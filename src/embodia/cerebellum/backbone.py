"""The prefix: language, proprioception and camera tokens fused by a small transformer.

Computed once per action chunk; every head attends to it (the flow head reuses it across all
its denoising steps)."""

from __future__ import annotations

import torch
from torch import nn

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.heads.decoder import drop_path
from embodia.cerebellum.object_state import ObjectTokens
from embodia.cerebellum.tracing import TraceCache, tracing_applies
from embodia.cerebellum.vision import VisionEncoder


class EncoderLayer(nn.TransformerEncoderLayer):
    """Pre-norm `nn.TransformerEncoderLayer` (same parameters, same state dict) whose two
    residual branches take stochastic depth (`drop_path`) while training."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__(cfg.d_model, cfg.n_heads, cfg.ff_mult * cfg.d_model, cfg.dropout,
                         batch_first=True, norm_first=True)
        self.drop_path = cfg.drop_path

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return super().forward(src, src_mask, src_key_padding_mask, is_causal)
        x = src + drop_path(self._sa_block(self.norm1(src), src_mask, src_key_padding_mask, is_causal),
                            self.drop_path, True)
        return x + drop_path(self._ff_block(self.norm2(x)), self.drop_path, True)


def transformer_encoder(cfg: PolicyConfig, layers: int) -> nn.TransformerEncoder:
    return nn.TransformerEncoder(EncoderLayer(cfg), layers, enable_nested_tensor=False)


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
        self.vision = None
        if cfg.image_tokens:
            self.vision = vision if vision is not None else VisionEncoder(
                d, cfg.image_size, cfg.lang_dim if cfg.film else None, cfg.keypoints)
        # one token per object (estimated or privileged state), its name embedded by the
        # sentence model and projected by `words`
        self.objects = (ObjectTokens(cfg.env_names, d, len(effector_dims(cfg.embodiment)))
                        if cfg.env_state_input != "none" else None)
        self.words = nn.Linear(cfg.lang_dim, d) if self.objects is not None else None
        self.camera_embed = nn.Parameter(torch.zeros(len(cfg.cameras), 1, d))
        self.type_embed = nn.Parameter(torch.zeros(3, d))
        nn.init.normal_(self.camera_embed, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)
        self.encoder = transformer_encoder(cfg, cfg.backbone_layers)
        self.norm = nn.LayerNorm(d)
        self._fast = TraceCache("_encode_objects")

    def forward(self, lang: torch.Tensor, state: torch.Tensor, images: list[torch.Tensor],
                env: torch.Tensor | None = None, words: tuple[torch.Tensor, torch.Tensor] | None = None,
                offsets: torch.Tensor | None = None) -> torch.Tensor:
        """lang [B, 384], state [B, S] (normalized), images: per camera [B, 3, H, W],
        env [B, F] (object-state features, when the config conditions on them), words
        (word-piece embeddings [B, T, 384], padding mask [B, T]): each object's relevance
        to the instruction is measured on them (on the sentence vector when None); offsets
        [B, O, 3 * effectors] each object's position from each end effector (decimetres)."""
        if (tracing_applies(self) and not self.cfg.image_tokens and self.objects is not None
                and env is not None and words is not None and offsets is not None):
            return self._fast(self, lang, state, env, words[0], words[1], offsets)
        return self._encode(lang, state, images, env, words, offsets)

    def _encode_objects(self, lang: torch.Tensor, state: torch.Tensor, env: torch.Tensor, word_vecs: torch.Tensor,
                        word_pad: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """`forward` for the object-token prefix without camera tokens, all tensors (traced)."""
        return self._encode(lang, state, [], env, (word_vecs, word_pad), offsets)

    def _encode(self, lang: torch.Tensor, state: torch.Tensor, images: list[torch.Tensor],
                env: torch.Tensor | None, words: tuple[torch.Tensor, torch.Tensor] | None,
                offsets: torch.Tensor | None) -> torch.Tensor:
        toks = [self.lang(lang)[:, None] + self.type_embed[0], self.state(state)[:, None] + self.type_embed[1]]
        if self.objects is not None:
            if env is None:
                raise ValueError("this policy conditions on the object state; pass env")
            toks.append(self.objects(env, self.words, self.objects.relevance(lang, words), offsets))
        if self.cfg.image_tokens and images:
            # every camera goes through the one shared encoder in a single call (half the op
            # dispatches of a per-camera loop, the same numbers: norms are per sample)
            n = len(images)
            cond = lang.repeat(n, 1) if self.cfg.film else None
            vis = self.vision(torch.cat([img.to(images[0].dtype) for img in images]), cond).chunk(n)
            for i, v in enumerate(vis):
                toks.append(v + self.camera_embed[i] + self.type_embed[2])
        return self.norm(self.encoder(torch.cat(toks, dim=1)))


def effector_dims(embodiment: str) -> list[list[int]]:
    """Indices of each arm's end-effector (x, y, z) in the embodiment's state vector."""
    from embodia.body.embodiments import get_embodiment

    spec = get_embodiment(embodiment)
    names = list(spec.state_names)
    return [[names.index(f"{arm}.ee_{a}") for a in "xyz"] for arm in spec.arm_names if f"{arm}.ee_x" in names]


def make_prefix(cfg: PolicyConfig) -> nn.Module:
    """The CNN prefix, or the Hugging Face one when `cfg.hf_backbone` names a local folder
    (imported lazily: transformers costs seconds to import and most runs never need it)."""
    if cfg.hf_backbone:
        from embodia.cerebellum.hf_backbone import HFPrefixEncoder

        return HFPrefixEncoder(cfg)
    return PrefixEncoder(cfg)
