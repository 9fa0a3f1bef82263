"""Serve one LeRobot checkpoint to embodia's harness over a stdin/stdout msgpack pipe.

Runs ONLY in the side venv (`make lerobot-venv`; `.venv-lerobot/bin/python`, lerobot 0.6.1);
embodia starts it (embodia.eval.lerobot_policy.LeRobotPipePolicy), one process per policy:

    .venv-lerobot/bin/python scripts/lerobot/serve_policy.py CKPT/pretrained_model [--threads 1]

Why a pipe and not the websocket policy server: the child is private to one harness, so no port,
no auth, and LeRobot's per-episode state (action queue, temporal ensembling, diffusion's
observation history) lives in its own `select_action`, called once per env step exactly as
lerobot-eval calls it. Observations go through the same steps as in lerobot-eval's rollout
(`preprocess_observation`, the checkpoint's pre/post-processors), so the same frames give the
same actions.

Frames: a 4-byte big-endian length, then msgpack with openpi-client's numpy encoding (the format
of embodia.serve.codec). The first frame out is the metadata. Requests and replies:
  {"cmd": "reset"}                        -> {"ok": true}            (policy.reset(): new episode)
  {"cmd": "seed", "seed": S}              -> {"ok": true}            (torch's RNG: diffusion noise)
  {"cmd": "act", "obs": OBS}              -> {"action": [D] float32, "ms": ..., "inferred": bool}
  {"cmd": "chunk", "obs": OBS}            -> as "act", after a reset: one whole chunk inferred
                                             (the latency probe; the episode state is cleared)
  {"cmd": "close"}                        -> the process exits
OBS holds the dataset's feature keys: `observation.images.<cam>` uint8 [H, W, 3],
`observation.state` float [S], `task` str. An error answers {"error": "..."} naming the key.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np


def pack_default(obj: Any) -> Any:
    """openpi-client's msgpack_numpy encoding (embodia.serve.codec writes the same)."""
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"dtype"])).reshape(obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def send(out: BinaryIO, msg: dict) -> None:
    data = msgpack.packb(msg, default=pack_default)
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()


def recv(inp: BinaryIO) -> dict | None:
    head = inp.read(4)
    if len(head) < 4:
        return None
    (n,) = struct.unpack(">I", head)
    return msgpack.unpackb(inp.read(n), object_hook=unpack_hook, raw=False)


class Served:
    """A checkpoint with lerobot-eval's observation path in front and its post-processing behind."""

    def __init__(self, path: Path) -> None:
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        self.torch = torch
        cfg = PreTrainedConfig.from_pretrained(path, local_files_only=True)
        cfg.device = "cpu"
        self.policy = get_policy_class(cfg.type).from_pretrained(path, config=cfg, local_files_only=True)
        self.policy.eval()
        self.pre, self.post = make_pre_post_processors(
            policy_cfg=cfg, pretrained_path=str(path),
            preprocessor_overrides={"device_processor": {"device": "cpu"}})
        self.cfg = cfg
        self.image_keys = list(cfg.image_features)
        self.state_key = "observation.state" if "observation.state" in cfg.input_features else None

    def metadata(self, path: Path) -> dict:
        cfg = self.cfg
        return {
            "server": "lerobot", "checkpoint": str(path), "policy_type": cfg.type,
            "input_features": {k: {"type": str(v.type.value), "shape": list(v.shape)}
                               for k, v in cfg.input_features.items()},
            "action_dim": int(cfg.output_features["action"].shape[0]),
            "chunk_length": int(getattr(cfg, "chunk_size", None) or getattr(cfg, "horizon", 1)),
            "n_action_steps": int(getattr(cfg, "n_action_steps", 1)),
            "image_keys": self.image_keys, "state_key": self.state_key,
            "parameters": int(sum(p.numel() for p in self.policy.parameters())),
            "torch_threads": self.torch.get_num_threads(),
        }

    def batch(self, obs: dict) -> dict:
        """OBS -> what lerobot-eval's rollout hands the policy (batch of one)."""
        from lerobot.envs.utils import preprocess_observation

        raw: dict[str, Any] = {"pixels": {}}
        for key in self.image_keys:
            if key not in obs:
                raise KeyError(f"observation has no {key!r} (the checkpoint's cameras: {self.image_keys})")
            raw["pixels"][key.removeprefix("observation.images.")] = np.ascontiguousarray(obs[key], np.uint8)[None]
        if self.state_key is not None:
            if self.state_key not in obs:
                raise KeyError(f"observation has no {self.state_key!r}")
            raw["agent_pos"] = np.asarray(obs[self.state_key])[None]
        if not raw["pixels"]:
            del raw["pixels"]
        batch = preprocess_observation(raw)
        batch["task"] = [str(obs.get("task", ""))]
        return self.pre(batch)

    def act(self, obs: dict) -> dict:
        # ACT keeps `_action_queue`; diffusion (and others) `_queues["action"]`: empty -> a new chunk
        queue = getattr(self.policy, "_action_queue", None)
        if queue is None:
            queue = (getattr(self.policy, "_queues", None) or {}).get("action")
        inferred = queue is None or len(queue) == 0
        t0 = time.perf_counter()
        with self.torch.inference_mode():
            action = self.post(self.policy.select_action(self.batch(obs)))
        ms = (time.perf_counter() - t0) * 1e3
        return {"action": action.cpu().numpy()[0].astype(np.float32), "ms": ms, "inferred": bool(inferred)}

    def chunk(self, obs: dict) -> dict:
        """A fresh episode's first step: always one whole chunk inferred (the latency probe)."""
        self.policy.reset()
        out = self.act(obs)
        self.policy.reset()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="a LeRobot `pretrained_model` folder")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    # the protocol owns the real stdout; anything LeRobot prints goes to stderr
    proto_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    proto_in = sys.stdin.buffer
    if not (args.checkpoint / "config.json").is_file() or not (args.checkpoint / "model.safetensors").is_file():
        send(proto_out, {"error": f"{args.checkpoint} is not a LeRobot checkpoint (needs config.json and "
                                  "model.safetensors: the `pretrained_model` folder lerobot-train writes)"})
        raise SystemExit(2)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    try:
        served = Served(args.checkpoint)
    except Exception as e:  # noqa: BLE001 - the harness gets the reason, not a dead pipe
        send(proto_out, {"error": f"cannot load {args.checkpoint}: {type(e).__name__}: {e}"})
        raise SystemExit(2) from None
    send(proto_out, served.metadata(args.checkpoint))
    while (msg := recv(proto_in)) is not None:
        cmd = msg.get("cmd")
        try:
            if cmd == "reset":
                served.policy.reset()
                reply: dict = {"ok": True}
            elif cmd == "seed":
                torch.manual_seed(int(msg["seed"]))
                reply = {"ok": True}
            elif cmd == "act":
                reply = served.act(msg["obs"])
            elif cmd == "chunk":
                reply = served.chunk(msg["obs"])
            elif cmd == "close":
                break
            else:
                reply = {"error": f"unknown cmd {cmd!r} (reset, seed, act, chunk, close)"}
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            reply = {"error": f"{cmd}: {type(e).__name__}: {e}"}
        send(proto_out, reply)


if __name__ == "__main__":
    main()
