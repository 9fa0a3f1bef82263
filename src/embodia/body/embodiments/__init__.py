"""Embodiment registry: adding a robot = one module with `spec()` and `model()` + one entry."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from embodia.body.embodiment import Embodiment
from embodia.body.mjcf import RobotModel


def _modules() -> dict[str, Callable[[], ModuleType]]:
    def arm7() -> ModuleType:
        from embodia.body.embodiments import arm7 as mod

        return mod

    def humanoid_upper() -> ModuleType:
        from embodia.body.embodiments import humanoid_upper as mod

        return mod

    def sawyer() -> ModuleType:
        from embodia.body.embodiments import sawyer as mod

        return mod

    return {"arm7": arm7, "humanoid_upper": humanoid_upper, "sawyer": sawyer}


def list_embodiments() -> list[str]:
    return sorted(_modules())


def _module(name: str) -> ModuleType:
    mods = _modules()
    if name not in mods:
        raise ValueError(f"unknown embodiment {name!r}; known: {sorted(mods)}")
    return mods[name]()


def get_embodiment(name: str) -> Embodiment:
    return _module(name).spec()


def get_robot(embodiment: str | Embodiment) -> tuple[Embodiment, RobotModel]:
    name = embodiment if isinstance(embodiment, str) else embodiment.name
    mod = _module(name)
    return mod.spec(), mod.model()
