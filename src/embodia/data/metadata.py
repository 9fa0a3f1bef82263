"""Read a v3 dataset's metadata: info, tasks, the episode table and statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embodia.data.layout import (
    CODEBASE_VERSION,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    read_json,
    video_keys,
)


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A parquet table, or a clear error naming the missing or corrupt file."""
    if not path.exists():
        raise FileNotFoundError(f"missing dataset file {path}")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"corrupt parquet file {path}: {e}") from None


@dataclass
class DatasetMeta:
    root: Path
    info: dict
    tasks: list[str]  # task_index -> text
    episodes: pa.Table  # one row per episode, sorted by episode_index
    stats: dict | None

    @classmethod
    def load(cls, root: str | Path) -> DatasetMeta:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"no dataset at {root}")
        info = read_json(root / INFO_PATH)
        version = info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise ValueError(f"{root / INFO_PATH}: codebase_version is {version!r}, expected {CODEBASE_VERSION!r}")
        for key in ("fps", "features", "data_path"):
            if key not in info:
                raise ValueError(f"{root / INFO_PATH}: missing field {key!r}")
        tasks: list[str] = []
        if (root / TASKS_PATH).exists():
            t = read_parquet(root / TASKS_PATH).to_pandas()
            tasks = [""] * len(t)
            for text, idx in zip(t.index, t["task_index"], strict=True):
                tasks[int(idx)] = str(text)
        files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if files:
            tables = [read_parquet(f) for f in files]
            episodes = pa.concat_tables(tables, promote_options="default")
            order = np.argsort(episodes.column("episode_index").to_numpy())
            episodes = episodes.take(order)
        else:
            episodes = pa.table({"episode_index": pa.array([], pa.int64())})
        stats = read_json(root / STATS_PATH) if (root / STATS_PATH).exists() else None
        return cls(root, info, tasks, episodes, stats)

    # ------------------------------------------------------------------ views
    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> dict:
        return self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return video_keys(self.features)

    @property
    def has_actions(self) -> bool:
        return "action" in self.features

    @property
    def embodiment(self) -> str:
        return (self.info.get("embodia") or {}).get("embodiment") or self.info.get("robot_type") or ""

    @property
    def num_episodes(self) -> int:
        return self.episodes.num_rows

    def column(self, name: str, default=None) -> list:
        if name in self.episodes.column_names:
            return self.episodes.column(name).to_pylist()
        return [default] * self.num_episodes

    def data_file(self, chunk: int, file: int) -> Path:
        return self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)

    def video_file(self, key: str, chunk: int, file: int) -> Path:
        return self.root / self.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)

    def summary(self) -> dict:
        tiers = self.column("tier", "real" if self.has_actions else "human")
        lengths = self.column("length", 0)
        emb = self.column("embodiment", self.embodiment)
        per_task: dict[str, int] = {}
        for ts in self.column("tasks", []):
            for t in ts or []:
                per_task[t] = per_task.get(t, 0) + 1
        return {
            "root": str(self.root),
            "codebase_version": self.info["codebase_version"],
            "fps": self.fps,
            "episodes": self.num_episodes,
            "frames": int(sum(lengths)),
            "tiers": {t: tiers.count(t) for t in sorted(set(tiers))},
            "embodiments": {e: emb.count(e) for e in sorted(set(emb))},
            "skills": {s: c for s in sorted({x for x in self.column("skill", "") if x})
                       for c in [self.column("skill", "").count(s)]},
            "tasks": len(self.tasks),
            "episodes_per_task": per_task,
            "cameras": self.video_keys,
            "has_actions": self.has_actions,
            "features": {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in self.features.items()},
        }
