"""Action-head latency alone, printed as JSON: ms per chunk (`sample`, the prefix given) at
batch 1 on one thread, median and p90, and parameter counts, for the act, diffusion (U-Net and
transformer denoisers) and tokens (bins and FAST) heads at the general core's CPU-default sizes
(d_model 128, 4 heads, 2 head layers, H = 16; a 4-D action as Meta-World's, a 40-token prefix).

The FAST head is fitted on smooth synthetic chunks; an untrained decoder never emits EOS, so
its latency is given at the longest sequence (H * D + 1 steps) and, with `max_tokens` set to
the fitted tokenizer's mean encoded length + 1, at the length a trained head would decode.
The policy's prefix (encoders, backbone) is not included: benchmarks/policy_inference.py and
docs/cerebellum.md measure whole chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from embodia.cerebellum.heads import HeadSpec, build_head


def smooth_chunks(n: int, horizon: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    amp, freq, phase = rng.uniform(-0.8, 0.8, (n, 1, dim)), rng.uniform(0.2, 1.2, (n, 1, dim)), rng.uniform(0, 6, (n, 1, dim))
    return np.clip(amp * np.sin(2 * np.pi * freq * t + phase), -1, 1)


def time_head(head: torch.nn.Module, prefix: torch.Tensor, pad: torch.Tensor, reps: int) -> dict[str, float]:
    head.eval()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        head.sample(prefix, pad, g)
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        head.sample(prefix, pad, g)
        ms.append(1e3 * (time.perf_counter() - t0))
    ms.sort()
    return {"ms_per_chunk_median": round(statistics.median(ms), 3), "ms_per_chunk_p90": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "parameters": sum(p.numel() for p in head.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--action-dim", type=int, default=4)
    ap.add_argument("--prefix-tokens", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    h, d = args.horizon, args.action_dim
    spec = {"d_model": 128, "n_heads": 4, "layers": 2, "action_dim": d, "horizon": h}
    prefix = torch.randn(1, args.prefix_tokens, 128)
    pad = torch.zeros(1, args.prefix_tokens, dtype=torch.bool)
    chunks = smooth_chunks(2000, h, d)

    heads: dict[str, tuple[str, dict]] = {
        "act": ("act", {}),
        "diffusion_unet": ("diffusion", {"denoiser": "unet"}),
        "diffusion_transformer": ("diffusion", {"denoiser": "transformer"}),
        "tokens_bins": ("tokens", {"tokenizer": "bins"}),
        "tokens_fast_longest": ("tokens", {"tokenizer": "fast"}),
    }
    out: dict[str, object] = {"threads": torch.get_num_threads(), "batch": 1, "spec": spec,
                              "prefix_tokens": args.prefix_tokens, "cpu_count": os.cpu_count(), "heads": {}}
    fast_len = None
    for key, (name, opts) in heads.items():
        head = build_head(name, HeadSpec(**spec, options=dict(opts)))
        head.fit(chunks)
        if key == "tokens_fast_longest":
            fast_len = float(np.mean([len(s) for s in head.fast.encode(chunks[:500])]))
        out["heads"][key] = time_head(head, prefix, pad, args.reps) | ({"decode_steps": head.length} if name == "tokens" else {})
    # the FAST head at the length a trained head decodes (mean encoding + EOS)
    steps = int(round(fast_len)) + 1
    head = build_head("tokens", HeadSpec(**spec, options={"tokenizer": "fast", "max_tokens": steps}))
    head.fit(chunks)
    out["heads"]["tokens_fast_typical"] = time_head(head, prefix, pad, args.reps) | {"decode_steps": steps}
    out["fast_mean_tokens_per_chunk"] = round(fast_len, 2)
    out["bins_tokens_per_chunk"] = h * d
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
