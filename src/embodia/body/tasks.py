"""Multi-step tasks: named sequences of skill steps over objects bound at reset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskSpec:
    name: str
    steps: tuple[tuple[str, tuple[str, ...]], ...]  # (skill, args with $a/$b placeholders)
    description: str
    # Step predicates that must still hold when the task ends (pick or open_drawer are
    # stepping stones that later steps undo, so they are not goals).
    goal: tuple[int, ...] = ()


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("put_in_bowl", (("pick", ("$a",)), ("place", ("$a", "bowl"))),
                 "pick a cube and put it in the bowl", goal=(1,)),
        TaskSpec("put_on_plate", (("pick", ("$a",)), ("place", ("$a", "plate"))),
                 "pick a cube and put it on the plate", goal=(1,)),
        TaskSpec("stack_two", (("pick", ("$a",)), ("stack", ("$a", "$b"))),
                 "stack one cube on another", goal=(1,)),
        TaskSpec("sort_two", (("pick", ("$a",)), ("place", ("$a", "bowl")),
                              ("pick", ("$b",)), ("place", ("$b", "plate"))),
                 "one cube into the bowl, another onto the plate", goal=(1, 3)),
        TaskSpec("drawer_store", (("open_drawer", ()), ("pick", ("$a",)),
                                  ("place", ("$a", "drawer")), ("close_drawer", ())),
                 "open the drawer, put a cube inside, close it", goal=(2, 3)),
        # the shapes of benchmarks/long_horizon.py's instructions, for chained training data
        TaskSpec("drawer_plate", (("open_drawer", ()), ("pick", ("$a",)), ("place", ("$a", "plate"))),
                 "open the drawer, then put a cube on the plate", goal=(0, 2)),
        TaskSpec("bowl_push", (("pick", ("$a",)), ("place", ("$a", "bowl")), ("push", ("$b",))),
                 "one cube into the bowl, then push another to the zone", goal=(1, 2)),
        TaskSpec("stack_push", (("pick", ("$a",)), ("stack", ("$a", "$b")), ("push", ("$c",))),
                 "stack one cube on another, then push a third to the zone", goal=(1, 2)),
    )
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def task_placeholders(task: TaskSpec) -> list[str]:
    """The task's distinct cube placeholders ($a, $b, ...)."""
    return sorted({a for _, args in task.steps for a in args if a.startswith("$")})


def bind(task: TaskSpec, cubes: list[str], rng: np.random.Generator) -> list[tuple[str, tuple[str, ...]]]:
    """Replace the $a/$b placeholders with distinct cubes present in the scene."""
    names = task_placeholders(task)
    if len(cubes) < len(names):
        raise ValueError(f"task {task.name!r} needs {len(names)} cubes, the scene has {len(cubes)}")
    picked = list(rng.permutation(cubes)[: len(names)])
    binding = dict(zip(names, picked, strict=True))
    return [(s, tuple(binding.get(a, a) for a in args)) for s, args in task.steps]
