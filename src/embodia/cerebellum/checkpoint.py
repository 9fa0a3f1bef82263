"""Checkpoints: a folder with model.safetensors, config.json (with a format version) and
stats.json (normalization). Loading validates all three; no pickle anywhere."""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.ensemble import ENSEMBLE_FILE, PolicyEnsemble
from embodia.cerebellum.generalist import GeneralistPolicy
from embodia.cerebellum.language import LanguageEncoder
from embodia.cerebellum.policy import ACTION, STATE, VLAPolicy
from embodia.data.layout import atomic_write_bytes
from embodia.data.normalize import Normalizer

FILES = ("model.safetensors", "config.json", "stats.json")
# config.json's `architecture`: which model the folder holds. A config without the field was
# written before the general core existed and is the object-centric preset's.
OBJECT_CENTRIC, GENERAL = "object-centric", "general"
ARCHITECTURES = (OBJECT_CENTRIC, GENERAL)
# the largest file a loader reads: JSON is read whole into memory, so a bound keeps a
# symlink to a huge or endless file from eating it (shipped config.json: ~21 kB)
MAX_JSON_BYTES = 64 * 2**20
MAX_WEIGHTS_BYTES = 16 * 2**30


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the field."""


def atomic_write(path: Path, data: bytes) -> None:
    """Every checkpoint file is written through here: a temp file in the same folder,
    fsync'ed, then renamed over the old one, so a crash leaves the old file or the new
    one, never a truncated one."""
    atomic_write_bytes(Path(path), data)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A safetensors file, written atomically."""
    atomic_write(path, safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))


def checked_file(path: Path, limit: int) -> Path:
    """`path` if it is a regular file (after symlinks) of at most `limit` bytes; a FIFO,
    a device such as /dev/zero or an oversized file is refused before anything is read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file {path} is missing") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path} is not a regular file")
    if st.st_size > limit:
        raise CheckpointError(f"{path} is {st.st_size} bytes, more than the {limit} a checkpoint file may have")
    return path


def read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint JSON file that must hold an object, read with the size guard."""
    checked_file(path, MAX_JSON_BYTES)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"corrupt {path}: {str(e)[:200]}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(obj).__name__ if obj is not None else 'null'}")
    return obj


