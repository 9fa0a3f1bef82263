"""Data pipeline throughput, printed as JSON.

- recording: frames/s of `collect` (scripted expert + two 96x96 cameras rendered + staging +
  consolidation into v3 files), with 1 and 2 worker processes, wall clock including start-up;
- loading: training-window samples/s through our `WindowDataset` (batch 64, 2 workers,
  action chunk 16, both cameras, shuffled), and the same read through LeRobot's own
  `LeRobotDataset` (side venv, pyav backend) on the same dataset; the ratio of the two.
Loader numbers are medians over repeated timed runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from embodia.data.recording import CollectConfig, collect
from embodia.data.windows import WindowConfig, WindowDataset
from embodia.eval.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
LEROBOT_PY = ROOT / ".venv-lerobot" / "bin" / "python"


def record(out: Path, episodes: int, workers: int) -> dict:
    t0 = time.perf_counter()
    rep = collect(CollectConfig(out=out, skill="pick", episodes=episodes, workers=workers,
                                cameras=("front", "wrist"), image_size=96))
    dt = time.perf_counter() - t0
    return {"episodes": rep.recorded, "frames": rep.frames, "seconds": round(dt, 2),
            "frames_per_s": round(rep.frames / dt, 1)}


def ours(root: Path, seconds: float, batch: int, workers: int, horizon: int) -> float:
    ds = WindowDataset(root, WindowConfig(horizon=horizon))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(0))
    samples, t0 = 0, None
    while True:
        for b in loader:
            if t0 is None:  # first batch: worker start-up, not timed (same as the LeRobot side)
                t0 = time.perf_counter()
                continue
            samples += len(b["index"])
            if time.perf_counter() - t0 >= seconds:
                return samples / (time.perf_counter() - t0)


def lerobot(root: Path, seconds: float, batch: int, workers: int, horizon: int) -> float:
    if not LEROBOT_PY.exists():
        raise SystemExit(f"{LEROBOT_PY} is missing: run `make .venv-lerobot` first")
    cmd = [str(LEROBOT_PY), str(ROOT / "scripts/lerobot/bench_reader.py"), str(root), "--batch", str(batch),
           "--workers", str(workers), "--horizon", str(horizon), "--seconds", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out[out.index("{"):])["samples_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=16)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rec = {f"workers_{w}": record(Path(tmp) / f"rec{w}", a.episodes, w) for w in (1, 2)}
        root = Path(tmp) / "rec2"
        o = [ours(root, a.seconds, a.batch, a.workers, a.horizon) for _ in range(a.repeats)]
        lr = [lerobot(root, a.seconds, a.batch, a.workers, a.horizon) for _ in range(a.repeats)]
    result = {
        "benchmark": "data_io",
        "recording": rec,
        "loader": {"batch": a.batch, "workers": a.workers, "horizon": a.horizon, "cameras": 2,
                   "image_size": 96, "dataset_episodes": a.episodes,
                   "embodia_samples_per_s_median": round(statistics.median(o), 1),
                   "embodia_runs": [round(x, 1) for x in o],
                   "lerobot_samples_per_s_median": round(statistics.median(lr), 1),
                   "lerobot_runs": [round(x, 1) for x in lr],
                   "ratio_embodia_over_lerobot": round(statistics.median(o) / statistics.median(lr), 2)},
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
