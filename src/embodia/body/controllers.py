"""Turn an action in one of the embodiment's action spaces into actuator targets.

End-effector deltas go through damped-least-squares IK. Deltas accumulate on a commanded
pose (not the measured one) so a held load cannot make the arm creep downward; when the
hand is blocked and the two drift apart, the command re-anchors on the measured pose.
"""

from __future__ import annotations

import numpy as np

from embodia.body.rotations import quat_error, quat_mul, rotvec_to_quat
from embodia.body.sim import Simulation

MIN_TCP_HEIGHT = 0.008  # keep fingertips from being driven into the table
REANCHOR_POS = 0.03
REANCHOR_ROT = 0.2


def ee_delta_target(measured: tuple[np.ndarray, np.ndarray], commanded: tuple[np.ndarray, np.ndarray],
                    delta: np.ndarray, reanchor_pos: float = REANCHOR_POS) -> tuple[np.ndarray, np.ndarray]:
    """The pose an ee-delta action asks for: the delta applied to the commanded pose (or to
    the measured one when the two drifted apart by `reanchor_pos` or more), kept above the table."""
    pos, quat = measured
    cpos, cquat = commanded
    if np.linalg.norm(cpos - pos) < reanchor_pos and np.linalg.norm(quat_error(cquat, quat)) < REANCHOR_ROT:
        pos, quat = cpos, cquat
    tpos = pos + delta[:3]
    tpos[2] = max(tpos[2], MIN_TCP_HEIGHT)
    return tpos, quat_mul(rotvec_to_quat(delta[3:6]), quat)


class ArmController:
    def __init__(self, sim: Simulation, space: str = "ee_delta") -> None:
        self.sim = sim
        self.space = space
        self.layout = sim.embodiment.action_layout(space)
        self.commanded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.reset()

    def reset(self) -> None:
        self.commanded = {a: self.sim.tcp_pose(a) for a in self.sim.arms}

    def apply(self, action) -> np.ndarray:
        """Validate, clip and send one action; returns the clipped action actually applied.

        Raises ValueError (naming the field) before touching the simulator on bad input.
        """
        a = self.layout.check(action)
        emb = self.sim.embodiment
        ctrl = self.sim.data.ctrl.copy()
        new_cmd = dict(self.commanded)
        for name, h in self.sim.arms.items():
            sl = emb.arm_action_slice(self.space, name)
            part = a[sl]
            grip = float(part[-1])
            if self.space == "ee_delta":
                tpos, tquat = ee_delta_target(self.sim.tcp_pose(name), self.commanded[name], part)
                q, _ = h.ik.solve(self.sim.data.qpos, tpos, tquat, q_init=ctrl[h.act])
                new_cmd[name] = h.ik.forward(self.sim.data.qpos, q)
            else:
                q = np.clip(part[:-1], h.ik.lo, h.ik.hi)  # float64 limits, exactly the model's
                new_cmd[name] = h.ik.forward(self.sim.data.qpos, q)
            ctrl[h.act] = q
            ctrl[h.finger_act] = h.spec.finger_open * (1.0 - grip)
        self.sim.data.ctrl[:] = ctrl
        self.commanded = new_cmd
        return a.astype(np.float32)
