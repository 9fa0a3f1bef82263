"""Small helpers for writing MJCF by hand: one robot = one `RobotModel` fragment.

Collision classes (contype/conaffinity bit masks) used across the scene:
  world objects: contype 1, conaffinity 3  -> collide with everything that collides
  gripper:       contype 2, conaffinity 1  -> hands and fingers touch the world, not each other
  arm links:     contype 0, conaffinity 0  -> visual only (the hand is what touches things)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORLD_COLLISION = 'contype="1" conaffinity="3"'
GRIPPER_COLLISION = 'contype="2" conaffinity="1"'
VISUAL_ONLY = 'contype="0" conaffinity="0"'


@dataclass(frozen=True)
class RobotModel:
    """The MJCF pieces one embodiment contributes to a scene."""

    worldbody: str
    actuators: str
    sensors: str
    cameras_world: str = ""  # world-fixed cameras that belong to this robot (e.g. a front view)


def fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.ravel(v))


def lookat_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """`xyaxes` for a camera at `pos` looking at `target` (MuJoCo cameras look along -z)."""
    pos, target, up = (np.asarray(a, dtype=float) for a in (pos, target, up))
    f = target - pos
    f /= np.linalg.norm(f)
    right = np.cross(f, up)
    right /= np.linalg.norm(right)
    upv = np.cross(right, f)
    return fmt(np.concatenate([right, upv]))


def parallel_gripper(prefix: str, pos: str = "0 0 0", quat: str = "1 0 0 0",
                     finger_open: float = 0.04, wrist_camera: bool = True) -> tuple[str, str, str]:
    """A parallel-jaw hand: palm, two slide-jointed fingers with friction pads, a TCP site.

    The hand's +z is the approach direction; fingers open along its y axis. The TCP site sits
    1 cm above the fingertips, between the pads. Returns (body xml, actuator xml, sensor xml).
    """
    p = prefix
    cam = (
        f'<camera name="{p}wrist" pos="0.06 0 0.01" xyaxes="0 -1 0 -0.95 0 -0.3" fovy="80"/>'
        if wrist_camera
        else ""
    )
    body = f"""
<body name="{p}hand" pos="{pos}" quat="{quat}" gravcomp="1">
  <inertial pos="0 0 0.03" mass="0.6" diaginertia="0.002 0.002 0.001"/>
  <geom type="box" size="0.025 0.075 0.02" pos="0 0 0.025" rgba="0.92 0.92 0.95 1" {GRIPPER_COLLISION}/>
  <geom type="cylinder" size="0.03 0.012" pos="0 0 0.0" rgba="0.3 0.3 0.32 1" {VISUAL_ONLY}/>
  {cam}
  <site name="{p}tcp" pos="0 0 0.09" size="0.005" rgba="1 0 0 0.0"/>
  <body name="{p}finger_left" pos="0 0 0.045" gravcomp="1">
    <inertial pos="0 0.01 0.03" mass="0.03" diaginertia="1e-5 1e-5 1e-5"/>
    <joint name="{p}finger_left" type="slide" axis="0 1 0" range="0 {finger_open}" damping="2" armature="0.01"/>
    <site name="{p}pad_left_site" type="box" size="0.014 0.009 0.03" pos="0 0.006 0.028" rgba="0 0 0 0"/>
    <geom name="{p}pad_left" type="box" size="0.012 0.006 0.028" pos="0 0.006 0.028"
          friction="1.5 0.01 0.001" condim="4" rgba="0.25 0.25 0.28 1" {GRIPPER_COLLISION}/>
  </body>
  <body name="{p}finger_right" pos="0 0 0.045" gravcomp="1">
    <inertial pos="0 -0.01 0.03" mass="0.03" diaginertia="1e-5 1e-5 1e-5"/>
    <joint name="{p}finger_right" type="slide" axis="0 -1 0" range="0 {finger_open}" damping="2" armature="0.01"/>
    <site name="{p}pad_right_site" type="box" size="0.014 0.009 0.03" pos="0 -0.006 0.028" rgba="0 0 0 0"/>
    <geom name="{p}pad_right" type="box" size="0.012 0.006 0.028" pos="0 -0.006 0.028"
          friction="1.5 0.01 0.001" condim="4" rgba="0.25 0.25 0.28 1" {GRIPPER_COLLISION}/>
  </body>
</body>"""
    act = (
        f'<position name="{p}finger_left" joint="{p}finger_left" kp="300" kv="8" '
        f'ctrlrange="0 {finger_open}" forcerange="-15 15"/>\n'
        f'<position name="{p}finger_right" joint="{p}finger_right" kp="300" kv="8" '
        f'ctrlrange="0 {finger_open}" forcerange="-15 15"/>'
    )
    sens = (
        f'<touch name="{p}touch_left" site="{p}pad_left_site"/>\n'
        f'<touch name="{p}touch_right" site="{p}pad_right_site"/>'
    )
    return body, act, sens
