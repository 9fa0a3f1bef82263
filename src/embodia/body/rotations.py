"""Quaternion helpers (w, x, y, z order, like MuJoCo) on top of MuJoCo's own math."""

from __future__ import annotations

import mujoco
import numpy as np


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mulQuat(out, np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return out


def quat_conj(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    if q[0] < 0:
        q = -q
    out = np.empty(3)
    mujoco.mju_quat2Vel(out, q, 1.0)
    return out


def rotvec_to_quat(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    angle = float(np.linalg.norm(v))
    out = np.array([1.0, 0.0, 0.0, 0.0])
    if angle > 1e-12:
        mujoco.mju_axisAngle2Quat(out, v / angle, angle)
    return out


def mat_to_quat(m: np.ndarray) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mat2Quat(out, np.asarray(m, dtype=float).reshape(9))
    return out


def quat_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame rotation vector that turns `current` into `target`."""
    return quat_to_rotvec(quat_mul(target, quat_conj(current)))


def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def quat_yaw(q: np.ndarray) -> float:
    """Yaw (about world z) of a frame's x axis."""
    m = np.empty(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, dtype=float))
    return float(np.arctan2(m[3], m[0]))
