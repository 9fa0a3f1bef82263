"""Policy-then-expert rollouts: recovery demonstrations from the states a learned policy reaches.

Behaviour cloning only ever sees the expert's own states. A cloned pick policy drifts 2-4 cm
beside the cube, closes on air there, and lifts its empty hand: no demonstration starts
from that state (covariate shift). DAgger fixes this by labelling the policy's own states
with the expert's actions. The scripted experts have phases (a generator), not a function
of the state, so instead the learned policy acts until it has visibly failed, and the
expert takes over from that very state and finishes the skill. Only the expert's part is
recorded: a demonstration that starts where the policy goes wrong.

Handover rule (pick): the policy commanded a close and, `GRASP_SETTLE_STEPS` later, does
not hold the target; or `POLICY_BUDGET` steps passed without a close. A pick the policy
completes is not recorded (nothing to learn from it). Mid-motion handovers are avoided on
purpose: from a hand that is merely on its way down, the expert would restart with a rise
to its transit height, and those labels would contradict the clean demonstrations.

Handover rule (stack): the policy commands the gripper open while the held cube is more
than `STACK_ALIGN_TOL` (horizontally) off the base, or has not let go after
`POLICY_BUDGET` steps. The expert takes over from the state before that release, with the
cube still in the hand: it rises a little, lines the cube up over the base and lets go. Why:
the cloned stack carries the cube to about the right height and opens on time, 2-3 cm beside
the base (validation seeds, true object state), and the cube falls off. No demonstration
shows a hand that is low and off-centre correcting itself before it lets go.

Handover at a step boundary (a task): the policy runs the task's first steps (the pick, or
open-drawer-then-pick) and, once they succeed, the expert does the first place or stack
from the grasp the policy made. Why: single-skill place and stack episodes start with the
cube put centred between the fingers; in a long-horizon plan they start from the learned
pick's own grasp (off-centre, tilted, the hand just lifted), a state no demonstration
visits. A task whose earlier steps the policy fails is not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embodia.body import predicates as P
from embodia.body.skills import get_skill

HANDOVER_SKILLS = ("pick", "stack")
AFTER_POLICY_SKILLS = ("place", "stack")  # a task's first such step is the expert's
GRASP_SETTLE_STEPS = 6  # after a close command: long enough for the fingers to shut
POLICY_BUDGET = 40  # steps the policy gets before the expert takes over anyway
STACK_ALIGN_TOL = 0.01  # m: a release with the cube further than this from over its base is premature


@dataclass
class Handover:
    """What the policy's part of an episode ended in."""

    handed_over: bool  # False: the policy finished the step itself, or the episode ended
    policy_steps: int
    reason: str  # "missed_grasp" | "budget" | "policy_succeeded" | "episode_ended"


def check_handover_skill(skill: str) -> None:
    if skill not in HANDOVER_SKILLS:
        raise ValueError(f"recovery from a policy's states is built for {list(HANDOVER_SKILLS)}, not {skill!r}")


def run_policy_until_handover(env, policy_agent, obs: dict[str, Any], seed: int,
                              budget: int = POLICY_BUDGET) -> tuple[dict[str, Any], Handover]:
    """Let `policy_agent` (eval.rollout.PolicyAgent) act on a freshly reset single-step pick
    episode until the handover rule fires; returns the observation the expert starts from."""
    skill, args = env.plan[0]
    check_handover_skill(skill)
    obj, grip_dim = args[0], env.embodiment.arm_action_slice("ee_delta", env.arm).stop - 1
    policy_agent.reset(env, seed)
    if skill == "stack":
        return _until_premature_release(env, policy_agent, obs, obj, args[1], grip_dim, budget)
    closed_at: int | None = None
    for t in range(budget + GRASP_SETTLE_STEPS):
        held = P.holder(env.sim, obj) == env.arm
        if closed_at is not None and not held and t - closed_at >= GRASP_SETTLE_STEPS:
            return obs, Handover(True, t, "missed_grasp")
        if closed_at is None and t >= budget:
            return obs, Handover(True, t, "budget")
        action = np.asarray(policy_agent.act(obs, env), dtype=np.float64)
        if closed_at is None and action[grip_dim] >= 0.5 and not held:
            closed_at = t
        obs, _, term, trunc, info = env.step(action)
        if env.step_index > 0:  # the pick's success held
            return obs, Handover(False, t + 1, "policy_succeeded")
        if term or trunc:
            return obs, Handover(False, t + 1, "episode_ended")
    return obs, Handover(True, budget + GRASP_SETTLE_STEPS, "budget")


def stack_offset(sim, obj: str, base: str) -> float:
    """Horizontal distance (m) of `obj` from over `base`."""
    return float(np.linalg.norm(sim.object_pose(obj)[0][:2] - sim.object_pose(base)[0][:2]))


def _until_premature_release(env, policy_agent, obs: dict[str, Any], obj: str, base: str, grip_dim: int,
                             budget: int) -> tuple[dict[str, Any], Handover]:
    """The stack rule: hand over before a release made off the base (or at the budget). A
    release over the base is the policy's own stack: it runs on, and is not recorded."""
    t, released = 0, False
    while True:
        if not released and t >= budget:
            if P.holder(env.sim, obj) != env.arm:
                return obs, Handover(False, t, "episode_ended")  # dropped it: the expert cannot start
            return obs, Handover(True, t, "budget")
        action = np.asarray(policy_agent.act(obs, env), dtype=np.float64)
        if not released and action[grip_dim] < 0.5 and P.holder(env.sim, obj) == env.arm:
            if stack_offset(env.sim, obj, base) > STACK_ALIGN_TOL:
                return obs, Handover(True, t, "premature_release")
            released = True
        obs, _, term, trunc, _ = env.step(action)
        t += 1
        if env.step_index > 0:
            return obs, Handover(False, t, "policy_succeeded")
        if term or trunc:
            return obs, Handover(False, t, "episode_ended")


def handover_step(plan: list[tuple[str, tuple[str, ...]]] | tuple) -> int:
    """The index of the first place/stack step after step 0: where the expert takes over."""
    for i, (skill, _) in enumerate(plan):
        if i > 0 and skill in AFTER_POLICY_SKILLS:
            return i
    raise ValueError(f"a task handover needs a {' or '.join(AFTER_POLICY_SKILLS)} step after the "
                     f"first step; the plan is {[s for s, _ in plan]}")


def run_policy_until_step(env, policy_agent, obs: dict[str, Any], seed: int,
                          step: int) -> tuple[dict[str, Any], Handover]:
    """Let `policy_agent` act on a freshly reset task episode until `env.step_index` reaches
    `step`, each earlier step within its skill's own step budget and the policy reset between
    steps (as the runtime does); returns the observation the expert starts from."""
    policy_agent.reset(env, seed)
    t, current, used = 0, env.step_index, 0
    while env.step_index < step:
        if env.step_index != current:  # a step succeeded: the next one starts afresh
            current, used = env.step_index, 0
            policy_agent.reset(env, seed + current)
        if used >= get_skill(env.plan[current][0]).max_steps:
            return obs, Handover(False, t, "budget")
        obs, _, term, trunc, _ = env.step(np.asarray(policy_agent.act(obs, env), dtype=np.float64))
        t, used = t + 1, used + 1
        if (term or trunc) and env.step_index < step:
            return obs, Handover(False, t, "episode_ended")
    return obs, Handover(True, t, "reached_step")
