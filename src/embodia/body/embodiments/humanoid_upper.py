"""`humanoid_upper`: a two-armed humanoid upper body standing at the table edge.

Why: a second, bimanual embodiment with a different (human-like) kinematic layout proves that
data, policies and experts are embodiment-agnostic. What: a fixed torso on a pedestal behind
the table edge, leaning over it; a head camera looking down at the table; two 7-DoF arms
(shoulder pitch/roll/yaw, elbow, forearm roll, wrist pitch, wrist yaw about the palm normal)
ending in the shared parallel-jaw gripper with a wrist camera each. Geometry is simple capsules
of our own.

Each arm hangs straight down at zero joint angles, palm facing back, in a world-aligned frame.
The gripper's approach axis is the palm normal (as in a human top-down grasp), so with the
forearm raised forward and level the hand points straight down with hand x forward: the same
`down_quat` (0, 1, 0, 0) as arm7. The right arm mirrors the left one (joint axes along x and
z flip), so both share one set of limits and home angles. Home: the hands wait high and to the
sides (TCP about (0.29, +-0.28, 0.28)) so the idle hand never blocks the other arm's workspace.
"""

from __future__ import annotations

import numpy as np

from embodia.body.embodiment import ArmSpec, CameraSpec, Embodiment
from embodia.body.mjcf import VISUAL_ONLY, RobotModel, fmt, lookat_xyaxes, parallel_gripper

SIDES = {"left": 1.0, "right": -1.0}
# Dimensions (m). Shoulders sit forward of the hips: the torso leans over the table edge.
HIP = np.array([-0.26, 0.0, 0.04])
SHOULDER = np.array([0.0, 0.17, 0.47])  # left shoulder centre; the right one mirrors y
UPPER_ARM, FOREARM, PALM = 0.36, 0.34, 0.06
HEAD = np.array([0.08, 0.0, 0.64])  # bent forward to look down at the table
HEAD_CAM, HEAD_TARGET = np.array([0.16, 0.0, 0.60]), np.array([0.36, 0.0, 0.0])

# name, axis at zero pose (left arm), limits, home, kp, kv, torque, body offset along the arm
JOINTS = (
    ("shoulder_pitch", (0, -1, 0), (-1.0, 3.0), 0.0, 800, 80, 80, 0.0),
    ("shoulder_roll", (1, 0, 0), (-1.0, 2.5), 0.22, 800, 80, 80, 0.0),
    ("shoulder_yaw", (0, 0, 1), (-1.8, 1.8), 0.35, 600, 60, 60, 0.0),
    ("elbow", (0, -1, 0), (0.0, 2.8), 2.35, 600, 60, 60, -UPPER_ARM),
    ("wrist_roll", (0, 0, 1), (-2.0, 2.0), 0.33, 250, 20, 15, -FOREARM / 2),
    ("wrist_pitch", (0, 1, 0), (-1.3, 1.3), 0.83, 250, 20, 15, -FOREARM / 2),
    ("wrist_yaw", (-1, 0, 0), (-2.0, 2.0), 0.1, 150, 12, 15, -PALM),
)
# visual capsule (fromto, radius) of the link each joint moves
LINKS = {
    "shoulder_pitch": ("0 -0.03 0 0 0.03 0", 0.055),
    "shoulder_roll": ("0 0 0 0 0 -0.05", 0.05),
    "shoulder_yaw": (f"0 0 -0.05 0 0 {-UPPER_ARM + 0.03}", 0.045),
    "elbow": (f"0 0 0 0 0 {-FOREARM / 2}", 0.042),
    "wrist_roll": (f"0 0 0 0 0 {-FOREARM / 2 + 0.02}", 0.035),
    "wrist_pitch": ("0 -0.03 0 0 0.03 0", 0.025),
    "wrist_yaw": (f"0 0 {PALM} 0 0 0.01", 0.022),
}
WORKSPACE = {"left": (0.18, 0.52, -0.18, 0.15), "right": (0.18, 0.52, -0.34, 0.0)}


def joint_names(side: str) -> tuple[str, ...]:
    return tuple(f"{side}_{j[0]}" for j in JOINTS)


def _limits() -> dict[str, tuple[float, float]]:
    return {f"{s}_{j[0]}": j[2] for s in SIDES for j in JOINTS}


def spec() -> Embodiment:
    arms = tuple(
        ArmSpec(
            name=side,
            joints=joint_names(side),
            home=tuple(j[3] for j in JOINTS),
            tcp_site="tcp",
            finger_joints=("finger_left", "finger_right"),
            finger_open=0.04,
            workspace=WORKSPACE[side],
        )
        for side in SIDES
    )
    return Embodiment(
        name="humanoid_upper",
        arms=arms,
        cameras=(CameraSpec("head", "torso"), CameraSpec("left_wrist", "left"),
                 CameraSpec("right_wrist", "right")),
        control_rate_hz=10.0,
        joint_limits=_limits(),
        description="humanoid upper body: two 7-DoF arms with parallel-jaw grippers, a head camera "
        "and wrist cameras",
    )


