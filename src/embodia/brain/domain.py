"""The tabletop as a PDDL domain in unified-planning, solved optimally by pyperplan.

Why STRIPS with many small actions: pyperplan (the pip-installable engine, pure Python)
handles typed STRIPS only, so each way a skill can start (pick from the table, from a
cube, out of the bowl...) is its own action and negative facts (`drawer_not_open`) are
fluents of their own. Every action maps back to exactly one body skill. The rules are
those written in `effects.py`; each plan found here is replayed through `effects.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass

from embodia.brain.state import HAND, LOOSE, TABLE, ZONE, Literal, State

# PDDL action name -> (body skill, how to build the skill's args from the action's params)
ACTION_SKILL = {
    "pick_table": "pick", "pick_loose": "pick", "unstack": "pick", "pick_bowl": "pick",
    "pick_plate": "pick", "pick_drawer": "pick", "place_bowl": "place", "place_plate": "place",
    "place_drawer": "place", "stack": "stack", "push": "push", "open_drawer": "open_drawer",
    "close_drawer": "close_drawer",
}
SUPPORT_FLUENT = {"bowl": "in_bowl", "plate": "on_plate", "drawer": "in_drawer", TABLE: "ontable",
                  LOOSE: "loose"}


@dataclass
class SearchResult:
    steps: list[tuple[str, tuple[str, ...]]] | None  # None: no plan exists
    status: str


class TabletopDomain:
    """Builds the domain once (its own unified-planning environment, so nothing global is
    touched) and answers `solve(state, goals)` with a minimal skill sequence."""

    def __init__(self) -> None:
        from unified_planning.environment import Environment
        from unified_planning.model import Fluent, InstantaneousAction, Problem

        env = Environment()
        env.credits_stream = None
        self.env = env
        self.Cube = env.type_manager.UserType("cube")
        B = env.type_manager.BoolType()
        C = self.Cube
        f: dict = {}
        for name in ("handempty", "plate_free", "drawer_open", "drawer_not_open", "drawer_closed",
                     "drawer_not_closed"):
            f[name] = Fluent(name, B, environment=env)
        for name in ("holding", "ontable", "loose", "clear", "in_bowl", "on_plate", "in_drawer",
                     "stackable", "inzone", "stowed"):
            f[name] = Fluent(name, B, environment=env, c=C)
        f["on"] = Fluent("on", B, environment=env, c=C, d=C)
        self.f = f
        actions = []

        def action(name: str, *params: str, pre=(), add=(), delete=()) -> None:
            a = InstantaneousAction(name, _env=env, **{p: C for p in params})
            ps = {p: a.parameter(p) for p in params}

            def ground(spec):
                fl, *args = spec
                return f[fl](*(ps[x] for x in args))

            for p in pre:
                a.add_precondition(ground(p))
            for e in add:
                a.add_effect(ground(e), True)
            for e in delete:
                a.add_effect(ground(e), False)
            actions.append(a)

        take = dict(add=[("holding", "c")], delete=[("handempty",), ("clear", "c"), ("stowed", "c")])
        for name, where, extra_pre, extra_add, extra_del in (
            ("pick_table", "ontable", [], [], [("inzone", "c")]),
            ("pick_loose", "loose", [], [], []),
            ("pick_bowl", "in_bowl", [], [], []),
            ("pick_plate", "on_plate", [], [("plate_free",)], []),
            ("pick_drawer", "in_drawer", [("drawer_open",)], [("stackable", "c")], []),
        ):
            action(name, "c", pre=[("handempty",), ("clear", "c"), (where, "c"), *extra_pre],
                   add=take["add"] + extra_add, delete=take["delete"] + [(where, "c"), *extra_del])
        action("unstack", "c", "d", pre=[("handempty",), ("clear", "c"), ("on", "c", "d")],
               add=take["add"] + [("clear", "d")], delete=take["delete"] + [("on", "c", "d")])
        put = dict(add=[("handempty",), ("clear", "c"), ("stowed", "c")], delete=[("holding", "c")])
        action("place_bowl", "c", pre=[("holding", "c")], add=put["add"] + [("in_bowl", "c")],
               delete=put["delete"])
        action("place_plate", "c", pre=[("holding", "c"), ("plate_free",)],
               add=put["add"] + [("on_plate", "c")], delete=put["delete"] + [("plate_free",)])
        action("place_drawer", "c", pre=[("holding", "c"), ("drawer_open",)],
               add=put["add"] + [("in_drawer", "c")], delete=put["delete"] + [("stackable", "c")])
        action("stack", "c", "d", pre=[("holding", "c"), ("clear", "d"), ("stackable", "d")],
               add=[("handempty",), ("clear", "c"), ("on", "c", "d")],
               delete=[("holding", "c"), ("clear", "d")])
        action("push", "c", pre=[("handempty",), ("clear", "c"), ("ontable", "c")], add=[("inzone", "c")])
        action("open_drawer", pre=[("handempty",), ("drawer_not_open",)],
               add=[("drawer_open",), ("drawer_not_closed",)],
               delete=[("drawer_not_open",), ("drawer_closed",)])
        action("close_drawer", pre=[("handempty",), ("drawer_not_closed",)],
               add=[("drawer_closed",), ("drawer_not_open",)],
               delete=[("drawer_not_closed",), ("drawer_open",)])
        base = Problem("tabletop", environment=env)
        for fl in f.values():
            base.add_fluent(fl, default_initial_value=False)
        for a in actions:
            base.add_action(a)
        self.base = base
        self._planner = env.factory.OneshotPlanner(name="pyperplan-opt")

    def close(self) -> None:
        self._planner.destroy()

    # ------------------------------------------------------------------ problem
    def problem(self, state: State, goals: list[Literal]):
        """The PDDL problem for reaching `goals` from `state` (a clone of the domain)."""
        from unified_planning.model import Object

        p = self.base.clone()
        objs = {c: Object(c, self.Cube, self.env) for c in state.cubes}
        p.add_objects(objs.values())
        f = self.f
        init = []
        if not state.holder:
            init.append(f["handempty"]())
        if not state.on_top_of("plate"):
            init.append(f["plate_free"]())
        init.append(f["drawer_open"]() if state.drawer == "open" else f["drawer_not_open"]())
        init.append(f["drawer_closed"]() if state.drawer == "closed" else f["drawer_not_closed"]())
        for c in state.cubes:
            o, s = objs[c], state.support[c]
            if s == HAND:
                init.append(f["holding"](o))
            elif s in objs:
                init.append(f["on"](o, objs[s]))
            else:
                init.append(f[SUPPORT_FLUENT[s]](o))
            if s != HAND and not state.on_top_of(c):
                init.append(f["clear"](o))
            if s == HAND or state.base(c) != "drawer":
                init.append(f["stackable"](o))
            if c in state.zone:
                init.append(f["inzone"](o))
            if s != HAND and state.base(c) in ("bowl", "plate", "drawer"):
                init.append(f["stowed"](o))
        for fact in init:
            p.set_initial_value(fact, True)
        for g in goals:
            for fact in self._goal_fluents(state, g, objs):
                p.add_goal(fact)
        return p

    def _goal_fluents(self, state: State, g: Literal, objs: dict) -> list:
        f, name, args = self.f, g.fact.name, g.fact.args
        if not g.positive:
            raise ValueError(f"the planner takes positive goals only, got {g}")
        if name in ("open", "closed") and args == ("drawer",):
            return [f[f"drawer_{name}"]()]
        if not args or args[0] not in objs:
            raise ValueError(f"goal {g} is not about a cube in the scene")
        c = objs[args[0]]
        if name == "held":
            return [f["holding"](c)]
        if state.holds(g) and name in ("in", "on", "stowed") and args[-1] not in (ZONE, *objs):
            return self._freeze(state, args[0], objs)  # already true: keep it that way
        # (a cube already on the cube asked for keeps that one relation, not the stack below it:
        # "green at the bottom, then blue, then yellow" with yellow on blue moves blue with yellow)
        if name == "in" and args[1] == ZONE:
            return [f["inzone"](c)]
        if name == "in" and args[1] in ("bowl", "drawer"):
            return [f[SUPPORT_FLUENT[args[1]]](c)]
        if name == "on" and args[1] == "plate":
            return [f["on_plate"](c)]
        if name == "on" and args[1] in objs:
            return [f["on"](c, objs[args[1]])]
        if name == "stowed":
            return [f["stowed"](c)]
        raise ValueError(f"no PDDL goal for {g}")

    def _freeze(self, state: State, cube: str, objs: dict) -> list:
        out, c = [], cube
        while True:
            s = state.support[c]
            if s in objs:
                out.append(self.f["on"](objs[c], objs[s]))
                c = s
                continue
            out.append(self.f[SUPPORT_FLUENT[s]](objs[c]))
            return out

    # ------------------------------------------------------------------ search
    def solve(self, state: State, goals: list[Literal]) -> SearchResult:
        from unified_planning.engines import PlanGenerationResultStatus as St

        result = self._planner.solve(self.problem(state, goals))
        if result.status not in (St.SOLVED_SATISFICING, St.SOLVED_OPTIMALLY) or result.plan is None:
            return SearchResult(None, result.status.name)
        steps = []
        for ai in result.plan.actions:
            name = ai.action.name
            params = tuple(str(p) for p in ai.actual_parameters)
            skill = ACTION_SKILL[name]
            if skill == "pick":
                args: tuple[str, ...] = params[:1]
            elif skill == "place":
                args = (params[0], name.removeprefix("place_"))
            else:
                args = params
            steps.append((skill, args))
        return SearchResult(steps, result.status.name)

    def pddl(self, state: State, goals: list[Literal]) -> tuple[str, str]:
        """(domain, problem) as PDDL text, for reading and for other planners."""
        from unified_planning.io import PDDLWriter

        w = PDDLWriter(self.problem(state, goals))
        return w.get_domain(), w.get_problem()
