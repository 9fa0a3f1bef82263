"""`PolicyEnsemble`: several checkpoints for one robot acting as one policy, their action
chunks averaged.

Why: at temperature 0 each member is deterministic, and two training runs of one recipe
fail on different seeds (their validation scores differ by up to 5 points run to run).
Averaging two runs' chunks removes part of each run's own error: on validation seeds v5
and v7 together score well above either alone (docs/results.md). Cost: one forward pass
per member per chunk.

An ensemble checkpoint is a folder with `ensemble.json`: {"members": ["../a", "../b"]},
paths relative to the folder; `load_checkpoint` reads it like any checkpoint.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.object_state import ObjectState
from embodia.cerebellum.policy import ChunkExecution, VLAPolicy

ENSEMBLE_FILE = "ensemble.json"
# what every member must agree on for their chunks to mean the same thing
SHARED_FIELDS = ("embodiment", "action_space", "action_dim", "horizon", "state_dim", "cameras", "image_size",
                 "control_rate_hz")


class PolicyEnsemble(ChunkExecution):
    """The Policy contract over members whose chunks are averaged (in robot units).

    Execution settings (`n_action_steps`, `temporal_ensemble`) are the first member's;
    an inference option changed through `configs()` applies to every member."""

    def __init__(self, members: list[VLAPolicy]) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        first = members[0].cfg
        for i, m in enumerate(members[1:], start=1):
            for f in SHARED_FIELDS:
                if getattr(m.cfg, f) != getattr(first, f):
                    raise ValueError(f"ensemble member {i} has {f}={getattr(m.cfg, f)!r}, "
                                     f"member 0 has {getattr(first, f)!r}")
        self.members = members
        self._queue: deque = deque()
        self._ensemble: list = []
        self._t = 0

    @property
    def cfg(self) -> PolicyConfig:
        return self.members[0].cfg

    def configs(self) -> list[PolicyConfig]:
        """Every member's config (what an inference override must change)."""
        return [m.cfg for m in self.members]

    @property
    def object_state(self) -> ObjectState | None:
        return self.members[0].object_state

    @property
    def _generator(self) -> torch.Generator:
        return self.members[0]._generator

    @_generator.setter
    def _generator(self, gen: torch.Generator) -> None:
        for m in self.members:  # one stream, drawn from in member order
            m._generator = gen

    def predict_chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        return torch.stack([m.predict_chunk(batch) for m in self.members]).mean(0)

    def reset(self) -> None:
        for m in self.members:
            m.reset()
        self._queue.clear()
        self._ensemble.clear()
        self._t = 0
