"""Object permanence for the estimated object state: hold what the hand hides.

The estimator localizes objects in the fixed front camera. When the hand comes down over a
cube (the last centimetres of a pick, a stack, a push), the arm hides it from that camera,
and the estimate of that very cube goes wrong by 4 cm (median, v4, validation seeds) just
when the grasp needs it most; with the hand 6 cm or more above it, the error is ~1 cm.
A cube does not move because the hand hides it. So while an effector is over an object,
the object keeps the position it was last seen at; once the hand has gone (or carried it
away: then it is no longer under the hand's held position), the estimate is used again.

Only objects that can be hidden from above and do not move with the hand by themselves are
held (cubes, bowl, plate); the drawer handle moves with the hand that pulls it.
"""

from __future__ import annotations

import torch

from embodia.cerebellum.object_state import ObjectState, object_groups

HOLD_RADIUS = 0.05  # m: horizontal distance from the effector at which an object counts as under the hand
HOLD_HEIGHT = 0.08  # m: the effector this far above it (or lower) hides it


class OcclusionHold:
    """Per-episode memory of each object's last unoccluded position (one observation at a time)."""

    def __init__(self, object_state: ObjectState, effector_dims: list[list[int]],
                 radius: float = HOLD_RADIUS, height: float = HOLD_HEIGHT) -> None:
        self.os = object_state
        self.effector_dims = effector_dims
        self.radius, self.height = radius, height
        groups = object_groups(object_state.names)
        self.held = [i for i, (obj, _, _) in enumerate(groups) if not obj.startswith("drawer")]
        self.last: dict[int, torch.Tensor] = {}

    def reset(self) -> None:
        self.last.clear()

    def __call__(self, feats: torch.Tensor, state_raw: torch.Tensor) -> torch.Tensor:
        """feats [1, E + G] (the estimate, normalized) -> the same with hidden objects held."""
        if feats.shape[0] != 1 or not self.effector_dims:
            return feats  # a batch is not one robot's stream of observations
        pos = self.os.positions(feats)[0]  # [O, 3] metres
        present = self.os.group_presence(feats)[0]
        ees = [state_raw[0, dims] for dims in self.effector_dims]
        out = feats.clone()
        for o in self.held:
            if present[o] < 0.5:
                self.last.pop(o, None)
                continue
            ref = self.last.get(o, pos[o])
            hidden = any(float(torch.linalg.vector_norm(ee[:2] - ref[:2])) < self.radius
                         and float(ee[2] - ref[2]) < self.height for ee in ees)
            if hidden and o in self.last:
                out = self.os.with_position(out, o, self.last[o])
            else:
                self.last[o] = pos[o].clone()
        return out
