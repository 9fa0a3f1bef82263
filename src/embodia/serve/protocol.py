"""The wire protocol of the policy server: what goes in, what comes out, and how errors look.

openpi-client compatible: the first frame after the handshake is a msgpack metadata map; each
binary frame the client sends is one observation map; each binary frame back is a map with
`actions` [H, D] float32 and `server_timing`. An error is a *text* frame (openpi-client raises
it as RuntimeError), here a JSON object {"error": kind, "message": ...} that names the problem
and never carries a traceback. The connection stays open after an error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
STATE = "observation.state"
ENV_STATE = "observation.environment_state"  # where every object is: an input of privileged policies only
IMAGE_PREFIX = "observation.images."
# openpi examples send the instruction as "prompt"; LeRobot datasets call it "task".
TASK_KEYS = ("task", "prompt")


class RequestError(ValueError):
    """A request the server refuses; `kind` is stable for clients and metrics, the message
    is for people."""

    KINDS = ("malformed", "too_large", "bad_observation", "wrong_embodiment",
             "inference_failed", "overloaded", "internal")

    def __init__(self, kind: str, message: str) -> None:
        assert kind in self.KINDS, kind
        super().__init__(message)
        self.kind = kind
        self.message = message

    def frame(self) -> str:
        return json.dumps({"error": self.kind, "message": self.message})

    @classmethod
    def from_frame(cls, text: str) -> RequestError:
        try:
            d = json.loads(text)
            return cls(d["error"] if d.get("error") in cls.KINDS else "internal", str(d["message"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls("internal", text[:500])


@dataclass(frozen=True)
class ObservationSpec:
    """What one observation must look like for the policy being served."""

    embodiment: str
    cameras: tuple[str, ...]
    image_size: int
    state_dim: int
    max_task_chars: int = 1000
    env_state_dim: int = 0  # > 0: the policy reads ENV_STATE (a privileged policy), so it is required
    # per camera (H, W), in the order of `cameras`, for a policy whose cameras differ in size (the
    # general core reads each dataset camera at its own size); empty: all image_size x image_size
    image_shapes: tuple[tuple[int, int], ...] = ()

    def image_shape(self, i: int) -> tuple[int, int, int]:
        """The (H, W, 3) the i-th camera's frames must have."""
        if self.image_shapes:
            return (*self.image_shapes[i], 3)
        return (self.image_size, self.image_size, 3)

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(IMAGE_PREFIX + c for c in self.cameras)

    @property
    def allowed_keys(self) -> frozenset[str]:
        """Keys the policy reads; any other string key is ignored (a robot or a simulator such
        as TabletopEnv may send more than this policy needs)."""
        extra = (ENV_STATE,) if self.env_state_dim else ()
        return frozenset((STATE, "embodiment", *TASK_KEYS, *self.image_keys, *extra))


@dataclass(frozen=True)
class Observation:
    """A checked observation: safe to stack into a batch."""

    state: np.ndarray  # float32 [S], finite
    images: dict[str, np.ndarray]  # key -> uint8 [H, W, 3]
    task: str
    env_state: np.ndarray | None = None  # float32 [E], finite; only when the spec asks for it
    ignored: tuple[str, ...] = ()  # keys the message carried that the policy does not read


def _bad(msg: str) -> RequestError:
    return RequestError("bad_observation", msg)


