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


@pytest.fixture(scope="session")
def tiny_ds(tmp_path_factory):
    # with observation.environment_state, so every policy built from it has the auxiliary probe
    return make_dataset(tmp_path_factory.mktemp("cereb") / "pick", n=3, size=32, env_state=True)


@pytest.fixture
def hash_language():
    return HashLanguage()
