"""Read a LeRobot v3 dataset (ours or one written by LeRobot) for training.

Why this shape:
- The numeric frame data (state, action, timestamps, indices) of a robot dataset is small,
  so it is read from the data parquet files once, into numpy arrays ordered by
  (episode, frame). Every later lookup is an array index.
- Video is the expensive part. Decoding an H.264/AV1 file to reach one frame costs a seek
  and a GOP of decoding per sample; doing that per training sample is what makes naive
  video datasets slow. Instead each mp4 is decoded ONCE into a raw uint8 file
  (`<root>/.cache/frames/<video key>/chunk-XXX/file-XXX.u8`, [rows, H, W, 3], with a json
  sidecar holding the shape and the mp4's size/mtime) that every process memory-maps.
  A frame is then a page-cache read.
- Row r of a cache file is the frame whose presentation time is r / fps, the same timeline
  LeRobot queries (`from_timestamp + timestamp`), so a frame of episode e is at row
  `round(from_timestamp * fps) + frame_index`.
- Memmaps are opened lazily and per process (they are dropped when pickled and when the
  pid changes), so DataLoader worker processes, forked or spawned, each map the files
  themselves. Building a cache file is guarded by a file lock and published by rename,
  so concurrent workers never see a half-written file and never decode a file twice.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embodia.data.metadata import DatasetMeta

try:  # POSIX advisory locks; elsewhere concurrent builders just race (the rename stays atomic)
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

CACHE_VERSION = 1
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_NUMERIC_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                   "uint8", "uint16", "uint32", "uint64", "bool")


# --------------------------------------------------------------------------- frame cache
@dataclass
class VideoFrameCache:
    """One mp4 decoded once into a uint8 [rows, H, W, 3] file that each process memory-maps."""

    mp4: Path
    path: Path  # the .u8 file; its json sidecar sits beside it
    height: int
    width: int
    fps: float
    min_rows: int  # rows the episodes table needs; fewer decoded frames means a broken video
    _mm: np.ndarray | None = field(default=None, repr=False)
    _pid: int = field(default=-1, repr=False)

    @property
    def max_rows(self) -> int:
        """The most rows a frame may land on: the table's need plus one second of slack.

        Why a bound: rows come from presentation times, so one frame stamped far in the
        future would otherwise expand a 2 kB mp4 into a cache of millions of frames.
        Frames a little past the table (encoder padding) are dropped, farther ones refused.
        """
        return self.min_rows + max(1, round(self.fps))

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mm"], state["_pid"] = None, -1  # a memmap never crosses a process boundary
        return state

    def array(self) -> np.ndarray:
        """The memory-mapped frames, (re)building the cache file first when needed."""
        if self._mm is None or self._pid != os.getpid():
            self._mm = self._open()
            self._pid = os.getpid()
        return self._mm

    def ensure(self) -> None:
        """Build the cache file now if it is missing or stale (does not keep a mapping)."""
        if self._valid_shape() is None:
            self._build_locked()

    # ------------------------------------------------------------------ internals
    def _mp4_stat(self) -> os.stat_result:
        try:
            return self.mp4.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"missing dataset file {self.mp4}") from None

    def _valid_shape(self) -> tuple[int, ...] | None:
        """The cached shape if the cache file is complete and matches the current mp4."""
        st = self._mp4_stat()
        try:
            meta = json.loads(self.meta_path.read_text())
            size = self.path.stat().st_size
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return None
        shape = tuple(int(x) for x in meta.get("shape", ()))
        ok = (meta.get("version") == CACHE_VERSION
              and len(shape) == 4 and shape[1:] == (self.height, self.width, 3)
              and shape[0] >= self.min_rows
              and size == int(np.prod(shape))
              and meta.get("mp4_size") == st.st_size
              and meta.get("mp4_mtime_ns") == st.st_mtime_ns)
        return shape if ok else None

    def _open(self) -> np.ndarray:
        shape = self._valid_shape()
        if shape is None:
            shape = self._build_locked()
        if shape[0] == 0:
            return np.zeros(shape, np.uint8)
        return np.memmap(self.path, dtype=np.uint8, mode="r", shape=shape)

    def _build_locked(self) -> tuple[int, ...]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+b") as lock:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                shape = self._valid_shape()  # another process may have built it meanwhile
                return shape if shape is not None else self._build()
            finally:
                if fcntl is not None:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _tmp(self, suffix: str) -> Path:
        return self.path.with_name(f".{self.path.name}{suffix}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def _build(self) -> tuple[int, ...]:
        st = self._mp4_stat()
        h, w = self.height, self.width
        raw = self._tmp("")
        rows: list[int] = []
        try:
            try:
                with av.open(str(self.mp4)) as container, open(raw, "wb") as out:
                    if not container.streams.video:
                        raise ValueError(f"video file {self.mp4} has no video stream")
                    stream = container.streams.video[0]
                    stream.thread_type = "AUTO"
                    decoded = 0
                    for frame in container.decode(stream):
                        t = frame.time
                        row = decoded if t is None else max(0, round(t * self.fps))
                        decoded += 1
                        if row > self.max_rows or decoded > self.max_rows:
                            raise ValueError(
                                f"video file {self.mp4}: frame {decoded - 1} is at row {row} "
                                f"(t={t} s), but the episodes table needs only {self.min_rows} rows "
                                f"(beyond {self.max_rows}: refused, not cached)")
                        if row >= self.min_rows:  # past every episode: never read, not cached
                            continue
                        img = frame.to_ndarray(format="rgb24")
                        if img.shape != (h, w, 3):
                            raise ValueError(f"video file {self.mp4}: frames are {img.shape[:2]}, "
                                             f"but info.json says {(h, w)}")
                        out.write(np.ascontiguousarray(img).tobytes())
                        rows.append(row)
            except av.error.FFmpegError as e:
                raise ValueError(f"corrupt video file {self.mp4}: {e}") from None
            n = len(rows)
            if rows != list(range(n)):  # pts with gaps or an offset: place frames by their time
                raw = self._reindex(raw, np.asarray(rows, np.int64), h, w)
                n = max(rows) + 1 if rows else 0
            if n < self.min_rows:
                raise ValueError(f"video file {self.mp4} decodes to {n} frames, but the episodes "
                                 f"table needs {self.min_rows} (truncated or corrupt?)")
            shape = (n, h, w, 3)
            os.replace(raw, self.path)
            meta = {"version": CACHE_VERSION, "shape": list(shape), "dtype": "uint8",
                    "mp4": str(self.mp4), "mp4_size": st.st_size, "mp4_mtime_ns": st.st_mtime_ns}
            tmp_meta = self._tmp(".json")
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, self.meta_path)
            return shape
        finally:
            if raw.exists() and raw != self.path:
                raw.unlink()

    def _reindex(self, raw: Path, rows: np.ndarray, h: int, w: int) -> Path:
        """Frames written in decode order -> row = time * fps; holes repeat the previous frame."""
        n_dec = len(rows)
        n = int(rows.max()) + 1
        src = np.memmap(raw, dtype=np.uint8, mode="r", shape=(n_dec, h, w, 3))
        out_path = self._tmp(".reindexed")
        dst = np.memmap(out_path, dtype=np.uint8, mode="w+", shape=(n, h, w, 3))
        have = np.full(n, -1, np.int64)
        have[rows] = np.arange(n_dec)  # a duplicate time keeps the later frame
        filled = np.maximum.accumulate(np.where(have >= 0, np.arange(n), -1))
        first = int(np.flatnonzero(have >= 0)[0])
        filled[filled < 0] = first  # rows before the first frame take the first frame
        for r in range(n):
            dst[r] = src[have[filled[r]]]
        dst.flush()
        del src, dst
        raw.unlink()
        return out_path


# --------------------------------------------------------------------------- data files
def _read_data_file(path: Path, wanted: list[str], required: tuple[str, ...]) -> pa.Table:
    if not path.exists():
        raise FileNotFoundError(f"missing dataset file {path}")
    try:
        names = set(pq.ParquetFile(path).schema_arrow.names)
        missing = [c for c in required if c not in names]
        if missing:
            raise ValueError(f"data file {path} lacks column(s) {missing}")
        return pq.read_table(path, columns=[c for c in wanted if c in names])
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"corrupt parquet file {path}: {e}") from None


def _column_numpy(col: pa.ChunkedArray, dtype: str, shape: list[int]) -> np.ndarray:
    """A numeric column (scalar, list or fixed-size list) as numpy: [N] for shape [1] scalars,
    else [N, *shape]. LeRobot writes vectors as plain lists, embodia as fixed-size lists."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        width = int(np.prod(shape))
        if flat.size != n * width:
            raise ValueError(f"{flat.size} values for {n} rows of shape {shape}")
        out = flat.reshape(n, *shape)
    else:
        if list(shape) != [1]:
            raise ValueError(f"a scalar column for shape {shape}")
        out = arr.to_numpy(zero_copy_only=False)
    return out.astype(dtype, copy=False)


