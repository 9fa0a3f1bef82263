import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from typer.testing import CliRunner

from embodia.cli import app
from tests.serve.conftest import API_KEY, make_obs

runner = CliRunner()


def _invoke(args, env_key=None):
    env = {"EMBODIA_API_KEY": env_key} if env_key else {"EMBODIA_API_KEY": ""}
    return runner.invoke(app, ["serve", "policy", *args], env=env)


def test_serve_policy_refuses_to_start_without_a_usable_key(tiny_checkpoint, tmp_path):
    r = _invoke(["--checkpoint", str(tiny_checkpoint)])
    assert r.exit_code == 2 and "no API key" in r.output
    (tmp_path / "empty").write_text("\n")
    r = _invoke(["--checkpoint", str(tiny_checkpoint), "--api-key-file", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "is empty" in r.output
    r = _invoke(["--checkpoint", str(tiny_checkpoint)], env_key="short")
    assert r.exit_code == 2 and "at least 16" in r.output


def test_serve_policy_refuses_a_broken_checkpoint(tmp_path):
    r = _invoke(["--checkpoint", str(tmp_path)], env_key=API_KEY)
    assert r.exit_code == 2 and "missing" in r.output


@pytest.mark.slow
def test_serve_policy_command_serves_openpi_client(tiny_checkpoint, tmp_path):
    """The real command in a subprocess (loads the real sentence encoder, ~15 s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "key").write_text(API_KEY + "\n")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "embodia"), "serve", "policy", "--checkpoint",
                             str(tiny_checkpoint), "--port", str(port), "--api-key-file", str(tmp_path / "key")],
                            env=os.environ | {"EMBODIA_API_KEY": ""}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = WebsocketClientPolicy("127.0.0.1", port, api_key=API_KEY)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.5)
        from embodia.cerebellum.config import PolicyConfig
        from tests.serve.conftest import SMALL

        reply = client.infer(make_obs(PolicyConfig(**SMALL)))
        assert reply["actions"].shape == (4, 7)
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_brain_refuses_without_a_key_or_with_a_bad_planner():
    r = runner.invoke(app, ["serve", "brain"], env={"EMBODIA_API_KEY": ""})
    assert r.exit_code == 2 and "no API key" in r.output
    r = runner.invoke(app, ["serve", "brain", "--planner", "oracle"], env={"EMBODIA_API_KEY": API_KEY})
    assert r.exit_code == 2 and "unknown planner" in r.output
