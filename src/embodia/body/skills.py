"""Meta-skills: their arguments, language templates (train and held-out paraphrases) and
success predicates computed from the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embodia.body import predicates as P
from embodia.body.sim import Simulation

PLACE_TARGETS = ("bowl", "plate", "drawer")


@dataclass(frozen=True)
class SkillSpec:
    name: str
    params: tuple[str, ...]
    templates: tuple[str, ...]  # used for training data
    heldout: tuple[str, ...]  # paraphrases kept out of training, for evaluation
    success: Callable[..., bool]
    max_steps: int  # episode budget at the embodiment's control rate (10 Hz)


def _place_success(sim: Simulation, obj: str, target: str) -> bool:
    if target == "plate":
        return P.is_on(sim, obj, "plate")
    return P.is_in(sim, obj, target)


SKILLS: dict[str, SkillSpec] = {
    s.name: s
    for s in (
        SkillSpec(
            "pick", ("obj",),
            ("pick up the {obj}", "grab the {obj}", "lift the {obj}", "take the {obj}",
             "pick the {obj} up", "grasp the {obj} and lift it"),
            ("could you raise the {obj}", "get hold of the {obj}"),
            lambda sim, obj: P.is_picked(sim, obj), 80,
        ),
        SkillSpec(
            "place", ("obj", "target"),
            ("put the {obj} {prep} the {target}", "place the {obj} {prep} the {target}",
             "drop the {obj} {prep} the {target}", "set the {obj} down {prep} the {target}",
             "move the {obj} {prep} the {target}"),
            ("release the {obj} {prep} the {target}", "deposit the {obj} {prep} the {target}"),
            _place_success, 80,
        ),
        SkillSpec(
            "stack", ("obj", "base"),
            ("stack the {obj} on the {base}", "put the {obj} on top of the {base}",
             "place the {obj} onto the {base}", "set the {obj} on the {base}"),
            ("build a tower with the {obj} over the {base}", "rest the {obj} atop the {base}"),
            lambda sim, obj, base: P.is_on(sim, obj, base), 80,
        ),
        SkillSpec(
            "push", ("obj",),
            ("push the {obj} to the white square", "slide the {obj} into the white square",
             "push the {obj} onto the target area", "shove the {obj} to the marked square"),
            ("nudge the {obj} over to the square", "sweep the {obj} into the marked area"),
            lambda sim, obj: P.is_in(sim, obj, "zone"), 120,
        ),
        SkillSpec(
            "open_drawer", (),
            ("open the drawer", "pull the drawer open", "pull out the drawer", "slide the drawer open"),
            ("get the drawer open", "draw the drawer out"),
            lambda sim: P.drawer_is_open(sim), 80,
        ),
        SkillSpec(
            "close_drawer", (),
            ("close the drawer", "push the drawer shut", "shut the drawer", "slide the drawer closed"),
            ("push the drawer back in", "get the drawer closed"),
            lambda sim: P.drawer_is_closed(sim), 60,
        ),
    )
}

NOUNS = {"cube": ("cube", "block"), "bowl": ("bowl",), "plate": ("plate", "dish"),
         "drawer": ("drawer",)}


def get_skill(name: str) -> SkillSpec:
    if name not in SKILLS:
        raise ValueError(f"unknown skill {name!r}; known: {sorted(SKILLS)}")
    return SKILLS[name]


def object_phrase(name: str, colour: str, cls: str, rng: np.random.Generator | None = None) -> str:
    noun = NOUNS.get(cls, (cls,))
    n = noun[0] if rng is None else noun[int(rng.integers(len(noun)))]
    return n if cls in ("drawer",) else f"{colour} {n}" if cls == "cube" else n


def instruction(skill: str, args: tuple[str, ...], colours: dict[str, str], classes: dict[str, str],
                rng: np.random.Generator | None = None, split: str = "train") -> str:
    """Language for one skill step. `split`: 'train', 'heldout' or 'all' paraphrases."""
    spec = get_skill(skill)
    if split == "train":
        pool = spec.templates
    elif split == "heldout":
        pool = spec.heldout
    elif split == "all":
        pool = spec.templates + spec.heldout
    else:
        raise ValueError(f"unknown instruction split {split!r}; use train, heldout or all")
    tmpl = pool[0] if rng is None else pool[int(rng.integers(len(pool)))]
    words = {}
    for param, value in zip(spec.params, args, strict=True):
        words[param] = object_phrase(value, colours.get(value, ""), classes.get(value, value), rng)
    if skill == "place":
        words["prep"] = "on" if args[1] == "plate" else "in"
        if args[1] == "drawer":
            words["prep"] = "into"
    return tmpl.format(**words)


def check_args(sim: Simulation, skill: str, args: tuple[str, ...]) -> None:
    """Clear errors for arguments that do not fit the skill or the scene."""
    spec = get_skill(skill)
    if len(args) != len(spec.params):
        raise ValueError(f"skill {skill!r} takes {list(spec.params)}, got {list(args)}")
    for p, a in zip(spec.params, args, strict=True):
        if a not in sim.catalogue:
            raise ValueError(f"unknown object {a!r} for {skill}.{p}; objects: {sorted(sim.catalogue)}")
        if sim.catalogue[a].cls == "cube" and a not in sim.active:
            raise ValueError(f"{a!r} is not in this scene; present: {list(sim.active)}")
    if skill == "place" and args[1] not in PLACE_TARGETS:
        raise ValueError(f"place target must be one of {list(PLACE_TARGETS)}, got {args[1]!r}")
    if skill in ("pick", "place", "stack", "push") and sim.catalogue[args[0]].cls != "cube":
        raise ValueError(f"{skill} works on cubes, {args[0]!r} is a {sim.catalogue[args[0]].cls}")
    if skill == "stack" and (sim.catalogue[args[1]].cls != "cube" or args[1] == args[0]):
        raise ValueError(f"stack needs another cube as base, got {args[1]!r}")


def success(sim: Simulation, skill: str, args: tuple[str, ...]) -> bool:
    return bool(get_skill(skill).success(sim, *args))
