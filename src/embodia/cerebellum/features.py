"""A general policy's inputs and outputs, read from a LeRobot-v3 dataset's `meta/info.json`.

Why: the general core must train on any LeRobot dataset, including one recorded on a robot
that `body/embodiments` has never heard of. Everything it needs to know is in the features
table: every `observation.images.*` camera (its size), `observation.state` and `action` (their
widths and names), the frame rate and the robot type. The checkpoint records these features,
so serving and evaluation know what an observation must look like, and resuming or adding a
dataset that disagrees is refused by name before any work.

`observation.environment_state` (where every object is; simulators record it) is noted so
that it can be an auxiliary training target; it is never a policy input.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
ACTION = "action"
ENV_STATE = "observation.environment_state"
CAMERA_DTYPES = ("video", "image")


@dataclass(frozen=True)
class CameraFeature:
    """One camera: `name` is the key without `observation.images.`; frames are H×W×3 uint8."""

    name: str
    height: int
    width: int
    dtype: str = "video"

    @property
    def key(self) -> str:
        return IMAGE_PREFIX + self.name

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)


@dataclass
class PolicyFeatures:
    """What a general policy reads and writes (saved in config.json as `features`)."""

    cameras: list[CameraFeature]
    state_names: list[str]
    action_names: list[str]
    fps: float
    robot_type: str
    env_state_names: list[str] = field(default_factory=list)  # training-only target, never an input

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def env_state_dim(self) -> int:
        return len(self.env_state_names)

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def camera(self, name: str) -> CameraFeature:
        for c in self.cameras:
            if c.name == name:
                return c
        raise ValueError(f"no camera {name!r}; cameras: {self.camera_names}")

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_info(cls, info: dict[str, Any], where: str = "info.json") -> PolicyFeatures:
        """From a parsed info.json; a missing state or action, or a camera whose size cannot
        be read, is a ValueError naming the field and `where`."""
        feats = info.get("features")
        if not isinstance(feats, dict):
            raise ValueError(f"{where}: no 'features' table")
        for key in (STATE, ACTION):
            if key not in feats:
                raise ValueError(f"{where}: features lack {key!r} (a policy needs "
                                 f"{'proprioception' if key == STATE else 'actions to imitate'})")
        cams = []
        for key, spec in feats.items():
            if not key.startswith(IMAGE_PREFIX):
                continue
            if spec.get("dtype") not in CAMERA_DTYPES:
                raise ValueError(f"{where}: feature {key!r} has dtype {spec.get('dtype')!r}; cameras are "
                                 f"{' or '.join(CAMERA_DTYPES)}")
            cams.append(CameraFeature(key.removeprefix(IMAGE_PREFIX), *_height_width(key, spec, where),
                                      dtype=spec["dtype"]))
        fps = info.get("fps")
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
            raise ValueError(f"{where}: fps must be a positive number, got {fps!r}")
        robot = info.get("robot_type") or (info.get("embodia") or {}).get("embodiment") or "unknown"
        return cls(cameras=sorted(cams, key=lambda c: c.name),
                   state_names=_vector_names(STATE, feats[STATE], where),
                   action_names=_vector_names(ACTION, feats[ACTION], where),
                   fps=float(fps), robot_type=str(robot),
                   env_state_names=_vector_names(ENV_STATE, feats[ENV_STATE], where) if ENV_STATE in feats else [])

    @classmethod
    def from_dataset(cls, root: str | Path) -> PolicyFeatures:
        path = Path(root) / "meta" / "info.json"
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no dataset at {root} (missing {path})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupt {path}: {e}") from None
        return cls.from_info(info, str(path))

    @classmethod
    def from_datasets(cls, roots: list[str | Path]) -> PolicyFeatures:
        """The features every dataset shares; two that disagree are a ValueError naming both
        and the field. The environment state is kept only when all of them record the same."""
        if not roots:
            raise ValueError("no datasets given")
        first = cls.from_dataset(roots[0])
        for r in roots[1:]:
            other = cls.from_dataset(r)
            first.check_matches(other, f"{roots[0]}", f"{r}", env_state=False)
            if other.env_state_names != first.env_state_names:
                first.env_state_names = []
        return first

    # ------------------------------------------------------------------ checks
    def check_matches(self, other: PolicyFeatures, mine: str, theirs: str, env_state: bool = False,
                      robot_type: bool = True) -> None:
        """ValueError naming the first field where `other` differs from these features."""
        def differ(what: str, a: object, b: object) -> None:
            raise ValueError(f"{what} differs: {mine} has {a}, {theirs} has {b}")

        if [c.name for c in self.cameras] != [c.name for c in other.cameras]:
            differ("cameras", self.camera_names, other.camera_names)
        for a, b in zip(self.cameras, other.cameras, strict=True):
            if a.shape != b.shape:
                differ(f"camera {a.key!r} shape (H, W, 3)", a.shape, b.shape)
        if self.state_dim != other.state_dim:
            differ(f"{STATE} width", self.state_dim, other.state_dim)
        if self.action_dim != other.action_dim:
            differ(f"{ACTION} width", self.action_dim, other.action_dim)
        if self.action_names != other.action_names:
            differ(f"{ACTION} names", self.action_names, other.action_names)
        if self.state_names != other.state_names:
            differ(f"{STATE} names", self.state_names, other.state_names)
        if float(self.fps) != float(other.fps):
            differ("fps", self.fps, other.fps)
        if robot_type and self.robot_type != other.robot_type:
            differ("robot_type", repr(self.robot_type), repr(other.robot_type))
        if env_state and self.env_state_names != other.env_state_names:
            differ(f"{ENV_STATE} names", self.env_state_names, other.env_state_names)

    def select_cameras(self, names: list[str]) -> PolicyFeatures:
        """These features with only the cameras `names` (in that order); an unknown one is named."""
        cams = [self.camera(n) for n in names]
        return PolicyFeatures(cams, list(self.state_names), list(self.action_names), self.fps, self.robot_type,
                              list(self.env_state_names))

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyFeatures:
        try:
            cams = [CameraFeature(**c) for c in d["cameras"]]
            out = cls(cams, list(d["state_names"]), list(d["action_names"]), float(d["fps"]), str(d["robot_type"]),
                      list(d.get("env_state_names", [])))
        except (KeyError, TypeError) as e:
            raise ValueError(f"features: {e}") from None
        for c in cams:
            if not (isinstance(c.height, int) and isinstance(c.width, int) and c.height > 0 and c.width > 0):
                raise ValueError(f"features: camera {c.name!r} has size {c.height}x{c.width}")
        if not out.state_names or not out.action_names:
            raise ValueError("features: state_names and action_names must not be empty")
        return out


def _height_width(key: str, spec: dict, where: str) -> tuple[int, int]:
    """(H, W) of a camera feature: by its axis names when given (LeRobot writes
    ["height", "width", "channels"], sometimes channels first), else H×W×3 or 3×H×W."""
    shape = [int(x) for x in (spec.get("shape") or [])]
    names = spec.get("names")
    if len(shape) != 3:
        raise ValueError(f"{where}: camera {key!r} has shape {shape}; expected 3 axes (H, W, 3)")
    if isinstance(names, list) and len(names) == 3 and {"height", "width"} <= set(names):
        h, w = shape[names.index("height")], shape[names.index("width")]
    elif shape[-1] == 3:
        h, w = shape[0], shape[1]
    elif shape[0] == 3:
        h, w = shape[1], shape[2]
    else:
        raise ValueError(f"{where}: camera {key!r} has shape {shape}; which axes are height and width?")
    c = shape[names.index("channels")] if isinstance(names, list) and "channels" in names else 3
    if c != 3:
        raise ValueError(f"{where}: camera {key!r} has {c} channels; the encoders read RGB (3)")
    return h, w


def _vector_names(key: str, spec: dict, where: str) -> list[str]:
    """The names of a flat float feature's entries (LeRobot may nest them: {"motors": [...]})."""
    shape = spec.get("shape") or []
    if len(shape) != 1 or int(shape[0]) < 1:
        raise ValueError(f"{where}: {key!r} must be a flat vector, got shape {shape}")
    n = int(shape[0])
    names = spec.get("names")
    if isinstance(names, dict):  # e.g. {"motors": ["shoulder_pan", ...]}
        names = next((v for v in names.values() if isinstance(v, list)), None)
    if isinstance(names, list) and len(names) == n and all(isinstance(x, str) for x in names):
        return list(names)
    return [f"{key}.{i}" for i in range(n)]
