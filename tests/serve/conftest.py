"""A tiny random policy (saved and loaded through a real checkpoint) and a running server."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from embodia.cerebellum.checkpoint import load_checkpoint, save_checkpoint
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.policy import VLAPolicy, normalizer_modes
from embodia.data.normalize import Normalizer
from embodia.serve.batching import BatchingConfig
from embodia.serve.server import BackgroundServer, ServerConfig

API_KEY = "test-key-0123456789abcdef"
SMALL = dict(image_size=32, d_model=32, n_heads=4, backbone_layers=1, head_layers=1, horizon=4,
             n_action_steps=2, flow_steps=2)


class StubLanguage:
    """Fixed-size embeddings without loading the sentence model (which takes ~10 s)."""

    def encode(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([torch.full((384,), (hash(t) % 97) / 97.0) for t in texts])


def _stats(cfg: PolicyConfig) -> dict:
    return {"observation.state": {"mean": [0.0] * cfg.state_dim, "std": [1.0] * cfg.state_dim},
            "action": {"q01": [-1.0] * cfg.action_dim, "q99": [1.0] * cfg.action_dim}}


class EchoPolicy:
    """Deterministic stand-in: every action of a chunk is the first D state values, so a test
    can tell which client's observation an answer was computed from."""

    def __init__(self, cfg: PolicyConfig, delay_s: float = 0.0) -> None:
        self.cfg = cfg
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []

    def predict_chunk(self, batch: dict) -> torch.Tensor:
        import time

        state = batch["observation.state"]
        self.batch_sizes.append(state.shape[0])
        if self.delay_s:
            time.sleep(self.delay_s)
        if any(t == "explode" for t in batch["task"]):
            raise RuntimeError("boom: secret internal detail")
        return state[:, None, : self.cfg.action_dim].repeat(1, self.cfg.horizon, 1)


@pytest.fixture(autouse=True)
def _openpi_client_uses_legacy_connect():
    """openpi-client 0.1.2 calls websockets' connect() the pre-14 way; it still works."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "connect\\(\\) must be used as a context manager", DeprecationWarning)
        yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = PolicyConfig(**SMALL)
    policy = VLAPolicy(cfg, Normalizer(_stats(cfg), normalizer_modes(cfg)), StubLanguage())
    return save_checkpoint(policy, tmp_path_factory.mktemp("serve") / "ck")


@pytest.fixture(scope="session")
def tiny_policy(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint, language=StubLanguage())


def make_obs(cfg: PolicyConfig, seed: int = 0, task: str = "pick up the red cube") -> dict:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.normal(size=cfg.state_dim).astype(np.float32),
           "task": task, "embodiment": cfg.embodiment}
    for cam in cfg.cameras:
        obs[f"observation.images.{cam}"] = rng.integers(0, 256, (cfg.image_size, cfg.image_size, 3),
                                                        dtype=np.uint8)
    return obs


@pytest.fixture(scope="module")
def vla_server(tiny_policy):
    with BackgroundServer(tiny_policy, API_KEY, ServerConfig(port=0, max_message_bytes=256 * 1024)) as srv:
        yield srv


@pytest.fixture(scope="module")
def echo_server():
    policy = EchoPolicy(PolicyConfig(**SMALL), delay_s=0.02)
    cfg = ServerConfig(port=0, batching=BatchingConfig(max_batch=8, window_s=0.05))
    with BackgroundServer(policy, API_KEY, cfg) as srv:
        srv.policy = policy
        yield srv
