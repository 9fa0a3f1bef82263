"""Chunks on the slot time line: latency compensation and blending."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.runtime.chunking import BlendConfig, ChunkBuffer
from embodia.runtime.messages import ActionChunk


def chunk(t0: float, values, seq: int = 0, dt: float = 0.1) -> ActionChunk:
    a = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    return ActionChunk(a, t0, dt, "ee_delta", "arm7", step_id=1, seq=seq)


def test_actions_whose_slot_passed_are_skipped():
    buf = ChunkBuffer()
    assert buf.add(chunk(0.0, [0, 1, 2, 3]), now=0.0) == 0
    # computed from the observation at t=1.0, arrives 0.25 s later: slots 1.0 and 1.1 are over
    assert buf.add(chunk(1.0, [10, 11, 12, 13, 14], seq=1), now=1.25) == 2
    assert buf.action_at(1.2)[0] == 12 and buf.action_at(1.4)[0] == 14
    assert buf.action_at(1.1) is None  # skipped, and the old chunk ended at 0.4
    assert buf.action_at(1.5) is None


def test_latest_switches_to_the_newest_chunk_where_they_overlap():
    buf = ChunkBuffer(BlendConfig("latest"))
    buf.add(chunk(0.0, [0, 1, 2, 3]), 0.0)
    buf.add(chunk(0.2, [20, 21, 22, 23], seq=1), 0.2)
    assert [buf.action_at(t)[0] for t in (0.0, 0.1, 0.2, 0.3, 0.5)] == [0, 1, 20, 21, 23]


def test_ensemble_uses_act_weights_oldest_first():
    k = 0.5
    buf = ChunkBuffer(BlendConfig("ensemble", ensemble_k=k))
    buf.add(chunk(0.0, [0, 1, 2, 3]), 0.0)
    buf.add(chunk(0.2, [20, 21, 22, 23], seq=1), 0.2)
    w = np.exp(-k * np.arange(2))
    assert buf.action_at(0.3)[0] == pytest.approx((w[0] * 3 + w[1] * 21) / w.sum())
    assert buf.action_at(0.1)[0] == 1  # only the first chunk covers it


def test_crossfade_ramps_from_old_to_new():
    buf = ChunkBuffer(BlendConfig("crossfade", crossfade_steps=3))
    buf.add(chunk(0.0, [0.0] * 8), 0.0)
    buf.add(chunk(0.2, [1.0] * 8, seq=1), 0.2)
    vals = [buf.action_at(0.2 + 0.1 * i)[0] for i in range(5)]
    assert vals == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_remaining_and_upcoming():
    buf = ChunkBuffer()
    assert buf.remaining(0.0) == 0 and buf.upcoming(0.0, 3).shape[0] == 0
    buf.add(chunk(0.0, [0, 1, 2, 3, 4, 5]), 0.0)
    assert buf.remaining(0.0) == 6 and buf.remaining(0.25) == 4
    up = buf.upcoming(0.2, 10)
    assert up[:, 0].tolist() == [2, 3, 4, 5]


def test_bad_blend_and_chunk_are_refused():
    with pytest.raises(ValueError, match="unknown blend"):
        BlendConfig("average")
    with pytest.raises(ValueError, match="dt > 0"):
        ChunkBuffer().add(chunk(0.0, [1], dt=0.0), 0.0)
