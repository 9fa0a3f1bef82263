"""`ObjectStateEstimator`: cameras + proprioception -> where every object is.

Why: a from-scratch CNN trained only through the action loss learns *where the red cube
is* slowly and, on a few thousand demonstrations, memorizes scenes instead; even a direct
regression of object positions from pooled CNN features misses small cubes (3-4 pixels
in a 96x96 overhead view) by ~10 cm after a CPU-sized budget. So localization gets the
densest signal there is: for the world-fixed camera, every object's position projects to
a known pixel (the camera matrix comes from the simulator, no labelling), and a
half-resolution heatmap per object is trained as a classification over pixels plus one
"absent" class. Its soft-argmax (sub-pixel image coordinates) and presence, with pooled
features of the moving wrist camera and proprioception, go through an MLP to the
object-state features (`ObjectState.features`) that the policy conditions on. The
privileged vector is only ever a training target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.object_state import PARKED_BELOW, ObjectState
from embodia.cerebellum.tracing import TraceCache, tracing_applies
from embodia.cerebellum.vision import FiLMBlock, SpatialSoftmax, image_to_float

HEATMAP_SIGMA = 1.0  # target blob width, in heatmap cells (2 image pixels)


def keypoint_objects(names: list[str]) -> list[tuple[str, int, int, int | None]]:
    """(object, x dim, y dim, z dim or None) for every object with a planar position."""
    idx = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        if n.endswith(".x") and n[:-2] + ".y" in idx:
            base = n[:-2]
            out.append((base, idx[n], idx[base + ".y"], idx.get(base + ".z")))
    return out


class CameraFeatures(nn.Module):
    """[N, 3, H, W] -> [N, 2 * keypoints + width] (keypoint x/y in [-1, 1], pooled features)."""

    def __init__(self, image_size: int, keypoints: int, width: int) -> None:
        super().__init__()
        specs = [(3, 32, 5, 2), (32, 64, 3, 2), (64, 64, 3, 1)]  # -> 1/4 resolution
        self.trunk = nn.ModuleList(FiLMBlock(*s, None) for s in specs)
        self.spatial_softmax = SpatialSoftmax(64, keypoints, -(-image_size // 4))
        self.pool = nn.Sequential(nn.Conv2d(64, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = image_to_float(images)
        for b in self.trunk:
            x = b(x, None)
        return torch.cat([self.spatial_softmax(x).flatten(1), self.pool(x)], dim=-1)


class ObjectHeatmaps(nn.Module):
    """[N, 3, H, W] -> logits [N, K, (H/2)*(W/2) + 1]: where each of K objects is, at half
    resolution, with the last class meaning "not in view"."""

    def __init__(self, image_size: int, objects: int, width: int = 32) -> None:
        super().__init__()
        self.side = -(-image_size // 2)
        self.trunk = nn.ModuleList([FiLMBlock(3, width, 5, 2, None), FiLMBlock(width, width, 3, 1, None)])
        self.context = nn.Conv2d(width, width, 3, padding=2, dilation=2)
        self.logits = nn.Conv2d(2 * width, objects, 1)
        self.absent = nn.Linear(2 * width, objects)
        lin = torch.arange(self.side, dtype=torch.float32)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("cells", torch.stack([xs.flatten(), ys.flatten()], -1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = image_to_float(images)
        for b in self.trunk:
            x = b(x, None)
        x = torch.cat([x, torch.relu(self.context(x))], dim=1)
        maps = self.logits(x).flatten(2)  # [N, K, side*side]
        return torch.cat([maps, self.absent(x.mean((2, 3)))[..., None]], dim=-1)

    def decode(self, logits: torch.Tensor, image_size: int) -> torch.Tensor:
        """logits -> [N, K, 3]: soft-argmax (u, v) in [-1, 1] of the image, and P(in view)."""
        p = torch.softmax(logits, dim=-1)
        present = 1.0 - p[..., -1]
        spatial = torch.softmax(logits[..., :-1], dim=-1)
        cell = spatial @ self.cells  # [N, K, 2] in cell units
        uv = (2.0 * (cell + 0.5)) / image_size * 2.0 - 1.0
        return torch.cat([uv, present[..., None]], dim=-1)

    def loss(self, logits: torch.Tensor, uv_pixels: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against a Gaussian blob at each visible object's projected pixel
        (uv_pixels [N, K, 2], continuous image coordinates) or the absent class."""
        c = uv_pixels / 2.0 - 0.5  # continuous cell index
        d2 = ((self.cells[None, None] - c[:, :, None]) ** 2).sum(-1)
        blob = torch.softmax(-d2 / (2 * HEATMAP_SIGMA**2), dim=-1)
        target = torch.cat([blob * visible[..., None], (1.0 - visible)[..., None]], dim=-1)
        return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def back_project(projection: torch.Tensor, uv: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Pixels uv [..., 2] of a camera with [3, 4] `projection` -> world (x, y) [..., 2] of the
    point on the horizontal plane at height z [...] that projects there (ray-plane cut)."""
    p = projection
    rhs = -(p[:, 2] * z[..., None] + p[:, 3])  # [..., 3]
    ray = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)
    a = torch.stack([p[:, 0].expand_as(ray), p[:, 1].expand_as(ray), -ray], dim=-1)  # [..., 3, 3]
    return torch.linalg.solve(a, rhs)[..., :2]


class ObjectStateEstimator(nn.Module):
    """(images per camera [B, 3, H, W], normalized state [B, S]) -> object-state features
    (`ObjectState.features`: normalized positions of present objects, presence flags).

    The first camera is the world-fixed one whose heatmaps are supervised. With its
    projection known, each object's keypoint is cut with the plane at the object's resting
    height: that geometric estimate is exact for anything standing on the table as soon as
    the heatmaps are, and the MLP (zero-initialized output) learns only the residual (a
    cube lifted in the gripper, yaw, the drawer's opening)."""

    def __init__(self, cfg: PolicyConfig, object_state: ObjectState) -> None:
        super().__init__()
        if not cfg.env_state_dim:
            raise ValueError("the estimator needs env_state_dim > 0 (train on data with observation.environment_state)")
        if not cfg.cameras:
            raise ValueError("the estimator needs at least one camera")
        self.cfg = cfg
        self.objects = keypoint_objects(cfg.env_names)
        if not self.objects:
            raise ValueError("the estimator found no objects with .x/.y in env_state_names")
        k, w = cfg.estimator_keypoints, cfg.estimator_width
        self.heatmaps = ObjectHeatmaps(cfg.image_size, len(self.objects))
        self.others = nn.ModuleList(CameraFeatures(cfg.image_size, k, w) for _ in cfg.cameras[1:])
        n_in = 3 * len(self.objects) + len(self.others) * (2 * k + w) + cfg.state_dim
        h = 4 * cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(n_in, h), nn.GELU(), nn.Linear(h, h), nn.GELU(),
                                 nn.Linear(h, cfg.env_feature_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        proj = torch.tensor(cfg.camera_projection, dtype=torch.float32) if cfg.camera_projection else None
        self.register_buffer("projection", proj if proj is not None else torch.zeros(0), persistent=False)
        self.object_state = object_state
        # where each keypoint's geometric estimate goes in the feature vector
        e = len(cfg.env_names)
        with_z = [g[0] for g in object_state.groups]
        self.register_buffer("_xy", torch.tensor([[x, y] for _, x, y, _ in self.objects]), persistent=False)
        self._z = [z for *_, z in self.objects]
        self._flag = [e + with_z.index(obj) if obj in with_z else None for obj, *_ in self.objects]
        self._fast = TraceCache("_estimate_flat")

    def geometric(self, kp: torch.Tensor) -> torch.Tensor:
        """Keypoints [B, K, 3] -> features [B, F] with each visible object's position from the
        ray-plane cut at its resting height, its presence flag, and zeros elsewhere."""
        os_ = self.object_state
        kp = kp.float()  # geometry in full precision, also under bf16 autocast
        b = kp.shape[0]
        out = kp.new_zeros(b, self.cfg.env_feature_dim)
        if self.projection.numel() == 0:
            return out
        size = self.cfg.image_size
        uv = (kp[..., :2] + 1.0) / 2.0 * size
        zero = kp.new_zeros(())
        z0 = torch.stack([os_.floor[z] if z is not None else zero for z in self._z])
        xy = back_project(self.projection, uv, z0.expand(b, -1))  # [B, K, 2]
        present = kp[..., 2]
        norm_xy = (xy - os_.mean[self._xy]) / os_.std[self._xy] * present[..., None]
        out = out.index_put((torch.arange(b, device=kp.device)[:, None, None], self._xy[None].expand(b, -1, -1)), norm_xy)
        for k, (z, flag) in enumerate(zip(self._z, self._flag, strict=True)):
            if z is not None:
                out[:, z] = (z0[k] - os_.mean[z]) / os_.std[z] * present[:, k]
            if flag is not None:
                out[:, flag] = present[:, k]
        return out

    def forward(self, images: list[torch.Tensor], state: torch.Tensor,
                return_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not return_logits and tracing_applies(self):
            return self._fast(self, state, *images)
        return self._estimate(images, state, return_logits)

    def _estimate_flat(self, state: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
        return self._estimate(list(images), state)

    def _estimate(self, images: list[torch.Tensor], state: torch.Tensor,
                  return_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.heatmaps(images[0])
        kp = self.heatmaps.decode(logits, self.cfg.image_size)
        feats = [cam(img) for cam, img in zip(self.others, images[1:], strict=True)]
        out = self.geometric(kp) + self.mlp(torch.cat([kp.flatten(1), *feats, state], dim=-1))
        return (out, logits) if return_logits else out

    def heatmap_loss(self, logits: torch.Tensor, raw_env: torch.Tensor) -> torch.Tensor:
        """Supervise the fixed camera's heatmaps with the projection of the true positions
        (raw_env [B, E] in metres); parked objects and ones outside the image are "absent"."""
        if self.projection.numel() == 0:
            return logits.new_zeros(())
        pts, present = [], []
        for _, x, y, z in self.objects:
            zz = raw_env[:, z] if z is not None else torch.zeros_like(raw_env[:, x])
            pts.append(torch.stack([raw_env[:, x], raw_env[:, y], zz, torch.ones_like(zz)], -1))
            present.append(zz > PARKED_BELOW)
        hom = torch.stack(pts, 1) @ self.projection.T  # [B, K, 3]
        depth = hom[..., 2:3]
        uv = hom[..., :2] / depth.clamp(min=1e-6)
        size = self.cfg.image_size
        inside = (depth[..., 0] > 0) & (uv >= 0).all(-1) & (uv < size).all(-1)
        visible = (inside & torch.stack(present, 1)).float()
        return self.heatmaps.loss(logits, uv.clamp(0, size - 1e-3), visible)