# --------------------------------------------------------------------------- reader
class DatasetReader:
    """All numeric frame data in numpy, plus memory-mapped decoded video, of one v3 dataset.

    Rows are ordered by (episode, frame). `index` (the global frame index LeRobot uses) maps
    to rows through `rows_of`; for datasets written in one go it is simply the row number.
    """

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None) -> None:
        self.meta = DatasetMeta.load(root)
        self.root = self.meta.root
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / ".cache" / "frames"
        self.fps = float(self.meta.fps)
        self.video_keys: list[str] = self.meta.video_keys
        self.has_actions: bool = self.meta.has_actions
        eps = self.meta.episodes
        if self.meta.num_episodes == 0:
            raise ValueError(f"dataset {self.root} has no episodes")
        self.episode_indices = np.asarray(eps.column("episode_index").to_numpy(), np.int64)
        self._ep_pos = {int(e): i for i, e in enumerate(self.episode_indices)}
        self._load_frames()
        self._load_episode_fields()
        self._load_video_index()

    # ------------------------------------------------------------------ loading
    def _numeric_features(self) -> dict[str, dict]:
        return {k: f for k, f in self.meta.features.items()
                if f.get("dtype") in _NUMERIC_DTYPES and k not in INDEX_COLUMNS}

    def _data_files(self) -> list[Path]:
        cols = self.meta.episodes.column_names
        if "data/chunk_index" in cols and "data/file_index" in cols:
            pairs = sorted({(int(c), int(f)) for c, f in zip(self.meta.column("data/chunk_index"),
                                                             self.meta.column("data/file_index"), strict=True)})
            return [self.meta.data_file(c, f) for c, f in pairs]
        files = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(f"no data parquet files under {self.root / 'data'}")
        return files

    def _load_frames(self) -> None:
        feats = self._numeric_features()
        wanted = [*INDEX_COLUMNS, *feats]
        required = ("frame_index", "episode_index", "index", "observation.state")
        required += ("action",) if self.has_actions else ()
        parts: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
        self._file_of_part: list[tuple[Path, int]] = []
        for path in self._data_files():
            t = _read_data_file(path, wanted, required)
            for k in wanted:
                if k not in t.column_names:
                    continue
                spec = feats.get(k) or {"dtype": "float32" if k == "timestamp" else "int64", "shape": [1]}
                shape = [int(x) for x in (spec.get("shape") or [1])]
                try:
                    values = _column_numpy(t.column(k), spec["dtype"], shape)
                    # index columns are [N]; features keep their shape ([N, 1] for shape [1])
                    parts[k].append(values.reshape(len(values)) if k in INDEX_COLUMNS
                                    else values.reshape(len(values), *shape))
                except (ValueError, pa.ArrowInvalid) as e:
                    raise ValueError(f"data file {path}: column {k!r} does not match info.json "
                                     f"({spec['dtype']} {shape}): {e}") from None
            self._file_of_part.append((path, t.num_rows))
        cols = {k: np.concatenate(v) for k, v in parts.items() if v}
        n = len(cols["index"])
        if "timestamp" not in cols:
            cols["timestamp"] = (cols["frame_index"] / self.fps).astype(np.float32)
        if "task_index" not in cols:
            cols["task_index"] = np.zeros(n, np.int64)
        file_of_row = np.repeat(np.arange(len(self._file_of_part)), [m for _, m in self._file_of_part])
        keep = np.isin(cols["episode_index"], self.episode_indices)  # ignore rows of unlisted episodes
        order = np.lexsort((cols["frame_index"][keep], cols["episode_index"][keep]))
        self.columns: dict[str, np.ndarray] = {k: v[keep][order] for k, v in cols.items()}
        file_of_row = file_of_row[keep][order]
        # episode bounds, checked against the episodes table
        ep = self.columns["episode_index"]
        starts = np.searchsorted(ep, self.episode_indices, side="left")
        ends = np.searchsorted(ep, self.episode_indices, side="right")
        lengths = self.meta.column("length", None)
        for i, e in enumerate(self.episode_indices):
            n_rows = int(ends[i] - starts[i])
            expect = lengths[i] if lengths[i] is not None else n_rows
            fi = self.columns["frame_index"][starts[i]:ends[i]]
            if n_rows != expect or n_rows == 0 or not np.array_equal(fi, np.arange(n_rows)):
                where = self._file_of_part[file_of_row[starts[i]]][0] if n_rows else self._data_files()
                raise ValueError(f"episode {int(e)}: data file(s) {where} hold {n_rows} frames "
                                 f"(frame_index 0..{n_rows - 1} expected), episodes table says {expect}")
        self.ep_start = starts.astype(np.int64)  # per episode position: first row
        self.ep_length = (ends - starts).astype(np.int64)
        self.row_episode = np.repeat(np.arange(len(starts)), self.ep_length)  # row -> episode position
        self.row_start = self.ep_start[self.row_episode]
        self.row_end = self.row_start + self.ep_length[self.row_episode]
        idx = self.columns["index"]
        self._index_is_row = bool(np.array_equal(idx, np.arange(len(idx))))
        self._index_order = np.argsort(idx, kind="stable")
        self._index_sorted = idx[self._index_order]

    def _load_episode_fields(self) -> None:
        n = self.meta.num_episodes
        default_tier = "real" if self.has_actions else "human"
        default_emb = self.meta.embodiment
        self.episode_embodiment = [e or default_emb for e in self.meta.column("embodiment", None)]
        self.episode_tier = [t or default_tier for t in self.meta.column("tier", None)]
        ep_tasks = self.meta.column("tasks", None)
        self.tasks: list[str] = list(self.meta.tasks)
        self.episode_task = []
        for i in range(n):
            first = int(self.columns["task_index"][self.ep_start[i]])
            if 0 <= first < len(self.tasks):
                self.episode_task.append(self.tasks[first])
            else:
                self.episode_task.append(str((ep_tasks[i] or [""])[0]))

    def _load_video_index(self) -> None:
        """Per video key: the cache of each mp4 and, per row, (cache number, row in it)."""
        self._caches: dict[str, list[VideoFrameCache]] = {}
        self._row_file: dict[str, np.ndarray] = {}
        self._row_in_file: dict[str, np.ndarray] = {}
        cols = self.meta.episodes.column_names
        for key in self.video_keys:
            need = [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
            missing = [c for c in need if c not in cols]
            if missing:
                raise ValueError(f"{self.root}: the episodes table lacks {missing} for video {key!r}")
            chunks, files, t0 = (self.meta.column(c) for c in need)
            h, w = (int(x) for x in self.meta.features[key]["shape"][:2])
            names = self.meta.features[key].get("names") or []
            if list(names[:1]) == ["channels"]:  # a [C, H, W] spec
                h, w = (int(x) for x in self.meta.features[key]["shape"][1:3])
            slot: dict[tuple[int, int], int] = {}
            ep_file = np.empty(len(chunks), np.int64)
            ep_first = np.empty(len(chunks), np.int64)
            for i, (c, f, t) in enumerate(zip(chunks, files, t0, strict=True)):
                ep_file[i] = slot.setdefault((int(c), int(f)), len(slot))
                ep_first[i] = round(float(t) * self.fps)
            need_rows = np.zeros(len(slot), np.int64)
            np.maximum.at(need_rows, ep_file, ep_first + self.ep_length)
            caches = []
            for (c, f), s in sorted(slot.items(), key=lambda kv: kv[1]):
                caches.append(VideoFrameCache(
                    mp4=self.meta.video_file(key, c, f),
                    path=self.cache_dir / key / f"chunk-{c:03d}" / f"file-{f:03d}.u8",
                    height=h, width=w, fps=self.fps, min_rows=int(need_rows[s])))
            self._caches[key] = caches
            self._row_file[key] = ep_file[self.row_episode]
            self._row_in_file[key] = ep_first[self.row_episode] + self.columns["frame_index"]

    # ------------------------------------------------------------------ views
    @property
    def num_frames(self) -> int:
        return len(self.columns["index"])

    @property
    def num_episodes(self) -> int:
        return len(self.episode_indices)

    @property
    def state_dim(self) -> int:
        return int(self.columns["observation.state"].shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.columns["action"].shape[1]) if self.has_actions else 0

    @property
    def embodiment(self) -> str:
        return self.meta.embodiment

    def episode_position(self, episode_index: int) -> int:
        """Where `episode_index` sits in the episodes table (KeyError naming it if absent)."""
        try:
            return self._ep_pos[int(episode_index)]
        except KeyError:
            raise KeyError(f"episode {episode_index} is not in {self.root} "
                           f"(episodes {int(self.episode_indices.min())}..{int(self.episode_indices.max())})") from None

    def rows_of(self, global_frame_indices: np.ndarray | list[int]) -> np.ndarray:
        """Rows of the given global frame indices (the `index` column)."""
        q = np.asarray(global_frame_indices, dtype=np.int64).reshape(-1)
        if self._index_is_row:
            rows = q
            bad = (q < 0) | (q >= self.num_frames)
        else:
            pos = np.clip(np.searchsorted(self._index_sorted, q), 0, max(self.num_frames - 1, 0))
            bad = self._index_sorted[pos] != q
            rows = self._index_order[pos]
        if bad.any():
            raise IndexError(f"frame index {int(q[bad][0])} is not in {self.root}")
        return rows

    def task_of_row(self, row: int) -> str:
        ti = int(self.columns["task_index"][row])
        if 0 <= ti < len(self.tasks):
            return self.tasks[ti]
        return self.episode_task[int(self.row_episode[row])]

    def frames_at_rows(self, video_key: str, rows: np.ndarray | list[int]) -> np.ndarray:
        """uint8 [N, H, W, 3] frames of camera `video_key` at the given rows."""
        if video_key not in self._caches:
            raise KeyError(f"no video feature {video_key!r}; videos: {self.video_keys}")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        caches = self._caches[video_key]
        fidx = self._row_file[video_key][rows]
        ridx = self._row_in_file[video_key][rows]
        c0 = caches[0]
        out = np.empty((len(rows), c0.height, c0.width, 3), np.uint8)
        for f in np.unique(fidx):
            sel = fidx == f
            out[sel] = caches[int(f)].array()[ridx[sel]]
        return out

    def frames(self, video_key: str, global_frame_indices: np.ndarray | list[int]) -> np.ndarray:
        """uint8 [N, H, W, 3] frames of camera `video_key` at the given global frame indices."""
        return self.frames_at_rows(video_key, self.rows_of(global_frame_indices))

    def episode(self, episode_index: int) -> dict[str, Any]:
        """One whole episode: numeric arrays, decoded camera frames, task and provenance."""
        i = self.episode_position(episode_index)
        rows = np.arange(self.ep_start[i], self.ep_start[i] + self.ep_length[i])
        sl = slice(int(rows[0]), int(rows[-1]) + 1)
        out: dict[str, Any] = {k: v[sl].copy() for k, v in self.columns.items()}
        if not self.has_actions:
            out.pop("action", None)
        for key in self.video_keys:
            out[key] = self.frames_at_rows(key, rows)
        out["task"] = self.episode_task[i]
        out["embodiment"] = self.episode_embodiment[i]
        out["tier"] = self.episode_tier[i]
        out["length"] = int(self.ep_length[i])
        return out

    def warm_cache(self, video_keys: list[str] | None = None) -> None:
        """Decode every mp4 not yet cached (call once before starting DataLoader workers)."""
        for key in video_keys if video_keys is not None else self.video_keys:
            for cache in self._caches[key]:
                cache.ensure()

    def __repr__(self) -> str:
        return (f"DatasetReader({str(self.root)!r}, episodes={self.num_episodes}, frames={self.num_frames}, "
                f"videos={self.video_keys}, actions={self.has_actions})")
