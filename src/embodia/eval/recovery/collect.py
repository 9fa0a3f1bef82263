"""`collect --recover-from CKPT`: the policy acts first, the scripted expert takes over.

data/recording.py records; this module supplies the `Lead` it drives (a checkpoint run
through `eval.rollout.PolicyAgent` until a handover rule in `handover.py` fires) and checks
up front what a policy-led collection cannot do. Why here: loading a checkpoint is the
cerebellum's business, and the data pillar must not import it (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embodia.body.skills import get_skill
from embodia.body.tasks import get_task
from embodia.data.recording import CollectConfig, CollectReport, collect
from embodia.eval.recovery.handover import (
    GRASP_SETTLE_STEPS,
    POLICY_BUDGET,
    check_handover_skill,
    handover_step,
    run_policy_until_handover,
    run_policy_until_step,
)


def check_recovery(cfg: CollectConfig, checkpoint: str | Path) -> None:
    """Clear errors, before anything is written, for a collection a policy cannot lead."""
    if cfg.perturb or cfg.slip:
        raise ValueError("recover_from records from a policy's states; drop perturb/slip")
    if cfg.cameras == ():
        raise ValueError("recover_from: the policy acts from the cameras, so cameras=() (none) cannot apply")
    if cfg.task is not None:
        handover_step(get_task(cfg.task).steps)
    else:
        check_handover_skill(cfg.skill)
    if not (Path(checkpoint) / "config.json").is_file():
        raise ValueError(f"recover_from: {str(checkpoint)!r} is not a checkpoint folder (no config.json)")


@dataclass
class PolicyLead:
    """A checkpoint that acts until its handover rule fires (the `Lead` of data/recording.py).

    Pickled to every worker batch; the policy is loaded there, on first use."""

    checkpoint: str
    task: str | None = None
    _agent: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {"checkpoint": self.checkpoint, "task": self.task, "_agent": None}

    def env_max_steps(self, cfg: CollectConfig) -> int | None:
        if cfg.task:  # a task keeps its default budget: every step's own
            return None
        return get_skill(cfg.skill).max_steps + POLICY_BUDGET + GRASP_SETTLE_STEPS

    def _policy(self) -> Any:
        if self._agent is None:
            import torch

            from embodia.cerebellum.checkpoint import load_checkpoint
            from embodia.eval.rollout import PolicyAgent

            torch.set_num_threads(1)
            self._agent = PolicyAgent(load_checkpoint(self.checkpoint))
        return self._agent

    def run(self, env: Any, obs: dict[str, Any], seed: int) -> tuple[dict[str, Any], bool, int | None]:
        """A task: the policy runs the steps before the first place/stack, recording stops after
        that step; a skill: the policy acts until it misses."""
        if self.task:
            step = handover_step(env.plan)
            obs, h = run_policy_until_step(env, self._policy(), obs, seed, step)
            return obs, h.handed_over, step
        obs, h = run_policy_until_handover(env, self._policy(), obs, seed)
        return obs, h.handed_over, None


def collect_recovery(cfg: CollectConfig, checkpoint: str | Path,
                     progress: Callable[[int, int], None] | None = None) -> CollectReport:
    """Record the expert's recoveries from `checkpoint`'s states into `cfg.out` (see
    eval/recovery/handover.py for when the expert takes over); episodes the policy completes
    itself are not recorded."""
    check_recovery(cfg, checkpoint)
    return collect(cfg, progress=progress, lead=PolicyLead(str(checkpoint), cfg.task))
