"""A one-page picture of an episode: a strip of camera frames over action and state plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from embodia.data.reader import DatasetReader  # noqa: E402


def plot_episode(root: str | Path, episode: int, out: str | Path, n_frames: int = 8) -> Path:
    reader = DatasetReader(root)
    if not 0 <= episode < reader.num_episodes:
        raise ValueError(f"episode {episode} out of range: the dataset has {reader.num_episodes} episodes")
    ep = reader.episode(episode)
    cams = sorted(k for k in ep if k.startswith("observation.images."))
    names = reader.meta.features
    has_action = "action" in ep
    rows = len(cams) + 1 + int(has_action)
    fig = plt.figure(figsize=(2 * n_frames, 2.2 * rows))
    length = len(ep["observation.state"])
    picks = np.linspace(0, length - 1, n_frames).astype(int)
    for r, cam in enumerate(cams):
        for i, t in enumerate(picks):
            ax = fig.add_subplot(rows, n_frames, r * n_frames + i + 1)
            ax.imshow(ep[cam][t])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(cam.removeprefix("observation.images."))
            if r == 0:
                ax.set_title(f"t={t}", fontsize=8)
    t_axis = np.arange(length) / reader.meta.fps
    plots = [("observation.state", names["observation.state"].get("names"))]
    if has_action:
        plots.insert(0, ("action", names["action"].get("names")))
    for j, (key, labels) in enumerate(plots):
        ax = fig.add_subplot(rows, 1, len(cams) + 1 + j)
        data = ep[key]
        for d in range(data.shape[1]):
            ax.plot(t_axis, data[:, d], lw=1, label=(labels or [None] * data.shape[1])[d])
        ax.set_ylabel(key)
        ax.set_xlabel("time (s)")
        if data.shape[1] <= 16:
            ax.legend(fontsize=6, ncol=4, loc="upper right")
    fig.suptitle(f"episode {episode}: {ep['task']!r}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
