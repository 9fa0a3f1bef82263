"""Checkpoints: a folder with model.safetensors, config.json (with a format version) and
stats.json (normalization). Loading validates all three; no pickle anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.ensemble import ENSEMBLE_FILE, PolicyEnsemble
from embodia.cerebellum.language import LanguageEncoder
from embodia.cerebellum.policy import ACTION, STATE, VLAPolicy
from embodia.data.normalize import Normalizer

FILES = ("model.safetensors", "config.json", "stats.json")


def save_checkpoint(policy: VLAPolicy, path: str | Path, extra: dict | None = None) -> Path:
    """Write the three files under temp names, then rename each into place (other files in
    the folder, such as training state, are left alone)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    tmp = {name: path / f".{name}.tmp-{pid}" for name in FILES}
    state = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}
    save_file(state, str(tmp["model.safetensors"]))
    tmp["config.json"].write_text(json.dumps(policy.cfg.to_dict() | {"extra": extra or {}}, indent=2))
    tmp["stats.json"].write_text(json.dumps(policy.normalizer.to_dict(), indent=2))
    for name in ("config.json", "stats.json", "model.safetensors"):
        os.replace(tmp[name], path / name)
    return path


def load_checkpoint(path: str | Path, language: LanguageEncoder | None = None,
                    embodiment: str | None = None) -> VLAPolicy | PolicyEnsemble:
    """A checkpoint folder -> its policy, validated; a folder with `ensemble.json` -> a
    `PolicyEnsemble` of the checkpoints it names (one language encoder shared)."""
    path = Path(path)
    if (path / ENSEMBLE_FILE).exists():
        try:
            members = json.loads((path / ENSEMBLE_FILE).read_text())["members"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"corrupt {path / ENSEMBLE_FILE}: {e!r}") from None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ValueError(f"{path / ENSEMBLE_FILE}: 'members' must be a list of checkpoint paths, got {members!r}")
        language = language or LanguageEncoder()
        return PolicyEnsemble([load_checkpoint(path / m, language, embodiment) for m in members])
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is missing {missing}")
    try:
        raw = json.loads((path / "config.json").read_text())
        raw.pop("extra", None)
        cfg = PolicyConfig.from_dict(raw)
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"corrupt {path / 'config.json'}: {e}") from None
    if embodiment is not None and cfg.embodiment != embodiment:
        raise ValueError(f"checkpoint {path} drives {cfg.embodiment!r}, not {embodiment!r}")
    try:
        normalizer = Normalizer.from_dict(json.loads((path / "stats.json").read_text()))
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise ValueError(f"corrupt {path / 'stats.json'}: {e}") from None
    for key in (STATE, ACTION):
        if key not in normalizer.keys:
            raise ValueError(f"{path / 'stats.json'} has no statistics for {key!r}")
    try:
        weights = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"corrupt {path / 'model.safetensors'}: {e}") from None
    policy = VLAPolicy(cfg, normalizer, language)
    try:
        policy.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path / 'model.safetensors'} does not match config.json: {str(e)[:300]}") from None
    policy.eval()
    return policy


def load_extra(path: str | Path) -> dict:
    return json.loads((Path(path) / "config.json").read_text()).get("extra", {})


__all__ = ["save_checkpoint", "load_checkpoint", "load_extra", "torch"]
