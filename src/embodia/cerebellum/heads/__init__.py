"""Action heads.

`flow.py`, `tokens.py` and `decoder.py` are the object-centric preset's heads (the shipped
checkpoints; `loss(memory, actions, pad)` / `sample(memory)`). The general core's heads
implement `base.ActionHead` and are named here, one line each, imported lazily by module path
so that a head's dependencies load only when it is chosen.
"""

from __future__ import annotations

import importlib

from embodia.cerebellum.heads.base import ActionHead, HeadSpec

HEADS: dict[str, str] = {
    "flow": "embodia.cerebellum.heads.flow_matching:FlowMatchingHead",
    "tokens": "embodia.cerebellum.heads.action_tokens:ActionTokensHead",
    "act": "embodia.cerebellum.heads.act:ACTHead",
    "diffusion": "embodia.cerebellum.heads.diffusion:DiffusionHead",
    "l1": "embodia.cerebellum.heads.l1_parallel:ParallelL1Head",
}


def check_head_name(name: str) -> str:
    """`name` if it is a registered head, else a ValueError listing them (before any work)."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; the heads are: {', '.join(HEADS)}")
    return name


def head_class(name: str) -> type[ActionHead]:
    """The class registered under `name` (its module is imported now)."""
    module, _, attr = HEADS[check_head_name(name)].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, ActionHead)):
        raise TypeError(f"head {name!r}: {HEADS[name]} is not an ActionHead subclass")
    return cls


def build_head(name: str, spec: HeadSpec) -> ActionHead:
    return head_class(name)(spec)


__all__ = ["HEADS", "ActionHead", "HeadSpec", "build_head", "check_head_name", "head_class"]
