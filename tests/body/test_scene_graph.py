import json

import numpy as np

from embodia.body.scene import CUBE_HALF
from embodia.body.scene_graph import build_scene_graph


def test_scene_graph_reports_objects_and_relations(make_env):
    env = make_env(skill="stack")
    _, info = env.reset(seed=2)
    obj, base = info["args"]
    g = env.scene_graph()
    names = {o.name for o in g.objects}
    assert {obj, base, "bowl", "plate", "drawer"} <= names
    assert g.holds("held", obj, "main")
    assert g.holds("on", base, "table")
    assert g.holds("closed", "drawer")
    assert g.object(obj).colour == obj.removesuffix("_cube")
    json.dumps(g.to_dict())  # serializable for the brain


def test_scene_graph_follows_the_simulator(make_env):
    env = make_env(skill="pick")
    env.reset(seed=3)
    sim = env.sim
    cubes = [n for n in sim.active if n.endswith("_cube")]
    a, b = cubes[:2]
    pos, q = sim.object_pose(b)
    sim.set_object_pose(a, pos + [0, 0, 2 * CUBE_HALF + 0.002], q)
    sim.set_drawer(0.15)
    sim.settle(0.5)
    g = build_scene_graph(sim)
    assert g.holds("on", a, b)
    assert not g.holds("on", a, "table")
    assert g.holds("open", "drawer")
    assert np.allclose(g.object(a).position[:2], pos[:2], atol=0.01)
