"""`ObjectState`: `observation.environment_state` -> features a network can learn from.

Why: the scene parks the objects an episode does not use metres away under the table, so
a plain z-score over all frames is dominated by "present or parked" and a 1 cm error in a
present cube's position vanishes in the statistics (std ~1.2 m instead of ~8 cm), both as
a regression target and as an input. Here each object with a height is marked present or
absent, statistics come from present objects only, absent objects' values read 0 after
normalization, and one presence flag per object is appended.
"""

from __future__ import annotations

import numpy as np
import torch

PARKED_BELOW = -0.1  # metres: anything whose z is below this was parked under the table
MIN_STD = 0.01  # a dimension that never moves in the data (a bowl's z) must not blow up


def object_groups(names: list[str]) -> list[tuple[str, list[int], int | None]]:
    """(object, its dims, the dim of its z or None) in order of first appearance:
    'red_cube.x', 'drawer.handle.z' -> objects 'red_cube', 'drawer.handle'."""
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n.rsplit(".", 1)[0] if "." in n else n, []).append(i)
    out = []
    for obj, dims in groups.items():
        z = next((i for i in dims if names[i].endswith(".z")), None)
        out.append((obj, dims, z))
    return out


def feature_dim(names: list[str]) -> int:
    """Width of `ObjectState.features`: every dimension plus a flag per object with a height."""
    return len(names) + sum(z is not None for _, _, z in object_groups(names))


