"""The layered multi-rate runtime: reasoning (brain + monitor), perception and planning
(scene graph + cerebellum inference), control (chunk execution, interpolation, safety filter)
and the HAL (body drivers), run on a simulated lockstep clock or in real time."""

from pathlib import Path

# What `embodia run`, `make demo` and benchmarks/long_horizon.py drive by default: the
# checkpoint measured best on multi-step instructions (docs/results.md, Runtime). Kept here,
# free of heavy imports, so the CLI can name it without loading the runtime. Relative to the
# project root (the folder holding checkpoints/), not to the current directory.
DEFAULT_AGENT_CHECKPOINT = "checkpoints/arm7_flow_ensemble_chain"


def project_root() -> Path:
    """The source checkout this package runs from (src/embodia/runtime -> the root): the
    shipped checkpoints live there, beside src/, in a clone or an editable install."""
    return Path(__file__).resolve().parents[3]


def default_agent_checkpoint() -> Path:
    """DEFAULT_AGENT_CHECKPOINT as an absolute path, so `embodia run` works from any folder.

    Raises FileNotFoundError naming the path when this install has no checkpoints (a wheel
    installed outside a clone): the checkpoints ship with the repository, not the package.
    """
    path = project_root() / DEFAULT_AGENT_CHECKPOINT
    if not path.is_dir():
        raise FileNotFoundError(
            f"the default checkpoint {DEFAULT_AGENT_CHECKPOINT} is not at {path}: it ships with the "
            "repository (a clone, or `pip install -e .` from one); pass --policy DIR or --policy expert")
    return path
