import numpy as np

from embodia.body.hal import IMU, Actuator, Camera, ForceSensor, Gripper, JointSensor
from embodia.body.mujoco_drivers import (
    MujocoActuator,
    MujocoCamera,
    MujocoForceSensor,
    MujocoGripper,
    MujocoIMU,
    MujocoJointSensor,
)
from embodia.body.rendering import SceneRenderer
from embodia.body.sim import Simulation


def test_mujoco_drivers_implement_the_hal():
    sim = Simulation("arm7")
    renderer = SceneRenderer(sim.model)
    try:
        cam = MujocoCamera(sim, renderer, "wrist", 48, 64)
        joints, act = MujocoJointSensor(sim, "main"), MujocoActuator(sim, "main")
        grip, imu, force = MujocoGripper(sim, "main"), MujocoIMU(sim), MujocoForceSensor(sim, "main")
        assert isinstance(cam, Camera) and isinstance(joints, JointSensor)
        assert isinstance(act, Actuator) and isinstance(grip, Gripper)
        assert isinstance(imu, IMU) and isinstance(force, ForceSensor)
        assert cam.read().shape == (48, 64, 3)
        r = joints.read()
        assert r.positions.shape == (7,) and r.velocities.shape == (7,)
        target = r.positions + 0.1
        act.command(target)
        grip.command(1.0)
        sim.settle(1.0)
        np.testing.assert_allclose(joints.read().positions, target, atol=0.02)
        assert grip.width() < 0.005
        acc = imu.read().linear_acceleration
        assert abs(np.linalg.norm(acc) - 9.81) < 0.1  # a fixed base feels gravity only
        assert force.read().fingertip_forces.shape == (2,)
        try:
            act.command(np.full(7, np.nan))
            raise AssertionError("NaN command accepted")
        except ValueError:
            pass
    finally:
        renderer.close()