class ObjectState:
    """Presence-aware normalization of one environment-state layout (`names`)."""

    def __init__(self, names: list[str], mean: np.ndarray, std: np.ndarray, floor: np.ndarray | None = None) -> None:
        if not names:
            raise ValueError("ObjectState needs the environment-state names (info.json features.names)")
        if len(mean) != len(names) or len(std) != len(names):
            raise ValueError(f"{len(names)} names but stats of width {len(mean)}/{len(std)}")
        self.names = list(names)
        self.groups = [g for g in object_groups(self.names) if g[2] is not None]
        self.z_dims = torch.tensor([g[2] for g in self.groups], dtype=torch.long)
        member = torch.zeros(len(self.groups), len(names))
        for j, (_, dims, _) in enumerate(self.groups):
            member[j, dims] = 1.0
        self.member = member  # [G, E]: which dims belong to which object with a height
        self.mean = torch.as_tensor(np.asarray(mean, np.float32))
        self.std = torch.as_tensor(np.maximum(np.asarray(std, np.float32), MIN_STD))
        # the lowest a present object sits (its resting height, for dims that are heights)
        self.floor = torch.as_tensor(np.asarray(floor if floor is not None else mean, np.float32))
        # per object of object_groups(names), looked up once (positions() runs every forward):
        # the dims of its x, y, z (index E = a zero column for a missing axis), and its flag
        # column among [flags..., 1] (the last = always present)
        all_groups = object_groups(self.names)
        e, with_z = len(self.names), [g[0] for g in self.groups]
        self._xyz = torch.tensor([[next((i for i in dims if self.names[i].endswith("." + a)), e) for a in "xyz"]
                                  for _, dims, _ in all_groups])
        self._flag = torch.tensor([with_z.index(obj) if obj in with_z else len(with_z) for obj, _, _ in all_groups])

    def to(self, device: torch.device | str) -> ObjectState:
        """Move the statistics and lookup tables (not module buffers: the policy calls this
        whenever it moves, so they follow it onto a GPU)."""
        for k in ("z_dims", "member", "mean", "std", "floor", "_xyz", "_flag"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    @classmethod
    def from_stats(cls, names: list[str], stats: dict) -> ObjectState:
        return cls(names, np.asarray(stats["mean"]), np.asarray(stats["std"]), stats.get("floor"))

    def presence(self, raw: torch.Tensor) -> torch.Tensor:
        """[..., E] -> [..., G] 1.0 where the object is on the table (or held, or in the drawer)."""
        return (raw[..., self.z_dims] > PARKED_BELOW).float()

    def features(self, raw: torch.Tensor) -> torch.Tensor:
        """[..., E] in metres -> [..., E + G]: present objects z-scored, absent ones 0, flags."""
        raw = raw.float()
        present = self.presence(raw)
        dim_present = 1.0 - ((1.0 - present) @ self.member).clamp(max=1.0)
        x = (raw - self.mean) / self.std * dim_present
        return torch.cat([x, present], dim=-1)

    def positions(self, feats: torch.Tensor) -> torch.Tensor:
        """Features [B, E + G] -> [B, O, 3] metres: each object's (x, y, z) for every object
        of `object_groups(names)` (0 for coordinates it does not have), NaN-free."""
        raw = feats[:, : len(self.names)] * self.std + self.mean
        raw = torch.cat([raw, torch.zeros_like(raw[:, :1])], dim=-1)
        return raw[:, self._xyz]

    def with_position(self, feats: torch.Tensor, obj: int, xyz: torch.Tensor) -> torch.Tensor:
        """A copy of features [B, E + G] with object `obj` (of `object_groups(names)`) at `xyz`
        metres, the inverse of `positions` for that object."""
        out = feats.clone()
        for axis, d in enumerate(self._xyz[obj].tolist()):
            if d < len(self.names):
                out[:, d] = (xyz[axis] - self.mean[d]) / self.std[d]
        return out

    def group_presence(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, O] presence of every object group (1 for those without a height flag)."""
        flags = torch.cat([feats[:, len(self.names):], torch.ones_like(feats[:, :1])], dim=-1)
        return flags[:, self._flag]

    @staticmethod
    def fit(names: list[str], rows: np.ndarray) -> dict[str, list[float]]:
        """Mean/std per dimension over the rows where its object is present."""
        rows = np.asarray(rows, np.float64)
        keep = np.ones_like(rows, dtype=bool)
        for _, dims, z in object_groups(list(names)):
            if z is not None:
                keep[:, dims] &= (rows[:, z] > PARKED_BELOW)[:, None]
        n = np.maximum(keep.sum(0), 1)
        mean = np.where(keep, rows, 0.0).sum(0) / n
        std = np.sqrt(np.where(keep, (rows - mean) ** 2, 0.0).sum(0) / n)
        floor = np.array([np.percentile(rows[keep[:, j], j], 5) if keep[:, j].any() else 0.0
                          for j in range(rows.shape[1])])
        return {"mean": mean.tolist(), "std": np.maximum(std, MIN_STD).tolist(), "floor": floor.tolist()}


def object_name_phrase(obj: str) -> str:
    """'red_cube' -> 'red cube', 'drawer.handle' -> 'drawer handle': what the language
    encoder embeds as the object's name."""
    return obj.replace("_", " ").replace(".", " ")


class ObjectTokens(torch.nn.Module):
    """Object-state features [B, E + G] -> one token per object [B, O, d]: the object's own
    values and its relevance to the instruction through its own linear map, plus its name's
    sentence embedding (`name_emb`, set by the policy from the language encoder and saved
    with the weights) through the projection the instruction's words use.

    Relevance is the frozen encoder's best cosine between any instruction word and the
    object's name ("green" in "take the green block" is nearer "green cube" than "red
    cube"): which-object-is-meant arrives as one number per object instead of a binding the
    transformer must discover from a few thousand demonstrations."""

    def __init__(self, names: list[str], d_model: int, n_effectors: int = 0, name_dim: int = 384) -> None:
        super().__init__()
        groups = object_groups(names)
        with_z = [obj for obj, _, z in groups if z is not None]
        self.objects = [obj for obj, _, _ in groups]
        self.index = [dims + ([len(names) + with_z.index(obj)] if obj in with_z else []) for obj, dims, _ in groups]
        # inputs per object: its features, relevance, and its offset from each end effector
        self.proj = torch.nn.ModuleList(torch.nn.Linear(len(ix) + 1 + 3 * n_effectors, d_model) for ix in self.index)
        self.register_buffer("name_emb", torch.zeros(len(groups), name_dim))

    def relevance(self, lang: torch.Tensor, words: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """[B, O]: max cosine of the instruction's words (or its sentence vector) with each name."""
        names = torch.nn.functional.normalize(self.name_emb, dim=-1)
        if words is None:
            return torch.nn.functional.normalize(lang, dim=-1) @ names.T
        sim = words[0] @ names.T  # [B, T, O] (word vectors are unit norm, padding is zero)
        return sim.masked_fill(words[1][..., None], -1.0).amax(dim=1)

    def forward(self, feats: torch.Tensor, word_proj: torch.nn.Module, relevance: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
        """offsets [B, O, 3 * effectors]: where each object is from each end effector (the
        quantity a reach or a grasp acts on, handed over instead of learned from two
        differently normalized vectors)."""
        own = torch.stack([p(torch.cat([feats[:, ix], relevance[:, i:i + 1], offsets[:, i]], dim=-1))
                           for i, (p, ix) in enumerate(zip(self.proj, self.index, strict=True))], dim=1)
        return own + word_proj(self.name_emb)[None]
