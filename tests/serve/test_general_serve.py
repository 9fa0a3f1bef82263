"""A general-core checkpoint of an embodiment nobody registered (so100, one 64×64 camera)
serves openpi-client, and its metadata advertises the features it was trained on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from embodia.cerebellum.checkpoint import load_checkpoint
from embodia.cerebellum.general_training import GeneralTrainConfig, train_general
from embodia.serve.server import BackgroundServer, ServerConfig
from tests.cerebellum.conftest import HashLanguage
from tests.cerebellum.heads.conftest import SO100_JOINTS, write_so100
from tests.serve.conftest import API_KEY


@pytest.fixture(scope="module")
def so100_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("general_serve")
    data = write_so100(root / "so100", episodes=2, length=16)
    cfg = GeneralTrainConfig(data=[str(data)], out=str(root / "ck"), head="flow", d_model=32, n_heads=2,
                             backbone_layers=1, head_layers=1, horizon=8, n_action_steps=4, encoder_width=8,
                             keypoints=8, batch_size=4, max_steps=2, warmup_steps=1, threads=1, device="cpu")
    train_general(cfg, language=HashLanguage())
    return root / "ck"


def obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"observation.state": rng.normal(size=6).astype(np.float32), "prompt": "pick up the cube",
            "observation.images.top": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)}


def check_client(port: int) -> None:
    client = WebsocketClientPolicy("127.0.0.1", port, api_key=API_KEY)
    md = client.get_server_metadata()
    assert md["embodiment"] == "so100" and md["chunk_length"] == 8 and md["action_dim"] == 6
    assert md["action_space"]["names"] == list(SO100_JOINTS)
    f = md["observation"]["features"]
    assert f["robot_type"] == "so100" and f["cameras"] == [{"name": "top", "height": 64, "width": 64, "dtype": "video"}]
    assert md["observation"]["image_keys"] == ["observation.images.top"] and md["observation"]["state_dim"] == 6
    for seed in range(2):
        reply = client.infer(obs(seed))
        assert reply["actions"].shape == (8, 6) and np.isfinite(reply["actions"]).all()


def test_a_general_checkpoint_answers_openpi_client(so100_checkpoint):
    policy = load_checkpoint(so100_checkpoint, language=HashLanguage())
    with BackgroundServer(policy, API_KEY, ServerConfig(port=0)) as srv:
        check_client(srv.port)
        # a wrong camera size is a named error frame, and the connection keeps working
        client = WebsocketClientPolicy("127.0.0.1", srv.port, api_key=API_KEY)
        with pytest.raises(Exception, match=r"observation.images.top.*\(64, 64, 3\)"):
            client.infer(obs() | {"observation.images.top": np.zeros((32, 32, 3), np.uint8)})


@pytest.mark.slow
def test_embodia_serve_policy_serves_a_general_checkpoint(so100_checkpoint, tmp_path):
    """The real command in a subprocess (it loads the real sentence encoder, ~15 s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "key").write_text(API_KEY + "\n")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "embodia"), "serve", "policy", "--checkpoint",
                             str(so100_checkpoint), "--port", str(port), "--api-key-file", str(tmp_path / "key")],
                            env=os.environ | {"EMBODIA_API_KEY": ""}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                check_client(port)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(10)
