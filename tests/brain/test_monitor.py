import numpy as np

from embodia.body.scene import CUBE_HALF
from embodia.brain.monitor import Monitor
from embodia.brain.state import TABLE, State, lit

from .executors import SimExecutor, StateExecutor


def to_table(state: State, cube: str) -> State:
    s = state.copy()
    s.support[cube] = TABLE
    s.holder.pop(cube, None)
    return s


def test_dropped_cube_is_picked_again(planner, scenes):
    state = State.from_scene_graph(scenes["pick/0"])
    plan = planner.plan("put the red cube in the bowl", state)
    ex = StateExecutor(state, lambda i, step, s: to_table(s, "red_cube") if i == 0 else s)
    report = Monitor(planner, ex).run(plan)
    assert report.success and report.retries == 1 and report.replans == 0
    assert ex.log == ["pick(red_cube)", "pick(red_cube)", "place(red_cube, bowl)"]
    first = report.outcomes[0]
    assert first.action == "retry" and first.failed == ["held(red_cube, main)", "not on(red_cube, table)"]
    assert "the red cube on the table" in first.reason


def test_cube_knocked_off_target_triggers_a_replan(planner, scenes):
    state = State.from_scene_graph(scenes["pick/0"])
    plan = planner.plan("put the red cube on the plate and the blue cube in the bowl", state)
    order = [s.args[0] for s in plan.steps if s.skill == "pick"]
    first_placed = plan.steps[1].args[0]
    # while the second cube is being picked, the first one is knocked off its target
    ex = StateExecutor(state, lambda i, step, s: to_table(s, first_placed) if i == 2 else s)
    report = Monitor(planner, ex).run(plan)
    assert report.success and report.replans == 1
    replan = next(o for o in report.outcomes if o.action == "replan")
    assert replan.ok is False and replan.broken and "a goal was undone" in replan.reason
    assert ex.log.count(f"pick({first_placed})") == 2 and len(order) == 2
    assert ex.state.holds(lit("on", "red_cube", "plate")) and ex.state.holds(lit("in", "blue_cube", "bowl"))


def test_failed_place_cannot_be_retried_so_it_replans(planner, scenes):
    state = State.from_scene_graph(scenes["pick/0"])
    plan = planner.plan("put the red cube in the bowl", state)
    ex = StateExecutor(state, lambda i, step, s: to_table(s, "red_cube") if i == 1 else s)
    report = Monitor(planner, ex).run(plan)
    assert report.success and report.replans == 1 and report.retries == 0
    assert "cannot retry" in report.outcomes[1].reason and "held(red_cube" in report.outcomes[1].reason
    assert ex.log == ["pick(red_cube)", "place(red_cube, bowl)", "pick(red_cube)", "place(red_cube, bowl)"]


def test_monitor_gives_up_after_bounded_replans(planner, scenes):
    state = State.from_scene_graph(scenes["pick/0"])
    plan = planner.plan("pick up the red cube", state)
    ex = StateExecutor(state, lambda i, step, s: to_table(s, "red_cube"))  # it always slips
    report = Monitor(planner, ex, max_retries=1, max_replans=2).run(plan)
    assert not report.success and report.replans == 2
    assert report.message.startswith("gave up after 2 replans")
    assert report.outcomes[-1].action == "give_up" and len(ex.log) == 6


def test_monitor_recovers_on_the_simulator(planner, make_env):
    """Real MuJoCo + scripted experts: the cube is dropped after the pick (teleported back to
    the table) and later knocked out of the bowl; the monitor retries, then replans."""
    env = make_env(skill="pick")
    env.reset(seed=0)
    graph = env.scene_graph()
    plan = planner.plan("put the red cube in the bowl", graph)
    start = np.array(graph.object("red_cube").position)

    def inject(i, step, env):
        if i in (0, 2):  # after the first pick and after the first place
            env.sim.data.ctrl[env.sim.arms["main"].finger_act] = 0.04
            env.sim.set_object_pose("red_cube", [start[0], start[1], CUBE_HALF + 0.002])
            env.sim.settle(0.5)

    ex = SimExecutor(env, seed=0, inject=inject)
    report = Monitor(planner, ex, max_retries=1, max_replans=2).run(plan)
    assert report.success, report.to_dict()
    assert report.retries >= 1 and report.replans >= 1
    assert ex.log[:2] == ["pick(red_cube)", "pick(red_cube)"]
    assert env.scene_graph().holds("in", "red_cube", "bowl")
