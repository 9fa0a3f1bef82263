"""A LeRobot checkpoint behind the suite harness's `reset()` / `select_action(obs)`.

Why: one harness (eval/suite_rollout.py) scores every policy, ours and LeRobot's, on the same
seeds. LeRobot needs Python >= 3.12 and its own torch, so the checkpoint runs in the side venv
(`make lerobot-venv`) as a child process, scripts/lerobot/serve_policy.py, spoken to over a
stdin/stdout msgpack pipe (the numpy encoding of embodia.serve.codec). The child calls LeRobot's
own `select_action` once per step, so its action queue / temporal ensembling / observation
history behave as under lerobot-eval.

The side venv is `$LEROBOT_VENV` (the Makefile's variable; default `.venv-lerobot` in the repo).
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from embodia.serve.codec import packb, unpackb

REPO = Path(__file__).resolve().parents[3]
SERVE_SCRIPT = REPO / "scripts" / "lerobot" / "serve_policy.py"
MAX_FRAME = 64 * 2**20


class LeRobotPolicyError(RuntimeError):
    """The side venv, the checkpoint or the child process is missing or failed."""


def lerobot_python() -> Path:
    """The side venv's interpreter; a clear error naming how to make it when it is absent."""
    venv = Path(os.environ.get("LEROBOT_VENV") or REPO / ".venv-lerobot")
    if not venv.is_absolute():
        venv = REPO / venv
    py = venv / "bin" / "python"
    if not py.exists():
        raise LeRobotPolicyError(f"LeRobot's side venv is missing ({py}); create it with `make lerobot-venv` "
                                 "(or point LEROBOT_VENV at one)")
    return py


def resolve_checkpoint(path: str | Path) -> Path:
    """A `pretrained_model` folder, or a lerobot-train output dir / step dir holding one."""
    p = Path(path)
    for cand in (p, p / "pretrained_model", p / "checkpoints" / "last" / "pretrained_model"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise LeRobotPolicyError(f"no LeRobot checkpoint at {p} (looked for config.json + model.safetensors in it, "
                             "in pretrained_model/ and in checkpoints/last/pretrained_model/)")


class LeRobotPipePolicy:
    """One LeRobot policy in a side-venv child; `select_action` returns one [D] float32 action.

    Latencies (milliseconds, measured in the child around LeRobot's select_action) are kept:
    `chunk_ms` for the steps that inferred a new chunk, `step_ms` for every step.
    """

    def __init__(self, checkpoint: str | Path, threads: int = 1, clip: tuple[float, float] | None = (-1.0, 1.0),
                 timeout_s: float = 300.0) -> None:
        self.checkpoint = resolve_checkpoint(checkpoint)
        if not SERVE_SCRIPT.is_file():
            raise LeRobotPolicyError(f"{SERVE_SCRIPT} is missing (run from an embodia source checkout)")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        # LeRobot logs a lot: a pipe nobody reads would fill and block it; closed in close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            [str(lerobot_python()), str(SERVE_SCRIPT), str(self.checkpoint), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env)
        self.clip = clip
        self.timeout_s = timeout_s
        self.metadata = self._recv()
        if "error" in self.metadata:
            self.close()
            raise LeRobotPolicyError(f"LeRobot policy server: {self.metadata['error']}")
        self.name = f"lerobot-{self.metadata.get('policy_type', 'policy')}"
        self.chunk_ms: list[float] = []
        self.step_ms: list[float] = []

    # ------------------------------------------------------------ pipe
    def _send(self, msg: dict) -> None:
        if self._proc.poll() is not None or self._proc.stdin is None:
            raise LeRobotPolicyError(f"LeRobot policy server exited ({self._proc.returncode}): {self._stderr()}")
        data = packb(msg)
        try:
            self._proc.stdin.write(struct.pack(">I", len(data)) + data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise LeRobotPolicyError(f"LeRobot policy server went away: {self._stderr()}") from None

    def _recv(self) -> dict:
        out = self._proc.stdout
        head = out.read(4) if out is not None else b""
        if len(head) < 4:
            self._proc.wait(timeout=30)
            raise LeRobotPolicyError(f"LeRobot policy server exited ({self._proc.returncode}): {self._stderr()}")
        (n,) = struct.unpack(">I", head)
        if n > MAX_FRAME:
            raise LeRobotPolicyError(f"LeRobot policy server sent a {n}-byte frame")
        from embodia.serve.codec import DecodeLimits

        return unpackb(out.read(n), DecodeLimits(max_bytes=MAX_FRAME))

    def _stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]

    def _call(self, msg: dict) -> dict:
        self._send(msg)
        reply = self._recv()
        if "error" in reply:
            raise LeRobotPolicyError(f"LeRobot policy server: {reply['error']}")
        return reply

    # ------------------------------------------------------------ SuitePolicy
    def seed_episode(self, seed: int) -> None:
        """Seeds torch in the child, so a sampling policy (diffusion) reproduces per episode."""
        self._call({"cmd": "seed", "seed": int(seed)})

    def reset(self) -> None:
        self._call({"cmd": "reset"})

    def request(self, obs: dict[str, Any]) -> dict[str, Any]:
        keys = list(self.metadata["image_keys"]) + ([self.metadata["state_key"]] if self.metadata["state_key"] else [])
        missing = [k for k in keys if k not in obs]
        if missing:
            raise LeRobotPolicyError(f"observation lacks {missing}: the checkpoint needs {keys}")
        msg = {k: np.ascontiguousarray(obs[k]) for k in keys}
        msg["task"] = str(obs.get("task", ""))
        return msg

    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        reply = self._call({"cmd": "act", "obs": self.request(obs)})
        self.step_ms.append(float(reply["ms"]))
        if reply.get("inferred"):
            self.chunk_ms.append(float(reply["ms"]))
        action = np.asarray(reply["action"], dtype=np.float32)
        # Meta-World clips to [-1, 1] inside its step; clipping here keeps our env's range check quiet
        return np.clip(action, *self.clip) if self.clip is not None else action

    def chunk_latency_ms(self, obs: dict[str, Any]) -> float:
        """One fresh chunk inferred at batch 1 (clears the episode's state)."""
        return float(self._call({"cmd": "chunk", "obs": self.request(obs)})["ms"])

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._send({"cmd": "close"})
                self._proc.wait(timeout=10)
            except (LeRobotPolicyError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def __enter__(self) -> LeRobotPipePolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
