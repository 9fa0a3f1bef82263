"""Damped-least-squares inverse kinematics for one arm's tool-centre point.

Works on a scratch `MjData`, so solving never disturbs the simulation. A null-space pull
toward the arm's home posture keeps the redundant 7th degree of freedom well-behaved.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from embodia.body.rotations import mat_to_quat, quat_error


@dataclass
class IKConfig:
    damping: float = 0.05
    max_iters: int = 12
    pos_tol: float = 1e-3
    rot_tol: float = 1e-2
    step: float = 1.0
    nullspace_gain: float = 0.05
    rot_weight: float = 0.5  # metres per radian when mixing position and rotation errors


class DampedLeastSquaresIK:
    def __init__(self, model: mujoco.MjModel, joint_names: tuple[str, ...], site: str,
                 home: np.ndarray, config: IKConfig | None = None) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.config = config or IKConfig()
        self.site_id = model.site(site).id
        self.qadr = np.array([model.joint(j).qposadr[0] for j in joint_names])
        self.dadr = np.array([model.joint(j).dofadr[0] for j in joint_names])
        self.lo = np.array([model.jnt_range[model.joint(j).id][0] for j in joint_names])
        self.hi = np.array([model.jnt_range[model.joint(j).id][1] for j in joint_names])
        self.home = np.asarray(home, dtype=float)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, qpos_full: np.ndarray, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        d.qpos[:] = qpos_full
        d.qpos[self.qadr] = q_arm
        mujoco.mj_kinematics(self.model, d)
        return d.site_xpos[self.site_id].copy(), mat_to_quat(d.site_xmat[self.site_id])

    def solve(self, qpos_full: np.ndarray, target_pos: np.ndarray, target_quat: np.ndarray,
              q_init: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Joint targets for this arm reaching the pose; returns (q, final position error)."""
        cfg, d, m = self.config, self.data, self.model
        q = np.array(qpos_full[self.qadr] if q_init is None else q_init, dtype=float)
        d.qpos[:] = qpos_full
        err_pos = np.inf
        for _ in range(cfg.max_iters):
            d.qpos[self.qadr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            pos = d.site_xpos[self.site_id]
            err_p = target_pos - pos
            err_r = quat_error(target_quat, mat_to_quat(d.site_xmat[self.site_id]))
            err_pos = float(np.linalg.norm(err_p))
            if err_pos < cfg.pos_tol and np.linalg.norm(err_r) < cfg.rot_tol:
                break
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp[:, self.dadr], cfg.rot_weight * self._jacr[:, self.dadr]])
            err = np.concatenate([err_p, cfg.rot_weight * err_r])
            jjt = jac @ jac.T + (cfg.damping**2) * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            # null-space posture pull
            pinv = jac.T @ np.linalg.inv(jjt)
            null = np.eye(len(q)) - pinv @ jac
            dq += null @ (cfg.nullspace_gain * (self.home - q))
            q = np.clip(q + cfg.step * dq, self.lo, self.hi)
        else:
            d.qpos[self.qadr] = q
            mujoco.mj_kinematics(m, d)
            err_pos = float(np.linalg.norm(target_pos - d.site_xpos[self.site_id]))
        return q, err_pos
