"""Write LeRobot v3 datasets, durably.

Recording happens in two stages so that a crash or Ctrl-C loses at most the episode in
flight:
  1. `stage(episode)` commits one finished episode as its own folder under `.staging/`
     (written under a temp name, then renamed: it is there whole or not at all);
  2. `consolidate()` packs all staged episodes into *new* v3 files (data parquet, one mp4
     per camera, an episodes-metadata parquet), never rewriting a file already referenced.
     The episodes-metadata file is the commit point; info/stats/tasks follow from it, and
     re-opening the dataset finishes or rolls back whatever a crash interrupted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embodia.body.embodiment import Embodiment
from embodia.data.layout import (
    DATA_PATH,
    ENV_STATE,
    EPISODES_PATH,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    TIERS,
    VIDEO_GOP,
    VIDEO_PATH,
    atomic_write_json,
    chunk_file,
    make_features,
    new_info,
    read_json,
    tmp_path_for,
    video_keys,
)
from embodia.data.metadata import DatasetMeta, read_parquet
from embodia.data.stats import StreamingStats, image_channel_stats, merge_image_stats
from embodia.data.video import encode_mp4

STAGING = ".staging"
# temp names of `tmp_path_for` / `atomic_write_bytes` / `encode_mp4` (`.<name>.tmp-<pid>`)
_OWN_TMP = re.compile(r"^\.(file-\d{3}\.(parquet|mp4)|info\.json|stats\.json|tasks\.parquet)\.tmp-\d+$")
_CHUNK_DIR = re.compile(r"^chunk-\d{3}$")


@dataclass
class EpisodeBuffer:
    """One episode in memory: per-frame states, actions and camera frames."""

    task: str
    tier: str = "synthetic"
    skill: str = ""
    seed: int = -1
    success: bool = True
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    env_states: list[np.ndarray] = field(default_factory=list)  # recorded when the dataset has them

    def add(self, obs: dict, action: np.ndarray | None) -> None:
        self.states.append(np.asarray(obs["observation.state"], dtype=np.float32))
        if action is not None:
            self.actions.append(np.asarray(action, dtype=np.float32))
        if ENV_STATE in obs:
            self.env_states.append(np.asarray(obs[ENV_STATE], dtype=np.float32))
        for k, v in obs.items():
            if k.startswith("observation.images."):
                self.images.setdefault(k, []).append(np.asarray(v, dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.states)


class DatasetWriter:
    """Create or reopen a dataset for one embodiment; refuses mismatching ones."""

    def __init__(self, root: str | Path, embodiment: Embodiment, cameras: list[str],
                 image_size: tuple[int, int], fps: float | None = None,
                 action_space: str | None = "ee_delta", env_state_names: list[str] | None = None) -> None:
        self.root = Path(root)
        self.embodiment = embodiment
        fps = fps or embodiment.control_rate_hz
        features = make_features(embodiment, [c for c in cameras], image_size, fps, action_space, env_state_names)
        info_path = self.root / INFO_PATH
        if info_path.exists():
            info = read_json(info_path)
            have = (info.get("embodia") or {}).get("embodiment") or info.get("robot_type")
            if have != embodiment.name:
                raise ValueError(f"{self.root} holds embodiment {have!r}; refusing to write {embodiment.name!r} into it")
            if int(info["fps"]) != int(fps):
                raise ValueError(f"{self.root} is recorded at {info['fps']} fps, not {int(fps)}")
            old = {k: (v["dtype"], list(v["shape"])) for k, v in info["features"].items()}
            new = {k: (v["dtype"], list(v["shape"])) for k, v in features.items()}
            if old != new:
                diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise ValueError(f"{self.root}: feature mismatch in {diff} (dataset has {[old.get(k) for k in diff]}, "
                                 f"recording gives {[new.get(k) for k in diff]})")
            self.info = info
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.info = new_info(embodiment, features, fps, action_space)
            atomic_write_json(info_path, self.info)
        self.features = self.info["features"]
        self.video_keys = video_keys(self.features)
        self.has_actions = "action" in self.features
        self.staging = self.root / STAGING
        self.recover()

    # ------------------------------------------------------------------ staging
    def stage(self, ep: EpisodeBuffer, key: str) -> Path:
        """Commit one episode to the staging area atomically; returns its folder."""
        return stage_episode(self.staging, self.features, ep, key)

    def staged(self) -> list[Path]:
        if not self.staging.exists():
            return []
        return sorted(p for p in self.staging.iterdir() if p.is_dir() and not p.name.startswith("."))

    def recorded_keys(self) -> set[str]:
        meta = DatasetMeta.load(self.root)
        return {k for k in meta.column("embodia_key", None) if k} | {p.name for p in self.staged()}

    # ------------------------------------------------------------------ recovery
    def recover(self) -> None:
        """Finish or roll back an interrupted consolidation (see the module docstring).

        Only files this writer would have written are removed: the data and video files at
        the next file index (an uncommitted consolidation) and this writer's temp names. Why:
        a user's own file under `data/` or `videos/` is not the dataset's to delete, and a
        folder linked out of the dataset root is never walked into.
        """
        meta = DatasetMeta.load(self.root)
        chunk, fidx = chunk_file(self._next_file_index(meta))
        orphans = [self.root / DATA_PATH.format(chunk_index=chunk, file_index=fidx)]
        orphans += [self.root / VIDEO_PATH.format(video_key=k, chunk_index=chunk, file_index=fidx)
                    for k in self.video_keys]
        for f in orphans:
            if self._inside(f) and f.is_file() and not f.is_symlink():
                f.unlink()  # written by a consolidation that never committed
        for folder in self._own_folders():
            for f in folder.iterdir():
                if _OWN_TMP.match(f.name) and f.is_file() and not f.is_symlink():
                    f.unlink()
        done = {k for k in meta.column("embodia_key", None) if k}
        if self._inside(self.staging) and self.staging.is_dir():
            for p in self.staging.glob(".tmp-*"):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)  # an episode that was in flight
            for p in self.staged():
                if p.name in done and not p.is_symlink():
                    shutil.rmtree(p)  # committed, staging not yet cleaned
        self._write_derived(meta)

    def _inside(self, path: Path) -> bool:
        """Whether `path` lies under the dataset root with no symlink on the way to it."""
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        p = self.root
        for part in rel.parts:
            p = p / part
            if p.is_symlink():
                return False
        return True

    def _own_folders(self) -> list[Path]:
        """The folders this writer writes temp files into (never through a symlink)."""
        out = [self.root / "meta"]
        for base in [self.root / "data", self.root / "meta" / "episodes",
                     *(self.root / "videos" / k for k in self.video_keys)]:
            if self._inside(base) and base.is_dir():
                out += [d for d in base.iterdir() if _CHUNK_DIR.match(d.name)]
        return [d for d in out if self._inside(d) and d.is_dir()]

    # --------------------------------------------------------------- consolidate
    def consolidate(self) -> int:
        """Pack every staged episode into new v3 files. Returns how many were added."""
        staged = self.staged()
        if not staged:
            return 0
        meta = DatasetMeta.load(self.root)
        n_eps = meta.num_episodes
        n_frames = int(sum(meta.column("length", 0)))
        n_file = self._next_file_index(meta)
        chunk, fidx = chunk_file(n_file)
        tasks = list(meta.tasks)
        targets = [self.root / DATA_PATH.format(chunk_index=chunk, file_index=fidx)]
        targets += [self.root / VIDEO_PATH.format(video_key=k, chunk_index=chunk, file_index=fidx)
                    for k in self.video_keys]
        clash = [str(t) for t in targets if t.exists() or t.is_symlink()]
        if clash:  # recover() removed our own orphans: these are someone else's
            raise FileExistsError(f"{self.root}: refusing to overwrite {clash}, which this dataset does "
                                  "not list (a folder linked out of the dataset?)")
        episodes = []
        for p in staged:
            m = json.loads((p / "meta.json").read_text())
            with np.load(p / "arrays.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if m["task"] not in tasks:
                tasks.append(m["task"])
            episodes.append((m, arrays))
        # 1. tasks (a superset is harmless if we crash before the commit point)
        self._write_tasks(tasks)
        # 2. data parquet
        cols: dict[str, list] = {k: [] for k in ("observation.state", ENV_STATE, "action", "timestamp", "frame_index",
                                                  "episode_index", "index", "task_index")}
        rows = []
        index = n_frames
        for i, (m, a) in enumerate(episodes):
            length = m["length"]
            ep_idx = n_eps + i
            cols["observation.state"].append(a["observation.state"])
            if ENV_STATE in self.features:
                cols[ENV_STATE].append(a[ENV_STATE])
            if self.has_actions:
                cols["action"].append(a["action"])
            cols["timestamp"].append(np.arange(length, dtype=np.float32) / self.info["fps"])
            cols["frame_index"].append(np.arange(length, dtype=np.int64))
            cols["episode_index"].append(np.full(length, ep_idx, np.int64))
            cols["index"].append(np.arange(index, index + length, dtype=np.int64))
            cols["task_index"].append(np.full(length, tasks.index(m["task"]), np.int64))
            rows.append({"episode_index": ep_idx, "length": length, "from": index})
            index += length
        table = {}
        for k, parts in cols.items():
            if not parts:
                continue
            arr = np.concatenate(parts)
            if arr.ndim == 2:
                table[k] = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])
            else:
                table[k] = pa.array(arr)
        data_path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=fidx)
        tmp = tmp_path_for(data_path)
        pq.write_table(pa.table(table), tmp, compression="snappy")
        os.replace(tmp, data_path)
        # 3. videos: the staged episodes back to back, one file per camera
        from_ts: dict[str, list[float]] = {}
        for k in self.video_keys:
            vpath = self.root / VIDEO_PATH.format(video_key=k, chunk_index=chunk, file_index=fidx)
            from_ts[k] = self._encode_video(vpath, [a[k] for _, a in episodes])
        # 4. the episodes metadata file: the commit point
        fps = float(self.info["fps"])
        records = []
        for (m, a), r in zip(episodes, rows, strict=True):
            rec = {
                "episode_index": r["episode_index"], "tasks": [m["task"]], "length": r["length"],
                "data/chunk_index": chunk, "data/file_index": fidx,
                "dataset_from_index": r["from"], "dataset_to_index": r["from"] + r["length"],
            }
            for k in self.video_keys:
                t0 = from_ts[k][len(records)]
                rec |= {f"videos/{k}/chunk_index": chunk, f"videos/{k}/file_index": fidx,
                        f"videos/{k}/from_timestamp": t0, f"videos/{k}/to_timestamp": t0 + r["length"] / fps}
            rec |= {"meta/episodes/chunk_index": chunk, "meta/episodes/file_index": fidx}
            for feat in ("observation.state", ENV_STATE, "action"):
                if feat in a:
                    st = StreamingStats(a[feat].shape[1])
                    st.update(a[feat])
                    for name, v in st.to_dict().items():
                        rec[f"stats/{feat}/{name}"] = v
            for k in self.video_keys:
                for name, v in image_channel_stats(a[k]).items():
                    rec[f"stats/{k}/{name}"] = np.asarray(v, dtype=np.float64).reshape(-1).tolist()
            rec |= {"embodiment": self.embodiment.name, "tier": m["tier"], "skill": m["skill"],
                    "seed": m["seed"], "success": m["success"], "embodia_key": m["key"]}
            records.append(rec)
        ep_path = self.root / EPISODES_PATH.format(chunk_index=chunk, file_index=fidx)
        tmp = tmp_path_for(ep_path)
        pq.write_table(pa.Table.from_pylist(records), tmp)
        os.replace(tmp, ep_path)
        # 5. derived files, 6. staging cleanup
        self._write_derived(DatasetMeta.load(self.root))
        for p in staged:
            shutil.rmtree(p)
        return len(episodes)

    def _next_file_index(self, meta: DatasetMeta) -> int:
        existing = meta.column("meta/episodes/file_index", -1)
        chunks = meta.column("meta/episodes/chunk_index", 0)
        n = [c * 1000 + f for c, f in zip(chunks, existing, strict=True) if f >= 0]
        return (max(n) + 1) if n else 0

    def _encode_video(self, path: Path, episodes: list[np.ndarray]) -> list[float]:
        """The episodes back to back in one file; returns each episode's start time."""
        fps = int(self.info["fps"])
        lengths = [len(e) for e in episodes]
        encode_mp4(path, (f for e in episodes for f in e), fps, crf=18, gop=VIDEO_GOP)
        return (np.concatenate([[0], np.cumsum(lengths)[:-1]]) / fps).tolist()

    def _write_tasks(self, tasks: list[str]) -> None:
        df = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)}, index=pd.Index(tasks, name="task"))
        path = self.root / TASKS_PATH
        tmp = tmp_path_for(path)
        df.to_parquet(tmp)
        os.replace(tmp, path)

    def _write_derived(self, meta: DatasetMeta) -> None:
        """info.json totals and stats.json, recomputed from the committed episodes."""
        n = meta.num_episodes
        info = dict(self.info)
        info["total_episodes"] = n
        info["total_frames"] = int(sum(meta.column("length", 0)))
        info["total_tasks"] = len(meta.tasks)
        info["splits"] = {"train": f"0:{n}"} if n else {}
        atomic_write_json(self.root / INFO_PATH, info)
        self.info = info
        if n:
            atomic_write_json(self.root / STATS_PATH, compute_dataset_stats(meta))


