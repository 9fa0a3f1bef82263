"""Policy latency and training throughput, printed as JSON.

For each head in the shipped architecture (object estimator from the cameras, object tokens,
flow prior; `--legacy` for the image-token prefix of the earlier checkpoints), batch 1, one thread: latency of a whole chunk
(`predict_chunk`, prefix computed once + head sampling) and per executed action through
`select_action` (the queue amortizes one chunk over `n_action_steps` actions), median and p99;
parameter counts; and training samples/s (forward + backward + AdamW step, batch 64), in
float32 or, with `--precision bf16`, under bfloat16 autocast as `embodia train --precision bf16`
runs it (`--compile` adds `torch.compile` of the action loss, as `embodia train --compile`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.policy import VLAPolicy, batch_from_obs, normalizer_modes
from embodia.cerebellum.training import precision_context, resolve_device
from embodia.data.normalize import Normalizer
from embodia.eval.machine import machine_info


class FixedLanguage:
    """Instruction embeddings are cached per instruction at run time, so a fixed vector
    measures the same work without loading the sentence model."""

    def encode(self, texts: list[str]) -> torch.Tensor:
        return torch.ones(len(texts), 384) / 384**0.5

    def encode_tokens(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        pad = torch.zeros(len(texts), max_tokens, dtype=torch.bool)
        pad[:, 12:] = True  # a typical instruction: 12 word pieces
        return torch.ones(len(texts), max_tokens, 384) / 384**0.5, pad


def shipped_config(head: str) -> PolicyConfig:
    """The architecture `embodia train` builds by default (its CLI defaults), for arm7."""
    from embodia.body.sim import Simulation

    sim = Simulation("arm7")
    names = sim.environment_state_names()
    return PolicyConfig(head=head, env_state_input="estimated", image_tokens=False, lang_tokens=24,
                        flow_prior=True, env_state_dim=len(names), env_state_names=names,
                        camera_projection=sim.camera_projection("front", 96, 96).tolist())


def _stats(cfg: PolicyConfig) -> dict:
    def f(d: int) -> dict:
        return {"mean": [0.0] * d, "std": [1.0] * d, "min": [-1.0] * d, "max": [1.0] * d,
                "q01": [-1.0] * d, "q99": [1.0] * d}
    out = {"observation.state": f(cfg.state_dim), "action": f(cfg.action_dim)}
    if cfg.env_state_dim:
        out["observation.environment_state"] = {"mean": [0.3] * cfg.env_state_dim, "std": [0.1] * cfg.env_state_dim,
                                                "floor": [0.02] * cfg.env_state_dim}
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def bench_head(head: str, runs: int, train_steps: int, legacy: bool = False, train_device: str = "cpu",
               train_batch: int = 64, precision: str = "fp32", compile_loss: bool = False) -> dict:
    cfg = PolicyConfig(head=head) if legacy else shipped_config(head)
    policy = VLAPolicy(cfg, Normalizer(_stats(cfg), normalizer_modes(cfg)), FixedLanguage()).eval()
    rng = np.random.default_rng(0)
    obs = {"observation.state": rng.normal(size=cfg.state_dim).astype(np.float32), "task": "pick up the red cube",
           "embodiment": cfg.embodiment}
    for c in cfg.cameras:
        obs[f"observation.images.{c}"] = rng.integers(0, 255, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    torch.set_num_threads(1)
    batch = batch_from_obs(obs, cfg)
    for _ in range(3):
        policy.predict_chunk(batch)
    chunk_ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        policy.predict_chunk(batch)
        chunk_ms.append(1000 * (time.perf_counter() - t0))
    action_ms = []
    policy.reset()
    for _ in range(runs * cfg.n_action_steps):
        t0 = time.perf_counter()
        policy.select_action(obs)
        action_ms.append(1000 * (time.perf_counter() - t0))
    # training throughput with all threads, on the training device (batches start on the CPU,
    # as a DataLoader hands them over)
    torch.set_num_threads(os.cpu_count() or 1)
    dev = resolve_device(train_device)
    policy.to(dev).train()
    b = train_batch

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    tb = {"observation.state": torch.randn(b, 1, cfg.state_dim), "task": ["pick up the red cube"] * b,
          "action": torch.randn(b, cfg.horizon, cfg.action_dim).clamp(-1, 1),
          "action_is_pad": torch.zeros(b, cfg.horizon, dtype=torch.bool), "embodiment": [cfg.embodiment] * b}
    for c in cfg.cameras:
        tb[f"observation.images.{c}"] = torch.randint(0, 255, (b, 1, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    if cfg.env_state_dim:
        tb["observation.environment_state"] = 0.3 + 0.1 * torch.randn(b, 1, cfg.env_state_dim)
    if compile_loss:
        policy.compile_action_loss()
    times: dict[str, list[float]] = {}
    for part in ("all", "action", "estimator") if cfg.env_state_input == "estimated" else ("all",):
        params = policy.trainable(part)
        opt = torch.optim.AdamW(params, lr=1e-4, fused=dev.type == "cpu")  # as train() builds it
        warm = 2 + (3 if compile_loss else 0)  # compilation happens in the first call(s)
        for i in range(train_steps + warm):
            sync()
            t0 = time.perf_counter()
            with precision_context(precision, dev):
                loss, _ = policy.compute_loss(tb, part)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync()
            if i >= warm:
                times.setdefault(part, []).append(time.perf_counter() - t0)
    n_prefix = sum(p.numel() for p in policy.prefix.parameters())
    n_head = sum(p.numel() for p in policy.head.parameters())
    n_est = sum(p.numel() for p in policy.estimator.parameters()) if policy.estimator is not None else 0
    return {
        "horizon": cfg.horizon, "action_dim": cfg.action_dim, "n_action_steps": cfg.n_action_steps,
        "flow_steps": cfg.flow_steps if head == "flow" else None,
        "chunk_ms_median": round(statistics.median(chunk_ms), 2), "chunk_ms_p99": round(pct(chunk_ms, 99), 2),
        "action_ms_median": round(statistics.median(action_ms), 3), "action_ms_p99": round(pct(action_ms, 99), 2),
        "action_ms_mean": round(statistics.mean(action_ms), 3),
        "params_total": sum(p.numel() for p in policy.parameters()), "params_prefix": n_prefix,
        "params_estimator": n_est, "params_head": n_head,
        "train_device": str(dev), "train_batch": b, "train_precision": precision, "train_compiled": compile_loss,
        "train_samples_per_s": round(b / statistics.median(times["all"]), 1),
        "train_samples_per_s_by_part": {k: round(b / statistics.median(v), 1) for k, v in times.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--legacy", action="store_true", help="the image-token prefix (PolicyConfig defaults)")
    ap.add_argument("--train-device", default="cpu", help="where training throughput is measured: cpu | cuda | auto")
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="training throughput's precision")
    ap.add_argument("--compile", action="store_true", help="torch.compile the action loss for the training throughput")
    a = ap.parse_args()
    out = {"benchmark": "policy_inference", "batch": 1, "threads_inference": 1,
           "architecture": "legacy image tokens" if a.legacy else "shipped (object estimator + object tokens)",
           "heads": {h: bench_head(h, a.runs, a.train_steps, a.legacy, a.train_device, a.train_batch, a.precision,
                                   a.compile)
                     for h in ("flow", "tokens")},
           "target": "flow head <= 10 ms per 16-step chunk at the default size on one core",
           "machine": machine_info()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