def save_checkpoint(policy: VLAPolicy | GeneralistPolicy, path: str | Path, extra: dict | None = None) -> Path:
    """Write the three files atomically, the weights last (other files in the folder, such
    as training state, are left alone). config.json names the architecture."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"architecture": OBJECT_CENTRIC} | policy.cfg.to_dict()  # a general config names itself
    atomic_write(path / "config.json", json.dumps(cfg | {"extra": extra or {}}, indent=2).encode())
    atomic_write(path / "stats.json", json.dumps(policy.normalizer.to_dict(), indent=2).encode())
    save_tensors(policy.state_dict(), path / "model.safetensors")
    return path


def load_checkpoint(path: str | Path, language: LanguageEncoder | None = None,
                    embodiment: str | None = None) -> VLAPolicy | GeneralistPolicy | PolicyEnsemble:
    """A checkpoint folder -> its policy, validated; a folder with `ensemble.json` -> a
    `PolicyEnsemble` of the checkpoints it names (one language encoder shared). Anything
    wrong with a file raises CheckpointError naming the file and the field; a missing file
    FileNotFoundError."""
    path = Path(path)
    if (path / ENSEMBLE_FILE).exists():
        return _load_ensemble(path, language, embodiment)
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is missing {missing}")
    raw = read_json_object(path / "config.json")
    raw.pop("extra", None)
    arch = raw.get("architecture", OBJECT_CENTRIC)
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path / 'config.json'}: architecture must be one of {list(ARCHITECTURES)}, "
                              f"got {arch!r}"[:300])
    if arch == GENERAL:
        return _load_general(path, raw, language, embodiment)
    raw.pop("architecture", None)
    try:
        cfg = PolicyConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from None
    if embodiment is not None and cfg.embodiment != embodiment:
        raise CheckpointError(f"checkpoint {path} drives {cfg.embodiment!r}, not {embodiment!r}")
    normalizer = _load_stats(path / "stats.json")
    weights = load_tensors(path / "model.safetensors")
    try:
        policy = VLAPolicy(cfg, normalizer, language)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"{path / 'config.json'} describes no buildable policy: {str(e)[:300]}") from None
    try:
        policy.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path / 'model.safetensors'} does not match config.json: {str(e)[:300]}") from None
    policy.eval()
    return policy


def _load_general(path: Path, raw: dict, language: LanguageEncoder | None, embodiment: str | None) -> GeneralistPolicy:
    """A general-core checkpoint: its features and statistics must agree (widths), then the
    weights must match the architecture the config describes."""
    from embodia.cerebellum.generalist import GeneralistConfig, GeneralistPolicy

    try:
        cfg = GeneralistConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}"[:400]) from None
    if embodiment is not None and cfg.embodiment != embodiment:
        raise CheckpointError(f"checkpoint {path} drives {cfg.embodiment!r}, not {embodiment!r}")
    normalizer = _load_stats(path / "stats.json")
    for key, dim in ((STATE, cfg.state_dim), (ACTION, cfg.action_dim)):
        got = normalizer.features[key].shift.shape
        if got != (dim,):
            raise CheckpointError(f"{path / 'stats.json'}: statistics of {key!r} have shape {got}, but "
                                  f"config.json's features give it {dim} values")
    weights = load_tensors(path / "model.safetensors")
    try:
        policy = GeneralistPolicy(cfg, normalizer, language)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, ImportError) as e:
        raise CheckpointError(f"{path / 'config.json'} describes no buildable policy: {str(e)[:300]}") from None
    try:
        policy.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path / 'model.safetensors'} does not match config.json: {str(e)[:300]}") from None
    policy.eval()
    return policy


def _load_ensemble(path: Path, language: LanguageEncoder | None, embodiment: str | None) -> PolicyEnsemble:
    """Members are plain checkpoints: an ensemble naming an ensemble (itself, or a cycle
    through others) is refused, not recursed into."""
    file = path / ENSEMBLE_FILE
    members = read_json_object(file).get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise CheckpointError(f"{file}: 'members' must be a list of checkpoint paths, got {members!r}"[:300])
    for m in members:
        if (path / m).resolve() == path.resolve():
            raise CheckpointError(f"{file}: member {m!r} is the ensemble itself")
        if (path / m / ENSEMBLE_FILE).exists():
            raise CheckpointError(f"{file}: member {m!r} is itself an ensemble; members must be plain checkpoints")
    language = language or LanguageEncoder()
    policies = [load_checkpoint(path / m, language, embodiment) for m in members]
    try:
        return PolicyEnsemble(policies)
    except ValueError as e:
        raise CheckpointError(f"{file}: {e}") from None


def _load_stats(file: Path) -> Normalizer:
    raw = read_json_object(file)
    bad = _first_non_finite(raw.get("stats"))
    if bad is not None:
        raise CheckpointError(f"{file}: stats{bad} is not a finite number")
    try:
        normalizer = Normalizer.from_dict(raw)
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(f"corrupt {file}: {str(e)[:200]}") from None
    for key in (STATE, ACTION):
        if key not in normalizer.keys:
            raise CheckpointError(f"{file} has no statistics for {key!r}")
    return normalizer


def _first_non_finite(obj: Any, where: str = "") -> str | None:
    """Where in a JSON tree a number is NaN or infinite (JSON allows NaN), else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        found = _first_non_finite(v, f"{where}[{k!r}]")
        if found is not None:
            return found
    return None


def load_tensors(file: Path) -> dict[str, torch.Tensor]:
    """The tensors, every floating-point one finite (NaN weights would act as NaN actions)."""
    checked_file(file, MAX_WEIGHTS_BYTES)
    try:
        weights = load_file(str(file))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"corrupt {file}: {str(e)[:200]}") from None
    for name, t in weights.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{file}: tensor {name!r} holds NaN or infinite values")
    return weights


def load_extra(path: str | Path) -> dict:
    """The training record a checkpoint's config.json keeps under "extra"."""
    extra = read_json_object(Path(path) / "config.json").get("extra", {})
    return extra if isinstance(extra, dict) else {}


__all__ = ["CheckpointError", "atomic_write", "save_tensors", "load_tensors", "save_checkpoint", "load_checkpoint", "load_extra",
           "torch"]
