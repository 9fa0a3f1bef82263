import numpy as np
import torch

from embodia.body.embodiments import get_embodiment
from embodia.body.sim import Simulation
from embodia.cerebellum.backbone import effector_dims
from embodia.cerebellum.object_state import ObjectState, object_groups
from embodia.cerebellum.occlusion_hold import OcclusionHold

NAMES = Simulation(get_embodiment("arm7")).environment_state_names()
RED = [obj for obj, _, _ in object_groups(NAMES)].index("red_cube")
HANDLE = [obj for obj, _, _ in object_groups(NAMES)].index("drawer.handle")


def scene(red=(0.5, 0.1, 0.02), handle=(0.6, -0.3, 0.1)) -> np.ndarray:
    raw = np.zeros(len(NAMES), np.float32)
    for obj, xyz in (("red_cube", red), ("green_cube", (0.4, -0.1, 0.02)), ("blue_cube", (0.45, 0.2, 0.02)),
                     ("yellow_cube", (0.0, 0.0, -0.5)), ("bowl", (0.3, 0.3, 0.0)), ("plate", (0.3, -0.3, 0.0)),
                     ("drawer.handle", handle)):
        for a, v in zip("xyz", xyz, strict=True):
            raw[NAMES.index(f"{obj}.{a}")] = v
    return raw


def make() -> tuple[ObjectState, OcclusionHold]:
    rows = np.stack([scene(red=(0.4 + 0.01 * i, 0.1, 0.02)) for i in range(20)])
    os_ = ObjectState.from_stats(NAMES, ObjectState.fit(NAMES, rows))
    return os_, OcclusionHold(os_, effector_dims("arm7"))


def state_with_hand(xyz) -> torch.Tensor:
    names = list(get_embodiment("arm7").state_names)
    s = torch.zeros(1, len(names))
    for a, v in zip("xyz", xyz, strict=True):
        s[0, names.index(f"main.ee_{a}")] = v
    return s


def feats(os_: ObjectState, raw: np.ndarray) -> torch.Tensor:
    return os_.features(torch.from_numpy(raw)[None])


def test_with_position_is_the_inverse_of_positions():
    os_, _ = make()
    f = os_.with_position(feats(os_, scene()), RED, torch.tensor([0.3, -0.2, 0.05]))
    assert torch.allclose(os_.positions(f)[0, RED], torch.tensor([0.3, -0.2, 0.05]), atol=1e-6)


def test_a_cube_under_the_hand_keeps_where_it_was_last_seen():
    os_, hold = make()
    seen = scene(red=(0.5, 0.1, 0.02))
    out = hold(feats(os_, seen), state_with_hand((0.2, 0.0, 0.3)))  # hand far: passes through
    assert torch.allclose(out, feats(os_, seen))
    wrong = scene(red=(0.54, 0.07, 0.02), handle=(0.55, -0.3, 0.1))  # the arm hides the cube: 5 cm off
    out = hold(feats(os_, wrong), state_with_hand((0.51, 0.1, 0.05)))
    assert torch.allclose(os_.positions(out)[0, RED], torch.tensor([0.5, 0.1, 0.02]), atol=1e-5)
    # the handle moves with the hand that pulls it: never held
    assert torch.allclose(os_.positions(out)[0, HANDLE], torch.tensor([0.55, -0.3, 0.1]), atol=1e-5)
    moved = scene(red=(0.3, 0.1, 0.02))
    out = hold(feats(os_, moved), state_with_hand((0.5, 0.1, 0.2)))  # hand rose: the estimate again
    assert torch.allclose(os_.positions(out)[0, RED], torch.tensor([0.3, 0.1, 0.02]), atol=1e-5)


def test_reset_forgets_and_batches_pass_through():
    os_, hold = make()
    hold(feats(os_, scene()), state_with_hand((0.2, 0.0, 0.3)))
    hold.reset()
    other = scene(red=(0.54, 0.07, 0.02))
    out = hold(feats(os_, other), state_with_hand((0.51, 0.1, 0.05)))  # nothing seen before: trust it
    assert torch.allclose(out, feats(os_, other))
    two = torch.cat([feats(os_, scene()), feats(os_, other)])
    assert torch.equal(hold(two, state_with_hand((0.5, 0.1, 0.05)).repeat(2, 1)), two)
