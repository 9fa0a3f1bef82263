"""embodia: an open, CPU-first generalist-robot stack (brain, cerebellum, data, body, runtime, serving)."""

import os

# MuJoCo picks its OpenGL backend when it is first imported; offscreen EGL is the only one
# that works on a headless laptop or CI box. A user who exports MUJOCO_GL keeps their choice.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"

ENV_ID = "embodia/Tabletop-v0"


def _register_env() -> None:
    """`gymnasium.make("embodia/Tabletop-v0")` must work after a plain `import embodia` (the
    README's promise); the entry point is a string, so MuJoCo loads only when an env is made."""
    import gymnasium as gym

    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="embodia.body.env:TabletopEnv")


_register_env()
