"""`sawyer`: Meta-World's Sawyer arm, as Meta-World drives it (body/suites/metaworld.py).

The hand follows a mocap target: an action is a 3-D move of that target plus a gripper
effort, each in [-1, 1] (Meta-World scales the move by 1 cm per step and closes the fingers
for positive effort). The state is what Meta-World's observation gives about the robot itself:
the hand position and the finger opening (obs[0:4], LeRobot's `agent_pos` for Meta-World). The
rest of that observation (objects, the previous frame, the goal) is simulator state and is
recorded only as `observation.environment_state`.

The model is Meta-World's own (its MJCF and scenes ship with the `metaworld` package), so
`model()` refuses: there is no Sawyer for our tabletop composer.
"""

from __future__ import annotations

import numpy as np

from embodia.body.embodiment import ActionLayout, ArmSpec, CameraSpec, Embodiment
from embodia.body.mjcf import RobotModel

# Meta-World's sawyer_xyz_base.xml (metaworld 3.1.1)
JOINTS = tuple(f"right_j{i}" for i in range(7))
LIMITS = {
    "right_j0": (-3.0503, 3.0503),
    "right_j1": (-3.8, -0.5),
    "right_j2": (-3.0426, 3.0426),
    "right_j3": (-3.0439, 3.0439),
    "right_j4": (-2.9761, 2.9761),
    "right_j5": (-2.9761, 2.9761),
    "right_j6": (-4.7124, 4.7124),
}
CONTROL_RATE_HZ = 80.0  # frame_skip 5 x timestep 2.5 ms; LeRobot's Meta-World fps
ACTION_SCALE = 0.01  # m of mocap travel per unit of action (Meta-World's action_scale)
STATE_NAMES = ("main.ee_x", "main.ee_y", "main.ee_z", "main.gripper_opening")
ACTION_NAMES = ("main.dx", "main.dy", "main.dz", "main.gripper")


def spec() -> Embodiment:
    arm = ArmSpec(
        name="main",
        joints=JOINTS,
        home=(0.0,) * 7,
        tcp_site="rightEndEffector",
        finger_joints=("r_close", "l_close"),
        finger_open=0.04,
        workspace=(-0.5, 0.5, 0.4, 1.0),  # Meta-World's mocap box (x, y), every v3 task
    )
    layout = ActionLayout(
        name="ee_delta",
        names=ACTION_NAMES,
        units=("normalized",) * 3 + ("effort",),
        low=np.full(4, -1.0, dtype=np.float32),
        high=np.full(4, 1.0, dtype=np.float32),
        gripper_dims=(3,),
    )
    return Embodiment(
        name="sawyer",
        arms=(arm,),
        cameras=(CameraSpec("corner2", "world"),),
        control_rate_hz=CONTROL_RATE_HZ,
        joint_limits=dict(LIMITS),
        max_ee_translation=ACTION_SCALE,
        max_ee_rotation=0.0,
        description="Meta-World's Sawyer: mocap hand moves (xyz, 1 cm per unit) + gripper effort, "
                    "state = hand xyz + finger opening",
        extra={"suite": "metaworld", "action_scale_m": ACTION_SCALE,
               "gripper": "-1 opens, +1 closes (Meta-World's convention)"},
        custom_state_names=STATE_NAMES,
        custom_action_layouts=(layout,),
    )


def model() -> RobotModel:
    raise ValueError("embodiment 'sawyer' runs in Meta-World's own scenes, not the tabletop world: "
                     "make its env with embodia.body.suites.get_suite('metaworld').make_env(task)")
