"""embodia: an open, CPU-first generalist-robot stack (brain, cerebellum, data, body, runtime, serving)."""

import os

# MuJoCo picks its OpenGL backend when it is first imported; offscreen EGL is the only one
# that works on a headless laptop or CI box. A user who exports MUJOCO_GL keeps their choice.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
