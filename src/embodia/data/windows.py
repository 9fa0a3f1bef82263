"""Training windows over a dataset: an observation history and an action chunk per frame.

Why: chunked-action policies (ACT, diffusion, pi0-style VLAs) learn from "the last
`n_obs_steps` observations -> the next `horizon` actions". Episodes have edges, so a
window near the start repeats the first observation (`observation_is_pad` says which
steps are copies) and a window near the end repeats the last action (`action_is_pad`
marks steps t+k >= episode length, which losses should ignore). Action-free data (human
video, the bottom of the data pyramid) still yields windows, with zero actions that are
all marked as padding and `has_action=False`, so one batch can mix both kinds.

Every sample is plain tensors, strings, bools and ints, so torch's default collate works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from embodia.data.layout import ENV_STATE
from embodia.data.reader import DatasetReader

IMAGE_PREFIX = "observation.images."


@dataclass
class WindowConfig:
    """What a training window holds."""

    horizon: int = 16  # H: actions t .. t+H-1
    n_obs_steps: int = 1  # observations t-n+1 .. t
    cameras: list[str] | None = None  # camera names ("front") or keys; None = every camera
    image_format: Literal["uint8", "float"] = "uint8"  # uint8 CHW, or float32 CHW in [0, 1]
    # Width of the zero actions of action-free data; None = the embodiment's action width for
    # `action_space` as recorded in info.json (0 when the dataset does not say).
    action_dim: int | None = None
    action_space: str = "ee_delta"

    def __post_init__(self) -> None:
        if int(self.horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if int(self.n_obs_steps) < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")
        if self.action_dim is not None and int(self.action_dim) < 0:
            raise ValueError(f"action_dim must be >= 0, got {self.action_dim}")
        if self.image_format not in ("uint8", "float"):
            raise ValueError(f"image_format must be 'uint8' or 'float', got {self.image_format!r}")


class WindowDataset(Dataset):
    """One sample per frame of the selected episodes (see the module docstring)."""

    def __init__(self, source: DatasetReader | str | Path, config: WindowConfig | None = None,
                 episodes: Sequence[int] | None = None, warm_cache: bool = True) -> None:
        self.reader = source if isinstance(source, DatasetReader) else DatasetReader(source)
        self.config = config or WindowConfig()
        r = self.reader
        self.camera_keys = self._camera_keys(self.config.cameras)
        if episodes is None:
            positions = np.arange(r.num_episodes)
        else:
            positions = np.asarray([r.episode_position(e) for e in episodes], dtype=np.int64)
        self.episodes = [int(r.episode_indices[p]) for p in positions]
        self._rows = (np.concatenate([np.arange(r.ep_start[p], r.ep_start[p] + r.ep_length[p]) for p in positions])
                      if len(positions) else np.zeros(0, np.int64))
        if warm_cache:  # decode videos in this process, before any DataLoader worker starts
            r.warm_cache(self.camera_keys)

    def _camera_keys(self, cameras: list[str] | None) -> list[str]:
        have = self.reader.video_keys
        if cameras is None:
            return list(have)
        keys = [c if c.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + c for c in cameras]
        unknown = [c for c, k in zip(cameras, keys, strict=True) if k not in have]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown} in {self.reader.root}; cameras: "
                             f"{[k.removeprefix(IMAGE_PREFIX) for k in have]}")
        return keys

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def has_actions(self) -> bool:
        return self.reader.has_actions

    def tiers_of(self, indices: np.ndarray) -> np.ndarray:
        """The tier of each sample index (for reporting a mixture's realized composition)."""
        r = self.reader
        tiers = np.asarray(r.episode_tier, dtype=object)
        return tiers[r.row_episode[self._rows[np.asarray(indices, dtype=np.int64)]]]

    def skills_of(self) -> np.ndarray:
        """The skill of every sample (its episode's `skill` column; "" where none is recorded)."""
        r = self.reader
        skills = np.asarray([s or "" for s in r.meta.column("skill", None)], dtype=object)
        return skills[r.row_episode[self._rows]]

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self._rows)
        if not -n <= i < n:
            raise IndexError(f"window {i} out of range for {n} windows")
        r, cfg = self.reader, self.config
        row = int(self._rows[i])
        start, end = int(r.row_start[row]), int(r.row_end[row])
        ep = int(r.row_episode[row])
        # observation history t-n+1 .. t, clamped at the episode start
        obs = row - np.arange(cfg.n_obs_steps - 1, -1, -1)
        obs_pad = obs < start
        obs = np.maximum(obs, start)
        item: dict[str, Any] = {
            "observation.state": torch.from_numpy(r.columns["observation.state"][obs].astype(np.float32)),
            "observation_is_pad": torch.from_numpy(obs_pad),
        }
        if ENV_STATE in r.columns:  # privileged, for auxiliary training targets only
            item[ENV_STATE] = torch.from_numpy(r.columns[ENV_STATE][obs].astype(np.float32))
        for key in self.camera_keys:
            img = torch.from_numpy(r.frames_at_rows(key, obs)).permute(0, 3, 1, 2).contiguous()
            item[key] = img.float().div_(255.0) if cfg.image_format == "float" else img
        # action chunk t .. t+H-1, the last action repeated past the episode end
        act = row + np.arange(cfg.horizon)
        act_pad = act >= end
        if r.has_actions:
            act = np.minimum(act, end - 1)
            item["action"] = torch.from_numpy(r.columns["action"][act].astype(np.float32))
            item["action_is_pad"] = torch.from_numpy(act_pad)
        else:
            item["action"] = torch.zeros(cfg.horizon, self._action_dim(), dtype=torch.float32)
            item["action_is_pad"] = torch.ones(cfg.horizon, dtype=torch.bool)
        item["task"] = r.task_of_row(row)
        item["embodiment"] = r.episode_embodiment[ep]
        item["tier"] = r.episode_tier[ep]
        item["has_action"] = bool(r.has_actions)
        item["episode_index"] = int(r.episode_indices[ep])
        item["frame_index"] = int(r.columns["frame_index"][row])
        item["index"] = int(r.columns["index"][row])
        return item

    def _action_dim(self) -> int:
        """Width of the zero actions of action-free data (so they batch with acted data)."""
        if self.config.action_dim is not None:
            return int(self.config.action_dim)
        spec = ((self.reader.meta.info.get("embodia") or {}).get("embodiment_spec") or {})
        layout = (spec.get("action_spaces") or {}).get(self.config.action_space) or {}
        return len(layout.get("names") or [])