def check_episode(features: dict, ep: EpisodeBuffer) -> None:
    """Clear errors for an episode that does not fit the dataset's features."""
    if len(ep) == 0:
        raise ValueError("cannot save an empty episode")
    if ep.tier not in TIERS:
        raise ValueError(f"unknown tier {ep.tier!r}; tiers: {list(TIERS)}")
    if not ep.task:
        raise ValueError("every episode needs its task text")
    s = features["observation.state"]["shape"][0]
    bad = [i for i, x in enumerate(ep.states) if x.shape != (s,)]
    if bad:
        raise ValueError(f"observation.state must have shape ({s},); frame {bad[0]} has {ep.states[bad[0]].shape}")
    if "action" in features:
        d = features["action"]["shape"][0]
        if len(ep.actions) != len(ep):
            raise ValueError(f"action: {len(ep.actions)} actions for {len(ep)} frames")
        bad = [i for i, x in enumerate(ep.actions) if x.shape != (d,)]
        if bad:
            raise ValueError(f"action must have shape ({d},); frame {bad[0]} has {ep.actions[bad[0]].shape}")
        if not np.all(np.isfinite(np.stack(ep.actions))):
            raise ValueError("action contains NaN or inf")
    if ENV_STATE in features:
        e = features[ENV_STATE]["shape"][0]
        if len(ep.env_states) != len(ep) or any(x.shape != (e,) for x in ep.env_states):
            raise ValueError(f"{ENV_STATE}: needs one ({e},) vector per frame")
    for k in video_keys(features):
        h, w, c = features[k]["shape"]
        frames = ep.images.get(k, [])
        if len(frames) != len(ep):
            raise ValueError(f"{k}: {len(frames)} frames for {len(ep)} states")
        if frames[0].shape != (h, w, c):
            raise ValueError(f"{k} must have shape ({h}, {w}, {c}), got {frames[0].shape}")


