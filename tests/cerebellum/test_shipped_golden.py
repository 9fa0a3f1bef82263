"""The shipped object-centric checkpoints behave exactly as before the general core existed:
a fixed synthetic observation through `checkpoints/arm7_flow_d192_chain` gives the chunk
saved in `golden/arm7_flow_d192_chain.npy` (recorded before the refactor of issue 28)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from embodia.cerebellum.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints" / "arm7_flow_d192_chain"
GOLDEN = Path(__file__).parent / "golden" / "arm7_flow_d192_chain.npy"


class Crc32Language:
    """Deterministic 384-d unit vectors per string, across processes (str hash is salted)."""

    dim = 384

    def _vec(self, t: str) -> np.ndarray:
        v = np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._vec(t) for t in texts]))

    def encode_tokens(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.zeros(len(texts), max_tokens, self.dim)
        pad = torch.ones(len(texts), max_tokens, dtype=torch.bool)
        for i, t in enumerate(texts):
            words = t.split()[:max_tokens]
            if words:
                out[i, : len(words)] = self.encode(words)
                pad[i, : len(words)] = False
        return out, pad


def fixed_observation() -> dict:
    rng = np.random.default_rng(1234)
    state = np.array([0.0, -0.4, 0.0, -2.2, 0.0, 1.9, 0.8, 0.04, 0.45, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0],
                     np.float32) + rng.normal(0, 0.01, 15).astype(np.float32)
    obs = {"observation.state": state, "task": "pick up the red cube", "embodiment": "arm7"}
    for cam in ("front", "wrist"):
        obs[f"observation.images.{cam}"] = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    return obs


def shipped_chunk() -> np.ndarray:
    from embodia.cerebellum.policy import batch_from_obs

    torch.manual_seed(0)
    policy = load_checkpoint(CKPT, language=Crc32Language())
    batch = batch_from_obs(fixed_observation(), policy.cfg)
    return policy.predict_chunk(batch)[0].numpy()


@pytest.mark.skipif(not CKPT.exists(), reason="shipped checkpoint not in this tree")
def test_shipped_checkpoint_predicts_the_golden_chunk() -> None:
    chunk = shipped_chunk()
    golden = np.load(GOLDEN)
    assert chunk.shape == golden.shape == (16, 7)
    np.testing.assert_allclose(chunk, golden, rtol=1e-4, atol=1e-5)


if __name__ == "__main__":  # python tests/cerebellum/test_shipped_golden.py: record the golden chunk
    GOLDEN.parent.mkdir(exist_ok=True)
    np.save(GOLDEN, shipped_chunk().astype(np.float32))
    print(np.load(GOLDEN))
