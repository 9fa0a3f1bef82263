"""Meta-World's scripted experts (metaworld.policies) on the default evaluation seeds.

Printed beside every `embodia eval --suite metaworld` result: a learned policy cloned from
these experts is measured against what they themselves reach on the same episodes. Measured
once with the command below (no cameras: the experts read the state, not images).
"""

from __future__ import annotations

EXPERT_CEILING: dict = {
    "command": "OMP_NUM_THREADS=1 embodia eval --policy expert --suite metaworld --task mt10 "
               "--episodes 50 --seed-start 100000 --json",
    "seed_start": 100000,
    "episodes": 50,
    "measured_on": "metaworld 3.1.1, mujoco 3.3.0, 2-core CPU box, 24 s",
    "mean_success_rate": 0.982,
    "tasks": {
        "reach-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
        "push-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
        "pick-place-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
        "door-open-v3": {"episodes": 50, "successes": 48, "success_rate": 0.96, "wilson95": [0.8654, 0.989]},
        "drawer-open-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
        "drawer-close-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
        "button-press-topdown-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
        "peg-insert-side-v3": {"episodes": 50, "successes": 43, "success_rate": 0.86, "wilson95": [0.7381, 0.9305]},
        "window-open-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
        "window-close-v3": {"episodes": 50, "successes": 50, "success_rate": 1.0, "wilson95": [0.9287, 1.0]},
    },
}