def stage_episode(staging: Path, features: dict, ep: EpisodeBuffer, key: str) -> Path:
    """Write one episode under `staging/key` atomically (temp folder, then rename).

    Safe to call from several recording processes at once (distinct keys).
    """
    check_episode(features, ep)
    final = staging / key
    if final.exists():
        raise FileExistsError(f"episode {key!r} is already staged in {staging}")
    tmp = staging / f".tmp-{key}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    arrays = {"observation.state": np.stack(ep.states)}
    if ENV_STATE in features:
        arrays[ENV_STATE] = np.stack(ep.env_states)
    if "action" in features:
        arrays["action"] = np.stack(ep.actions)
    for k in video_keys(features):
        arrays[k] = np.stack(ep.images[k])
    np.savez(tmp / "arrays.npz", **arrays)
    meta = {"task": ep.task, "tier": ep.tier, "skill": ep.skill, "seed": int(ep.seed),
            "success": bool(ep.success), "length": len(ep), "key": key}
    (tmp / "meta.json").write_text(json.dumps(meta))
    os.replace(tmp, final)
    return final


def compute_dataset_stats(meta: DatasetMeta) -> dict:
    """stats.json: numeric features streamed from the data files, images pooled per episode."""
    out: dict = {}
    numeric = [k for k in ("observation.state", ENV_STATE, "action") if k in meta.features]
    streams = {k: StreamingStats(meta.features[k]["shape"][0]) for k in numeric}
    files = sorted({(c, f) for c, f in zip(meta.column("data/chunk_index"), meta.column("data/file_index"), strict=True)})
    for c, f in files:
        t = read_parquet(meta.data_file(c, f), columns=numeric)
        for k in numeric:
            col = t.column(k).combine_chunks()
            streams[k].update(col.flatten().to_numpy().reshape(len(col), -1))
    for k, s in streams.items():
        out[k] = s.to_dict()
    for k in meta.video_keys:
        parts = []
        for row in meta.episodes.to_pylist():
            if f"stats/{k}/mean" in row and row[f"stats/{k}/mean"] is not None:
                parts.append({s: row[f"stats/{k}/{s}"] for s in ("min", "max", "mean", "std", "count")})
        if parts:
            out[k] = merge_image_stats(parts)
    return out