def validate_observation(obj: Any, spec: ObservationSpec) -> Observation:
    """Check one decoded message against the spec; every problem is a RequestError naming the
    key, the expected and the received shape/dtype."""
    if not isinstance(obj, dict):
        raise _bad(f"an observation must be a map, got {type(obj).__name__}")
    bad_keys = [k for k in obj if not isinstance(k, str)]
    if bad_keys:
        raise _bad(f"observation keys must be strings, got {bad_keys[0]!r:.60}")
    ignored = tuple(sorted(set(obj) - spec.allowed_keys))
    required = (STATE, *spec.image_keys, *((ENV_STATE,) if spec.env_state_dim else ()))
    missing = [k for k in required if k not in obj]
    if missing:
        also = f"; it has keys this policy does not read: {[k[:60] for k in ignored[:5]]}" if ignored else ""
        raise _bad(f"observation is missing {missing}{also}")
    emb = obj.get("embodiment")
    if emb is not None:
        if not isinstance(emb, str):
            raise _bad(f"'embodiment' must be a string, got {type(emb).__name__}")
        if emb and emb != spec.embodiment:
            raise RequestError("wrong_embodiment",
                               f"observation is from embodiment {emb[:60]!r}; this server drives {spec.embodiment!r}")
    task = next((obj[k] for k in TASK_KEYS if k in obj), None)
    if not isinstance(task, str) or not task.strip():
        raise _bad(f"observation needs a non-empty instruction string in 'task' (or 'prompt'), got {type(task).__name__}")
    if len(task) > spec.max_task_chars:
        raise _bad(f"'task' has {len(task)} characters, at most {spec.max_task_chars} allowed")

    state = _float_vector(obj, STATE, spec.state_dim)
    env_state = _float_vector(obj, ENV_STATE, spec.env_state_dim) if spec.env_state_dim else None
    images = {}
    for i, k in enumerate(spec.image_keys):
        want = spec.image_shape(i)
        img = obj[k]
        if not isinstance(img, np.ndarray):
            raise _bad(f"{k!r} must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise _bad(f"{k!r} must be uint8, got dtype {img.dtype}")
        if img.shape != want:
            raise _bad(f"{k!r} must have shape {want} (H, W, 3), got {img.shape}")
        images[k] = img
    return Observation(state, images, task, env_state, ignored)


def _float_vector(obj: dict, key: str, dim: int) -> np.ndarray:
    """A float array of shape (dim,) as float32, checked *after* the cast: a float64 1e300 is
    finite but becomes inf in float32, and the policy computes in float32."""
    x = obj[key]
    if not isinstance(x, np.ndarray):
        raise _bad(f"{key!r} must be a numpy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise _bad(f"{key!r} must be float32 (or another float), got dtype {x.dtype}")
    if x.shape != (dim,):
        raise _bad(f"{key!r} must have shape ({dim},), got {x.shape}")
    if not np.isfinite(x).all():
        raise _bad(f"{key!r} contains NaN or inf")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)  # a fresh, aligned, native-order copy
    if not np.isfinite(x32).all():
        i = int(np.flatnonzero(~np.isfinite(x32))[0])
        raise _bad(f"{key!r}[{i}] = {float(x[i]):.3g} is outside the float32 range (|x| <= 3.4e38)")
    return x32


@dataclass(frozen=True)
class Metadata:
    """The first frame on every connection: enough for a robot to check it is talking to a
    policy for its body, and to schedule requests."""

    embodiment: str
    action_space: dict  # ActionLayout.to_dict(): name, names, units, low, high, gripper_dims
    action_dim: int
    chunk_length: int  # H
    n_action_steps: int  # actions the policy expects to run per chunk (receding horizon)
    control_rate_hz: float
    observation: dict  # image keys and shape, state dim, dtypes
    max_message_bytes: int
    server: str = "embodia"
    protocol_version: int = PROTOCOL_VERSION
    rates: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rates"] = {"control_hz": self.control_rate_hz,
                      "chunk_hz": self.control_rate_hz / self.n_action_steps}
        return d


def make_metadata(cfg: Any, max_message_bytes: int) -> Metadata:
    """From a PolicyConfig; the action space comes from the embodiment's spec when it matches."""
    from embodia.body.embodiments import get_embodiment

    space: dict = {"name": cfg.action_space, "dim": cfg.action_dim}
    try:
        layout = get_embodiment(cfg.embodiment).action_layout(cfg.action_space)
        if layout.dim == cfg.action_dim:
            space = layout.to_dict() | {"dim": layout.dim}
    except ValueError:
        pass
    features = getattr(cfg, "features", None)  # the general core's: what its dataset's info.json said
    if features is not None and space.get("dim") == cfg.action_dim and "names" not in space:
        space["names"] = list(features.action_names)
    spec = spec_from_config(cfg)
    obs = {"image_keys": [IMAGE_PREFIX + c for c in cfg.cameras],
           "image_shape": [cfg.image_size, cfg.image_size, 3], "image_dtype": "uint8",
           "state_key": STATE, "state_dim": cfg.state_dim, "state_dtype": "float32",
           "task_keys": list(TASK_KEYS)}
    if spec.image_shapes:
        obs["image_shapes"] = {k: list(spec.image_shape(i)) for i, k in enumerate(spec.image_keys)}
    if features is not None:
        obs["features"] = features.to_dict()
    env_dim = spec.env_state_dim
    if env_dim:
        obs |= {"env_state_key": ENV_STATE, "env_state_dim": env_dim, "env_state_dtype": "float32"}
    return Metadata(embodiment=cfg.embodiment, action_space=space, action_dim=cfg.action_dim,
                    chunk_length=cfg.horizon, n_action_steps=cfg.n_action_steps,
                    control_rate_hz=float(cfg.control_rate_hz), observation=obs,
                    max_message_bytes=max_message_bytes)


def spec_from_config(cfg: Any) -> ObservationSpec:
    privileged = getattr(cfg, "env_state_input", "none") == "privileged"
    features = getattr(cfg, "features", None)
    shapes = tuple((c.height, c.width) for c in features.cameras) if features is not None else ()
    return ObservationSpec(cfg.embodiment, tuple(cfg.cameras), cfg.image_size, cfg.state_dim,
                           env_state_dim=int(getattr(cfg, "env_state_dim", 0)) if privileged else 0,
                           image_shapes=shapes)
