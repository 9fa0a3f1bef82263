import numpy as np

from embodia.body.controllers import ArmController
from embodia.body.scene import CUBE_HALF
from embodia.body.sim import Simulation


def test_cube_rests_on_table_and_falls_when_dropped():
    sim = Simulation("arm7")
    sim.reset_robot()
    sim.set_object_pose("red_cube", (0.45, -0.1, CUBE_HALF + 0.001))
    sim.set_object_pose("blue_cube", (0.5, 0.1, 0.3))
    sim.settle(1.0)
    red, _ = sim.object_pose("red_cube")
    blue, _ = sim.object_pose("blue_cube")
    assert abs(red[2] - CUBE_HALF) < 2e-3  # resting, not sinking
    assert abs(blue[2] - CUBE_HALF) < 2e-3  # fell 28 cm onto the table
    assert np.linalg.norm(sim.object_velocity("red_cube")) < 1e-2


def test_arm_holds_home_under_gravity():
    sim = Simulation("arm7")
    sim.reset_robot()
    q0 = sim.arm_q("main")
    sim.settle(1.0)
    assert np.max(np.abs(sim.arm_q("main") - q0)) < 1e-2


def test_ee_delta_moves_tcp_by_the_commanded_amount():
    sim = Simulation("arm7")
    sim.reset_robot()
    ctl = ArmController(sim, "ee_delta")
    p0, _ = sim.tcp_pose("main")
    for _ in range(5):
        ctl.apply(np.array([0.02, 0.0, -0.01, 0, 0, 0, 0.0]))
        sim.step()
    sim.settle(0.3)
    p1, _ = sim.tcp_pose("main")
    np.testing.assert_allclose(p1 - p0, [0.1, 0.0, -0.05], atol=0.01)


def test_joint_pos_action_tracks_targets():
    sim = Simulation("arm7")
    sim.reset_robot()
    ctl = ArmController(sim, "joint_pos")
    target = np.array(sim.embodiment.arm().home) + np.array([0.2, 0.1, -0.1, 0.1, 0.0, -0.1, 0.3])
    ctl.apply(np.r_[target, 1.0])
    sim.settle(1.5)
    np.testing.assert_allclose(sim.arm_q("main"), target, atol=0.02)
    assert sim.gripper_width("main") < 0.005  # closed on nothing
