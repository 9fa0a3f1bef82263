import numpy as np
import pytest

from embodia.body import get_embodiment, list_embodiments


def test_registry_lists_both_embodiments():
    assert {"arm7", "humanoid_upper"} <= set(list_embodiments())


def test_unknown_embodiment_is_named():
    with pytest.raises(ValueError, match="unknown embodiment 'robotron'"):
        get_embodiment("robotron")


@pytest.mark.parametrize("name", ["arm7", "humanoid_upper"])
def test_layouts_are_consistent(name):
    spec = get_embodiment(name)
    ee = spec.action_layout("ee_delta")
    jp = spec.action_layout("joint_pos")
    assert ee.dim == 7 * len(spec.arms)
    assert jp.dim == sum(len(a.joints) + 1 for a in spec.arms)
    assert len(ee.gripper_dims) == len(spec.arms) == len(jp.gripper_dims)
    assert np.all(ee.low < ee.high) and np.all(jp.low < jp.high)
    assert spec.state_dim == sum(len(a.joints) + 8 for a in spec.arms)
    assert spec.to_dict()["name"] == name


def test_action_check_clips_and_rejects():
    layout = get_embodiment("arm7").action_layout("ee_delta")
    clipped = layout.check(np.full(7, 10.0))
    assert np.all(clipped <= layout.high) and np.all(clipped >= layout.low)
    with pytest.raises(ValueError, match="shape"):
        layout.check(np.zeros(6))
    bad = np.zeros(7)
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"main\.dz"):
        layout.check(bad)


def test_unknown_arm_and_space():
    spec = get_embodiment("arm7")
    with pytest.raises(ValueError, match="no arm 'left'"):
        spec.arm("left")
    with pytest.raises(ValueError, match="unknown action space"):
        spec.action_layout("torque")