def _axis(side: str, axis: tuple[int, int, int]) -> str:
    """Mirror across the xz-plane: rotations about x and z flip sense on the right arm."""
    s = SIDES[side]
    return fmt((axis[0] * s, axis[1], axis[2] * s))


def _arm(side: str) -> tuple[str, str, str]:
    # hand x runs along the forearm (distal), hand z (approach) is the palm normal: at zero
    # angles that is world (0, 0, -1) and (-1, 0, 0), a half turn about (1, 0, -1)
    hand, hand_act, hand_sens = parallel_gripper(f"{side}_", quat="0 0.707107 0 -0.707107")
    inner = hand
    for name, axis, (lo, hi), *_, offset in reversed(JOINTS):
        fromto, r = LINKS[name]
        grey = name in ("shoulder_pitch", "elbow", "wrist_pitch")
        rgba = "0.3 0.3 0.32 1" if grey else "0.92 0.92 0.95 1"
        heavy = name in ("shoulder_yaw", "elbow")
        inner = f"""
<body name="{side}_{name}_link" pos="0 0 {offset:.6g}" gravcomp="1">
  <inertial pos="0 0 {-0.12 if heavy else 0.0}" mass="{1.2 if heavy else 0.4}"
            diaginertia="0.01 0.01 0.004"/>
  <joint name="{side}_{name}" axis="{_axis(side, axis)}" range="{lo} {hi}" damping="1"
         armature="0.1"/>
  <geom type="capsule" fromto="{fromto}" size="{r}" rgba="{rgba}" {VISUAL_ONLY}/>
  {inner}
</body>"""
    pos = SHOULDER * [1.0, SIDES[side], 1.0]
    body = f'<body name="{side}_shoulder" pos="{fmt(pos)}">{inner}\n</body>'
    acts = "\n".join(
        f'<position name="{side}_{n}" joint="{side}_{n}" kp="{kp}" kv="{kv}" ctrlrange="{lo} {hi}" '
        f'forcerange="{-t} {t}"/>'
        for n, _, (lo, hi), _, kp, kv, t, _ in JOINTS
    )
    return body, acts + "\n" + hand_act, hand_sens


def model() -> RobotModel:
    arms = [_arm(side) for side in SIDES]
    shoulder_l, shoulder_r = SHOULDER, SHOULDER * [1.0, -1.0, 1.0]
    neck = SHOULDER * [1.0, 0.0, 1.0]
    skin = 'rgba="0.92 0.92 0.95 1"'
    dark = 'rgba="0.3 0.3 0.32 1"'
    torso = f"""
<body name="pedestal" pos="{fmt(HIP * [1, 1, 0])}">
  <geom type="cylinder" fromto="0 0 -0.75 0 0 {HIP[2] - 0.06}" size="0.08" {dark} {VISUAL_ONLY}/>
  <geom type="box" size="0.2 0.2 0.01" pos="0 0 -0.74" {dark} {VISUAL_ONLY}/>
</body>
<body name="torso" pos="0 0 0">
  <site name="imu" pos="{fmt((HIP + neck) / 2)}" size="0.01"/>
  <geom type="box" size="0.08 0.14 0.06" pos="{fmt(HIP)}" {dark} {VISUAL_ONLY}/>
  <geom type="capsule" fromto="{fmt(HIP + [0, 0, 0.06])} {fmt(neck - [0.03, 0, 0.16])}" size="0.11"
        {skin} {VISUAL_ONLY}/>
  <geom type="capsule" size="0.06" {skin} {VISUAL_ONLY}
        fromto="{fmt(shoulder_l - [0.01, 0.06, 0.02])} {fmt(shoulder_r - [0.01, -0.06, 0.02])}"/>
  <geom type="capsule" fromto="{fmt(neck)} {fmt(HEAD - [0, 0, 0.07])}" size="0.035"
        {dark} {VISUAL_ONLY}/>
  <body name="head" pos="{fmt(HEAD)}">
    <geom type="sphere" size="0.09" {skin} {VISUAL_ONLY}/>
    <geom type="box" size="0.02 0.06 0.02" pos="0.08 0 0.01" rgba="0.1 0.1 0.12 1" {VISUAL_ONLY}/>
    <camera name="head" pos="{fmt(HEAD_CAM - HEAD)}" fovy="80"
            xyaxes="{lookat_xyaxes(HEAD_CAM, HEAD_TARGET)}"/>
  </body>
  {arms[0][0]}
  {arms[1][0]}
</body>"""
    imu = '<accelerometer name="base_imu_acc" site="imu"/>\n<gyro name="base_imu_gyro" site="imu"/>'
    sens = "\n".join((arms[0][2], arms[1][2], imu))
    return RobotModel(worldbody=torso, actuators=arms[0][1] + "\n" + arms[1][1], sensors=sens)
