"""From one policy action to joint targets: the control layer's model of the arm.

`ee_delta` actions accumulate on a commanded pose (never on the measured one, so a held load
cannot make the arm creep), re-anchored on the measured pose when the hand is blocked and
the two drift apart; the pose goes through damped-least-squares IK. This is the body's
`ArmController` rule, rewritten to *return* targets instead of writing actuator controls:
here the targets still have to pass the interpolator and the safety filter.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from embodia.body.controllers import ee_delta_target
from embodia.body.embodiment import Embodiment
from embodia.body.sim import Simulation

# The body's `ArmController` re-anchors when the hand is 3 cm off the commanded pose: under
# `env.step` the servo has a whole action period to settle on a jumped setpoint. Here the
# setpoint is interpolated (and speed-capped), so during a fast move the hand is measured up
# to ~3.5 cm behind at a slot start; with 3 cm the mapper re-anchored on that lagging pose
# every slot and each move fell ~2 cm short (a learned open_drawer: 1/10 through the runtime
# against 8/10 with env.step on the same seeds; 5/10 with 6 cm). A blocked hand still drifts
# past 6 cm within a slot or two.
RUNTIME_REANCHOR_POS = 0.06


class ArmKinematics(Protocol):
    """Forward and inverse kinematics of one arm (joint limits included)."""

    lo: np.ndarray
    hi: np.ndarray

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def ik(self, pos: np.ndarray, quat: np.ndarray, q_init: np.ndarray) -> np.ndarray: ...


class MujocoArmKinematics:
    """Kinematics from the MJCF model, on a scratch MjData (never the simulated world's)."""

    def __init__(self, sim: Simulation, arm: str) -> None:
        h = sim.arms[arm]
        self._ik = h.ik
        self._qpos = sim.data.qpos.copy()  # the rest of the model (objects) does not move the arm
        self.lo, self.hi = h.ik.lo.copy(), h.ik.hi.copy()

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._ik.forward(self._qpos, q)

    def ik(self, pos: np.ndarray, quat: np.ndarray, q_init: np.ndarray) -> np.ndarray:
        q, _ = self._ik.solve(self._qpos, pos, quat, q_init=q_init)
        return q


class ActionMapper:
    """One full action vector (all arms) -> per-arm joint targets and gripper fractions."""

    def __init__(self, embodiment: Embodiment, space: str, kin: dict[str, ArmKinematics],
                 reanchor_pos: float = RUNTIME_REANCHOR_POS) -> None:
        self.embodiment, self.space, self.kin = embodiment, space, kin
        self.reanchor_pos = reanchor_pos
        self.layout = embodiment.action_layout(space)
        self.commanded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def reset(self, q_measured: dict[str, np.ndarray]) -> None:
        """Anchor the commanded poses on where the arms are (a new step, or after a hold)."""
        self.commanded = {a: self.kin[a].fk(q) for a, q in q_measured.items()}

    def map(self, action: np.ndarray, q_measured: dict[str, np.ndarray],
            q_target_prev: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Validate (ValueError on wrong shape or NaN), clip to the layout, then solve."""
        a = self.layout.check(action)
        q_out: dict[str, np.ndarray] = {}
        grip: dict[str, float] = {}
        for arm, kin in self.kin.items():
            part = a[self.embodiment.arm_action_slice(self.space, arm)]
            grip[arm] = float(part[-1])
            if self.space == "joint_pos":
                q_out[arm] = np.clip(part[:-1], kin.lo, kin.hi)
                self.commanded[arm] = kin.fk(q_out[arm])
                continue
            measured = kin.fk(q_measured[arm])
            tpos, tquat = ee_delta_target(measured, self.commanded.get(arm, measured), part, self.reanchor_pos)
            q = kin.ik(tpos, tquat, q_target_prev[arm])
            q_out[arm] = q
            self.commanded[arm] = kin.fk(q)
        return q_out, grip
