"""Check every file of a dataset; name each missing or corrupt one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from embodia.data.layout import STATS_PATH, TASKS_PATH
from embodia.data.metadata import DatasetMeta, read_parquet


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


def validate_dataset(root: str | Path) -> ValidationReport:
    root = Path(root)
    report = ValidationReport(str(root))
    try:
        meta = DatasetMeta.load(root)
    except (FileNotFoundError, ValueError) as e:
        report.problems.append(str(e))
        return report
    report.checked_files += 1
    if not (root / TASKS_PATH).exists() and meta.num_episodes:
        report.problems.append(f"missing dataset file {root / TASKS_PATH}")
    if not (root / STATS_PATH).exists() and meta.num_episodes:
        report.problems.append(f"missing dataset file {root / STATS_PATH}")
    rows = meta.episodes.to_pylist()
    total = sum(r["length"] for r in rows)
    if meta.info.get("total_frames") != total:
        report.problems.append(f"meta/info.json total_frames={meta.info.get('total_frames')} but episodes sum to {total}")
    if meta.info.get("total_episodes") != len(rows):
        report.problems.append(f"meta/info.json total_episodes={meta.info.get('total_episodes')} but {len(rows)} episodes are listed")
    # data files: readable, expected columns, contiguous indices per episode
    by_file: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        by_file.setdefault((r["data/chunk_index"], r["data/file_index"]), []).append(r)
    numeric = [k for k, f in meta.features.items() if f["dtype"] != "video"]
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
        index = t.column("index").to_numpy()
        for r in eps:
            lo, hi = r["dataset_from_index"], r["dataset_to_index"]
            n = int(np.sum((index >= lo) & (index < hi)))
            if n != r["length"]:
                report.problems.append(f"{path}: episode {r['episode_index']} has {n} rows, expected {r['length']}")
        for k in ("observation.state", "action"):
            if k in meta.features:
                col = t.column(k).combine_chunks()
                width = len(col[0]) if len(col) else meta.features[k]["shape"][0]
                if width != meta.features[k]["shape"][0]:
                    report.problems.append(f"{path}: {k} has width {width}, info.json says {meta.features[k]['shape'][0]}")
    # videos: decodable, enough frames, right size
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
    return report
