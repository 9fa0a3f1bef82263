"""LeRobot's own `lerobot-eval` on Meta-World, with the camera rendered the way our datasets are.

Runs ONLY in the side venv (`make lerobot-venv`; `.venv-lerobot/bin/python`, lerobot 0.6.1):

    .venv-lerobot/bin/python scripts/lerobot/eval_matched.py --image-size 84 -- \\
        --policy.path=CKPT --env.type=metaworld --env.task=reach-v3 --eval.n_episodes=10 \\
        --eval.batch_size=1 --seed=100000 --policy.device=cpu --output_dir=OUT \\
        --rename_map='{"observation.image": "observation.images.corner2"}'

Why a wrapper: lerobot.envs.metaworld renders corner2 at Meta-World's 480x480 with shadows and
reflections on, while our collector (embodia.body.suites.metaworld, the datasets both sides
train on) renders it at the image size with both off (~6-10x cheaper on CPU). A policy trained
on 84x84 frames must be scored on 84x84 frames, so this script swaps only the inner env's
`render()` for our renderer's settings (same camera, same position, same flip applied by LeRobot
after it) and then runs lerobot-eval's `main()` unchanged: its seeding (episode i: seed S+i),
rollout loop, step limit and success accounting are what the agreement check compares against.
--image-size 0 leaves LeRobot's rendering alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def patch_render(size: int) -> None:
    """Render corner2 at size x size, shadows/reflections off, skybox on, buffer at the size."""
    import mujoco
    from lerobot.envs import metaworld as lmw

    orig_init, orig_ensure = lmw.MetaworldEnv.__init__, lmw.MetaworldEnv._ensure_env

    def init(self: Any, *a: Any, **kw: Any) -> None:
        kw.setdefault("observation_width", size)  # the vector env's observation space
        kw.setdefault("observation_height", size)
        orig_init(self, *a, **kw)

    def ensure_env(self: Any) -> None:
        fresh = self._env is None
        orig_ensure(self)
        if not fresh:
            return
        env = self._env
        model = env.model
        cam = model.camera(self.camera_name).id
        if self.camera_name == "corner2" and cam != 2:  # LeRobot moves cam_pos[2]: it must be corner2
            raise SystemExit(f"eval_matched.py: corner2 is camera {cam}, not 2, in this Meta-World")
        model.vis.global_.offwidth = size
        model.vis.global_.offheight = size
        renderer = mujoco.Renderer(model, size, size)
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 1

        def render() -> Any:
            renderer.update_scene(env.data, camera=self.camera_name)
            return renderer.render()

        env.render = render

    lmw.MetaworldEnv.__init__ = init
    lmw.MetaworldEnv._ensure_env = ensure_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=84, help="0: LeRobot's own rendering")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("lerobot_args", nargs="*", help="after --: lerobot-eval's flags")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    if args.image_size:
        patch_render(args.image_size)
    from lerobot.scripts import lerobot_eval

    sys.argv = [sys.argv[0], *args.lerobot_args]
    lerobot_eval.main()


if __name__ == "__main__":
    main()
