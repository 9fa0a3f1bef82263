"""Offscreen RGB rendering with shadows and reflections off (about 4x cheaper in software GL)."""

from __future__ import annotations

import mujoco
import numpy as np


class SceneRenderer:
    """One MuJoCo renderer per image size, shared by every camera of that size."""

    def __init__(self, model: mujoco.MjModel, skybox: bool = False) -> None:
        self.model = model
        self.skybox = skybox  # costs nothing measurable (benchmarks/metaworld_render.py)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def _get(self, height: int, width: int) -> mujoco.Renderer:
        key = (height, width)
        if key not in self._renderers:
            if height > self.model.vis.global_.offheight or width > self.model.vis.global_.offwidth:
                self.model.vis.global_.offheight = max(height, self.model.vis.global_.offheight)
                self.model.vis.global_.offwidth = max(width, self.model.vis.global_.offwidth)
            r = mujoco.Renderer(self.model, height, width)
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = int(self.skybox)
            self._renderers[key] = r
        return self._renderers[key]

    def render(self, data: mujoco.MjData, camera: str, height: int, width: int) -> np.ndarray:
        r = self._get(height, width)
        r.update_scene(data, camera=camera)
        return r.render()

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
