"""Meta-World corner2 rendering cost per frame (CPU), printed as JSON.

Variants, all of the same scenes (one push-v3 episode under its scripted expert):
- `suite`: what `body/suites/metaworld.py` renders (84x84 by default, offscreen buffer at the
  image size, shadows and reflections off, skybox on as in LeRobot's images);
- `skybox_off`: the same with the skybox off too (as `body/rendering.py` renders the tabletop);
- `full_buffer_effects_on`: the same image size from MuJoCo's 640x480 offscreen buffer with
  shadows and reflections on (Meta-World's model defaults);
- `metaworld_native_480`: Meta-World's own `render()` at its default 480x480 (what
  `lerobot.envs.metaworld` renders before resizing).
Each number is the median over `--frames` renders after 5 warm-up renders.

    OMP_NUM_THREADS=1 python benchmarks/metaworld_render.py [--size 84] [--frames 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported: it picks its GL then

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from embodia.body.suites import get_suite  # noqa: E402
from embodia.body.suites.metaworld import CAMERA  # noqa: E402
from embodia.eval.machine import machine_info  # noqa: E402


def _renderer(model: mujoco.MjModel, size: int, buffer: tuple[int, int] | None, effects: bool,
              skybox: bool) -> mujoco.Renderer:
    w, h = buffer or (size, size)
    model.vis.global_.offwidth, model.vis.global_.offheight = w, h
    r = mujoco.Renderer(model, size, size)
    r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(effects)
    r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(effects)
    r.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = int(skybox)
    return r


def _time(render, frames: int) -> float:
    for _ in range(5):
        render()
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        render()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=84)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    suite = get_suite("metaworld")
    env = suite.make_env("push-v3", image_size=args.size)
    expert = suite.make_expert("push-v3", env)
    obs, _ = env.reset(seed=0)
    for _ in range(30):  # a scene mid-episode: the arm over the puck
        obs, *_ = env.step(expert.select_action(obs))
    mw = env._env
    out: dict = {"benchmark": "metaworld_render", "task": "push-v3", "camera": CAMERA, "size": args.size,
                 "frames": args.frames, "machine": machine_info(), "ms_per_frame": {}}
    out["ms_per_frame"]["suite"] = _time(env.render, args.frames)
    for name, buffer, effects, skybox in [("skybox_off", None, False, False),
                                          ("full_buffer_effects_on", (640, 480), True, True)]:
        r = _renderer(mw.model, args.size, buffer, effects, skybox)

        def render(r=r) -> np.ndarray:
            r.update_scene(mw.data, camera=CAMERA)
            return r.render()

        out["ms_per_frame"][name] = _time(render, args.frames)
        r.close()
    from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

    mw.model.vis.global_.offwidth, mw.model.vis.global_.offheight = 640, 480
    native = MujocoRenderer(mw.model, mw.data, None, 480, 480, camera_name=CAMERA)
    out["ms_per_frame"]["metaworld_native_480"] = _time(lambda: native.render("rgb_array"), max(10, args.frames // 4))
    native.close()
    env.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
