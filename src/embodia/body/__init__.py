"""The body pillar: embodiments, the tabletop world, skills, scripted experts, HAL drivers."""

import gymnasium as gym

from embodia.body.embodiment import ActionLayout, ArmSpec, CameraSpec, Embodiment
from embodia.body.embodiments import get_embodiment, list_embodiments
from embodia.body.env import TabletopEnv
from embodia.body.skills import SKILLS
from embodia.body.tasks import TASKS

ENV_ID = "embodia/Tabletop-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="embodia.body.env:TabletopEnv")

__all__ = [
    "ActionLayout", "ArmSpec", "CameraSpec", "Embodiment", "ENV_ID", "SKILLS", "TASKS",
    "TabletopEnv", "get_embodiment", "list_embodiments",
]
