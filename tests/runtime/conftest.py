"""Shared pieces for the runtime tests: a bare arm7 simulation, its kinematics and limits,
and a tiny random flow policy (no training, hash 'language')."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodia.body.sim import Simulation
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.policy import ACTION, STATE, VLAPolicy, normalizer_modes
from embodia.data.normalize import Normalizer
from embodia.runtime.body import SimBody
from embodia.runtime.safety import SafetyConfig
from tests.cerebellum.conftest import HashLanguage

TINY = dict(image_size=32, d_model=32, n_heads=4, backbone_layers=1, head_layers=1, horizon=6,
            n_action_steps=3, flow_steps=4, keypoints=4)


@pytest.fixture(scope="module")
def arm7_body() -> SimBody:
    return SimBody(Simulation("arm7"))


@pytest.fixture(scope="module")
def arm7_limits(arm7_body):
    return arm7_body.limits(SafetyConfig())


def tiny_policy(**kw) -> VLAPolicy:
    """A random-weight flow VLA for arm7 with plausible normalization statistics (one torch
    thread: tiny matrices gain nothing from more, and other jobs may hold the cores)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = PolicyConfig(**(TINY | kw))
    stats = {STATE: {"mean": np.zeros(cfg.state_dim), "std": np.ones(cfg.state_dim)},
             ACTION: {"q01": np.r_[[-0.05] * 3, [-0.3] * 3, 0.0], "q99": np.r_[[0.05] * 3, [0.3] * 3, 1.0]}}
    return VLAPolicy(cfg, Normalizer(stats, normalizer_modes(cfg)), HashLanguage()).eval()
