"""Action chunks on a time line: latency compensation and blending at chunk boundaries.

Time is cut into action slots of the policy's period; a chunk computed from the observation
taken at slot start t0 holds action i for the slot starting at t0 + i * dt. When it arrives
late (inference took time), the actions of slots already over are skipped: the control loop
never waited, it kept running the previous chunk meanwhile (and the control layer runs at
most one action per slot, so the slot in progress is not run twice). Where chunks
overlap, `latest` switches to the newest chunk, `ensemble` averages every chunk covering the
time with ACT's weights exp(-k * i) (oldest first), and `crossfade` ramps linearly from the
old chunk to the new over a few actions. (The flow head's RTC continuation, `rtc.py`, makes
the new chunk agree with the old one already at inference, so `latest` is enough with it.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embodia.runtime.messages import ActionChunk

BLENDS = ("latest", "ensemble", "crossfade")
_EPS = 1e-6


@dataclass(frozen=True)
class BlendConfig:
    mode: str = "latest"
    ensemble_k: float = 0.1
    crossfade_steps: int = 3

    def __post_init__(self) -> None:
        if self.mode not in BLENDS:
            raise ValueError(f"unknown blend {self.mode!r}; choose one of {list(BLENDS)}")
        if self.crossfade_steps < 1:
            raise ValueError("crossfade_steps must be >= 1")


@dataclass
class _Entry:
    chunk: ActionChunk
    first: int  # index of the slot in progress when the chunk arrived (earlier ones are past)


class ChunkBuffer:
    def __init__(self, cfg: BlendConfig | None = None) -> None:
        self.cfg = cfg or BlendConfig()
        self._entries: list[_Entry] = []

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, chunk: ActionChunk, now: float) -> int:
        """Accept a chunk at time `now`; returns how many of its actions were for slots
        already over."""
        if chunk.dt <= 0 or chunk.horizon < 1:
            raise ValueError(f"a chunk needs dt > 0 and at least one action (dt={chunk.dt}, H={chunk.horizon})")
        first = max(0, int(np.floor((now - chunk.t0) / chunk.dt + _EPS)))
        first = min(first, chunk.horizon)
        self._entries.append(_Entry(chunk, first))
        self._entries = [e for e in self._entries if self._end(e) > now - _EPS][-8:]
        return first

    @staticmethod
    def _end(e: _Entry) -> float:
        return e.chunk.time_of(e.chunk.horizon)

    @staticmethod
    def _index(e: _Entry, t: float) -> int | None:
        i = int(np.floor((t - e.chunk.t0) / e.chunk.dt + _EPS))
        return i if e.first <= i < e.chunk.horizon else None

    def _covering(self, t: float) -> list[tuple[_Entry, int]]:
        out = []
        for e in self._entries:
            i = self._index(e, t)
            if i is not None:
                out.append((e, i))
        return out

    @property
    def dt(self) -> float | None:
        return self._entries[-1].chunk.dt if self._entries else None

    def action_at(self, t: float) -> np.ndarray | None:
        """The (blended) action for time `t`, or None when no chunk covers it."""
        cover = self._covering(t)
        if not cover:
            return None
        newest, i_new = cover[-1]
        a_new = newest.chunk.actions[i_new].astype(np.float64)
        if len(cover) == 1 or self.cfg.mode == "latest":
            return a_new
        if self.cfg.mode == "ensemble":
            preds = np.stack([e.chunk.actions[i] for e, i in cover]).astype(np.float64)
            w = np.exp(-self.cfg.ensemble_k * np.arange(len(preds)))
            return (w[:, None] * preds).sum(0) / w.sum()
        prev, i_prev = cover[-2]
        k = i_new - newest.first + 1
        alpha = min(1.0, k / (self.cfg.crossfade_steps + 1))
        return (1 - alpha) * prev.chunk.actions[i_prev].astype(np.float64) + alpha * a_new

    def remaining(self, t: float) -> int:
        """Actions of the newest chunk for the slot containing `t` and later ones."""
        if not self._entries:
            return 0
        e = self._entries[-1]
        i = int(np.floor((t - e.chunk.t0) / e.chunk.dt + _EPS))
        return max(0, e.chunk.horizon - max(i, e.first))

    def upcoming(self, t: float, n: int) -> np.ndarray:
        """The next `n` actions (from the period containing `t` on) the stream will execute,
        as far as chunks cover them: the prefix a continuation must agree with (RTC)."""
        if not self._entries or n <= 0:
            return np.zeros((0, 0), dtype=np.float32)
        dt = self._entries[-1].chunk.dt
        start = self._entries[-1].chunk.t0 + np.floor((t - self._entries[-1].chunk.t0) / dt + _EPS) * dt
        rows = []
        for k in range(n):
            a = self.action_at(start + k * dt)
            if a is None:
                break
            rows.append(a)
        dim = self._entries[-1].chunk.actions.shape[1]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)
