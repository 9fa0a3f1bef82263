"""`arm7`: a 7-DoF arm with Panda-like kinematics, a parallel-jaw gripper and a wrist camera.

Link offsets follow the published Franka Panda kinematic parameters (d1=0.333, d3=0.316,
a4=0.0825, d5=0.384, a7=0.088, flange 0.107); the geometry is simple capsules of our own.
The base sits on the table edge at the world origin, facing +x.
"""

from __future__ import annotations

from embodia.body.embodiment import ArmSpec, CameraSpec, Embodiment
from embodia.body.mjcf import VISUAL_ONLY, RobotModel, lookat_xyaxes, parallel_gripper

JOINTS = tuple(f"joint{i}" for i in range(1, 8))
LIMITS = {
    "joint1": (-2.8973, 2.8973),
    "joint2": (-1.7628, 1.7628),
    "joint3": (-2.8973, 2.8973),
    "joint4": (-3.0718, -0.0698),
    "joint5": (-2.8973, 2.8973),
    "joint6": (-0.0175, 3.7525),
    "joint7": (-2.8973, 2.8973),
}
HOME = (0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785398)
KP = (900, 900, 700, 700, 300, 300, 200)
KV = (90, 90, 70, 70, 25, 25, 15)
TORQUE = (87, 87, 87, 87, 12, 12, 12)


def spec() -> Embodiment:
    arm = ArmSpec(
        name="main",
        joints=JOINTS,
        home=HOME,
        tcp_site="tcp",
        finger_joints=("finger_left", "finger_right"),
        finger_open=0.04,
        workspace=(0.33, 0.62, -0.28, 0.16),
    )
    return Embodiment(
        name="arm7",
        arms=(arm,),
        cameras=(CameraSpec("front", "world"), CameraSpec("wrist", "main")),
        control_rate_hz=10.0,
        joint_limits=dict(LIMITS),
        description="7-DoF Panda-like arm with a parallel-jaw gripper and a wrist camera",
    )


def _link(name: str, joint: str, pos: str, quat: str, capsule: str, inner: str,
          rgba: str = "0.95 0.95 0.95 1") -> str:
    lo, hi = LIMITS[joint]
    return f"""
<body name="{name}" pos="{pos}" quat="{quat}" gravcomp="1">
  <inertial pos="0 0 0" mass="2.0" diaginertia="0.02 0.02 0.01"/>
  <joint name="{joint}" axis="0 0 1" range="{lo} {hi}" damping="1" armature="0.1"/>
  <geom type="capsule" fromto="{capsule}" size="0.055" rgba="{rgba}" {VISUAL_ONLY}/>
  {inner}
</body>"""


def model() -> RobotModel:
    hand, hand_act, hand_sens = parallel_gripper("", pos="0 0 0.107", quat="0.92388 0 0 -0.382683")
    l7 = _link("link7", "joint7", "0.088 0 0", "0.707107 0.707107 0 0", "0 0 -0.03 0 0 0.06", hand,
               rgba="0.3 0.3 0.32 1")
    l6 = _link("link6", "joint6", "0 0 0", "0.707107 0.707107 0 0", "0 0 -0.05 0 0 0.05", l7)
    l5 = _link("link5", "joint5", "-0.0825 0.384 0", "0.707107 -0.707107 0 0", "0 0 -0.26 0 0 0", l6)
    l4 = _link("link4", "joint4", "0.0825 0 0", "0.707107 0.707107 0 0", "0 0 0 -0.0825 0.1 0", l5)
    l3 = _link("link3", "joint3", "0 -0.316 0", "0.707107 0.707107 0 0", "0 0 -0.12 0 0 0", l4)
    l2 = _link("link2", "joint2", "0 0 0", "0.707107 -0.707107 0 0", "0 0 0 0 -0.2 0", l3)
    l1 = _link("link1", "joint1", "0 0 0.333", "1 0 0 0", "0 0 -0.2 0 0 0", l2)
    base = f"""
<body name="link0" pos="0 0 0">
  <geom type="cylinder" size="0.09 0.07" pos="0 0 0.07" rgba="0.3 0.3 0.32 1" {VISUAL_ONLY}/>
  {l1}
</body>"""
    acts = "\n".join(
        f'<position name="{j}" joint="{j}" kp="{kp}" kv="{kv}" ctrlrange="{LIMITS[j][0]} {LIMITS[j][1]}" '
        f'forcerange="{-t} {t}"/>'
        for j, kp, kv, t in zip(JOINTS, KP, KV, TORQUE, strict=True)
    )
    front = (
        f'<camera name="front" pos="0.15 -0.8 0.7" xyaxes="{lookat_xyaxes((0.15, -0.8, 0.7), (0.5, 0.05, 0.0))}" '
        'fovy="50"/>'
    )
    sens = hand_sens + '\n<accelerometer name="base_imu_acc" site="imu"/>\n<gyro name="base_imu_gyro" site="imu"/>'
    base = base.replace('<body name="link0" pos="0 0 0">',
                        '<body name="link0" pos="0 0 0">\n  <site name="imu" pos="0 0 0.1" size="0.01"/>')
    return RobotModel(worldbody=base, actuators=acts + "\n" + hand_act, sensors=sens, cameras_world=front)
