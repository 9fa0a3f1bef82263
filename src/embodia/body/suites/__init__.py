"""External benchmark suites behind the env contract, registry by name.

A suite maps task names to envs with embodia's observation keys (`observation.state`,
`observation.environment_state`, `observation.images.<camera>`, `task`, `embodiment`), seeded
so seed S fixes the episode, plus the suite's own scripted experts behind `reset()` /
`select_action(obs)`. Adding one = one module with a suite object + one entry below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _suites() -> dict[str, Callable[[], Any]]:
    def metaworld() -> Any:
        from embodia.body.suites.metaworld import MetaWorldSuite

        return MetaWorldSuite()

    return {"metaworld": metaworld}


def list_suites() -> list[str]:
    return sorted(_suites())


def get_suite(name: str) -> Any:
    """The suite called `name` (ValueError listing the known ones otherwise)."""
    suites = _suites()
    if name not in suites:
        raise ValueError(f"unknown suite {name!r}; known: {sorted(suites)}")
    return suites[name]()
