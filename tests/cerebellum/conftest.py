"""A tiny recorded dataset and a cheap stand-in for the sentence encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.conftest import make_dataset


class HashLanguage:
    """Deterministic 384-d unit vectors per string (the real encoder takes ~10 s to load)."""

    dim = 384

    def encode(self, texts: list[str]) -> torch.Tensor:
        out = []
        for t in texts:
            rng = np.random.default_rng(abs(hash(t)) % (2**32))
            v = rng.normal(size=self.dim).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return torch.from_numpy(np.stack(out))

    def encode_tokens(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One vector per word (the real encoder: per word piece), zero-padded."""
        out = torch.zeros(len(texts), max_tokens, self.dim)
        pad = torch.ones(len(texts), max_tokens, dtype=torch.bool)
        for i, t in enumerate(texts):
            words = t.split()[:max_tokens]
            if words:
                out[i, : len(words)] = self.encode(words)
                pad[i, : len(words)] = False
        return out, pad


@pytest.fixture(scope="session")
def tiny_ds(tmp_path_factory):
    # with observation.environment_state, so every policy built from it has the auxiliary probe
    return make_dataset(tmp_path_factory.mktemp("cereb") / "pick", n=3, size=32, env_state=True)


@pytest.fixture
def hash_language():
    return HashLanguage()
