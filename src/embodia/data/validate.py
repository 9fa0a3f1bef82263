"""Check every file of a dataset; name each missing, corrupt or inconsistent one.

Beyond "the files open": the schema of `info.json` (a positive integer fps, well-formed
features and paths), finite numeric values, contiguous indices (episodes 0..N-1, each
episode's frames 0..length-1 at `dataset_from_index..dataset_to_index`, timestamps
frame/fps), and the recorded statistics recomputed from the data. Why statistics: LeRobot v3
keeps no checksums, but every episode row carries its features' mean/min/max, and
stats.json the dataset's; a parquet value changed on disk no longer agrees with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from embodia.data.layout import (
    CODEBASE_VERSION,
    INDEX_FEATURES,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    read_json,
)
from embodia.data.metadata import DatasetMeta, read_parquet

STATS_RTOL, STATS_ATOL = 1e-4, 1e-5  # float32 data, float64 stats: recomputation is near exact
EPISODE_COLUMNS = ("episode_index", "length", "data/chunk_index", "data/file_index",
                   "dataset_from_index", "dataset_to_index")


@dataclass
class ValidationReport:
    root: str
    problems: list[str] = field(default_factory=list)
    checked_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        n = 0
        size = (stream.codec_context.height, stream.codec_context.width)
        for _ in c.decode(stream):
            n += 1
    return n, size


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def info_problems(info: Any, where: str = INFO_PATH) -> list[str]:
    """What is wrong with an `info.json` object, each naming its field (empty: usable)."""
    if not isinstance(info, dict):
        return [f"{where}: not a JSON object"]
    out = []
    if info.get("codebase_version") != CODEBASE_VERSION:
        out.append(f"{where}: codebase_version is {info.get('codebase_version')!r}, expected {CODEBASE_VERSION!r}")
    fps = info.get("fps")
    if not (_is_int(fps) or (isinstance(fps, float) and fps.is_integer())) or fps <= 0:
        out.append(f"{where}: fps must be a positive integer, got {fps!r}")
    for key in ("total_episodes", "total_frames", "total_tasks"):
        if key in info and not (_is_int(info[key]) and info[key] >= 0):
            out.append(f"{where}: {key} must be a non-negative integer, got {info[key]!r}")
    feats = info.get("features")
    if not isinstance(feats, dict) or not feats:
        out.append(f"{where}: features must be a non-empty object, got {type(feats).__name__}")
        feats = {}
    for name, f in feats.items():
        if not isinstance(f, dict) or not isinstance(f.get("dtype"), str):
            out.append(f"{where}: features.{name} needs a string dtype")
            continue
        shape = f.get("shape")
        if not isinstance(shape, list) or not shape or not all(_is_int(s) and s > 0 for s in shape):
            out.append(f"{where}: features.{name}.shape must be a list of positive integers, got {shape!r}")
    missing = [k for k in INDEX_FEATURES if k not in feats]
    if feats and missing:
        out.append(f"{where}: features lack the index columns {missing}")
    path = info.get("data_path")
    if not isinstance(path, str) or "{chunk_index" not in path or "{file_index" not in path:
        out.append(f"{where}: data_path must name {{chunk_index}} and {{file_index}}, got {path!r}")
    has_video = any(isinstance(f, dict) and f.get("dtype") == "video" for f in feats.values())
    vpath = info.get("video_path")
    if has_video and (not isinstance(vpath, str) or "{video_key" not in vpath):
        out.append(f"{where}: video_path must name {{video_key}}, got {vpath!r}")
    return out


def _close(a: Any, b: Any) -> bool:
    try:
        a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=STATS_RTOL, atol=STATS_ATOL, equal_nan=False))


def validate_dataset(root: str | Path) -> ValidationReport:
    """Every problem found in the dataset at `root`, each naming its file (and episode)."""
    root = Path(root)
    report = ValidationReport(str(root))
    if not root.is_dir():
        report.problems.append(f"no dataset at {root}")
        return report
    try:
        info = read_json(root / INFO_PATH)
    except (FileNotFoundError, ValueError) as e:
        report.problems.append(str(e))
        return report
    report.checked_files += 1
    report.problems += info_problems(info, str(root / INFO_PATH))
    if report.problems:
        return report  # the rest reads through info.json
    try:
        meta = DatasetMeta.load(root)
    except (FileNotFoundError, ValueError, KeyError, TypeError, IndexError) as e:
        report.problems.append(f"{root}: cannot load the metadata: {e}")
        return report
    if not (root / TASKS_PATH).exists() and meta.num_episodes:
        report.problems.append(f"missing dataset file {root / TASKS_PATH}")
    if not (root / STATS_PATH).exists() and meta.num_episodes:
        report.problems.append(f"missing dataset file {root / STATS_PATH}")
    missing = [c for c in EPISODE_COLUMNS if c not in meta.episodes.column_names]
    if missing and meta.num_episodes:
        report.problems.append(f"{root / 'meta/episodes'}: the episodes table lacks columns {missing}")
        return report
    rows = meta.episodes.to_pylist()
    _check_episode_table(report, meta, rows)
    numeric = [k for k, f in meta.features.items() if f["dtype"] != "video"]
    data = _check_data_files(report, meta, rows, numeric)
    _check_stats(report, meta, rows, data)
    _check_videos(report, meta, rows)
    return report


def _check_episode_table(report: ValidationReport, meta: DatasetMeta, rows: list[dict]) -> None:
    where = meta.root / "meta/episodes"
    total = sum(int(r["length"] or 0) for r in rows)
    if meta.info.get("total_frames") != total:
        report.problems.append(f"{meta.root / INFO_PATH}: total_frames={meta.info.get('total_frames')} but episodes sum to {total}")
    if meta.info.get("total_episodes") != len(rows):
        report.problems.append(f"{meta.root / INFO_PATH}: total_episodes={meta.info.get('total_episodes')} "
                               f"but {len(rows)} episodes are listed")
    idx = [r["episode_index"] for r in rows]
    if idx != list(range(len(rows))):
        gaps = sorted(set(range(len(rows))) - set(idx))
        dups = sorted({i for i in idx if idx.count(i) > 1})
        report.problems.append(f"{where}: episode_index is not 0..{len(rows) - 1} "
                               f"(missing {gaps[:10]}, duplicated {dups[:10]}, found {idx[:10]}...)")
    expect_from = 0
    for r in rows:
        lo, hi, n = r["dataset_from_index"], r["dataset_to_index"], r["length"]
        if not (_is_int(n) and n > 0):
            report.problems.append(f"{where}: episode {r['episode_index']} has length {n!r}")
            continue
        if lo != expect_from or hi - lo != n:
            report.problems.append(f"{where}: episode {r['episode_index']} spans frames {lo}..{hi} (length {n}); "
                                   f"expected {expect_from}..{expect_from + n} (a gap or overlap in the frame index)")
        expect_from = hi


def _check_data_files(report: ValidationReport, meta: DatasetMeta, rows: list[dict],
                      numeric: list[str]) -> dict[int, dict[str, np.ndarray]]:
    """Readable files, columns, finite values, contiguous indices; returns each episode's
    numeric arrays (for the statistics check)."""
    fps = meta.fps
    per_episode: dict[int, dict[str, np.ndarray]] = {}
    by_file: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        by_file.setdefault((r["data/chunk_index"], r["data/file_index"]), []).append(r)
    for (c, f), eps in sorted(by_file.items()):
        path = meta.data_file(c, f)
        report.checked_files += 1
        try:
            t = read_parquet(path)
        except (FileNotFoundError, ValueError) as e:
            report.problems.append(str(e))
            continue
        missing = [k for k in numeric if k not in t.column_names]
        if missing:
            report.problems.append(f"{path}: missing columns {missing}")
            continue
        cols: dict[str, np.ndarray] = {}
        for k in numeric:
            col = t.column(k).combine_chunks()
            width = meta.features[k]["shape"][0]
            try:
                arr = (col.flatten() if hasattr(col, "flatten") else col).to_numpy(zero_copy_only=False)
                arr = np.asarray(arr, np.float64).reshape(len(col), -1)
            except (ValueError, TypeError):
                report.problems.append(f"{path}: {k} does not read as numbers of width {width}")
                continue
            if arr.shape[1] != width:
                report.problems.append(f"{path}: {k} has width {arr.shape[1]}, info.json says {width}")
                continue
            bad = ~np.isfinite(arr).all(1)
            if bad.any():
                report.problems.append(f"{path}: {k} has {int(bad.sum())} rows with NaN or inf "
                                       f"(first at row {int(np.flatnonzero(bad)[0])})")
            cols[k] = arr
        if any(k not in cols for k in ("index", "frame_index", "episode_index")):
            continue
        index = cols["index"][:, 0]
        for r in eps:
            ep, lo, hi, n = r["episode_index"], r["dataset_from_index"], r["dataset_to_index"], r["length"]
            sel = (index >= lo) & (index < hi)
            if int(sel.sum()) != n:
                report.problems.append(f"{path}: episode {ep} has {int(sel.sum())} rows, expected {n}")
                continue
            order = np.argsort(index[sel], kind="stable")
            got = {k: v[sel][order] for k, v in cols.items()}
            if not np.array_equal(got["index"][:, 0], np.arange(lo, hi)):
                report.problems.append(f"{path}: episode {ep}: index is not contiguous {lo}..{hi - 1}")
            if not np.array_equal(got["frame_index"][:, 0], np.arange(n)):
                report.problems.append(f"{path}: episode {ep}: frame_index is not 0..{n - 1} (a gap or repeat)")
            if not np.all(got["episode_index"][:, 0] == ep):
                report.problems.append(f"{path}: episode {ep}: rows carry episode_index "
                                       f"{sorted(set(got['episode_index'][:, 0].astype(int).tolist()))[:5]}")
            if "timestamp" in got and np.isfinite(got["timestamp"]).all():
                drift = np.abs(got["timestamp"][:, 0] - got["frame_index"][:, 0] / fps)
                if drift.max() > 0.5 / fps:
                    report.problems.append(f"{path}: episode {ep}: timestamp is not frame_index / fps "
                                           f"(off by up to {drift.max():.4f} s)")
            if "task_index" in got and meta.tasks:
                ti = got["task_index"][:, 0]
                if ti.min() < 0 or ti.max() >= len(meta.tasks):
                    report.problems.append(f"{path}: episode {ep}: task_index outside 0..{len(meta.tasks) - 1}")
            per_episode[ep] = got
    return per_episode


def _check_stats(report: ValidationReport, meta: DatasetMeta, rows: list[dict],
                 data: dict[int, dict[str, np.ndarray]]) -> None:
    """The recorded statistics, recomputed from the data: a value changed on disk shows."""
    feats = [k for k in ("observation.state", "observation.environment_state", "action") if k in meta.features]
    where = meta.root / "meta/episodes"
    for r in rows:
        got = data.get(r["episode_index"])
        if got is None:
            continue
        for k in feats:
            if k not in got or not np.isfinite(got[k]).all():
                continue
            for name, fn in (("mean", np.mean), ("min", np.min), ("max", np.max)):
                rec = r.get(f"stats/{k}/{name}")
                if rec is not None and not _close(rec, fn(got[k], axis=0)):
                    report.problems.append(f"{where}: episode {r['episode_index']}: stats/{k}/{name} disagrees with "
                                           f"the data in {meta.data_file(r['data/chunk_index'], r['data/file_index'])} "
                                           "(changed on disk?)")
    if meta.stats is None or len(data) != len(rows):
        return
    for k in feats:
        parts = [got[k] for got in data.values() if k in got]
        if not parts or k not in meta.stats or not isinstance(meta.stats[k], dict):
            continue
        allv = np.concatenate(parts)
        if not np.isfinite(allv).all():
            continue
        for name, fn in (("mean", np.mean), ("min", np.min), ("max", np.max)):
            rec = meta.stats[k].get(name)
            if rec is not None and not _close(rec, fn(allv, axis=0)):
                report.problems.append(f"{meta.root / STATS_PATH}: {k}.{name} disagrees with the data files "
                                       "(changed on disk?)")


def _check_videos(report: ValidationReport, meta: DatasetMeta, rows: list[dict]) -> None:
    """Decodable, enough frames, the right size."""
    fps = meta.fps
    for key in meta.video_keys:
        files: dict[tuple[int, int], float] = {}
        for r in rows:
            fk = (r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"])
            files[fk] = max(files.get(fk, 0.0), r[f"videos/{key}/to_timestamp"])
        h, w = meta.features[key]["shape"][:2]
        for (c, f), end in sorted(files.items()):
            path = meta.video_file(key, c, f)
            report.checked_files += 1
            if not path.exists():
                report.problems.append(f"missing dataset file {path}")
                continue
            try:
                n, size = _count_frames(path)
            except (av.error.FFmpegError, ValueError, IndexError) as e:
                report.problems.append(f"corrupt video {path}: {e}")
                continue
            if size != (h, w):
                report.problems.append(f"{path}: frames are {size[1]}x{size[0]}, info.json says {w}x{h}")
            if n < round(end * fps):
                report.problems.append(f"{path}: {n} frames decoded, episodes need {round(end * fps)}")
