"""Each success predicate with a true and a false case, set up directly in the simulator."""

import numpy as np
import pytest

from embodia.body import predicates as P
from embodia.body.scene import CUBE_HALF, PLATE_HALF_THICK, sample_layout
from embodia.body.sim import Simulation
from embodia.body.skills import success
from embodia.body.start_states import put_in_hand


@pytest.fixture
def sim():
    s = Simulation("arm7")
    layout = sample_layout(np.random.default_rng(4), s.embodiment.arm().workspace, n_cubes=3,
                           required=("red_cube", "green_cube", "blue_cube"))
    s.apply_layout(layout)
    s.settle(0.2)
    return s


def _settle(sim, t=0.5):
    sim.settle(t)


def test_pick_true_only_when_held_and_lifted(sim):
    assert not success(sim, "pick", ("red_cube",))
    put_in_hand(sim, "main", "red_cube", np.random.default_rng(0))
    _settle(sim, 0.3)
    assert P.holder(sim, "red_cube") == "main"
    assert success(sim, "pick", ("red_cube",))


def test_place_in_bowl(sim):
    bowl, q = sim.object_pose("bowl")
    sim.set_object_pose("red_cube", bowl + [0, 0, 0.008 + CUBE_HALF + 0.002], q)
    _settle(sim)
    assert success(sim, "place", ("red_cube", "bowl"))
    assert not success(sim, "place", ("green_cube", "bowl"))  # still on the table
    assert not success(sim, "place", ("red_cube", "plate"))


def test_place_on_plate(sim):
    plate, _ = sim.object_pose("plate")
    sim.set_object_pose("green_cube", plate + [0.02, 0, 2 * PLATE_HALF_THICK + CUBE_HALF + 0.002])
    _settle(sim)
    assert success(sim, "place", ("green_cube", "plate"))
    sim.set_object_pose("green_cube", plate + [0.2, 0, CUBE_HALF + 0.3])  # dropped beside it
    _settle(sim, 1.0)
    assert not success(sim, "place", ("green_cube", "plate"))


def test_stack(sim):
    base, q = sim.object_pose("blue_cube")
    sim.set_object_pose("red_cube", base + [0.003, 0, 2 * CUBE_HALF + 0.002], q)
    _settle(sim)
    assert success(sim, "stack", ("red_cube", "blue_cube"))
    assert not success(sim, "stack", ("blue_cube", "red_cube"))
    assert P.something_on(sim, "blue_cube") == "red_cube"


def test_push_zone(sim):
    zone = sim.zone_center()
    sim.set_object_pose("red_cube", (zone[0] + 0.02, zone[1] - 0.02, CUBE_HALF + 0.001))
    sim.set_object_pose("green_cube", (zone[0] + 0.1, zone[1] + 0.1, CUBE_HALF + 0.001))
    _settle(sim)
    assert success(sim, "push", ("red_cube",))
    assert not success(sim, "push", ("green_cube",))


def test_drawer_open_and_closed(sim):
    sim.set_drawer(0.0)
    _settle(sim, 0.1)
    assert success(sim, "close_drawer", ()) and not success(sim, "open_drawer", ())
    sim.set_drawer(0.15)
    _settle(sim, 0.1)
    assert success(sim, "open_drawer", ()) and not success(sim, "close_drawer", ())


def test_in_drawer(sim):
    sim.set_drawer(0.15)
    _settle(sim, 0.1)
    front, _ = sim.object_pose("drawer")
    sim.set_object_pose("blue_cube", (front[0] + 0.06, front[1], 0.025 + CUBE_HALF + 0.002))
    _settle(sim)
    assert success(sim, "place", ("blue_cube", "drawer"))
    assert not success(sim, "place", ("red_cube", "drawer"))
